"""Radius search and full ranking: hamsearch's ``FlatIndex``, ``MIHIndex``
and ``ShardedIndex`` against faiss and a numpy scan.

Grid (standard profile): data kind in {uniform, clustered} (``bench_mih.py``'s
generators: ``n // 100`` centres, each bit flipped with probability 0.05) x
nbits in {64, 128, 256} x threads in {1, 2}, and

- **radius** (every code within distance ``r``, sorted by ``(distance, id)``):
  n in {10^5, 10^6, 10^7}, r in {nbits/16, nbits/8} (4 and 8 at 64 bits: a
  clustered query's own cluster lies about 0.095 nbits away; uniform codes
  have almost no neighbour that close, the near-duplicate search case); above
  10^6 only r = nbits/8 but in the full profile;
- **rank** (the whole database in ``(distance, id)`` order, one ``n``-long
  row per query): n up to RANK_MAX_N.

Searchers (``extra_info`` ``library`` / ``variant``):

- ``hamsearch`` ``flat``, ``mih`` (``MIHIndex``: exact radius by the
  pigeonhole bound; its ``rank`` is the flat scan), and ``sharded``
  (``hamsearch.distributed.ShardedIndex``, 2 Ray actors of one thread each,
  on the 2-thread rows only; skipped without Ray);
- ``faiss`` ``IndexBinaryFlat``: ``range_search`` with radius ``r + 1``
  (faiss's radius is exclusive), and for ranking ``search`` with ``k = n``
  and ``use_heap = False`` (faiss's counting selection, 10x faster than its
  heap at ``k = n``); exact distances, ties in faiss's own order;
- ``faiss`` ``IndexBinaryMultiHash`` (``nhash = nbits // 16``, ``b = 16``,
  ``nflip = 2``) ``range_search``: approximate, ``recall`` = the fraction of
  the exact results it returns; radius only, up to MULTIHASH_MAX_N;
- ``numpy`` ``scan``: one thread, ``np.bitwise_count`` of the XOR, then
  ``np.flatnonzero`` and ``np.lexsort`` (radius) or a stable ``np.argsort``
  of the distances (rank).

Every exact searcher is checked once per data set against a numpy oracle on
two queries (ids and distances in ``(distance, id)`` order for hamsearch and
numpy, distances for faiss). Batches: radius as the k-NN suites (1000
queries, held to 10^9 query x code pairs in the standard profile; numpy
and MultiHash 2*10^7 pairs); rank RANK_RESULTS results a batch (200 queries at 10^5),
numpy a quarter of that. At least 3 rounds, more where rounds are short.
``extra_info`` records ``op``, ``r``, ``results_per_query``, ``exact``,
``recall``, ``build_seconds``, ``memory_bytes_per_code`` (and for MIH's
radius search ``mih_fallbacks``, the batch's queries the flat scan
answered); ``bench/report.py`` turns the JSON into tables.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

import hamsearch as hs
from hamsearch import _backend

from bench.bench_mih import KINDS, MULTIHASH_B, MULTIHASH_NFLIP, MihDataset
from bench.grid import BenchConfig, adaptive_rounds, bench_config, n_label
from bench.peers import OneDataSetCache, Unavailable, _preload, _resident_bytes, _trim_heap

FLAT = ("hamsearch", "flat")
MIH = ("hamsearch", "mih")
SHARDED = ("hamsearch", "sharded")
FAISS_FLAT = ("faiss", "IndexBinaryFlat")
MULTIHASH = ("faiss", "IndexBinaryMultiHash")
NUMPY = ("numpy", "scan")
RADIUS_SEARCHERS = (FLAT, MIH, SHARDED, FAISS_FLAT, MULTIHASH, NUMPY)
RANK_SEARCHERS = (FLAT, MIH, SHARDED, FAISS_FLAT, NUMPY)

OPS = ("radius", "rank")
THREADS = (1, 2)
SHARDS = 2  # one Ray actor and one thread a shard: the rows of 2 threads
ROUNDS = 3
MIN_CASE_SECONDS = 0.3
MAX_ROUNDS = 30
RADIUS_FRACTIONS = (16, 8)  # r = nbits // 16 and nbits // 8
LARGE_N_ONE_RADIUS = 10**6
RANK_MAX_N = 10**6
QUICK_RANK_MAX_N = 10**5
RANK_RESULTS = 2 * 10**7  # results a rank batch returns: 200 queries at 10^5, 20 at 10^6
NUMPY_RANK_RESULTS = 5 * 10**6
NUMPY_PAIRS = 2 * 10**7
MULTIHASH_PAIRS = 2 * 10**7  # its radius search probes more buckets than its k-NN: 20 queries at 10^6
MULTIHASH_MAX_N = 10**6
MIN_NQ = 2
CHECK_QUERIES = 2


@dataclass(frozen=True)
class OpCase:
    op: str  # "radius" or "rank"
    data: str
    library: str
    variant: str
    nbits: int
    n: int
    r: Optional[int]
    threads: int
    nq: int

    @property
    def data_key(self) -> Tuple[str, str, int, int]:
        # Four fields: never equal to the other suites' keys.
        return ("ops", self.data, self.nbits, self.n)

    @property
    def group(self) -> str:
        op = f"radius r={self.r}" if self.op == "radius" else "rank"
        return f"{op} data={self.data} nbits={self.nbits} n={n_label(self.n)}"

    @property
    def id(self) -> str:
        op = f"radius{self.r}" if self.op == "radius" else "rank"
        return (f"{op}-{self.library}-{self.variant}-{self.data}-b{self.nbits}-n{n_label(self.n)}"
                f"-t{self.threads}-q{self.nq}")


def batch_nq(cfg: BenchConfig, op: str, s: Tuple[str, str], n: int) -> int:
    """Queries per timed round (see the module docstring)."""
    if op == "rank":
        results = NUMPY_RANK_RESULTS if s == NUMPY else RANK_RESULTS
        return int(max(MIN_NQ, min(cfg.fast_nq, results // n)))
    if s == NUMPY:
        return cfg.budget_nq(n, NUMPY_PAIRS, MIN_NQ)
    if s == MULTIHASH:
        return cfg.budget_nq(n, MULTIHASH_PAIRS, MIN_NQ)
    return cfg.budget_nq(n)


def radii(nbits: int, n: int = 0, cfg: Optional[BenchConfig] = None) -> Tuple[int, ...]:
    """The radii of a data set: nbits // 16 and nbits // 8; above
    LARGE_N_ONE_RADIUS codes only the larger, unless the profile is full."""
    fractions = RADIUS_FRACTIONS
    if cfg is not None and n > LARGE_N_ONE_RADIUS and not cfg.full:
        fractions = (min(RADIUS_FRACTIONS),)
    return tuple(sorted({max(1, nbits // f) for f in fractions}))


def op_cases(cfg: BenchConfig) -> List[OpCase]:
    """Every case, one data set at a time."""
    out = []
    rank_max = QUICK_RANK_MAX_N if cfg.quick else RANK_MAX_N
    for n in cfg.ns:
        for nbits in cfg.nbits:
            for data in KINDS:
                for op in OPS:
                    if op == "rank" and n > rank_max:
                        continue
                    for r in (radii(nbits, n, cfg) if op == "radius" else (None,)):
                        for threads in THREADS:
                            for s in (RADIUS_SEARCHERS if op == "radius" else RANK_SEARCHERS):
                                if (s == NUMPY and threads != 1) or (s == SHARDED and threads != SHARDS):
                                    continue
                                if s == MULTIHASH and n > MULTIHASH_MAX_N and not cfg.full:
                                    continue
                                out.append(OpCase(op, data, *s, nbits, n, r, threads, batch_nq(cfg, op, s, n)))
    return out


# -- the oracle ----------------------------------------------------------------
def oracle_distances(codes: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamming distances of one packed query to every code: XOR, popcount, sum."""
    return np.bitwise_count(codes ^ q).sum(axis=1, dtype=np.int64)


