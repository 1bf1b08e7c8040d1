"""The cost of sharding: ``hamsearch.distributed.ShardedIndex`` with 2 shards
(one Ray actor each, ``num_cpus_per_shard=1``, one search thread each) against
one ``FlatIndex`` searching with 2 threads, on the same data on this machine.

Case (full run): uniform random codes, nbits = 64, n = 10^7 (quick: 10^5), a
batch of 1000 queries (``--hs-nq`` to change it), k = 10, 3 rounds each.
``--hs-n`` and ``--hs-nbits`` take the first value given. Needs Ray
(``pip install "hamsearch[distributed]"``); skipped without it. Starts a local
Ray with 2 CPUs unless this process already runs one, its workers at niceness
0 like the driver (Ray's default is 15) unless ``RAY_worker_niceness`` is set.

Recorded in ``extra_info``:

- both cases: ``queries_per_second`` (``nq / median``), ``loadavg_1min``;
  the sharded case also ``shard_niceness`` and ``driver_niceness``;
- the sharded case: ``ratio_vs_flat`` (its queries/second over the flat
  index's, the medians of the two cases), ``ratio_interleaved`` (the median
  over alternating flat / sharded rounds of the flat time over the sharded
  time, which a load that drifts between the two cases does not bias), and
  ``pairs_per_second_per_shard`` (query x code comparisons one shard made per
  second, the number ``docs/scaling.md`` scales from);
- ``test_merge``: the driver's k-way merge alone, 64 shards x top 10 for the
  batch, in numpy (the merge cost of a large cluster).

Run::

    python -m pytest bench/bench_distributed.py -p no:cacheprovider \
        --benchmark-json=bench/results/distributed.json
    HAMSEARCH_BENCH_QUICK=1 python -m pytest bench/bench_distributed.py -p no:cacheprovider
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict

import numpy as np
import pytest

import hamsearch as hs
from bench.grid import bench_config, n_label
from bench.peers import Dataset

ray = pytest.importorskip("ray")

from hamsearch import distributed  # noqa: E402

SHARDS = 2
THREADS = 2  # the flat index's threads: the machine's cores, as the shards use
K = 10
NQ = 1000
ROUNDS = 3
INTERLEAVED_PAIRS = 3
MERGE_SHARDS = 64


def _setup(config) -> Dict[str, Any]:
    cfg = bench_config(config)
    n = cfg.ns[0] if config.getoption("--hs-n") else (10**5 if cfg.quick else 10**7)
    nbits = cfg.nbits[0] if config.getoption("--hs-nbits") else 64
    nq = config.getoption("--hs-nq") or NQ
    return {"n": n, "nbits": nbits, "nq": nq, "seed": cfg.seed}


@pytest.fixture(scope="module")
def setup(request: pytest.FixtureRequest):
    p = _setup(request.config)
    started = not ray.is_initialized()
    if started:
        # Ray starts its workers at niceness 15, below the driver, whose
        # FlatIndex is the other side of the comparison: on a machine shared
        # with other work that, not sharding, would decide the ratio. Equal
        # priority unless RAY_worker_niceness says otherwise.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=SHARDS, include_dashboard=False, logging_level="ERROR")
    data = Dataset(p["nbits"], p["n"], p["nq"], p["seed"])
    flat = hs.FlatIndex(p["nbits"], threads=THREADS)
    flat.add(data.codes)
    sharded = distributed.ShardedIndex(p["nbits"], SHARDS, num_cpus_per_shard=1)
    sharded.add(data.codes)
    q = data.queries[: p["nq"]]
    # Untimed first calls (thread pools, pages of the outputs), and the check
    # that both answer the same, exactly.
    want = flat.query(q, K)
    got = sharded.query(q, K)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    state = dict(p, data=data, flat=flat, sharded=sharded, q=q, medians={})
    yield state
    sharded.close()
    if started:
        ray.shutdown()


def _group(p: Dict[str, Any]) -> str:
    return f"distributed nbits={p['nbits']} n={n_label(p['n'])} k={K} nq={p['nq']}"


def _record(benchmark, p: Dict[str, Any], **extra) -> None:
    benchmark.group = _group(p)
    benchmark.extra_info.update(nbits=p["nbits"], n=p["n"], k=K, nq=p["nq"], rounds=ROUNDS, isa=hs.isa())
    try:
        benchmark.extra_info["loadavg_1min"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        pass
    benchmark.extra_info.update(extra)


def _median(benchmark) -> float:
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    return float(stats.stats.median) if stats is not None else float("nan")


def test_flat(setup, benchmark) -> None:
    _record(benchmark, setup, library="hamsearch", kind="FlatIndex", threads=THREADS)
    benchmark.pedantic(setup["flat"].query, args=(setup["q"], K), rounds=ROUNDS, iterations=1, warmup_rounds=0)
    median = _median(benchmark)
    setup["medians"]["flat"] = median
    benchmark.extra_info["median_s"] = median
    benchmark.extra_info["queries_per_second"] = setup["nq"] / median


def test_sharded(setup, benchmark) -> None:
    sharded, flat, q = setup["sharded"], setup["flat"], setup["q"]
    _record(benchmark, setup, library="hamsearch", kind="ShardedIndex", shards=SHARDS, threads=1,
            num_cpus_per_shard=1, shard_sizes=sharded.shard_sizes,
            shard_niceness=[info["niceness"] for info in sharded.shard_info()],
            driver_niceness=os.nice(0))
    benchmark.pedantic(sharded.query, args=(q, K), rounds=ROUNDS, iterations=1, warmup_rounds=0)
    median = _median(benchmark)
    info = benchmark.extra_info
    info["median_s"] = median
    info["queries_per_second"] = setup["nq"] / median
    info["pairs_per_second_per_shard"] = max(sharded.shard_sizes) * setup["nq"] / median
    flat_median = setup["medians"].get("flat")
    if flat_median is not None:
        info["ratio_vs_flat"] = flat_median / median
    ratios = []
    for _ in range(INTERLEAVED_PAIRS):
        t0 = time.perf_counter()
        flat.query(q, K)
        t1 = time.perf_counter()
        sharded.query(q, K)
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    info["ratio_interleaved"] = float(np.median(ratios))
    info["ratios_interleaved"] = ratios


def test_merge(setup, benchmark) -> None:
    """The driver's merge of MERGE_SHARDS top-K lists for the batch."""
    nq, nbits = setup["nq"], setup["nbits"]
    rng = np.random.default_rng(setup["seed"])
    Ds = [np.sort(rng.integers(0, nbits + 1, size=(nq, K)).astype(np.int32), axis=1) for _ in range(MERGE_SHARDS)]
    Is = [rng.integers(0, 10**12, size=(nq, K), dtype=np.int64) for _ in range(MERGE_SHARDS)]
    _record(benchmark, setup, library="hamsearch", kind="merge_topk", shards=MERGE_SHARDS)
    D, I = benchmark.pedantic(distributed.merge_topk, args=(Ds, Is, K, nbits, 10**12), rounds=10,
                              iterations=1, warmup_rounds=1)
    assert D.shape == I.shape == (nq, K)
    median = _median(benchmark)
    benchmark.extra_info["median_s"] = median
    benchmark.extra_info["queries_per_second"] = nq / median
