"""Exact multi-index hashing (``hamsearch.MIHIndex``) against the flat scan and
approximate peers.

Grid (standard profile): data kind in {uniform, clustered} x nbits in
{64, 128, 256} x n in {10^5, 10^6, 10^7} x k in {1, 10, 100} x threads in
{1, 2}; plus codes produced by the trainer (``bench/trained.py``: DCGH codes of
a 10^5-item synthetic set, and of Wiki where ``../shared/data`` holds it),
image codes as the database and text codes as the queries; searchers:

- ``hamsearch`` ``MIHIndex`` (``m=None``: substrings of about log2(n) bits),
  exact; ``extra_info["mih_fallbacks"]`` counts the batch's queries answered by
  the flat scan;
- ``hamsearch`` ``FlatIndex``, exact (the reference answer);
- faiss ``IndexBinaryFlat``, exact;
- faiss ``IndexBinaryMultiHash(nbits, nhash=nbits // 16, b=16)`` with
  ``nflip = 2``, approximate: recall recorded; at 10^7 only at 64 bits in the
  standard profile (its build takes a minute at 256 bits);
- faiss ``IndexBinaryHNSW(nbits, 32)`` (``efSearch = 64``), approximate: at
  n <= 10^5, and at 10^6 on clustered codes (every kind in the full profile;
  a build at 10^6 takes 1 to 4 minutes); not in the quick profile except on
  the trainer's codes;
- on the trainer's codes also usearch's exact search and the numpy scan
  (``bench/peers.py``), so that every peer meets the learned codes in one row.

Data: *uniform* codes, or *clustered* codes: ``n // 100`` uniform centres, each
code a random centre with every bit flipped independently with probability
exactly 1/20 = 0.05; the queries are drawn the same way (fresh centres picks,
fresh flips), separately from the database.

Small batches (uniform and clustered codes, every nbits, n and k): MIHIndex
and FlatIndex answer a stream of ``STREAM`` queries (16 at 10^7; quick 8)
asked ``batch`` at a time, 1 (one query at a time, as a retrieval service
asks) or 4, on one thread; a round is the whole stream, queries/second is
``STREAM / median round time``; ``extra_info["batch"]`` holds the batch and
``mih_fallbacks`` counts the stream's queries the scan answered.

Each case is ``benchmark.pedantic`` over a batch of ``nq`` queries: 1000
(quick 50), held to 10^9 query x code pairs in the standard profile (100
queries at 10^7) for every exact searcher alike; MultiHash 2*10^7 pairs (20
at 10^6, at least 10). faiss ``IndexBinaryFlat`` runs on uniform codes only in
the full profile (``bench_flat.py`` measures it there in the same run). At least 3 rounds, more where a round is short (enough rounds for
about ``MIN_CASE_SECONDS``, at most ``MAX_ROUNDS``); queries/second is
``nq / median round time``. ``bench/mih_report.py`` and ``bench/report.py``
turn the JSON into tables.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

import hamsearch as hs
from hamsearch import _backend

from bench import peers
from bench.grid import BenchConfig, adaptive_rounds, bench_config, n_label
from bench.peers import ByteCodes, OneDataSetCache, Unavailable, _preload, _resident_bytes, _trim_heap

# (library, variant)
MIH = ("hamsearch", "mih")
FLAT = ("hamsearch", "flat")
FAISS_FLAT = ("faiss", "IndexBinaryFlat")
MULTIHASH = ("faiss", "IndexBinaryMultiHash")
HNSW = ("faiss", "IndexBinaryHNSW")
USEARCH = ("usearch", "exact")
NUMPY = ("numpy", "scan")
SEARCHERS = (MIH, FLAT, FAISS_FLAT, MULTIHASH, HNSW)
TRAINED_PEERS = (USEARCH, NUMPY)  # on the trainer's codes only (the flat suite has them on uniform codes)

KINDS = ("uniform", "clustered")
# The trainer's codes: data kind -> bench.trained source. Their n is the
# source's own: TRAINED_N synthetic items (QUICK_TRAINED_N in the quick
# profile), Wiki's 2,173 database items with its 693 queries.
TRAINED = {"trained-synthetic": "synthetic", "trained-wiki": "wiki"}
TRAINED_N = 10**5
QUICK_TRAINED_N = 5000
WIKI_N, WIKI_NQ = 2173, 693
CODES_CACHE = Path(__file__).resolve().parent / "results" / "codes"
KS = (1, 10, 100)
THREADS = (1, 2)
ROUNDS = 3
MIN_CASE_SECONDS = 0.3  # rounds are added until the timed rounds last about this long
MAX_ROUNDS = 30
FLIP_DENOMINATOR = 20  # each bit flipped with probability exactly 1/20 = 0.05
CLUSTER_SIZE = 100  # n // 100 centres
GEN_CHUNK = 1 << 16  # rows of flip masks drawn at a time: (chunk, nbits) uint8 temporaries

SMALL_BATCHES = (1, 4)  # queries per call of the small-batch cases
STREAM = 32  # queries per timed round of a small-batch case (half at 10^7)
QUICK_STREAM = 8
STREAM_THREADS = 1  # a service answering one query at a time gives each its own core

MULTIHASH_B = 16  # bits per hash table
MULTIHASH_NFLIP = 2  # buckets within 2 flips of the query's substring are probed
MULTIHASH_PAIRS = 2 * 10**7  # batch budget: 200 queries at 10^5, 20 at 10^6, MIN_SLOW_NQ at 10^7
FAISS_FLAT_PAIRS = 10**9  # batch budget: 1000 queries at 10^6, 100 at 10^7
SLOW_PAIRS = {MULTIHASH: MULTIHASH_PAIRS, FAISS_FLAT: FAISS_FLAT_PAIRS, USEARCH: 2 * 10**7, NUMPY: 2 * 10**7}
MIN_SLOW_NQ = 10
HNSW_M = 32
HNSW_EF_SEARCH = 64
HNSW_MAX_N = 10**6  # HNSW is built up to this n (at 10^6 on clustered codes only, but in the full profile)
MULTIHASH_STANDARD_MAX_N = 10**6  # above it, MultiHash only at 64 bits but in the full profile


@dataclass(frozen=True)
class MihCase:
    data: str  # "uniform" or "clustered"
    library: str
    variant: str
    nbits: int
    n: int
    k: int
    threads: int
    nq: int
    rounds: int
    batch: int = 0  # queries per call; 0: the whole nq in one call

    @property
    def data_key(self) -> Tuple[str, int, int]:
        # Three fields: never equal to bench_flat's (nbits, n) keys, so the
        # shared conftest ordering leaves this module's order (one data set at
        # a time) as it is.
        return (self.data, self.nbits, self.n)

    @property
    def group(self) -> str:
        batch = f" batch={self.batch}" if self.batch else ""
        return f"data={self.data} nbits={self.nbits} n={n_label(self.n)} k={self.k}{batch}"

    @property
    def id(self) -> str:
        batch = f"-batch{self.batch}" if self.batch else ""
        return (f"{self.library}-{self.variant}-{self.data}-b{self.nbits}-n{n_label(self.n)}"
                f"-k{self.k}-t{self.threads}-q{self.nq}{batch}")


def batch_nq(cfg: BenchConfig, searcher: Tuple[str, str], n: int, most: Optional[int] = None) -> int:
    """Queries per timed round: the fast batch (held to the standard
    profile's budget), but the slow peers get a budget of query x code pairs
    (at least MIN_SLOW_NQ queries): MultiHash MULTIHASH_PAIRS (10x slower than
    the flat scan on uniform codes at 10^6, slower still at 10^7), faiss's flat
    scan FAISS_FLAT_PAIRS, usearch and numpy 2*10^7. ``most``: the queries
    the data set has."""
    budget = SLOW_PAIRS.get(searcher)
    nq = cfg.budget_nq(n) if budget is None else cfg.budget_nq(n, budget, MIN_SLOW_NQ)
    return min(nq, most) if most else nq


def _wanted(cfg: BenchConfig, s: Tuple[str, str], data: str, nbits: int, n: int) -> bool:
    """Whether searcher ``s`` runs on this data set in ``cfg``'s profile."""
    if s == HNSW:
        if data in TRAINED:
            return n <= HNSW_MAX_N
        return not cfg.quick and n <= HNSW_MAX_N and (n < HNSW_MAX_N or data == "clustered" or cfg.full)
    if s == MULTIHASH and n > MULTIHASH_STANDARD_MAX_N and not cfg.full:
        return nbits == 64
    if s in TRAINED_PEERS:
        return data in TRAINED
    if s == FAISS_FLAT and data == "uniform" and not cfg.full:
        return False  # measured on uniform codes by bench_flat.py in the same run
    return True


def trained_sizes(cfg: BenchConfig) -> Dict[str, Tuple[int, int]]:
    """Data kind -> (n, queries) of the trainer's codes in ``cfg``'s profile."""
    return {"trained-synthetic": (QUICK_TRAINED_N if cfg.quick else TRAINED_N, cfg.max_nq),
            "trained-wiki": (WIKI_N, WIKI_NQ)}


def stream_nq(cfg: BenchConfig, n: int) -> int:
    """Queries per timed round of a small-batch case."""
    return QUICK_STREAM if cfg.quick else STREAM // 2 if n >= 10**7 else STREAM


def mih_cases(cfg: BenchConfig) -> List[MihCase]:
    data_sets = [(data, nbits, n, None) for n in cfg.ns for nbits in cfg.nbits for data in KINDS]
    for data, (n, nq) in trained_sizes(cfg).items():
        data_sets += [(data, nbits, n, nq) for nbits in cfg.nbits]
    out = []
    for data, nbits, n, most in data_sets:
        for k in KS:
            for threads in THREADS:
                for s in SEARCHERS + TRAINED_PEERS:
                    if s == NUMPY and threads != 1:
                        continue  # numpy scans on one thread only
                    if _wanted(cfg, s, data, nbits, n):
                        out.append(MihCase(data, *s, nbits, n, k, threads, batch_nq(cfg, s, n, most), ROUNDS))
            if data in KINDS:  # small batches, MIH against its own scan
                for batch in SMALL_BATCHES:
                    for s in (MIH, FLAT):
                        out.append(MihCase(data, *s, nbits, n, k, STREAM_THREADS, stream_nq(cfg, n), ROUNDS, batch))
    return out


# -- data --------------------------------------------------------------------
def _uniform(rng: np.random.Generator, rows: int, nbits: int) -> np.ndarray:
    w = (nbits + 63) // 64
    out = rng.integers(0, 2**64, size=(rows, w), dtype=np.uint64)
    if nbits % 64:
        out[:, -1] &= np.uint64((1 << (nbits % 64)) - 1)
    return out


def _clustered(rng: np.random.Generator, centres: np.ndarray, rows: int, nbits: int) -> np.ndarray:
    """``rows`` codes: a uniformly chosen centre XOR a flip mask with every bit
    set independently with probability exactly 1/20 (``integers(0, 20) == 0``),
    drawn GEN_CHUNK rows at a time so that no (rows, nbits) array is made."""
    out = centres[rng.integers(0, centres.shape[0], size=rows)]
    for s in range(0, rows, GEN_CHUNK):
        e = min(rows, s + GEN_CHUNK)
        flips = rng.integers(0, FLIP_DENOMINATOR, size=(e - s, nbits), dtype=np.uint8) == 0
        out[s:e] ^= hs.pack(flips)
    return out


class MihDataset(ByteCodes):
    def __init__(self, data: str, nbits: int, n: int, nq: int, seed: int, quick: bool = False) -> None:
        self.data, self.nbits, self.n = data, nbits, n
        self.source: Optional[str] = None  # how the trainer's codes were made
        if data in TRAINED:
            from bench.trained import trained_codes

            got = trained_codes(TRAINED[data], nbits, n=n if TRAINED[data] == "synthetic" else None, nq=nq,
                                cache_dir=CODES_CACHE, quick=quick, threads=1)
            if got.codes.shape[0] != n:
                raise AssertionError(f"{data}: expected {n} database codes, got {got.codes.shape[0]}")
            self.codes, self.queries, self.source = got.codes, got.queries, got.description
            self._bytes = None
            self.truth = None
            return
        rng = np.random.default_rng([seed, KINDS.index(data), nbits, n])
        if data == "uniform":
            self.codes = _uniform(rng, n, nbits)
            self.queries = _uniform(rng, nq, nbits)
        else:
            centres = _uniform(rng, max(1, n // CLUSTER_SIZE), nbits)
            self.codes = _clustered(rng, centres, n, nbits)
            self.queries = _clustered(rng, centres, nq, nbits)
        self._bytes: Optional[np.ndarray] = None
        # exact answer of the whole query batch at the largest k (FlatIndex)
        self.truth: Optional[Tuple[np.ndarray, np.ndarray]] = None

    def recall(self, I: np.ndarray, k: int) -> float:
        """Fraction of the exact top-k found: a returned id counts as correct
        when its true distance is <= the exact k-th distance (ties: any of the
        tied codes is as good); duplicates and -1 count as misses."""
        assert self.truth is not None
        tD = self.truth[0]
        nq = I.shape[0]
        kth = tD[:nq, k - 1].astype(np.int64)
        good = 0
        for j in range(nq):
            ids = np.unique(I[j, :k][I[j, :k] >= 0])
            if ids.size == 0:
                continue
            d = np.bitwise_count(self.codes[ids] ^ self.queries[j]).sum(axis=1, dtype=np.int64)
            good += int(np.count_nonzero(d <= kth[j]))
        return good / (nq * k)


# -- searchers ---------------------------------------------------------------
class Searcher:
    library = variant = ""
    exact = True
    index: Any = None

    def __init__(self, data: MihDataset) -> None:
        self.isa = "n/a"
        self.memory_bytes = 0
        self.build_seconds = float("nan")
        self.params: Dict[str, Any] = {}

    def prepare(self, data: MihDataset, nq: int) -> Any:
        return data.queries[:nq]

    def set_threads(self, threads: int) -> None:
        pass

    def search(self, q: Any, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def extra(self) -> Dict[str, Any]:
        return {}

    def close(self) -> None:
        self.index = None


class HamsearchSearcher(Searcher):
    library = "hamsearch"

    def __init__(self, data: MihDataset, variant: str) -> None:
        super().__init__(data)
        self.variant = variant
        if _backend._native is None:
            raise Unavailable(f"the native core hamsearch._core did not load: {_backend._native_error!r}")
        self.isa = hs.isa()
        t0 = time.perf_counter()
        self.index = (hs.MIHIndex(data.nbits) if variant == "mih" else hs.FlatIndex(data.nbits))
        self.index.add(data.codes)
        if variant == "mih":
            # The tables are built on the first search after add: one query of
            # k = 1 is included in the build time.
            self.index.query(data.queries[:1], 1)
            self.params = {"m": int(self.index.m)}
        self.build_seconds = time.perf_counter() - t0

    def search(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.index.query(q, k, threads=threads)

    def extra(self) -> Dict[str, Any]:
        if self.variant == "mih":
            return {"mih_fallbacks": int(self.index.last_fallbacks), "mih_m": int(self.index.m)}
        return {}


class FaissSearcher(Searcher):
    library = "faiss"

    def __init__(self, data: MihDataset, variant: str) -> None:
        super().__init__(data)
        self.variant = variant
        # The flat scan is exact (its distances are checked; its ids may order
        # ties differently); the hashing and graph indexes are approximate.
        self.exact = variant == FAISS_FLAT[1]
        try:
            import faiss
        except ImportError as exc:
            raise Unavailable(f"faiss is not installed ({exc}); pip install faiss-cpu") from exc
        self.faiss = faiss
        self.isa = "faiss " + faiss.get_compile_options().strip()
        xb = data.bytes
        faiss.omp_set_num_threads(max(THREADS))
        t0 = time.perf_counter()
        if variant == FAISS_FLAT[1]:
            self.index = faiss.IndexBinaryFlat(data.nbits)
        elif variant == MULTIHASH[1]:
            nhash = max(1, data.nbits // MULTIHASH_B)
            self.index = faiss.IndexBinaryMultiHash(data.nbits, nhash, MULTIHASH_B)
            self.index.nflip = MULTIHASH_NFLIP
            self.params = {"nhash": nhash, "b": MULTIHASH_B, "nflip": MULTIHASH_NFLIP}
        else:
            self.index = faiss.IndexBinaryHNSW(data.nbits, HNSW_M)
            self.params = {"M": HNSW_M, "efConstruction": int(self.index.hnsw.efConstruction),
                           "efSearch": HNSW_EF_SEARCH}
        self.index.add(xb)
        if variant == HNSW[1]:
            self.index.hnsw.efSearch = HNSW_EF_SEARCH
        self.build_seconds = time.perf_counter() - t0

    def prepare(self, data: MihDataset, nq: int) -> np.ndarray:
        return data.query_bytes(nq)

    def set_threads(self, threads: int) -> None:
        self.faiss.omp_set_num_threads(threads)

    def search(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.index.search(q, k)


class PeerSearcher(Searcher):
    """usearch's exact search or the numpy scan of ``bench/peers.py`` (exact;
    their distances are checked, ties may come in another order)."""

    def __init__(self, data: MihDataset, key: Tuple[str, str]) -> None:
        super().__init__(data)
        self.library, self.variant = key
        t0 = time.perf_counter()
        self.peer = peers.UsearchSearcher(data) if key == USEARCH else peers.NumpySearcher(data)  # type: ignore[arg-type]
        self.build_seconds = time.perf_counter() - t0
        self.isa = self.peer.isa
        self.memory_bytes = self.peer.memory_bytes  # usearch: the array it scans; numpy: measured

    def prepare(self, data: MihDataset, nq: int) -> Any:
        return self.peer.prepare(data, nq)  # type: ignore[arg-type]

    def search(self, q: Any, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.peer.search(q, k, threads)

    def close(self) -> None:
        self.peer.close()


class Stream:
    """``searcher``'s queries asked ``batch`` at a time, one call after the
    other, as a retrieval service asks them; ``fallbacks`` counts the last
    stream's queries that MIH's scan answered."""

    def __init__(self, searcher: Searcher, batch: int) -> None:
        self.searcher, self.batch, self.fallbacks = searcher, batch, 0

    def __call__(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        D, I, fallbacks = [], [], 0
        for i in range(0, q.shape[0], self.batch):
            d, ids = self.searcher.search(q[i : i + self.batch], k, threads)
            D.append(np.asarray(d))
            I.append(np.asarray(ids))
            fallbacks += int(self.searcher.extra().get("mih_fallbacks", 0))
        self.fallbacks = fallbacks
        return np.concatenate(D), np.concatenate(I)


def make_searcher(key: Tuple[str, str], data: MihDataset) -> Searcher:
    if key in (MIH, FLAT):
        return HamsearchSearcher(data, key[1])
    if key in (FAISS_FLAT, MULTIHASH, HNSW):
        return FaissSearcher(data, key[1])
    if key in TRAINED_PEERS:
        return PeerSearcher(data, key)
    raise ValueError(f"searcher: expected one of {SEARCHERS + TRAINED_PEERS}, got {key!r}")


class MihCache(OneDataSetCache):
    """One data set and its searchers at a time; the exact answer (FlatIndex)
    computed once per data set, MIH checked against it once."""

    quick = False

    def dataset(self, data: str, nbits: int, n: int) -> MihDataset:
        key = (data, nbits, n)
        if self.key != key:
            self.clear()
            self.data = MihDataset(data, nbits, n, self.nq, self.seed, self.quick)
            self.key = key
        assert self.data is not None
        return self.data

    def _truth(self, data: MihDataset) -> None:
        if data.truth is None:
            flat = self.searcher(FLAT, data.data, data.nbits, data.n)
            D, I = flat.search(data.queries, max(KS), max(THREADS))
            data.truth = (np.asarray(D), np.asarray(I))

    def searcher(self, key: Tuple[str, str], data: str, nbits: int, n: int) -> Searcher:
        ds = self.dataset(data, nbits, n)
        got = self.searchers.get(key)
        if isinstance(got, BaseException):
            raise got
        if got is None:
            _preload()
            if key != FLAT:
                self._truth(ds)
            if key[0] in ("faiss", "usearch"):
                ds.bytes
            _trim_heap()
            before = _resident_bytes()
            try:
                got = make_searcher(key, ds)
            except Unavailable as exc:
                self.searchers[key] = exc
                raise
            if not got.memory_bytes:
                _trim_heap()
                got.memory_bytes = max(0, _resident_bytes() - before)
            if key == MIH:
                assert ds.truth is not None
                D, I = got.search(ds.queries, max(KS), max(THREADS))
                if not (np.array_equal(D, ds.truth[0]) and np.array_equal(I, ds.truth[1])):
                    err = AssertionError(f"MIHIndex differs from FlatIndex ({data}, nbits={nbits}, n={n})")
                    self.searchers[key] = err
                    raise err
            self.searchers[key] = got
        return got


# -- tests -------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "mcase" not in metafunc.fixturenames:
        return
    cases = mih_cases(bench_config(metafunc.config))
    metafunc.parametrize("mcase", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="module")
def mih_data(request: pytest.FixtureRequest):
    cfg = bench_config(request.config)
    cache = MihCache(seed=cfg.seed, nq=cfg.max_nq)
    cache.quick = cfg.quick
    yield cache
    cache.clear()


def _median(benchmark) -> float:
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.median) if stats is not None else float("nan")


def test_mih(mcase: MihCase, mih_data: MihCache, benchmark) -> None:
    c = mcase
    try:
        s = mih_data.searcher((c.library, c.variant), c.data, c.nbits, c.n)
    except Unavailable as exc:
        if c.data in TRAINED:
            pytest.skip(f"{c.data} skipped: {exc}")
        if c.library == "hamsearch" and os.environ.get("HAMSEARCH_IMPLEMENTATION", "").strip().lower() == "native":
            pytest.fail(f"HAMSEARCH_IMPLEMENTATION=native but {exc}")
        pytest.skip(f"{c.library}/{c.variant} skipped: {exc}")
    ds = mih_data.dataset(c.data, c.nbits, c.n)
    q = s.prepare(ds, c.nq)
    s.set_threads(c.threads)
    search = Stream(s, c.batch) if c.batch else s.search
    # untimed first calls (thread pools, output pages), and the rounds
    rounds = adaptive_rounds(search, (q, c.k, c.threads), c.nq, c.rounds, MAX_ROUNDS, MIN_CASE_SECONDS)

    benchmark.group = c.group
    benchmark.extra_info.update(
        library=c.library, backend=c.variant, variant=c.variant, isa=s.isa, threads=c.threads,
        nq=c.nq, n=c.n, nbits=c.nbits, k=c.k, data=c.data, rounds=rounds,
        build_seconds=s.build_seconds, memory_bytes_per_code=s.memory_bytes / c.n,
        exact=s.exact, params=s.params,
    )
    if c.batch:
        benchmark.extra_info["batch"] = c.batch
    if ds.source:
        benchmark.extra_info["source"] = ds.source
    try:
        benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        pass

    D, I = benchmark.pedantic(search, args=(q, c.k, c.threads),
                              rounds=rounds, iterations=1, warmup_rounds=0)

    assert np.shape(D) == (c.nq, c.k) and np.shape(I) == (c.nq, c.k)
    median = _median(benchmark)
    benchmark.extra_info["median_s"] = median
    benchmark.extra_info["queries_per_second"] = c.nq / median
    benchmark.extra_info.update(s.extra())
    if isinstance(search, Stream) and c.library == MIH[0] and c.variant == MIH[1]:
        benchmark.extra_info["mih_fallbacks"] = search.fallbacks
    if ds.truth is not None:
        # How far the k-th neighbour lies decides MIH's speed: bench/report.py
        # plots MIH's speed-up over the flat scan against this mean.
        benchmark.extra_info["kth_distance_mean"] = float(np.mean(ds.truth[0][: c.nq, c.k - 1]))
    if s.exact:
        assert ds.truth is not None or (c.library, c.variant) == FLAT
        if ds.truth is not None:
            assert np.array_equal(np.asarray(D), ds.truth[0][: c.nq, : c.k])
    else:
        benchmark.extra_info["recall_at_k"] = ds.recall(np.asarray(I), c.k)