def oracle_radius(codes: np.ndarray, q: np.ndarray, r: int) -> Tuple[np.ndarray, np.ndarray]:
    d = oracle_distances(codes, q)
    ids = np.flatnonzero(d <= r)
    order = np.lexsort((ids, d[ids]))
    return d[ids[order]], ids[order]


def oracle_rank(codes: np.ndarray, q: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    d = oracle_distances(codes, q)
    order = np.lexsort((np.arange(d.size), d))
    return d[order], order


# -- searchers -----------------------------------------------------------------
class OpSearcher:
    """One library's radius search and ranking over one data set. ``radius``
    returns ``(lims, D, I)``; ``rank`` returns ``(D or None, I)`` with
    ``I`` of shape ``(nq, n)``."""

    library = variant = ""
    exact = True
    ties_by_id = True  # results in (distance, id) order

    def __init__(self, data: MihDataset) -> None:
        self.isa = "n/a"
        self.memory_bytes = 0
        self.build_seconds = float("nan")
        self.params: Dict[str, Any] = {}

    def prepare(self, data: MihDataset, nq: int) -> Any:
        return data.queries[:nq]

    def set_threads(self, threads: int) -> None:
        pass

    def radius(self, q: Any, r: int, threads: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def rank(self, q: Any, threads: int) -> Tuple[Optional[np.ndarray], np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class HamsearchOps(OpSearcher):
    library = "hamsearch"

    def __init__(self, data: MihDataset, variant: str, ray_cpus: int) -> None:
        super().__init__(data)
        self.variant = variant
        if _backend._native is None:
            raise Unavailable(f"the native core hamsearch._core did not load: {_backend._native_error!r}")
        self.isa = hs.isa()
        t0 = time.perf_counter()
        if variant == "sharded":
            try:
                import ray
            except ImportError as exc:
                raise Unavailable(f"Ray is not installed ({exc}); pip install 'hamsearch[distributed]'") from exc
            if not ray.is_initialized():
                # Workers at the driver's priority (Ray's default niceness is 15).
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray.init(num_cpus=ray_cpus, include_dashboard=False, logging_level="ERROR")
            from hamsearch import distributed

            self.index: Any = distributed.ShardedIndex(data.nbits, SHARDS, num_cpus_per_shard=1)
            self.params = {"shards": SHARDS, "threads_per_shard": 1}
        else:
            self.index = hs.MIHIndex(data.nbits) if variant == "mih" else hs.FlatIndex(data.nbits)
        self.index.add(data.codes)
        if variant == "mih":
            self.index.query(data.queries[:1], 1)  # builds the tables
            self.params = {"m": int(self.index.m)}
        self.build_seconds = time.perf_counter() - t0

    def radius(self, q: np.ndarray, r: int, threads: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.variant == "sharded":
            return self.index.radius(q, r)
        return self.index.radius(q, r, threads=threads)

    def rank(self, q: np.ndarray, threads: int) -> Tuple[Optional[np.ndarray], np.ndarray]:
        if self.variant == "sharded":
            return None, self.index.rank(q)
        return None, self.index.rank(q, threads=threads)

    def close(self) -> None:
        if self.variant == "sharded" and self.index is not None:
            self.index.close()
        self.index = None


class FaissOps(OpSearcher):
    library = "faiss"
    ties_by_id = False

    def __init__(self, data: MihDataset, variant: str) -> None:
        super().__init__(data)
        self.variant = variant
        self.exact = variant == FAISS_FLAT[1]
        try:
            import faiss
        except ImportError as exc:
            raise Unavailable(f"faiss is not installed ({exc}); pip install faiss-cpu") from exc
        self.faiss = faiss
        self.isa = "faiss " + faiss.get_compile_options().strip()
        faiss.omp_set_num_threads(max(THREADS))
        t0 = time.perf_counter()
        if variant == FAISS_FLAT[1]:
            self.index = faiss.IndexBinaryFlat(data.nbits)
            self.index.use_heap = False  # counting selection: the fast path at k = n
            self.params = {"use_heap": False}
        else:
            nhash = max(1, data.nbits // MULTIHASH_B)
            self.index = faiss.IndexBinaryMultiHash(data.nbits, nhash, MULTIHASH_B)
            self.index.nflip = MULTIHASH_NFLIP
            self.params = {"nhash": nhash, "b": MULTIHASH_B, "nflip": MULTIHASH_NFLIP}
        self.index.add(data.bytes)
        self.build_seconds = time.perf_counter() - t0
        self.n = data.n
        self.rank_chunk: Optional[int] = None

    def prepare(self, data: MihDataset, nq: int) -> np.ndarray:
        return data.query_bytes(nq)

    def set_threads(self, threads: int) -> None:
        self.faiss.omp_set_num_threads(threads)

    def radius(self, q: np.ndarray, r: int, threads: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.index.range_search(q, r + 1)  # faiss keeps distances < radius

    def rank(self, q: np.ndarray, threads: int) -> Tuple[Optional[np.ndarray], np.ndarray]:
        if self.rank_chunk is None:
            try:
                return self.index.search(q, self.n)
            except MemoryError:
                # faiss's counting selection at k = n allocates for every
                # distance value and result at once: at 256 bits and 10^6 codes
                # a batch of 20 fails (std::bad_alloc). From then on the batch
                # goes in calls of one query per thread, recorded in params.
                self.rank_chunk = max(1, threads)
                self.params["rank_queries_per_call"] = self.rank_chunk
        Ds, Is = [], []
        for s in range(0, q.shape[0], self.rank_chunk):
            D, I = self.index.search(q[s:s + self.rank_chunk], self.n)
            Ds.append(D)
            Is.append(I)
        return np.concatenate(Ds), np.concatenate(Is)

    def close(self) -> None:
        self.index = None


class NumpyOps(OpSearcher):
    library, variant = NUMPY

    def __init__(self, data: MihDataset) -> None:
        super().__init__(data)
        self.isa = "numpy " + np.__version__
        self.codes = data.codes
        self.ids = np.arange(data.n)

    def _distances(self, q: np.ndarray) -> np.ndarray:
        # uint16: np.argsort's stable sort of small integers is a radix sort
        return np.bitwise_count(self.codes ^ q).sum(axis=1, dtype=np.uint16)

    def radius(self, q: np.ndarray, r: int, threads: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        Ds, Is, lims = [], [], [0]
        for j in range(q.shape[0]):
            d = self._distances(q[j])
            ids = np.flatnonzero(d <= r)
            order = np.lexsort((ids, d[ids]))
            Ds.append(d[ids[order]])
            Is.append(ids[order])
            lims.append(lims[-1] + ids.size)
        return np.array(lims, dtype=np.int64), np.concatenate(Ds).astype(np.int32), np.concatenate(Is)

    def rank(self, q: np.ndarray, threads: int) -> Tuple[Optional[np.ndarray], np.ndarray]:
        out = np.empty((q.shape[0], self.ids.size), dtype=np.int64)
        for j in range(q.shape[0]):
            out[j] = np.argsort(self._distances(q[j]), kind="stable")
        return None, out

    def close(self) -> None:
        self.codes = self.ids = None  # type: ignore[assignment]


def make_searcher(key: Tuple[str, str], data: MihDataset, ray_cpus: int) -> OpSearcher:
    if key in (FLAT, MIH, SHARDED):
        return HamsearchOps(data, key[1], ray_cpus)
    if key in (FAISS_FLAT, MULTIHASH):
        return FaissOps(data, key[1])
    if key == NUMPY:
        return NumpyOps(data)
    raise ValueError(f"searcher: expected one of {RADIUS_SEARCHERS}, got {key!r}")


def check_against_oracle(s: OpSearcher, data: MihDataset, radii_: Tuple[int, ...], rank: bool) -> None:
    """AssertionError unless ``s``'s radius results (every radius of the data
    set) and ranking equal the oracle's on CHECK_QUERIES queries: ids and
    distances for searchers that promise the (distance, id) order, distances
    (and the set of ids, for radius) for the others."""
    q = data.queries[:CHECK_QUERIES]
    qs = s.prepare(data, CHECK_QUERIES)
    s.set_threads(1)
    where = f"{s.library}/{s.variant} (data={data.data}, nbits={data.nbits}, n={data.n})"
    for r in radii_:
        lims, D, I = s.radius(qs, r, 1)
        for j in range(q.shape[0]):
            oD, oI = oracle_radius(data.codes, q[j], r)
            d, i = np.asarray(D[lims[j]:lims[j + 1]]), np.asarray(I[lims[j]:lims[j + 1]])
            ok = (np.array_equal(d, oD) and np.array_equal(i, oI)) if s.ties_by_id else \
                (np.array_equal(np.sort(d), oD) and np.array_equal(np.sort(i), np.sort(oI)))
            if not ok:
                raise AssertionError(f"{where}: radius {r} differs from the numpy oracle on query {j}")
    if rank:
        D, I = s.rank(qs, 1)
        for j in range(q.shape[0]):
            oD, oI = oracle_rank(data.codes, q[j])
            if s.ties_by_id and not np.array_equal(np.asarray(I[j]), oI):
                raise AssertionError(f"{where}: rank differs from the numpy oracle on query {j}")
            got = np.asarray(D[j]) if D is not None else oracle_distances(data.codes, q[j])[np.asarray(I[j])]
            if not np.array_equal(got, oD):
                raise AssertionError(f"{where}: rank distances differ from the numpy oracle on query {j}")


class OpsCache(OneDataSetCache):
    """One data set and its searchers at a time; the exact radius answer of
    the whole batch (FlatIndex) once per (data set, r), for MultiHash's recall."""

    def __init__(self, seed: int, nq: int, ray_cpus: int) -> None:
        super().__init__(seed, nq)
        self.ray_cpus = ray_cpus
        self.truth: Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def clear(self) -> None:
        super().clear()
        self.truth = {}

    def dataset(self, data: str, nbits: int, n: int) -> MihDataset:
        key = ("ops", data, nbits, n)
        if self.key != key:
            self.clear()
            self.data = MihDataset(data, nbits, n, self.nq, self.seed)
            self.key = key
        assert self.data is not None
        return self.data

    def searcher(self, key: Tuple[str, str], c: OpCase, rank: bool) -> OpSearcher:
        ds = self.dataset(c.data, c.nbits, c.n)
        got = self.searchers.get(key)
        if isinstance(got, BaseException):
            raise got
        if got is None:
            _preload()
            if key[0] == "faiss":
                ds.bytes
            _trim_heap()
            before = _resident_bytes()
            try:
                got = make_searcher(key, ds, self.ray_cpus)
            except Unavailable as exc:
                self.searchers[key] = exc
                raise
            _trim_heap()
            # The sharded index's codes live in its actors, outside this process.
            got.memory_bytes = max(0, _resident_bytes() - before) if key != SHARDED else 0
            try:
                if got.exact:
                    check_against_oracle(got, ds, radii(c.nbits), rank)
            except AssertionError as exc:
                got.close()
                self.searchers[key] = exc
                raise
            self.searchers[key] = got
        return got

    def radius_truth(self, c: OpCase) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert c.r is not None
        if c.r not in self.truth:
            flat = self.searcher(FLAT, c, rank=False)
            ds = self.dataset(c.data, c.nbits, c.n)
            self.truth[c.r] = flat.radius(ds.queries, c.r, max(THREADS))
        return self.truth[c.r]


def radius_recall(lims: np.ndarray, I: np.ndarray, truth: Tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
    """Of every exact result of the batch, the fraction returned (1.0 where
    there is none to find)."""
    tl, _, tI = truth
    found = total = 0
    for j in range(len(lims) - 1):
        want = tI[tl[j]:tl[j + 1]]
        total += want.size
        if want.size:
            found += int(np.isin(want, np.asarray(I[lims[j]:lims[j + 1]])).sum())
    return found / total if total else 1.0


# -- tests -----------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ocase" not in metafunc.fixturenames:
        return
    cases = op_cases(bench_config(metafunc.config))
    metafunc.parametrize("ocase", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="module")
def ops_data(request: pytest.FixtureRequest):
    cfg = bench_config(request.config)
    cache = OpsCache(seed=cfg.seed, nq=cfg.max_nq, ray_cpus=SHARDS)
    yield cache
    cache.clear()
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except ImportError:
        pass


def _median(benchmark) -> float:
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.median) if stats is not None else float("nan")


def test_op(ocase: OpCase, ops_data: OpsCache, benchmark, request: pytest.FixtureRequest) -> None:
    c = ocase
    try:
        rank_max = QUICK_RANK_MAX_N if bench_config(request.config).quick else RANK_MAX_N
        s = ops_data.searcher((c.library, c.variant), c, rank=c.n <= rank_max)
    except Unavailable as exc:
        if c.library == "hamsearch" and c.variant != "sharded" and \
                os.environ.get("HAMSEARCH_IMPLEMENTATION", "").strip().lower() == "native":
            pytest.fail(f"HAMSEARCH_IMPLEMENTATION=native but {exc}")
        pytest.skip(f"{c.library}/{c.variant} skipped: {exc}")
    ds = ops_data.dataset(c.data, c.nbits, c.n)
    q = s.prepare(ds, c.nq)
    s.set_threads(c.threads)
    if c.op == "radius":
        fn, args = s.radius, (q, c.r, c.threads)
    else:
        fn, args = s.rank, (q, c.threads)
    try:
        rounds = adaptive_rounds(fn, args, c.nq, ROUNDS, MAX_ROUNDS, MIN_CASE_SECONDS)
    except MemoryError as exc:
        # faiss's counting selection at k = n allocates per distance value and
        # result: at 256 bits and 10^6 codes it cannot, and says std::bad_alloc.
        pytest.skip(f"{c.library}/{c.variant} cannot {c.op} {c.n} codes of {c.nbits} bits here: "
                    f"MemoryError ({exc})")

    benchmark.group = c.group
    benchmark.extra_info.update(
        library=c.library, variant=c.variant, backend=c.variant, op=c.op, data=c.data, nbits=c.nbits,
        n=c.n, r=c.r, threads=c.threads, nq=c.nq, rounds=rounds, isa=s.isa, exact=s.exact,
        build_seconds=s.build_seconds, memory_bytes_per_code=s.memory_bytes / c.n, params=s.params,
    )
    try:
        benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        pass

    out = benchmark.pedantic(fn, args=args, rounds=rounds, iterations=1, warmup_rounds=0)

    median = _median(benchmark)
    info = benchmark.extra_info
    info["median_s"] = median
    info["queries_per_second"] = c.nq / median
    if c.op == "radius":
        lims, _, I = out
        assert len(lims) == c.nq + 1
        info["results_per_query"] = float(lims[-1]) / c.nq
        if c.library == "hamsearch" and c.variant == "mih":
            info["mih_fallbacks"] = int(s.index.last_fallbacks)
        if not s.exact:
            info["recall"] = radius_recall(np.asarray(lims), np.asarray(I), ops_data.radius_truth(c))
    else:
        _, I = out
        assert np.shape(I) == (c.nq, c.n)
        info["results_per_query"] = float(c.n)
