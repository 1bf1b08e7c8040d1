"""Data sets and the searchers under comparison, each behind one small adapter.

Every adapter is built once per data set, checked once against an
independent numpy oracle (distances for every searcher, ids as well for those
that promise the ``(distance, id)`` order), and then timed by ``search``.
Preparing queries in a searcher's own format happens outside the timing.
"""
from __future__ import annotations

import gc
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

import hamsearch as hs
from hamsearch import _backend

from .grid import FAISS, HAMSEARCH_NATIVE, HAMSEARCH_NUMBA, NUMPY, USEARCH

CHECK_QUERIES = 2  # queries checked against the oracle per searcher
CHECK_K = 100
TO_BYTES_CHUNK = 1 << 18  # rows per hs.to_bytes call: bounds its (rows, nbits) temporaries


class Unavailable(Exception):
    """A searcher that cannot run here (peer not installed, core not built)."""


# faiss's SIMD level for each hamsearch kernel level (None: faiss's own choice,
# its best). faiss wheels from 1.13 dispatch at run time (SIMDConfig, or
# FAISS_SIMD_LEVEL before import); older ones load a library per level at
# import, chosen by FAISS_OPT_LEVEL.
FAISS_SIMD_FOR_ISA: Dict[str, Optional[str]] = {
    "scalar": "NONE",
    "popcnt": "NONE",
    "avx2": "AVX2",
    "avx512_vpopcntdq": None,
}
_FAISS_OPT_LEVEL = {"NONE": "generic", "AVX2": "AVX2"}
FORCED: Dict[str, Optional[str]] = {"isa": None, "faiss_simd": None}


def force_isa(level: str) -> None:
    """Run hamsearch's native kernels at ``level`` and faiss at the matching
    SIMD level (``--hs-isa``): how an AVX-512 machine measures the AVX2
    kernels of both. Call before faiss is imported. ValueError for a level
    this CPU lacks; Unavailable without the native core."""
    if _backend._native is None:
        raise Unavailable(f"--hs-isa needs the native core, which did not load: {_backend._native_error!r}")
    levels = list(_backend.available_isas())
    if level not in levels:
        raise ValueError(f"--hs-isa: expected one of this CPU's levels {', '.join(levels)}, got {level!r}")
    _backend.set_isa(level)
    peer = FAISS_SIMD_FOR_ISA.get(level)
    if peer is not None:
        os.environ["FAISS_SIMD_LEVEL"] = peer
        os.environ["FAISS_OPT_LEVEL"] = _FAISS_OPT_LEVEL[peer]
    FORCED.update(isa=level, faiss_simd=peer)


def faiss_level(faiss: Any) -> str:
    """The SIMD level faiss runs at: its compile options and, where it
    dispatches at run time, the level dispatched to."""
    text = "faiss " + faiss.get_compile_options().strip()
    config = getattr(faiss, "SIMDConfig", None)
    if config is not None and hasattr(config, "get_level_name"):
        text += f" (level {config.get_level_name()})"
    return text


