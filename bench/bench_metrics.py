"""Retrieval metrics: hamsearch's one-pass evaluation against sorting.

Three implementations on the same codes, labels and split:

- ``numpy-argsort``: MAP@all the way most hashing code computes it (DCMH's
  ``calc_map`` and its ports): per query, relevance from a label product,
  Hamming distance from a product of ±1 codes, ``argsort`` (stable here, so
  that ties break by row as in the protocol and the MAP is the same), then
  ``count / tindex``; one thread (BLAS held to one);
- ``numpy-vectorised``: a stronger numpy baseline: chunks of queries,
  distances by ``np.bitwise_count`` of the XOR, label bit sets, stable
  ``argsort``, ``cumsum``;
- ``reference``: the previous ``hamsearch.metrics`` (``tests/metrics_reference.py``),
  the engine's ranking plus numpy post-processing of it, one call per metric;
- ``hamsearch``: ``hamsearch.metrics.evaluate`` (native core, or ``-numba``):
  a distance histogram per query and one more pass in row order, no sort.

Tasks: ``map`` (MAP@all), ``map+tie`` (MAP@all and tie-aware MAP), ``all``
(MAP@all, MAP@50, tie-aware MAP, P@100 and P@1000, the top-N curve at
N = 50..1000, the PR curve by radius: the trainer's final table).

Data: ``mirflickr`` (the MIRFLICKR-25K protocol: its real 24 labels, 2,000
random queries against the other 18,015; uniform random codes, so MAP sits at
the 0.565 floor and every distance bucket is full of ties), ``nuswide-sized``
(2,100 queries against 193,734 items, 21 synthetic labels with NUS-WIDE-like
skewed frequencies, uniform random codes) and, in the quick profile,
``tiny``. The real labels come from ``$HAMSEARCH_DATA/mirflickr25k`` (default
``../shared/data``); without them the mirflickr cases skip.

Each case's extra_info: implementation, task, data, nbits, n, nq, threads,
isa, rounds, median_s, the metric values (so a reader can check that the
implementations agree); the single-thread ``map+tie`` case of hamsearch also
``speedup_vs_numpy_interleaved``, ``speedup_vs_vectorised_interleaved`` and
``speedup_vs_reference_interleaved`` (medians over alternating rounds of the
other's MAP@all time over this one's),
and the single-thread ``all`` case ``all_over_map_interleaved``.

Run::

    python -m pytest bench/bench_metrics.py -p no:cacheprovider --benchmark-json=bench/results/metrics.json
    HAMSEARCH_BENCH_QUICK=1 python -m pytest bench/bench_metrics.py -p no:cacheprovider
"""
from __future__ import annotations

import functools
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import pytest

import hamsearch as hs
from bench.grid import bench_config
from hamsearch import _backend
from hamsearch import metrics as hm

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HAMSEARCH_DATA", ROOT.parent / "shared" / "data")) / "mirflickr25k"

MAP_K = 50
PRECISION_KS = (100, 1000)
TOPN = tuple(range(50, 1001, 50))
# Query-database pairs per numpy chunk (as the previous implementation's default).
NUMPY_PAIRS = 1 << 21


@dataclass(frozen=True)
class MetricCase:
    data: str
    nbits: int
    implementation: str  # numpy-argsort | numpy-vectorised | reference | hamsearch | hamsearch-numba
    task: str  # map | map+tie | all
    threads: int
    rounds: int

    @property
    def id(self) -> str:
        return f"{self.data}-{self.nbits}b-{self.implementation}-{self.task}-t{self.threads}"


def cases(profile: str) -> List[MetricCase]:
    """The grid: every implementation on each data set, hamsearch on one and
    every thread, the slow implementations with fewer rounds at NUS-WIDE size."""
    every = _backend.default_threads()
    threads = sorted({1, every})
    out: List[MetricCase] = []
    if profile == "quick":
        grid = [("tiny", 16, 3, 3)]
    else:
        grid = [("mirflickr", 16, 3, 5), ("mirflickr", 64, 3, 5), ("nuswide-sized", 64, 1, 3)]
    for data, nbits, slow_rounds, rounds in grid:
        out.append(MetricCase(data, nbits, "numpy-argsort", "map", 1, slow_rounds))
        out.append(MetricCase(data, nbits, "numpy-vectorised", "map", 1, slow_rounds))
        for task in ("map", "map+tie", "all"):
            out.append(MetricCase(data, nbits, "reference", task, 1, slow_rounds))
            for t in threads:
                out.append(MetricCase(data, nbits, "hamsearch", task, t, rounds))
            out.append(MetricCase(data, nbits, "hamsearch-numba", task, 1, rounds))
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "mcase" in metafunc.fixturenames:
        grid = cases(bench_config(metafunc.config).profile)
        metafunc.parametrize("mcase", grid, ids=[c.id for c in grid])


