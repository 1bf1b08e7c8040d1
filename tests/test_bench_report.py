"""``python -m bench.report``: pytest-benchmark JSON into the README section.

Hand-made documents with round queries-per-second values, so that every
ratio and every row where a peer is not behind hamsearch is known in advance;
real runs of the suites on this project's reference machine (trimmed copies
in ``tests/data/bench``), checked
against a count made here straight from their ``extra_info``; the README
markers; files that are not pytest-benchmark output; plots with and without
matplotlib; and the machine-info hook of ``bench/conftest.py``.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` without `python -m`: the bench package lives at the root
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- hand-made documents ------------------------------------------------------------
def _bench(file: str, func: str, param: str, median: float, **extra: Any) -> Dict[str, Any]:
    name = f"{func}[{param}]" if param else func
    return {
        "group": "g", "name": name, "fullname": f"bench/{file}::{name}", "params": {}, "param": param,
        "extra_info": extra,
        "stats": {"min": median, "max": median, "mean": median, "median": median, "rounds": 3},
        "options": {},
    }


def _flat(library: str, backend: str, n: int, median: float, nq: int = 100, kind: str = "knn",
          threads: int = 1, **extra: Any) -> Dict[str, Any]:
    return _bench("bench_flat.py", "test_knn" if kind != "floor" else "test_read_floor",
                  f"{library}-{backend}-n{n}-t{threads}-{kind}", median,
                  library=library, backend=backend, kind=kind, nbits=64, n=n, k=10, threads=threads, nq=nq,
                  isa="avx2" if library == "hamsearch" else "n/a", loadavg_1min=0.5,
                  memory_bytes_per_code=16.0 if library == "hamsearch" else 8.0, **extra)


MIH_LIBRARY = {"mih": "hamsearch", "flat": "hamsearch", "exact": "usearch", "scan": "numpy"}


def _mih(variant: str, data: str, n: int, median: float, recall: Optional[float] = None,
         kth: Optional[float] = 3.0, nq: int = 100, source: Optional[str] = None, batch: int = 0) -> Dict[str, Any]:
    library = MIH_LIBRARY.get(variant, "faiss")
    extra: Dict[str, Any] = dict(library=library, backend=variant, variant=variant, data=data, nbits=64, n=n,
                                 k=10, threads=1, nq=nq, isa="avx2", build_seconds=0.5,
                                 memory_bytes_per_code=32.0, exact=recall is None, params={},
                                 loadavg_1min=1.5)
    if recall is not None:
        extra["recall_at_k"] = recall
    if variant == "mih":
        extra["mih_fallbacks"] = 0
    if kth is not None:
        extra["kth_distance_mean"] = kth
    if source is not None:
        extra["source"] = source
    if batch:
        extra["batch"] = batch
    return _bench("bench_mih.py", "test_mih", f"{library}-{variant}-{data}-n{n}" + (f"-batch{batch}" if batch else ""),
                  median, **extra)


OPS_LIBRARY = {"flat": "hamsearch", "mih": "hamsearch", "sharded": "hamsearch", "IndexBinaryFlat": "faiss",
               "IndexBinaryMultiHash": "faiss", "scan": "numpy"}


def _op(variant: str, op: str, data: str, n: int, median: float, r: Any = None,
        results: float = 1.0, recall: Optional[float] = None, threads: int = 1, nq: int = 100,
        **extra: Any) -> Dict[str, Any]:
    """An entry of bench/bench_ops.py's test_op, with its extra_info as the suite writes it."""
    library = OPS_LIBRARY[variant]
    info: Dict[str, Any] = dict(library=library, variant=variant, backend=variant, op=op, data=data, nbits=64,
                                n=n, r=r, threads=threads, nq=nq, rounds=3, median_s=median,
                                queries_per_second=nq / median, results_per_query=results,
                                exact=recall is None, build_seconds=0.25, memory_bytes_per_code=8.0,
                                isa="avx2" if library == "hamsearch" else "n/a", loadavg_1min=0.75, params={})
    if recall is not None:
        info["recall"] = recall
    info.update(extra)
    return _bench("bench_ops.py", "test_op", f"{op}-r{r}-{library}-{variant}-{data}-n{n}-t{threads}", median,
                  **info)


