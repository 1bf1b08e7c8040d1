"""Exact k-NN throughput of hamsearch's FlatIndex against its peers.

Grid (full run): nbits in {64, 128, 256}, n in {10^6, 10^7}, k in {1, 10, 100},
threads in {1, 2}; searchers: hamsearch FlatIndex (native and Numba
backends), faiss ``IndexBinaryFlat``, usearch exact search, and a numpy scan
(one thread). Plus k = 1000 at the largest n, smallest nbits, one thread
(hamsearch native and faiss), and one query at a time on every thread at the
largest n (hamsearch native and faiss) next to the time it takes only to read
the codes once (the memory-bandwidth floor, on one and on every thread). The
hardware's other ceiling, the popcount compute bound, is the comparisons per
second of the scan's own kernel with nothing else to do (no selection, no
memory traffic: 128 KiB of cache-resident codes), per width and thread count.
And hamsearch native against faiss ``IndexBinaryFlat`` at k = 10 on one thread
with their rounds interleaved (``test_knn_interleaved``), per width and n.

Each case is ``benchmark.pedantic`` over a batch of queries (batch size in
``extra_info["nq"]``); queries/second is ``nq / median round time``.
``bench/ratios.py`` turns the JSON into the ratio table.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import hamsearch as hs

from bench.grid import FAISS, HAMSEARCH_NATIVE, Case, bench_config
from bench.peers import DataCache, Unavailable, read_bandwidth_reader


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    kind = {"test_read_floor": "floor", "test_compute_floor": "compute",
            "test_knn_interleaved": "pair"}.get(metafunc.function.__name__)
    cases = [c for c in bench_config(metafunc.config).cases()
             if (c.kind == kind if kind else c.kind not in ("floor", "compute", "pair"))]
    metafunc.parametrize("case", cases, ids=[c.id for c in cases])


def _native_demanded() -> bool:
    return os.environ.get("HAMSEARCH_IMPLEMENTATION", "").strip().lower() == "native"


def _record(benchmark, case: Case, **extra) -> None:
    benchmark.group = case.group
    benchmark.extra_info.update(
        library=case.library,
        backend=case.backend,
        kind=case.kind,
        threads=case.threads,
        nq=case.nq,
        n=case.n,
        nbits=case.nbits,
        k=case.k,
        rounds=case.rounds,
    )
    try:
        # The machine's load when the case ran: other processes on the same
        # cores distort every multi-threaded number.
        benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover - platform without getloadavg
        pass
    benchmark.extra_info.update(extra)


def _median(benchmark) -> float:
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    return float(stats.stats.median) if stats is not None else float("nan")


def test_knn(case: Case, bench_data: DataCache, benchmark) -> None:
    try:
        searcher = bench_data.searcher((case.library, case.backend), case.nbits, case.n)
    except Unavailable as exc:
        if case.library == "hamsearch" and case.backend == "native" and _native_demanded():
            pytest.fail(f"HAMSEARCH_IMPLEMENTATION=native but {exc}")
        pytest.skip(f"{case.library}/{case.backend} skipped: {exc}")
    data = bench_data.dataset(case.nbits, case.n)
    q = searcher.prepare(data, case.nq)
    searcher.set_threads(case.threads)
    # One untimed query first: JIT paths compiled per thread count (Numba),
    # thread pools started (OpenMP), output pages touched.
    searcher.search(q[:1], case.k, case.threads)
    extra = {"bytes_scanned": int(data.codes.nbytes)} if case.kind == "single" else {}
    _record(benchmark, case, isa=searcher.isa,
            memory_bytes_per_code=searcher.memory_bytes / case.n, **extra)

    D, I = benchmark.pedantic(searcher.search, args=(q, case.k, case.threads),
                              rounds=case.rounds, iterations=1, warmup_rounds=0)

    assert np.shape(D) == (case.nq, case.k) and np.shape(I) == (case.nq, case.k)
    median = _median(benchmark)
    benchmark.extra_info["median_s"] = median
    benchmark.extra_info["queries_per_second"] = case.nq / median


def test_knn_interleaved(case: Case, bench_data: DataCache, benchmark) -> None:
    """hamsearch FlatIndex and faiss IndexBinaryFlat, one batch of each a
    round, the order alternating, so that both see the same load: the ratio
    of their medians (``extra_info["ratio"]``: faiss's time over hamsearch's)
    is the figure the flat-scan targets are stated in. The round's own time
    (both batches) is what pytest-benchmark reports."""
    import time

    searchers = []
    for key in (HAMSEARCH_NATIVE, FAISS):
        try:
            searchers.append(bench_data.searcher(key, case.nbits, case.n))
        except Unavailable as exc:
            if key == HAMSEARCH_NATIVE and _native_demanded():
                pytest.fail(f"HAMSEARCH_IMPLEMENTATION=native but {exc}")
            pytest.skip(f"{key[0]}/{key[1]} skipped: {exc}")
    data = bench_data.dataset(case.nbits, case.n)
    queries = [s.prepare(data, case.nq) for s in searchers]
    for s, q in zip(searchers, queries):
        s.set_threads(case.threads)
        s.search(q[:1], case.k, case.threads)
    hs_searcher, faiss_searcher = searchers
    _record(benchmark, case, isa=hs_searcher.isa, faiss_isa=faiss_searcher.isa)
    times: list = [[], []]
    turn = [0]

    def one_round() -> None:
        order = (0, 1) if turn[0] % 2 == 0 else (1, 0)
        turn[0] += 1
        for i in order:
            t0 = time.perf_counter()
            searchers[i].search(queries[i], case.k, case.threads)
            times[i].append(time.perf_counter() - t0)

    benchmark.pedantic(one_round, rounds=case.rounds, iterations=1, warmup_rounds=0)

    hs_median, faiss_median = (float(np.median(t)) for t in times)
    benchmark.extra_info.update(
        median_s=_median(benchmark),
        hamsearch_median_s=hs_median,
        faiss_median_s=faiss_median,
        hamsearch_queries_per_second=case.nq / hs_median,
        faiss_queries_per_second=case.nq / faiss_median,
        ratio=faiss_median / hs_median,
    )


def test_read_floor(case: Case, bench_data: DataCache, benchmark) -> None:
    """Reading the codes once with ``threads`` threads: the least time any
    scan of them can take, next to the one-query cases of the same group."""
    source, read = read_bandwidth_reader()
    data = bench_data.dataset(case.nbits, case.n)
    nbytes = int(data.codes.nbytes)
    _record(benchmark, case, isa=hs.isa(), source=source, bytes_scanned=nbytes)

    benchmark.pedantic(read, args=(data.codes, case.threads),
                       rounds=case.rounds, iterations=1, warmup_rounds=1)

    median = _median(benchmark)
    benchmark.extra_info["median_s"] = median
    benchmark.extra_info["floor_seconds"] = median
    benchmark.extra_info["bandwidth_bytes_per_second"] = nbytes / median
    benchmark.extra_info["queries_per_second"] = 1.0 / median  # one pass = one query at the floor


def test_compute_floor(case: Case, benchmark) -> None:
    """The popcount compute bound: comparisons per second of the scan's own
    kernel (``hamsearch._core._popcount_probe``: every query against every
    code at threshold 0, no selection) over ``case.n`` codes that stay in the
    L2 cache, so that memory never limits it."""
    from hamsearch import _backend

    probe = getattr(_backend._native, "_popcount_probe", None)
    if probe is None:
        why = f"the native core did not load or has no _popcount_probe ({_backend._native_error!r})"
        if _native_demanded():
            pytest.fail(f"HAMSEARCH_IMPLEMENTATION=native but {why}")
        pytest.skip(why)
    rng = np.random.default_rng([case.nbits, case.n, 0xC0])
    codes = hs.pack(rng.random((case.n, case.nbits)) < 0.5)
    queries = hs.pack(rng.random((case.nq, case.nbits)) < 0.5)
    probe(queries[:8], codes, case.threads)  # threads started, pages touched
    _record(benchmark, case, isa=hs.isa(), bytes_scanned=int(codes.nbytes))

    benchmark.pedantic(probe, args=(queries, codes, case.threads), rounds=case.rounds, iterations=1,
                       warmup_rounds=1)

    median = _median(benchmark)
    benchmark.extra_info["median_s"] = median
    benchmark.extra_info["comparisons_per_second"] = case.nq * case.n / median
    benchmark.extra_info["queries_per_second"] = case.nq / median