# -- data ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def labels_of(data: str) -> Tuple[np.ndarray, np.ndarray]:
    """(query labels, database labels), uint8 {0,1}, for a data set."""
    if data == "mirflickr":
        path = DATA / "mirflickr25k-lall.mat"
        if not path.exists():
            pytest.skip(f"real labels not found: {path}")
        sio = pytest.importorskip("scipy.io")
        labels = np.ascontiguousarray(sio.loadmat(str(path))["LAll"], dtype=np.uint8)
        perm = np.random.default_rng(25).permutation(labels.shape[0])
        return labels[perm[:2000]], labels[perm[2000:]]
    nq, n, classes = (2100, 193_734, 21) if data == "nuswide-sized" else (200, 3000, 12)
    rng = np.random.default_rng(21)
    freq = 0.3 * 0.85 ** np.arange(classes)  # a few frequent concepts, a long tail
    labels = (rng.random((nq + n, classes)) < freq).astype(np.uint8)
    empty = np.flatnonzero(labels.sum(axis=1) == 0)  # the protocol keeps items with a label
    labels[empty, rng.integers(0, classes, empty.size)] = 1
    return labels[:nq], labels[nq:]


@functools.lru_cache(maxsize=2)
def codes_of(data: str, nbits: int) -> Tuple[np.ndarray, np.ndarray]:
    ql, dl = labels_of(data)
    rng = np.random.default_rng([nbits, len(ql), len(dl)])
    return hs.pack(rng.random((len(ql), nbits)) < 0.5), hs.pack(rng.random((len(dl), nbits)) < 0.5)


def reference_module() -> Any:
    """tests/metrics_reference.py: the previous implementation (not a package module)."""
    name = "hamsearch_metrics_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "metrics_reference.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


# -- the implementations ------------------------------------------------------------
def label_words(labels: np.ndarray) -> np.ndarray:
    """{0,1} rows of up to 64 labels as one uint64 bit set each."""
    assert labels.shape[1] <= 64
    weights = np.uint64(1) << np.arange(labels.shape[1], dtype=np.uint64)
    return (labels.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def numpy_argsort_map(qsigns: np.ndarray, dbsigns: np.ndarray, ql: np.ndarray, dl: np.ndarray) -> float:
    """DCMH's calc_map, as the field's code computes MAP@all (with a stable
    sort): ±1 float codes and float labels in, one query at a time."""
    nbits = qsigns.shape[1]
    total = 0.0
    for j in range(qsigns.shape[0]):
        gnd = (ql[j] @ dl.T > 0).astype(np.float32)
        tsum = int(gnd.sum())
        if tsum == 0:
            continue
        hamm = 0.5 * (nbits - qsigns[j] @ dbsigns.T)
        gnd = gnd[np.argsort(hamm, kind="stable")]
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(gnd == 1)) + 1.0
        total += float(np.mean(count / tindex))
    return total / qsigns.shape[0]