def _trim_heap() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so that
    the resident-set growth measured around a build is what the index keeps."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def _resident_bytes() -> int:
    """Resident set size of this process, or 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        return 0


_preloaded = False


def _preload() -> None:
    """Import the peers and the Numba backend once, before any index is built,
    so that the memory measured around a build is the index's, not a library's."""
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    import importlib

    for name in ("faiss", "usearch.index", "hamsearch._numba"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # reported as a skip when that searcher is asked for


# -- data --------------------------------------------------------------------
class ByteCodes:
    """The byte-packed form of a data set's ``codes`` and ``queries`` (faiss's
    layout), made on first use through ``hamsearch.to_bytes``, a slice at a
    time. Needs ``codes``, ``queries``, ``nbits``, ``n`` and ``_bytes``."""

    codes: np.ndarray
    queries: np.ndarray
    nbits: int
    n: int
    _bytes: Optional[np.ndarray]

    @property
    def bytes(self) -> np.ndarray:
        """(n, ceil(nbits/8)) uint8, faiss's bit order (``bitorder="little"``)."""
        if self._bytes is None:
            out = np.empty((self.n, (self.nbits + 7) // 8), dtype=np.uint8)
            for s in range(0, self.n, TO_BYTES_CHUNK):
                e = min(self.n, s + TO_BYTES_CHUNK)
                out[s:e] = hs.to_bytes(self.codes[s:e], self.nbits)
            self._bytes = out
        return self._bytes

    def query_bytes(self, nq: int) -> np.ndarray:
        return hs.to_bytes(self.queries[:nq], self.nbits)


class Dataset(ByteCodes):
    """Uniform random codes: ``n`` database codes and ``nq`` separate queries.

    Codes are drawn word by word with ``rng.integers(0, 2**64, dtype=uint64)``
    and the pad bits masked off. The byte-packed form (faiss's layout) is made
    on first use through ``hamsearch.to_bytes``, a slice at a time.
    """

    def __init__(self, nbits: int, n: int, nq: int, seed: int) -> None:
        self.nbits, self.n = nbits, n
        w = (nbits + 63) // 64
        rng = np.random.default_rng([seed, nbits, n])
        self.codes = rng.integers(0, 2**64, size=(n, w), dtype=np.uint64)
        self.queries = rng.integers(0, 2**64, size=(nq, w), dtype=np.uint64)
        if nbits % 64:
            mask = np.uint64((1 << (nbits % 64)) - 1)
            self.codes[:, -1] &= mask
            self.queries[:, -1] &= mask
        self._bytes: Optional[np.ndarray] = None
        self._oracle: Optional[Tuple[np.ndarray, np.ndarray]] = None

    @property
    def words(self) -> int:
        return self.codes.shape[1]

    def oracle(self) -> Tuple[np.ndarray, np.ndarray]:
        """(D, I) of the first CHECK_QUERIES queries, k = CHECK_K, in (distance, id)
        order: row-major XOR and popcount, then np.lexsort over the candidates
        up to the k-th smallest distance."""
        if self._oracle is None:
            k = min(CHECK_K, self.n)
            Ds, Is = [], []
            for q in self.queries[:CHECK_QUERIES]:
                d = np.bitwise_count(self.codes ^ q).sum(axis=1, dtype=np.int64)
                kth = np.partition(d, k - 1)[k - 1]
                cand = np.flatnonzero(d <= kth)
                order = np.lexsort((cand, d[cand]))[:k]
                Is.append(cand[order])
                Ds.append(d[cand[order]])
            self._oracle = (np.array(Ds), np.array(Is))
        return self._oracle


# -- searchers ---------------------------------------------------------------
class Searcher:
    """One library's exact k-NN search over one data set."""

    library = ""
    backend = ""
    exact_ties = False  # results in (distance, id) order, ties included

    def __init__(self, data: Dataset) -> None:
        self.nbits = data.nbits
        self.isa = "n/a"
        self.memory_bytes = 0  # memory the searcher added, measured as RSS growth

    def prepare(self, data: Dataset, nq: int) -> Any:
        """The first ``nq`` queries in this searcher's input format."""
        return data.queries[:nq]

    def set_threads(self, threads: int) -> None:
        """Called before timing (for libraries with a global thread setting)."""

    def search(self, q: Any, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Drop the index."""


class HamsearchSearcher(Searcher):
    library = "hamsearch"
    exact_ties = True

    def __init__(self, data: Dataset, backend: str) -> None:
        super().__init__(data)
        self.backend = backend
        if backend == "native" and _backend._native is None:
            raise Unavailable(f"the native core hamsearch._core did not load: {_backend._native_error!r}")
        try:
            self.index: Any = hs.FlatIndex(data.nbits, backend=backend)
        except ImportError as exc:  # the Numba backend or numba itself missing
            raise Unavailable(f"hamsearch backend {backend!r} is not available: {exc!r}") from exc
        self.isa = hs.isa() if backend == "native" else "numba"
        self.index.add(data.codes)

    def search(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.index.query(q, k, threads=threads)

    def close(self) -> None:
        self.index = None


class FaissSearcher(Searcher):
    library, backend = FAISS

    def __init__(self, data: Dataset) -> None:
        super().__init__(data)
        try:
            import faiss
        except ImportError as exc:
            raise Unavailable(f"faiss is not installed ({exc}); pip install faiss-cpu") from exc
        self.faiss = faiss
        peer = FORCED["faiss_simd"]
        config = getattr(faiss, "SIMDConfig", None)
        if peer is not None and config is not None and hasattr(faiss, f"SIMDLevel_{peer}"):
            config.set_level(getattr(faiss, f"SIMDLevel_{peer}"))  # also where faiss was imported first
        self.isa = faiss_level(faiss)
        self.index: Any = faiss.IndexBinaryFlat(data.nbits)
        self.index.add(data.bytes)

    def prepare(self, data: Dataset, nq: int) -> np.ndarray:
        return data.query_bytes(nq)

    def set_threads(self, threads: int) -> None:
        self.faiss.omp_set_num_threads(threads)

    def search(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.index.search(q, k)

    def close(self) -> None:
        self.index = None


class UsearchSearcher(Searcher):
    """usearch's exact (brute-force) search, ``usearch.index.search(...,
    exact=True)``: no index is built, the caller's byte array is scanned.
    (An ``Index(..., dtype="b1")`` would build an HNSW graph on ``add`` even
    when only exact search is wanted.) uint8 rows are taken as packed bits."""

    library, backend = USEARCH

    def __init__(self, data: Dataset) -> None:
        super().__init__(data)
        try:
            import usearch.index as uindex
        except ImportError as exc:
            raise Unavailable(f"usearch is not installed ({exc}); pip install usearch") from exc
        self.uindex = uindex
        probe = uindex.Index(ndim=data.nbits, metric="hamming", dtype="b1")
        self.isa = "usearch " + str(probe.hardware_acceleration)
        self.dataset = data.bytes
        self.memory_bytes = self.dataset.nbytes  # it scans the caller's array

    def prepare(self, data: Dataset, nq: int) -> np.ndarray:
        return data.query_bytes(nq)

    def search(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        m = self.uindex.search(self.dataset, q, k, self.uindex.MetricKind.Hamming, exact=True, threads=threads)
        return m.distances, m.keys

    def close(self) -> None:
        self.dataset = None


class NumpySearcher(Searcher):
    """A numpy scan on one thread: the codes stored word-major (one contiguous
    row per word), ``np.bitwise_count`` of the XOR accumulated word by word,
    then ``np.argpartition`` for the k-th distance and ``np.lexsort`` of the
    candidates, ties at the k-th distance taken by ascending id (exact)."""

    library, backend = NUMPY
    exact_ties = True

    def __init__(self, data: Dataset) -> None:
        super().__init__(data)
        self.isa = "numpy " + np.__version__
        self.cols = np.ascontiguousarray(data.codes.T)  # (W, n)
        n = data.n
        self._xor = np.empty(n, dtype=np.uint64)
        self._cnt = np.empty(n, dtype=np.uint8)
        self._dist = np.empty(n, dtype=np.uint16)

    def _distances(self, q: np.ndarray) -> np.ndarray:
        dist = self._dist
        for w in range(self.cols.shape[0]):
            np.bitwise_xor(self.cols[w], q[w], out=self._xor)
            np.bitwise_count(self._xor, out=self._cnt)
            if w == 0:
                dist[...] = self._cnt
            else:
                np.add(dist, self._cnt, out=dist)
        return dist

    @staticmethod
    def _top_k(dist: np.ndarray, k: int) -> np.ndarray:
        n = dist.shape[0]
        if k >= n:
            cand = np.arange(n)
        else:
            part = np.argpartition(dist, k - 1)[:k]
            kth = dist[part].max()
            below = np.flatnonzero(dist < kth)
            at = np.flatnonzero(dist == kth)[: k - below.size]
            cand = np.concatenate([below, at])
        return cand[np.lexsort((cand, dist[cand]))]

    def search(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        nq = q.shape[0]
        kk = min(k, self.cols.shape[1])
        D = np.full((nq, k), np.iinfo(np.int32).max, dtype=np.int32)
        I = np.full((nq, k), -1, dtype=np.int64)
        for j in range(nq):
            dist = self._distances(q[j])
            top = self._top_k(dist, kk)
            I[j, :kk] = top
            D[j, :kk] = dist[top]
        return D, I

    def close(self) -> None:
        self.cols = self._xor = self._cnt = self._dist = None  # type: ignore[assignment]


def make_searcher(key: Tuple[str, str], data: Dataset) -> Searcher:
    if key == HAMSEARCH_NATIVE:
        return HamsearchSearcher(data, "native")
    if key == HAMSEARCH_NUMBA:
        return HamsearchSearcher(data, "numba")
    if key == FAISS:
        return FaissSearcher(data)
    if key == USEARCH:
        return UsearchSearcher(data)
    if key == NUMPY:
        return NumpySearcher(data)
    raise ValueError(f"searcher: expected one of the grid's searchers, got {key!r}")


def check_against_oracle(searcher: Searcher, data: Dataset) -> None:
    """Raise AssertionError unless the searcher's distances (and, for searchers
    that promise the (distance, id) order, ids) equal the oracle's."""
    oD, oI = data.oracle()
    k = oD.shape[1]
    q = searcher.prepare(data, oD.shape[0])
    searcher.set_threads(1)
    D, I = searcher.search(q, k, 1)
    D = np.asarray(D).astype(np.int64)
    I = np.asarray(I).astype(np.int64)
    if not np.array_equal(D, oD):
        raise AssertionError(
            f"{searcher.library}/{searcher.backend}: distances differ from the numpy oracle "
            f"(nbits={data.nbits}, n={data.n}); first row {D[0, :8]} vs {oD[0, :8]}"
        )
    if searcher.exact_ties and not np.array_equal(I, oI):
        raise AssertionError(
            f"{searcher.library}/{searcher.backend}: ids differ from the numpy oracle's "
            f"(distance, id) order (nbits={data.nbits}, n={data.n})"
        )


class OneDataSetCache:
    """One data set at a time and the searchers built on it (a searcher, or
    the exception that refused it): asking for another data set frees the
    previous one and every index built on it (10^7 x 256-bit codes are 320 MB
    a copy). Subclasses say how a data set and its searchers are made."""

    def __init__(self, seed: int, nq: int) -> None:
        self.seed, self.nq = seed, nq
        self.key: Optional[Tuple[Any, ...]] = None
        self.data: Any = None
        self.searchers: Dict[Tuple[str, str], Any] = {}

    def clear(self) -> None:
        for s in self.searchers.values():
            if not isinstance(s, BaseException):
                s.close()
        self.searchers.clear()
        self.data = None
        self.key = None
        _trim_heap()


class DataCache(OneDataSetCache):
    """The current data set of bench_flat.py and the searchers built on it.

    A searcher that is unavailable, or fails its oracle check, is remembered
    and not retried for the same data set.
    """

    def __init__(self, seed: int, nq: int) -> None:
        super().__init__(seed, nq)
        self.unavailable: Dict[Tuple[str, str], str] = {}  # across data sets

    def dataset(self, nbits: int, n: int) -> Dataset:
        if self.key != (nbits, n):
            self.clear()
            self.data = Dataset(nbits, n, self.nq, self.seed)
            self.key = (nbits, n)
        assert self.data is not None
        return self.data

    def searcher(self, key: Tuple[str, str], nbits: int, n: int) -> Searcher:
        """The searcher ``key`` on data set ``(nbits, n)``, built and checked on
        first use. Raises Unavailable, or AssertionError if the check fails."""
        if key in self.unavailable:
            raise Unavailable(self.unavailable[key])
        data = self.dataset(nbits, n)
        got = self.searchers.get(key)
        if isinstance(got, BaseException):
            raise got
        if got is None:
            _preload()
            if key in (FAISS, USEARCH):
                data.bytes  # the shared byte-packed copy is the data set's, not the index's
            data.oracle()  # its temporaries come and go before the measurement
            _trim_heap()
            before = _resident_bytes()
            try:
                got = make_searcher(key, data)
            except Unavailable as exc:
                self.unavailable[key] = str(exc)
                raise
            try:
                check_against_oracle(got, data)  # also touches lazily allocated buffers
            except AssertionError as exc:
                got.close()
                self.searchers[key] = exc
                raise
            if not got.memory_bytes:
                _trim_heap()
                got.memory_bytes = max(0, _resident_bytes() - before)
            self.searchers[key] = got
        return got


# -- the memory-bandwidth floor ----------------------------------------------
def read_bandwidth_reader() -> Tuple[str, Callable[[np.ndarray, int], Any]]:
    """A function ``(array, threads) -> checksum`` that reads the whole array.

    ``hamsearch._core._read_bandwidth`` when the native core has it (the same
    threads and memory path as the scan), else numpy: one
    ``np.bitwise_or.reduce`` per thread over near-equal slices (numpy releases
    the GIL inside the reduction).
    """
    core = _backend._native
    fn = getattr(core, "_read_bandwidth", None) if core is not None else None
    if fn is not None:
        return "hamsearch._core._read_bandwidth", fn

    def numpy_read(arr: np.ndarray, threads: int) -> int:
        flat = arr.reshape(-1)
        if threads <= 1:
            return int(np.bitwise_or.reduce(flat))
        parts = np.array_split(flat, threads)
        with ThreadPoolExecutor(threads) as pool:
            return int(np.bitwise_or.reduce(np.array(list(pool.map(np.bitwise_or.reduce, parts)))))

    return "numpy bitwise_or.reduce", numpy_read