def _doc(benchmarks: List[Dict[str, Any]], hook: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    machine: Dict[str, Any] = {"node": "box", "processor": "", "machine": "x86_64", "python_version": "3.11.7",
                               "system": "Linux", "release": "6.1",
                               "cpu": {"brand_raw": "Test CPU 9000", "count": 4}}
    if hook is not None:
        machine["hamsearch_bench"] = hook
    return {"machine_info": machine,
            "commit_info": {"id": "0123456789abcdef", "dirty": False},
            "benchmarks": benchmarks, "datetime": "2026-01-02T03:04:05.678+00:00", "version": "5.3.1"}


HOOK = {"isa": "avx512_vpopcntdq",
        "versions": {"hamsearch": "0.1.0", "numpy": "2.4.6", "faiss": "1.15.1", "usearch": None, "numba": "0.68.1"},
        "cpu_model": "Hand-made CPU @ 3.0GHz", "cpu_count": 4, "cpus_usable": 2,
        "command": "HAMSEARCH_BENCH_QUICK=1 python -m pytest bench/bench_flat.py --benchmark-json=x.json",
        "cwd": "/src/hamsearch"}


def flat_doc() -> Dict[str, Any]:
    """q/s: n=10^3: hamsearch 10,000, faiss 5,000 (2.00x), numpy 100 (100x);
    n=10^4: hamsearch 1,000, faiss 2,000 (0.50x: not ahead); one query on 2
    threads at 10^4: hamsearch 500, faiss 1,000 (0.50x: not ahead); no usearch;
    one entry of no known suite."""
    return _doc([
        _flat("hamsearch", "native", 1000, 0.01),
        _flat("faiss", "IndexBinaryFlat", 1000, 0.02),
        _flat("numpy", "scan", 1000, 0.1, nq=10),
        _flat("hamsearch", "native", 10000, 0.1),
        _flat("faiss", "IndexBinaryFlat", 10000, 0.05),
        _flat("hamsearch", "native", 10000, 0.002, nq=1, kind="single", threads=2, bytes_scanned=80000),
        _flat("faiss", "IndexBinaryFlat", 10000, 0.001, nq=1, kind="single", threads=2, bytes_scanned=80000),
        _flat("floor", "read", 10000, 0.0005, nq=1, kind="floor", threads=2, bytes_scanned=80000),
        _bench("bench_other.py", "test_other", "x", 0.1, library="x"),
    ], hook=HOOK)


def mih_doc(kth: bool = True) -> Dict[str, Any]:
    """clustered 10^3: mih 100,000, flat 10,000, multihash 25,000 (recall 1),
    hnsw 200,000 (recall 0.9: not ahead, 0.50x); clustered 10^4: mih 10,000,
    flat 1,000, faiss-flat 500; uniform 10^3: mih 5,000, flat 10,000 (best),
    faiss-flat 8,000 (behind flat); uniform 10^4: all 1,000 (a tie: listed)."""
    k = (lambda d: d) if kth else (lambda d: None)
    return _doc([
        _mih("mih", "clustered", 1000, 0.001, kth=k(3.0)),
        _mih("flat", "clustered", 1000, 0.01, kth=k(3.0)),
        _mih("IndexBinaryMultiHash", "clustered", 1000, 0.004, recall=1.0, kth=k(3.0)),
        _mih("IndexBinaryHNSW", "clustered", 1000, 0.0005, recall=0.9, kth=k(3.0)),
        _mih("mih", "clustered", 10000, 0.01, kth=k(2.0)),
        _mih("flat", "clustered", 10000, 0.1, kth=k(2.0)),
        _mih("IndexBinaryFlat", "clustered", 10000, 0.2, kth=k(2.0)),
        _mih("mih", "uniform", 1000, 0.02, kth=k(20.0)),
        _mih("flat", "uniform", 1000, 0.01, kth=k(20.0)),
        _mih("IndexBinaryFlat", "uniform", 1000, 0.0125, kth=k(20.0)),
        _mih("mih", "uniform", 10000, 0.1, kth=k(18.0)),
        _mih("flat", "uniform", 10000, 0.1, kth=k(18.0)),
        _mih("IndexBinaryFlat", "uniform", 10000, 0.1, kth=k(18.0)),
    ])


def ops_doc() -> Dict[str, Any]:
    """Radius search (100 queries a round; q/s = 100 / median):
    uniform 10^3 r=4: flat 100,000, mih 50,000, faiss-flat 50,000 (2.00x),
    numpy 200,000 (0.50x: not ahead); 0.5 results a query;
    uniform 10^4 r=4: flat 10,000, numpy 5,000 (2.00x); 5 results;
    clustered 10^6 r=8: mih 10,000 (best), flat 200, sharded 400, faiss-flat
    100 (100x), multihash 5,000 (recall 0.75, 2.00x), numpy 50 (200x); 12
    results (multihash's 9 are not counted: it is approximate);
    clustered 10^6 r=16: mih 2,500, flat 200, multihash 5,000 (recall 0.5,
    0.50x: not ahead); 40 results.
    Ranking: uniform 10^5 on 2 threads: flat 1,000, numpy 250 (4.00x);
    uniform 10^6 on 2 threads: flat 100, numpy 25 (4.00x); alpha 10^4: flat
    5,000 alone; zeta 10^3: flat 10,000, numpy 10,000 (a tie: not ahead);
    every code is a result of a ranking."""
    return _doc([
        _op("flat", "radius", "uniform", 1000, 0.001, r=4, results=0.5),
        _op("mih", "radius", "uniform", 1000, 0.002, r=4, results=0.5),
        _op("IndexBinaryFlat", "radius", "uniform", 1000, 0.002, r=4, results=0.5),
        _op("scan", "radius", "uniform", 1000, 0.0005, r=4, results=0.5),
        _op("flat", "radius", "uniform", 10000, 0.01, r=4, results=5.0),
        _op("scan", "radius", "uniform", 10000, 0.02, r=4, results=5.0),
        _op("flat", "radius", "clustered", 10**6, 0.5, r=8, results=12.0),
        _op("mih", "radius", "clustered", 10**6, 0.01, r=8, results=12.0),
        _op("sharded", "radius", "clustered", 10**6, 0.25, r=8, results=12.0),
        _op("IndexBinaryFlat", "radius", "clustered", 10**6, 1.0, r=8, results=12.0),
        _op("IndexBinaryMultiHash", "radius", "clustered", 10**6, 0.02, r=8, results=9.0, recall=0.75),
        _op("scan", "radius", "clustered", 10**6, 2.0, r=8, results=12.0),
        _op("flat", "radius", "clustered", 10**6, 0.5, r=16, results=40.0),
        _op("mih", "radius", "clustered", 10**6, 0.04, r=16, results=40.0),
        _op("IndexBinaryMultiHash", "radius", "clustered", 10**6, 0.02, r=16, results=20.0, recall=0.5),
        _op("flat", "rank", "zeta", 1000, 0.01, results=1000.0),
        _op("scan", "rank", "zeta", 1000, 0.01, results=1000.0),
        _op("flat", "rank", "alpha", 10000, 0.02, results=10000.0),
        _op("flat", "rank", "uniform", 10**5, 0.1, threads=2, results=1e5),
        _op("scan", "rank", "uniform", 10**5, 0.4, threads=2, results=1e5),
        _op("flat", "rank", "uniform", 10**6, 1.0, threads=2, results=1e6),
        _op("scan", "rank", "uniform", 10**6, 4.0, threads=2, results=1e6),
    ])


SYNTHETIC = "DCGH codes of 10^5 synthetic items in 4 classes (bench/trained.py)"
WIKI = "DCGH codes of\nWikipedia articles"  # a newline in the source: printed on one line


def trained_doc() -> Dict[str, Any]:
    """MIH on the trainer's codes, with usearch and numpy (100 queries a round):
    uniform 10^3: mih 100,000, flat 10,000; clustered 10^6: mih 10,000, flat
    1,000; trained-synthetic 10^5: mih 10,000, flat 1,000, usearch 20,000
    (0.50x: not ahead), numpy 100 (100x); trained-wiki 10^4: mih 50,000, flat
    10,000, usearch 5,000 (10.0x), numpy 1,000 (50.0x); aardvark (a kind of no
    known order) 10^3: mih 100,000, flat 10,000."""
    return _doc([
        _mih("mih", "trained-wiki", 10000, 0.002, kth=5.0, source=WIKI),
        _mih("flat", "trained-wiki", 10000, 0.01, kth=5.0, source=WIKI),
        _mih("exact", "trained-wiki", 10000, 0.02, kth=5.0, source=WIKI),
        _mih("scan", "trained-wiki", 10000, 0.1, kth=5.0, source=WIKI),
        _mih("mih", "aardvark", 1000, 0.001, kth=1.0),
        _mih("flat", "aardvark", 1000, 0.01, kth=1.0),
        _mih("mih", "trained-synthetic", 100000, 0.01, kth=4.0, source=SYNTHETIC),
        _mih("flat", "trained-synthetic", 100000, 0.1, kth=4.0, source=SYNTHETIC),
        _mih("exact", "trained-synthetic", 100000, 0.005, kth=4.0, source=SYNTHETIC),
        _mih("scan", "trained-synthetic", 100000, 1.0, kth=4.0, source=SYNTHETIC),
        _mih("mih", "clustered", 10**6, 0.01, kth=3.0),
        _mih("flat", "clustered", 10**6, 0.1, kth=3.0),
        _mih("mih", "uniform", 1000, 0.001, kth=20.0),
        _mih("flat", "uniform", 1000, 0.01, kth=20.0),
    ])


def distributed_doc() -> Dict[str, Any]:
    common = dict(library="hamsearch", nbits=64, n=100000, k=10, nq=1000, isa="avx2", loadavg_1min=2.0)
    return _doc([
        _bench("bench_distributed.py", "test_flat", "", 0.05, kind="FlatIndex", threads=2, **common),
        _bench("bench_distributed.py", "test_sharded", "", 0.1, kind="ShardedIndex", shards=2, threads=1,
               ratio_interleaved=0.4, **common),
        _bench("bench_distributed.py", "test_merge", "", 0.02, kind="merge_topk", shards=64, **common),
    ])


def _write(tmp_path: Path, name: str, doc: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


@pytest.fixture()
def files(tmp_path: Path) -> List[str]:
    return [_write(tmp_path, "flat.json", flat_doc()), _write(tmp_path, "mih.json", mih_doc()),
            _write(tmp_path, "distributed.json", distributed_doc())]


def _section(paths: List[str], tmp_path: Path, plots: bool = False) -> str:
    runs = report.load_runs(paths)
    made = report.make_plots(runs, {r.path: report.points(r) for r in runs}, tmp_path / "plots") if plots else None
    return report.render(runs, made, tmp_path, "python -m bench.report test")


# -- suites, rows and ratios ---------------------------------------------------------
def test_recognise_each_suite_and_skip_the_rest() -> None:
    flat, mih, dist = flat_doc()["benchmarks"], mih_doc()["benchmarks"], distributed_doc()["benchmarks"]
    assert {report.recognise(b)[0] for b in flat[:-1]} == {"flat"}
    assert {report.recognise(b)[0] for b in mih} == {"mih"}
    assert {report.recognise(b)[0] for b in dist} == {"distributed"}
    suite, why = report.recognise(flat[-1])
    assert suite is None and "no known suite" in why
    broken = dict(mih[0], extra_info={k: v for k, v in mih[0]["extra_info"].items() if k != "data"})
    suite, why = report.recognise(broken)
    assert suite is None and "data" in why
    zero = dict(flat[0], stats={"median": 0.0})
    assert report.recognise(zero)[0] is None
    assert report.recognise("not a benchmark")[0] is None
    # the file must agree with the test function
    moved = dict(flat[0], fullname="bench/bench_mih.py::test_knn[x]")
    assert report.recognise(moved)[0] is None


def test_unknown_entries_are_listed_as_skipped(tmp_path: Path) -> None:
    runs = report.load_runs([_write(tmp_path, "flat.json", flat_doc())])
    assert [name for name, _ in runs[0].skipped] == ["bench/bench_other.py::test_other[x]"]
    assert len(runs[0].by_suite["flat"]) == 8
    text = _section([runs[0].path], tmp_path)
    assert "- Skipped 1 entry of no known suite:" in text
    assert "`bench/bench_other.py::test_other[x]`" in text


def test_not_ahead_rows_known_by_hand(files: List[str]) -> None:
    runs = report.load_runs(files)
    losses = report.not_ahead([p for r in runs for p in report.points(r)])
    got = [(x.suite, report.row_text(x.row, x.suite), x.best.label if x.best else None, x.peer.label,
            x.peer.recall, round(x.ratio, 6)) for x in losses]
    assert got == [
        ("flat", "nbits=64 n=10^4 k=10 threads=1", "hamsearch", "faiss", None, 0.5),
        ("flat", "nbits=64 n=10^4 k=10 threads=2, one query a round", "hamsearch", "faiss", None, 0.5),
        ("mih", "uniform nbits=64 n=10^4 k=10 threads=1", "mih", "faiss-flat", None, 1.0),
        ("mih", "clustered nbits=64 n=10^3 k=10 threads=1", "mih", "faiss-hnsw", 0.9, 0.5),
    ]


def test_rows_without_hamsearch_are_called_out() -> None:
    doc = _doc([_flat("faiss", "IndexBinaryFlat", 1000, 0.02)])
    run = report.Run("x.json", "x", doc, by_suite={"flat": doc["benchmarks"]})
    (loss,) = report.not_ahead(report.points(run))
    assert loss.best is None and loss.peer.label == "faiss" and math.isnan(loss.ratio)
    assert "(no hamsearch result)" in report.losses_table([loss])


def test_rendered_tables_and_losses(files: List[str], tmp_path: Path) -> None:
    text = _section(files, tmp_path)
    flat, mih, dist = files
    # flat suite: q/s and ratios of medians (hamsearch / faiss, hamsearch / numpy)
    assert "| 64 | 10^3 | 10 | 1 | 10,000 | 5,000 | 2.00× | 100 | 100× |" in text
    assert "| 64 | 10^4 | 10 | 1 | 1,000 | 2,000 | 0.50× | — | — |" in text
    # one query against the floor: 2 ms and 1 ms over 0.5 ms
    assert "| 64 | 10^4 | 2 | 0 MB | 500 µs | 0.2 GB/s | 2.00 ms | 4.00× | 1.00 ms | 2.00× |" in text
    assert "| 64 | 10^3 | 16.0 | 8.0 | 8.0 |" in text  # memory per code
    # MIH suite: q/s, fallbacks, recall, ratios; build time and memory
    assert ("| clustered | 64 | 10^3 | 10 | 1 | all | 100,000 | 0/100 | 10,000 | 10.0× | — | — | 25,000 | 1.000 "
            "| 4.00× | 200,000 | 0.900 | 0.50× |") in text
    assert "| clustered | 64 | 10^4 | 10 | 1 | all | 10,000 | 0/100 | 1,000 | 10.0× | 500 | 20.0× |" in text
    assert "| uniform | 64 | 10^3 | 10 | 1 | all | 5,000 | 0/100 | 10,000 | 0.50× | 8,000 | 0.62× |" in text
    assert "| uniform | 64 | 10^3 | 0.50 s | 32.0 | 0.50 s | 32.0 | 0.50 s | 32.0 | — | — | — | — | —" in text
    # distributed: 20,000 and 10,000 q/s, 0.50x, interleaved 0.40x, merge 20 ms
    assert "| 64 | 10^5 | 10 | 1000 | 2 | 20,000 | 2 | 10,000 | 0.50× | 0.40× | 20.00 ms |" in text
    # the losses, each with the peer's recall when approximate
    assert f"| `{flat}` | flat | nbits=64 n=10^4 k=10 threads=1 | hamsearch | 1,000 | faiss | 2,000 | exact | 0.50× |" in text
    assert (f"| `{mih}` | mih | clustered nbits=64 n=10^3 k=10 threads=1 | mih | 100,000 | faiss-hnsw | 200,000 "
            "| 0.900 | 0.50× |") in text
    assert f"| `{mih}` | mih | uniform nbits=64 n=10^4 k=10 threads=1 | mih | 1,000 | faiss-flat | 1,000 | exact | 1.00× |" in text
    assert text.count(f"| `{dist}` |") == 0
    # order of the sections
    order = [text.index(s) for s in ("### Runs", "### Rows where hamsearch is not ahead of every peer",
                                     "### Flat scan", "### Multi-index hashing", "### Sharded index", "### Plots")]
    assert order == sorted(order)


def test_small_batch_rows_apart_from_the_whole_batch(tmp_path: Path) -> None:
    # bench_mih.py's small-batch cases (extra_info["batch"]: a stream of 32
    # queries asked one at a time) get rows of their own beside the whole
    # batch's, MIH over its own scan: 32 / 0.004 = 8,000 q/s over 6,400.
    doc = _doc([
        _mih("mih", "uniform", 1000, 0.02), _mih("flat", "uniform", 1000, 0.01),
        _mih("IndexBinaryFlat", "uniform", 1000, 0.0125),
        _mih("mih", "uniform", 1000, 0.004, nq=32, batch=1), _mih("flat", "uniform", 1000, 0.005, nq=32, batch=1),
    ])
    section = _section([_write(tmp_path, "mih.json", doc)], tmp_path)
    assert "| uniform | 64 | 10^3 | 10 | 1 | all | 5,000 | 0/100 | 10,000 | 0.50× | 8,000 | 0.62× |" in section
    assert "| uniform | 64 | 10^3 | 10 | 1 | 1 | 8,000 | 0/32 | 6,400 | 1.25× | — | — |" in section
    assert "queries a call" not in section  # no peer in those rows, so none is ahead
    assert report.row_text(("uniform", 64, 1000, 10, 1, "batch1"), "mih") == \
        "uniform nbits=64 n=10^3 k=10 threads=1, 1 queries a call"


def test_header_states_machine_versions_and_command(files: List[str], tmp_path: Path) -> None:
    text = _section(files, tmp_path)
    assert "- Machine: Hand-made CPU @ 3.0GHz, 4 logical CPUs (2 usable by the run), x86_64, Linux 6.1" in text
    assert "- hamsearch ISA: avx512_vpopcntdq" in text
    assert ("- Versions: Python 3.11.7, hamsearch 0.1.0, numpy 2.4.6, faiss 1.15.1, usearch not installed, "
            "numba 0.68.1") in text
    assert "- Date: 2026-01-02 03:04:05 UTC, commit 0123456789" in text
    assert f"- Command: `{HOOK['command']}` (in `/src/hamsearch`)" in text
    # without the hook: pytest-benchmark's own cpu brand, the ISA of the entries, and a note
    assert "- Machine: Test CPU 9000, 4 logical CPUs, x86_64, Linux 6.1" in text
    assert "- hamsearch ISA: avx2" in text
    assert "- Command: not recorded in this file" in text
    assert "- 1-minute load average during the run: 0.50" in text
    assert "- 1-minute load average during the run: 1.50" in text
    assert "Generated by `python -m bench.report test`" in text


def test_missing_peers_get_a_note(tmp_path: Path) -> None:
    text = _section([_write(tmp_path, "flat.json", flat_doc()), _write(tmp_path, "mih.json", mih_doc())], tmp_path)
    assert "- No `usearch` result (usearch exact search) in this file: usearch was not importable" in text
    assert "- No `hamsearch-numba` result" in text
    assert "- No `faiss-hnsw`" not in text  # the MIH file has it
    assert "- No `faiss` result" not in text
    # a MIH file with no peer at all still renders, with a note per peer
    only_own = _doc([b for b in mih_doc()["benchmarks"] if b["extra_info"]["library"] == "hamsearch"])
    text = _section([_write(tmp_path, "own.json", only_own)], tmp_path)
    for label in ("faiss-flat", "faiss-multihash", "faiss-hnsw"):
        assert f"- No `{label}` result" in text
    assert "None: in every row hamsearch's best index answers more queries per second" in text


# -- files that are not pytest-benchmark output ---------------------------------------
@pytest.mark.parametrize("content, expect", [
    ("[1, 2, 3]", "got a list of 3 items"),
    ('{"benchmarks": []}', "got an object with keys 'benchmarks'"),
    ("not json", "not JSON"),
])
def test_not_pytest_benchmark_json_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                    content: str, expect: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(report.ReportError, match="expected"):
        report.load_document(str(path))
    readme = tmp_path / "README.md"
    readme.write_text("# r\n", encoding="utf-8")
    assert report.main([str(path), "--readme", str(readme), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "report: " in err and str(path) in err and expect in err
    assert readme.read_text(encoding="utf-8") == "# r\n"
    assert report.main([str(tmp_path / "absent.json"), "--stdout", "--no-plots"]) == 2
    assert "could not read" in capsys.readouterr().err


# -- the README markers -----------------------------------------------------------
PROSE_BEFORE = "# Title  \n\nSome text with trailing spaces   \n\tand a tab, ünïcödé, and the marker quoted: `<!-- report:begin -->`.\n"
PROSE_AFTER = "\n## After\n\nMore text\nno final newline"


def test_markers_appended_when_absent_and_prefix_kept(tmp_path: Path, files: List[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_bytes(PROSE_BEFORE.encode("utf-8"))
    args = files + ["--readme", str(readme), "--no-plots"]
    assert report.main(args) == 0
    first = readme.read_bytes()
    assert first.startswith(PROSE_BEFORE.encode("utf-8"))
    rest = first[len(PROSE_BEFORE.encode("utf-8")):].decode("utf-8")
    assert rest.startswith("\n" + report.BEGIN + "\n## Benchmark report\n")
    assert rest.endswith("\n" + report.END + "\n")
    assert report.main(args) == 0
    assert readme.read_bytes() == first  # idempotent


def test_markers_replaced_in_place_byte_for_byte(tmp_path: Path, files: List[str]) -> None:
    readme = tmp_path / "README.md"
    original = (PROSE_BEFORE + report.BEGIN + "\nold generated text\n" + report.END + PROSE_AFTER).encode("utf-8")
    readme.write_bytes(original)
    args = files + ["--readme", str(readme), "--no-plots"]
    assert report.main(args) == 0
    once = readme.read_bytes()
    head = (PROSE_BEFORE + report.BEGIN).encode("utf-8")
    tail = (report.END + PROSE_AFTER).encode("utf-8")
    assert once.startswith(head) and once.endswith(tail)
    assert b"old generated text" not in once and b"## Benchmark report" in once
    assert report.main(args) == 0
    assert readme.read_bytes() == once


def test_crlf_readme_keeps_its_line_endings(tmp_path: Path) -> None:
    text = "# T\r\n\r\n" + report.BEGIN + "\r\nold\r\n" + report.END + "\r\nend\r\n"
    new = report.splice(text, "a\nb")
    assert new == "# T\r\n\r\n" + report.BEGIN + "\r\na\r\nb\r\n" + report.END + "\r\nend\r\n"
    assert report.splice(new, "a\nb") == new


@pytest.mark.parametrize("text", [
    f"{report.BEGIN}\n{report.BEGIN}\n{report.END}\n",
    f"{report.END}\n{report.BEGIN}\n",
    f"x\n{report.BEGIN}\n",
])
def test_malformed_markers_are_an_error(text: str) -> None:
    with pytest.raises(report.ReportError, match="expected one line"):
        report.splice(text, "s")


def test_missing_readme_is_an_error(tmp_path: Path, files: List[str], capsys: pytest.CaptureFixture) -> None:
    assert report.main(files + ["--readme", str(tmp_path / "nope.md"), "--no-plots"]) == 2
    assert "expected an existing README" in capsys.readouterr().err


def test_stdout_leaves_the_readme_alone(tmp_path: Path, files: List[str], capsys: pytest.CaptureFixture) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("keep\n", encoding="utf-8")
    assert report.main(files + ["--readme", str(readme), "--stdout", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Benchmark report") and report.BEGIN not in out
    assert readme.read_text(encoding="utf-8") == "keep\n"


# -- plots --------------------------------------------------------------------
def test_plots_drawn_and_linked(tmp_path: Path, files: List[str]) -> None:
    pytest.importorskip("matplotlib")
    readme = tmp_path / "docs" / "README.md"
    readme.parent.mkdir()
    readme.write_text("# r\n", encoding="utf-8")
    plots = tmp_path / "out" / "plots"
    assert report.main(files + ["--readme", str(readme), "--plots-dir", str(plots)]) == 0
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["mih_speedup_vs_kth_distance.png", "qps_vs_n_flat_uniform_t1.png",
                     "qps_vs_n_mih_clustered_t1.png", "qps_vs_n_mih_uniform_t1.png"]
    for name in names:
        assert (plots / name).read_bytes()[:8] == PNG_MAGIC
    text = readme.read_text(encoding="utf-8")
    for name in names:
        assert f"![{name}](../out/plots/{name})" in text
    assert "qps_vs_n_distributed" not in text  # the sharded suite has no peers and one n


def test_one_n_only_gives_a_note_not_a_figure(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    doc = _doc([b for b in flat_doc()["benchmarks"] if b["extra_info"].get("n") == 1000])
    text = _section([_write(tmp_path, "one-n.json", doc)], tmp_path, plots=True)
    assert "`qps_vs_n_one-n_uniform_t1.png` not drawn" in text and "has one n only (10^3)" in text
    assert not (tmp_path / "plots" / "qps_vs_n_one-n_uniform_t1.png").exists()


def test_speedup_points_pair_mih_with_flat_of_the_same_row(tmp_path: Path) -> None:
    runs = report.load_runs([_write(tmp_path, "mih.json", mih_doc())])
    pairs = sorted((p.data, p.n, p.kth_distance_mean, s) for p, s in report.speedup_points(report.points(runs[0])))
    assert pairs == [("clustered", 1000, 3.0, 10.0), ("clustered", 10000, 2.0, 10.0),
                     ("uniform", 1000, 20.0, 0.5), ("uniform", 10000, 18.0, 1.0)]


def test_speedup_plot_skipped_without_kth_distance(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = _write(tmp_path, "old-mih.json", mih_doc(kth=False))
    text = _section([path], tmp_path, plots=True)
    assert "`mih_speedup_vs_kth_distance.png` not drawn" in text
    assert not (tmp_path / "plots" / "mih_speedup_vs_kth_distance.png").exists()


def test_matplotlib_absent_skips_plots_with_a_note(tmp_path: Path, files: List[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    readme = tmp_path / "README.md"
    readme.write_text("# r\n", encoding="utf-8")
    plots = tmp_path / "plots"
    assert report.main(files + ["--readme", str(readme), "--plots-dir", str(plots)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert "- Plots skipped: matplotlib is not importable" in text
    assert not plots.exists()
    assert "### Rows where hamsearch is not ahead of every peer" in text


# -- real results files (tests/data/bench) -----------------------------------------------------
def _count_not_ahead(doc: Dict[str, Any]) -> int:
    """Rows x peers where the peer's nq / median is >= the best hamsearch
    searcher's, straight from extra_info (the oracle of not_ahead)."""
    rows: Dict[tuple, Dict[str, List[float]]] = {}
    for b in doc["benchmarks"]:
        info = b["extra_info"]
        if info.get("kind", "knn") not in ("knn", "single") or info.get("library") not in (
                "hamsearch", "faiss", "usearch", "numpy") or "nbits" not in info:
            continue
        if "bench_distributed" in b.get("fullname", ""):
            continue
        key = (info.get("data"), info["nbits"], info["n"], info.get("k", info.get("r")), info["threads"],
               info.get("op", info.get("kind", "knn")), info.get("batch", 0))
        qps = info["nq"] / b["stats"]["median"]
        side = "own" if info["library"] == "hamsearch" else "peer"
        rows.setdefault(key, {"own": [], "peer": []})[side].append(qps)
    count = 0
    for cell in rows.values():
        best = max(cell["own"], default=-math.inf)
        count += sum(1 for q in cell["peer"] if q >= best)
    return count


# Real runs of this machine's suites, trimmed to the fields the report reads:
# the 64-bit part of a full flat and a full MIH grid, and a quick distributed run.
REAL_DIR = Path(__file__).resolve().parent / "data" / "bench"
REAL = ["flat-b64.json", "mih-b64.json", "distributed-quick.json"]


@pytest.mark.parametrize("name", REAL)
def test_real_results_file(name: str, tmp_path: Path) -> None:
    path = REAL_DIR / name
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    runs = report.load_runs([str(path)])
    assert not runs[0].skipped
    losses = report.not_ahead(report.points(runs[0]))
    assert len(losses) == _count_not_ahead(doc)
    text = report.render(runs, None, tmp_path, "python -m bench.report test")
    for loss in losses:
        assert f"| {report.row_text(loss.row, loss.suite)} | " in text
    for suite in runs[0].by_suite:
        assert f"### {report.SUITE_TITLES[suite]} (`{report.SUITES[suite]}`)" in text
    assert "- Machine: " in text and "- hamsearch ISA: " in text


def test_real_results_together(tmp_path: Path) -> None:
    paths = [str(REAL_DIR / n) for n in REAL]
    readme = tmp_path / "README.md"
    readme.write_bytes((ROOT / "bench" / "README.md").read_bytes())
    before = readme.read_bytes()
    assert report.main(paths + ["--readme", str(readme), "--no-plots"]) == 0
    after = readme.read_bytes()
    if report.BEGIN.encode() not in before:
        assert after.startswith(before)
    assert report.main(paths + ["--readme", str(readme), "--no-plots"]) == 0
    assert readme.read_bytes() == after
    text = after.decode()
    # The MIH grid's approximate peers lose on speed somewhere; the list says so.
    assert "faiss-hnsw" in text


# -- the machine-info hook of bench/conftest.py -------------------------------------------------
def test_machine_info_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    conftest = pytest.importorskip("bench.conftest")
    monkeypatch.setattr(sys, "argv", [os.path.join("x", "pytest", "__main__.py"), "bench/bench_mih.py",
                                      "-k", "uniform and b64"])
    for key in [k for k in os.environ if k.startswith("HAMSEARCH_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HAMSEARCH_BENCH_QUICK", "1")
    monkeypatch.setitem(sys.modules, "usearch", None)  # as if not installed
    info: Dict[str, Any] = {}
    conftest.pytest_benchmark_update_machine_info(None, info)
    got = info["hamsearch_bench"]
    assert got["command"] == "HAMSEARCH_BENCH_QUICK=1 python -m pytest bench/bench_mih.py -k 'uniform and b64'"
    assert got["cwd"] == os.getcwd()
    assert got["versions"]["usearch"] is None
    assert got["versions"]["numpy"]
    assert got["cpu_count"] == os.cpu_count()
    assert "isa" in got and "cpu_model" in got
    json.dumps(info)  # what pytest-benchmark writes must serialise


# -- the popcount compute bound ------------------------------------------------------
def test_compute_bound_ceiling_worked_by_hand(tmp_path):
    # Compute case: 1000 queries x 32768 codes in 0.5 s = 65,536,000 comparisons/s.
    compute = _bench("bench_flat.py", "test_compute_floor", "floor-popcount-b64-n32768-t1", 0.5,
                     library="floor", backend="popcount", kind="compute", nbits=64, n=32768, k=1, threads=1,
                     nq=1000, isa="avx2", loadavg_1min=0.5)
    # hamsearch at n = 65,536: 100 queries in 0.2 s = 500 q/s; ceiling 65,536,000 / 65,536 = 1,000 q/s.
    knn = _flat("hamsearch", "native", 65536, 0.2)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(_doc([compute, knn])))
    from bench import ratios

    doc, entries = ratios.load(str(path))
    assert ratios.compute_bounds(entries) == {(64, 1): 65_536_000.0}
    header, rows = ratios.ceiling_rows(entries)
    assert rows == [["64", "65,536", "10", "1", "0.07 G", "1,000", "500", "50%"]], (header, rows)
    # The compute case is a ceiling, not a searcher: no column of its own in the ratio table.
    assert not any("compute" in h for h in ratios.ratio_rows(entries)[0])
    (run,) = report.load_runs([str(path)])
    section = "\n".join(report.flat_section(run))
    assert "popcount compute bound" in section and "| 50% |" in section


# -- radius search and ranking (bench/bench_ops.py) --------------------------------------------
def test_ops_entries_recognised_and_bad_ones_skipped(tmp_path: Path) -> None:
    good = ops_doc()["benchmarks"]
    assert {report.recognise(b)[0] for b in good} == {"ops"}
    bad_op = _op("flat", "knn", "uniform", 1000, 0.001, r=4)
    no_r = _op("flat", "radius", "uniform", 1000, 0.001)
    text_r = _op("flat", "radius", "uniform", 1000, 0.001, r="8")
    no_variant = _op("flat", "rank", "uniform", 1000, 0.001)
    del no_variant["extra_info"]["variant"]
    path = _write(tmp_path, "ops.json", _doc(good + [bad_op, no_r, text_r, no_variant]))
    (run,) = report.load_runs([path])
    assert len(run.by_suite["ops"]) == len(good)
    reasons = dict(run.skipped)
    assert reasons == {
        bad_op["fullname"]: "ops entry of op 'knn', expected one of ('radius', 'rank')",
        no_r["fullname"]: "radius entry without an integer radius: expected extra_info r >= 0, got None",
        text_r["fullname"]: "radius entry without an integer radius: expected extra_info r >= 0, got '8'",
        no_variant["fullname"]: "ops entry without extra_info variant",
    }
    text = _section([path], tmp_path)
    assert "- Skipped 4 entries of no known suite:" in text
    assert f"  - `{bad_op['fullname']}`: ops entry of op 'knn', expected one of ('radius', 'rank')" in text
    assert f"- Suites: ops ({len(good)} benchmarks)" in text


def test_ops_not_ahead_rows_known_by_hand(tmp_path: Path, files: List[str]) -> None:
    ops = _write(tmp_path, "ops.json", ops_doc())
    runs = report.load_runs(files + [ops])
    losses = report.not_ahead([p for r in runs for p in report.points(r)])
    got = [(x.suite, report.row_text(x.row, x.suite), x.best.label if x.best else None, x.peer.label,
            x.peer.recall, round(x.ratio, 6)) for x in losses]
    assert got == [
        # the old suites' rows, as before
        ("flat", "nbits=64 n=10^4 k=10 threads=1", "hamsearch", "faiss", None, 0.5),
        ("flat", "nbits=64 n=10^4 k=10 threads=2, one query a round", "hamsearch", "faiss", None, 0.5),
        ("mih", "uniform nbits=64 n=10^4 k=10 threads=1", "mih", "faiss-flat", None, 1.0),
        ("mih", "clustered nbits=64 n=10^3 k=10 threads=1", "mih", "faiss-hnsw", 0.9, 0.5),
        # numpy at 200,000 q/s over flat's 100,000; multihash at 5,000 over mih's 2,500; a tie at 10,000
        ("ops", "radius r=4 uniform nbits=64 n=10^3 threads=1", "flat", "numpy", None, 0.5),
        ("ops", "radius r=16 clustered nbits=64 n=10^6 threads=1", "mih", "faiss-multihash", 0.5, 0.5),
        ("ops", "rank zeta nbits=64 n=10^3 threads=1", "flat", "numpy", None, 1.0),
    ]
    text = _section(files + [ops], tmp_path)
    assert (f"| `{ops}` | ops | radius r=4 uniform nbits=64 n=10^3 threads=1 | flat | 100,000 | numpy | 200,000 "
            "| exact | 0.50× |") in text
    assert (f"| `{ops}` | ops | radius r=16 clustered nbits=64 n=10^6 threads=1 | mih | 2,500 | faiss-multihash "
            "| 5,000 | 0.500 | 0.50× |") in text
    assert f"| `{ops}` | ops | rank zeta nbits=64 n=10^3 threads=1 | flat | 10,000 | numpy | 10,000 | exact | 1.00× |" in text
    # hamsearch ahead: not listed
    assert "rank uniform nbits=64 n=10^5 threads=2" not in text
    assert "radius r=8 clustered" not in text


def test_ops_tables_known_by_hand(tmp_path: Path) -> None:
    ops = _write(tmp_path, "ops.json", ops_doc())
    text = _section([ops], tmp_path)
    assert f"### Radius search and ranking (`bench/bench_ops.py`): `{ops}`" in text
    assert "- No `" not in text  # every searcher ran
    radius_header = ("| data | nbits | n | r | threads | flat q/s | mih q/s | sharded q/s | faiss-flat q/s "
                     "| faiss-multihash q/s | numpy q/s | best hamsearch | hamsearch / faiss-flat "
                     "| hamsearch / faiss-multihash | hamsearch / numpy | results/query | faiss-multihash recall |")
    radius = [
        # 100 / 0.001 = 100,000 q/s; 100,000 / 50,000 = 2.00; 100,000 / 200,000 = 0.50
        "| uniform | 64 | 10^3 | 4 | 1 | 100,000 | 50,000 | — | 50,000 | — | 200,000 | flat | 2.00× | — | 0.50× "
        "| 0.50 | — |",
        "| uniform | 64 | 10^4 | 4 | 1 | 10,000 | — | — | — | — | 5,000 | flat | — | — | 2.00× | 5.00 | — |",
        # mih 10,000 q/s over faiss-flat 100 (100x), multihash 5,000 (2x), numpy 50 (200x)
        "| clustered | 64 | 10^6 | 8 | 1 | 200 | 10,000 | 400 | 100 | 5,000 | 50.0 | mih | 100× | 2.00× | 200× "
        "| 12.0 | 0.750 |",
        "| clustered | 64 | 10^6 | 16 | 1 | 200 | 2,500 | — | — | 5,000 | — | mih | — | 0.50× | — | 40.0 | 0.500 |",
    ]
    rank_header = ("| data | nbits | n | threads | flat q/s | numpy q/s | best hamsearch | hamsearch / numpy "
                   "| results/query |")
    rank = [
        "| uniform | 64 | 10^5 | 2 | 1,000 | 250 | flat | 4.00× | 100,000 |",
        "| uniform | 64 | 10^6 | 2 | 100 | 25.0 | flat | 4.00× | 1,000,000 |",
        "| alpha | 64 | 10^4 | 1 | 5,000 | — | flat | — | 10,000 |",  # other kinds by name, before n
        "| zeta | 64 | 10^3 | 1 | 10,000 | 10,000 | flat | 1.00× | 1,000 |",
    ]
    lines = text.split("\n")
    at = lines.index("#### Radius search")
    assert lines[at + 2] == radius_header and lines[at + 4: at + 4 + len(radius)] == radius
    at = lines.index("#### Full ranking")
    assert lines[at + 2] == rank_header and lines[at + 4: at + 4 + len(rank)] == rank
    assert lines.index("#### Radius search") < lines.index("#### Full ranking")
    # build time and memory, one row per (data, nbits, n), a column pair per searcher of the file
    assert ("| data | nbits | n | flat build | flat B/code | mih build | mih B/code | sharded build "
            "| sharded B/code | faiss-flat build | faiss-flat B/code | faiss-multihash build "
            "| faiss-multihash B/code | numpy build | numpy B/code | parameters |") in text
    assert ("| uniform | 64 | 10^3 | 0.25 s | 8.0 | 0.25 s | 8.0 | — | — | 0.25 s | 8.0 | — | — | 0.25 s | 8.0 "
            "| — |") in text


def test_ops_exact_searchers_that_disagree_are_shown(tmp_path: Path) -> None:
    doc = _doc([_op("flat", "radius", "uniform", 1000, 0.001, r=2, results=3.0),
                _op("scan", "radius", "uniform", 1000, 0.001, r=2, results=4.0)])
    text = _section([_write(tmp_path, "odd.json", doc)], tmp_path)
    assert "| 3.00 to 4.00 (exact searchers disagree) |" in text
    # a smaller batch (a slow searcher's) has its own mean: not a disagreement
    doc = _doc([_op("flat", "radius", "uniform", 1000, 0.001, r=2, results=3.0, nq=1000),
                _op("mih", "radius", "uniform", 1000, 0.001, r=2, results=3.0, nq=1000),
                _op("scan", "radius", "uniform", 1000, 0.001, r=2, results=2.5, nq=20)])
    batches = _section([_write(tmp_path, "batches.json", doc)], tmp_path)
    assert "disagree" not in batches and "| 3.00 |" in batches
    # the peers missing from the file get a note, with the reason the hook gives
    assert "- No `faiss-flat` result (faiss `IndexBinaryFlat`) in this file: skipped or deselected" in text
    assert "- No `faiss-multihash` result" in text and "- No `mih` result (`MIHIndex`)" in text
    assert "- No `numpy` result" not in text


def test_ops_plots_drawn_and_noted(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = _write(tmp_path, "o.json", ops_doc())
    text = _section([path], tmp_path, plots=True)
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    # qps_vs_n_<file>_<op>_<data>_t<threads>.png
    assert names == ["qps_vs_n_o_radius_uniform_t1.png", "qps_vs_n_o_rank_uniform_t2.png"]
    for name in names:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == PNG_MAGIC
        assert f"![{name}](plots/{name})" in text
    assert "**Queries per second against n: radius search, uniform codes, 1 thread" in text
    assert ("`qps_vs_n_o_radius_clustered_t1.png` not drawn: "
            f"`{path}` (ops radius, clustered, 1 thread) has one n only (10^6).") in text
    assert "`qps_vs_n_o_rank_zeta_t1.png` not drawn" in text


def test_one_file_of_every_suite_gives_distinct_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    doc = _doc(flat_doc()["benchmarks"] + mih_doc()["benchmarks"] + ops_doc()["benchmarks"]
               + distributed_doc()["benchmarks"])
    path = _write(tmp_path, "all.json", doc)
    text = _section([path], tmp_path, plots=True)
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    # flat and MIH both have uniform codes on one thread: the suite keeps their names apart
    assert names == ["mih_speedup_vs_kth_distance.png", "qps_vs_n_all_flat_uniform_t1.png",
                     "qps_vs_n_all_mih_clustered_t1.png", "qps_vs_n_all_mih_uniform_t1.png",
                     "qps_vs_n_all_radius_uniform_t1.png", "qps_vs_n_all_rank_uniform_t2.png"]
    assert text.count("![qps_vs_n_") == 5
    assert "- Suites: flat (8 benchmarks), mih (13 benchmarks), ops (22 benchmarks), distributed (3 benchmarks)" in text
    order = [text.index(s) for s in ("### Flat scan", "### Multi-index hashing", "### Radius search and ranking",
                                     "### Sharded index", "### Plots")]
    assert order == sorted(order)


def test_ops_without_matplotlib_and_twice_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    paths = [_write(tmp_path, "ops.json", ops_doc()), _write(tmp_path, "mih.json", trained_doc())]
    readme = tmp_path / "README.md"
    readme.write_text("# r\n", encoding="utf-8")
    args = paths + ["--readme", str(readme), "--plots-dir", str(tmp_path / "plots")]
    assert report.main(args) == 0
    first = readme.read_bytes()
    assert "- Plots skipped: matplotlib is not importable" in first.decode("utf-8")
    assert not (tmp_path / "plots").exists()
    assert report.main(args) == 0
    assert readme.read_bytes() == first  # deterministic


# -- MIH on the trainer's codes, with usearch and numpy -----------------------------------------
def test_mih_trained_kinds_ordered_with_their_source_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "mih.json", trained_doc())
    text = _section([path], tmp_path)
    section = text[text.index("### Multi-index hashing"):text.index("### Plots")]
    synthetic = f"- Data: trained-synthetic: {SYNTHETIC}"
    wiki = "- Data: trained-wiki: DCGH codes of Wikipedia articles"
    assert section.count(synthetic) == 1 and section.count(wiki) == 1
    assert section.index(synthetic) < section.index(wiki) < section.index("| data |")
    assert "- Data: uniform" not in section and "- Data: aardvark" not in section
    rows = [
        "| uniform | 64 | 10^3 | 10 | 1 | all | 100,000 | 0/100 | 10,000 | 10.0× | — | — | — | — |",
        "| clustered | 64 | 10^6 | 10 | 1 | all | 10,000 | 0/100 | 1,000 | 10.0× | — | — | — | — |",
        # usearch 100 / 0.005 = 20,000 q/s: mih's 10,000 over it is 0.50; numpy 100 q/s: 100x
        "| trained-synthetic | 64 | 10^5 | 10 | 1 | all | 10,000 | 0/100 | 1,000 | 10.0× | 20,000 | 0.50× | 100 | 100× |",
        "| trained-wiki | 64 | 10^4 | 10 | 1 | all | 50,000 | 0/100 | 10,000 | 5.00× | 5,000 | 10.0× | 1,000 | 50.0× |",
        "| aardvark | 64 | 10^3 | 10 | 1 | all | 100,000 | 0/100 | 10,000 | 10.0× | — | — | — | — |",
    ]
    lines = section.split("\n")
    header = ("| data | nbits | n | k | threads | batch | mih q/s | mih fallbacks | flat q/s | mih / flat | usearch q/s "
              "| mih / usearch | numpy q/s | mih / numpy |")
    at = lines.index(header)
    assert lines[at + 2: at + 2 + len(rows)] == rows
    assert "| usearch build | usearch B/code | numpy build | numpy B/code | parameters |" in section
    assert "| trained-wiki | 64 | 10^4 | 0.50 s | 32.0 | 0.50 s | 32.0 | 0.50 s | 32.0 | 0.50 s | 32.0 | — |" in section
    # the exact peers take part in the list of losses
    assert (f"| `{path}` | mih | trained-synthetic nbits=64 n=10^5 k=10 threads=1 | mih | 10,000 | usearch "
            "| 20,000 | exact | 0.50× |") in text
    runs = report.load_runs([path])
    assert [(x.peer.label, report.row_text(x.row, "mih")) for x in report.not_ahead(report.points(runs[0]))] == [
        ("usearch", "trained-synthetic nbits=64 n=10^5 k=10 threads=1")]
    # the faiss peers are noted missing; usearch and numpy are not
    assert "- No `faiss-flat` result" in section and "- No `usearch`" not in section


def test_mih_without_trained_kinds_notes_usearch_and_numpy(tmp_path: Path) -> None:
    text = _section([_write(tmp_path, "mih.json", mih_doc())], tmp_path)
    for label in ("usearch", "numpy"):
        assert (f"- No `{label}` result" in text and "the suite runs it on the trained data kinds only "
                "(trained-synthetic, trained-wiki), and this file has none." in text)
    # the columns of searchers absent from every row are left out
    assert "usearch q/s" not in text and "mih / numpy" not in text
    assert "- Data:" not in text


def test_mih_report_cli_prints_the_sources(tmp_path: Path) -> None:
    from bench import mih_report

    doc = trained_doc()
    out = mih_report.render(doc, mih_report.rows_from_json(doc))
    assert out.count(f"- Data: trained-synthetic: {SYNTHETIC}") == 1
    assert out.index("- Data: trained-synthetic") < out.index("- Data: trained-wiki") < out.index("| data |")


def test_speedup_markers_distinct_for_every_kind(tmp_path: Path) -> None:
    kinds = ["uniform", "clustered", "trained-synthetic", "trained-wiki", "aardvark", "zebra"]
    markers = report.data_markers(kinds)
    assert set(markers) == set(kinds) and len(set(markers.values())) == len(kinds)
    assert markers["uniform"] == "o" and markers["clustered"] == "^"  # as before
    pytest.importorskip("matplotlib")
    text = _section([_write(tmp_path, "mih.json", trained_doc())], tmp_path, plots=True)
    png = tmp_path / "plots" / "mih_speedup_vs_kth_distance.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and "![mih_speedup_vs_kth_distance.png]" in text
    runs = report.load_runs([str(tmp_path / "mih.json")])
    pairs = sorted((p.data, s) for p, s in report.speedup_points(report.points(runs[0])))
    assert pairs == [("aardvark", 10.0), ("clustered", 10.0), ("trained-synthetic", 10.0),
                     ("trained-wiki", 5.0), ("uniform", 10.0)]


def test_mih_report_and_ratios_read_a_whole_suite_json(tmp_path: Path, capsys) -> None:
    """``python -m bench`` writes every suite into one JSON; the MIH table and
    the ratios read their own entries from it and pass over the others (a
    radius entry has data but no k; the distributed merge has no threads)."""
    from bench import mih_report, ratios

    docs = [json.loads((REAL_DIR / n).read_text(encoding="utf-8")) for n in REAL]
    whole = dict(docs[0], benchmarks=[b for d in docs for b in d["benchmarks"]])
    radius = json.loads(json.dumps(docs[1]["benchmarks"][0]))
    radius["fullname"] = "bench/bench_radius.py::test_op[radius-hamsearch-flat]"
    radius["extra_info"].pop("k")
    radius["extra_info"].update(op="radius", r=4)
    whole["benchmarks"].append(radius)
    path = _write(tmp_path, "suite.json", whole)
    expected = sum(1 for b in docs[1]["benchmarks"]
                   if b["fullname"].startswith("bench/bench_mih.py") and "library" in b["extra_info"])
    assert expected > 0
    assert len(mih_report.rows_from_json(whole)) == expected
    assert mih_report.main([path]) == 0
    out = capsys.readouterr().out
    assert "| data |" in out
    assert ratios.main([path]) == 0


def test_ops_radius_table_shows_mih_fallbacks(tmp_path: Path) -> None:
    """A file whose MIH radius entries record mih_fallbacks gets a column of
    them after the queries per second ("fallbacks/nq"), "—" where none."""
    doc = _doc([
        _op("flat", "radius", "uniform", 10**6, 0.5, r=32, results=3.0),
        _op("mih", "radius", "uniform", 10**6, 0.5, r=32, results=3.0, mih_fallbacks=100),
        _op("flat", "radius", "clustered", 10**6, 0.5, r=8, results=12.0),
        _op("mih", "radius", "clustered", 10**6, 0.01, r=8, results=12.0, mih_fallbacks=3),
        _op("flat", "radius", "clustered", 10**5, 0.05, r=8, results=1.0),
    ])
    text = _section([_write(tmp_path, "ops.json", doc)], tmp_path)
    lines = text.split("\n")
    at = lines.index("#### Radius search")
    assert lines[at + 2] == "| data | nbits | n | r | threads | flat q/s | mih q/s | mih fallbacks | results/query |"
    assert lines[at + 4: at + 7] == [
        "| uniform | 64 | 10^6 | 32 | 1 | 200 | 200 | 100/100 | 3.00 |",
        "| clustered | 64 | 10^5 | 8 | 1 | 2,000 | — | — | 1.00 |",
        "| clustered | 64 | 10^6 | 8 | 1 | 200 | 10,000 | 3/100 | 12.0 |",
    ]
    assert "`mih fallbacks`: queries of the batch that MIH answered with the flat scan" in text


def _metric(implementation: str, task: str, median: float, threads: int = 1, **extra: Any) -> Dict[str, Any]:
    """An entry of bench/bench_metrics.py's test_metric, its extra_info as the suite writes it."""
    info: Dict[str, Any] = dict(implementation=implementation, task=task, data="mirflickr", nbits=16, n=18015,
                                nq=2000, threads=threads, rounds=3, median_s=median, map=0.56, isa=None)
    info.update(extra)
    return _bench("bench_metrics.py", "test_metric", f"mirflickr-16b-{implementation}-{task}-t{threads}", median,
                  **info)


def test_metrics_section_known_by_hand(tmp_path: Path) -> None:
    # numpy 2.0 s; reference map 0.8 s, map+tie 1.6 s; hamsearch map+tie 0.1 s
    # (20x numpy, 16x reference), all 0.15 s (reference all 4.5 s: 30x).
    doc = _doc([_metric("numpy-argsort", "map", 2.0), _metric("reference", "map", 0.8),
                _metric("reference", "map+tie", 1.6), _metric("reference", "all", 4.5),
                _metric("hamsearch", "map+tie", 0.1, speedup_vs_numpy_interleaved=21.0,
                        speedup_vs_reference_interleaved=15.5),
                _metric("hamsearch", "all", 0.15, all_over_map_interleaved=1.4)], HOOK)
    path = _write(tmp_path, "metrics.json", doc)
    runs = report.load_runs([path])
    assert len(runs[0].by_suite["metrics"]) == 6 and not runs[0].skipped
    text = _section([path], tmp_path)
    assert "### Evaluation metrics (`bench/bench_metrics.py`)" in text
    assert "**mirflickr**, nbits=16, 2,000 queries x 18,015 items" in text
    assert "| hamsearch | map+tie | 1 | 100.00 ms | 20.0× | 16.0× | 0.560000 | numpy 21.0×, reference 15.5× |" in text
    assert "| hamsearch | all | 1 | 150.00 ms | 13.3× | 30.0× | 0.560000 | all/map 1.40 |" in text
    # ratios and the MIH table pass over these entries
    from bench import mih_report, ratios

    assert ratios.entries_from_json(doc) == [] and mih_report.rows_from_json(doc) == []
    broken = dict(doc["benchmarks"][0], extra_info={"implementation": "hamsearch"})
    assert report.recognise(broken)[0] is None