def numpy_vectorised_map(q: np.ndarray, db: np.ndarray, qwords: np.ndarray, dbwords: np.ndarray) -> float:
    """MAP@all by sorting, numpy only: distances by popcount of the XOR,
    stable argsort (ties by row), relevance by a shared label bit."""
    nq, n = q.shape[0], db.shape[0]
    chunk = max(1, NUMPY_PAIRS // n)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    total = 0.0
    for a in range(0, nq, chunk):
        b = min(a + chunk, nq)
        dist = np.bitwise_count(q[a:b, None, :] ^ db[None, :, :]).sum(axis=2, dtype=np.int32)
        order = np.argsort(dist, axis=1, kind="stable")
        rel = (qwords[a:b, None] & dbwords[order]) != 0
        hits = np.cumsum(rel, axis=1)
        count = hits[:, -1]
        sums = (hits / ranks * rel).sum(axis=1)
        total += float(np.divide(sums, count, out=np.zeros(b - a), where=count > 0).sum())
    return total / nq


def one_blas_thread(fn: Callable[..., float], *args: Any) -> float:
    """``fn(*args)`` with BLAS on one thread where threadpoolctl is installed
    (the baseline is one thread; its products would otherwise use every core)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return fn(*args)
    with threadpool_limits(limits=1, user_api="blas"):
        return fn(*args)


def task_fn(mcase: MetricCase) -> Tuple[Callable[[], Dict[str, Any]], int]:
    """A call that computes the case's metrics, and the database size."""
    ql, dl = labels_of(mcase.data)
    q, db = codes_of(mcase.data, mcase.nbits)
    n, nbits = db.shape[0], mcase.nbits
    if mcase.implementation == "numpy-argsort":
        signs = [np.where(hs.unpack(c, nbits), 1.0, -1.0).astype(np.float32) for c in (q, db)]
        qf, df = ql.astype(np.float32), dl.astype(np.float32)
        return (lambda: {"map": one_blas_thread(numpy_argsort_map, signs[0], signs[1], qf, df)}), n
    if mcase.implementation == "numpy-vectorised":
        qw, dw = label_words(ql), label_words(dl)
        return (lambda: {"map": numpy_vectorised_map(q, db, qw, dw)}), n
    if mcase.implementation == "reference":
        ref = reference_module()
        args = (q, db, ql, dl)

        def reference() -> Dict[str, Any]:
            out: Dict[str, Any] = {"map": ref.mean_average_precision(*args, nbits=nbits)}
            if mcase.task in ("map+tie", "all"):
                out["map_tie_aware"] = ref.mean_average_precision(*args, nbits=nbits, tie_aware=True)
            if mcase.task == "all":
                out[f"map@{MAP_K}"] = ref.mean_average_precision(*args, nbits=nbits, k=MAP_K)
                out["precision_at_k"] = ref.precision_at_k(*args, list(PRECISION_KS), nbits=nbits)
                out["topn_precision"] = ref.topn_precision(*args, list(TOPN), nbits=nbits)
                out["pr_curve"] = ref.pr_curve(*args, nbits)
            return out

        return reference, n
    backend = "numba" if mcase.implementation == "hamsearch-numba" else "native"
    options: Dict[str, Any] = dict(nbits=nbits, threads=mcase.threads, backend=backend,
                                   tie_aware=mcase.task != "map")
    if mcase.task == "all":
        options.update(map_at=(None, MAP_K), ks=list(PRECISION_KS), topn=list(TOPN), pr=True)
    return (lambda: hm.evaluate(q, db, ql, dl, **options)), n


def interleaved(fast: Callable[[], Any], slow: Callable[[], Any], pairs: int) -> List[float]:
    """slow time / fast time over ``pairs`` alternating rounds: a load that
    drifts during the run biases both sides alike."""
    out = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        slow()
        t1 = time.perf_counter()
        fast()
        t2 = time.perf_counter()
        out.append((t1 - t0) / (t2 - t1))
    return out


def test_metric(mcase: MetricCase, benchmark) -> None:
    if mcase.implementation == "hamsearch" and _backend._native is None:
        why = f"the native core did not load ({_backend._native_error!r})"
        if os.environ.get("HAMSEARCH_IMPLEMENTATION", "").strip().lower() == "native":
            pytest.fail(f"HAMSEARCH_IMPLEMENTATION=native but {why}")
        pytest.skip(why)
    fn, n = task_fn(mcase)
    ql, _ = labels_of(mcase.data)
    if mcase.implementation.startswith("hamsearch"):
        fn()  # Numba compiled, pools started, pages touched
    benchmark.group = f"metrics {mcase.data} nbits={mcase.nbits}"
    info = benchmark.extra_info
    info.update(implementation=mcase.implementation, task=mcase.task, data=mcase.data, nbits=mcase.nbits,
                n=n, nq=len(ql), threads=mcase.threads, rounds=mcase.rounds,
                isa=hs.isa() if mcase.implementation == "hamsearch" else None,
                blas_threads_env=os.environ.get("OPENBLAS_NUM_THREADS"))
    try:
        info["loadavg_1min"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover - platform without getloadavg
        pass

    result = benchmark.pedantic(fn, rounds=mcase.rounds, iterations=1, warmup_rounds=0)

    stats = getattr(benchmark, "stats", None)
    info["median_s"] = float(stats.stats.median) if stats is not None else float("nan")
    for key in ("map", "map_tie_aware", f"map@{MAP_K}"):
        if key in result:
            info[key] = float(result[key])
    assert 0.0 <= result["map"] <= 1.0
    if mcase.implementation == "hamsearch" and mcase.threads == 1:
        # The targets of issue 16 as ratios over alternating rounds.
        pairs = 1 if mcase.data == "nuswide-sized" else 3
        if mcase.task == "map+tie":
            for label, other in (("numpy", "numpy-argsort"), ("vectorised", "numpy-vectorised"),
                                 ("reference", "reference")):
                slow, _ = task_fn(MetricCase(mcase.data, mcase.nbits, other, "map", 1, 1))
                info[f"speedups_vs_{label}_interleaved"] = interleaved(fn, slow, pairs)
                info[f"speedup_vs_{label}_interleaved"] = float(np.median(info[f"speedups_vs_{label}_interleaved"]))
        elif mcase.task == "all":
            alone, _ = task_fn(MetricCase(mcase.data, mcase.nbits, "hamsearch", "map", 1, 1))
            ratios = interleaved(alone, fn, 5)
            info["all_over_map_interleaved"] = float(np.median(ratios))
