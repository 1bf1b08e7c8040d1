"""The public benchmark report: pytest-benchmark JSON files into ``bench/README.md``.

    python -m bench.report bench/results/flat.json bench/results/mih.json \\
        [--readme bench/README.md] [--plots-dir bench/plots] [--stdout] [--no-plots]

Reads the ``--benchmark-json`` files of ``bench/bench_flat.py`` (k-NN by the
flat scan), ``bench/bench_mih.py`` (k-NN by multi-index hashing, on uniform,
clustered and trained codes), ``bench/bench_ops.py`` (radius search and full
ranking) and ``bench/bench_distributed.py`` (the sharded index) (any mix,
several suites in one file too; each entry's suite is told by its test name and
``extra_info``; entries of no known suite are listed as skipped) and writes a
Markdown section between the lines ``<!-- report:begin -->`` and
``<!-- report:end -->`` of the README (appended at its end when the markers are
absent; every byte outside them is kept). The section holds, for each file,
the machine, the versions, the ISA, the date, commit, load and the command
that produced it; per suite the tables of queries per second with hamsearch's
ratio to each peer (ratios of medians of the same run), memory per code,
build time, the recall of the approximate peers and the source of the trained
codes (the tables of ``bench/ratios.py`` and ``bench/mih_report.py``, and the
radius and ranking tables); every row where a peer is not behind hamsearch's
best index; and the plots: queries per second against n (``qps_vs_n_*.png``,
one figure per suite, data kind and thread count, and per operation for the
radius and ranking suite) and MIH's speed-up over the flat scan against the
distance to the k-th neighbour (``mih_speedup_vs_kth_distance.png``). Plots
need matplotlib; without it the section says they were skipped.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from bench import mih_report, ratios
from bench.ratios import fmt_n, fmt_qps, fmt_ratio, markdown_table

BEGIN = "<!-- report:begin -->"
END = "<!-- report:end -->"
# a marker counts only on a line of its own (prose may quote it)
_BEGIN_RE = re.compile(r"^" + re.escape(BEGIN) + r"[ \t]*(?=\r?$)", re.MULTILINE)
_END_RE = re.compile(r"^" + re.escape(END) + r"[ \t]*(?=\r?$)", re.MULTILINE)

HERE = Path(__file__).resolve().parent
DEFAULT_README = HERE / "README.md"
DEFAULT_PLOTS = HERE / "plots"

SUITES: Dict[str, str] = {
    "flat": "bench/bench_flat.py",
    "mih": "bench/bench_mih.py",
    "ops": "bench/bench_ops.py",
    "distributed": "bench/bench_distributed.py",
    "metrics": "bench/bench_metrics.py",
}
SUITE_TITLES: Dict[str, str] = {
    "flat": "Flat scan",
    "mih": "Multi-index hashing",
    "ops": "Radius search and ranking",
    "distributed": "Sharded index",
    "metrics": "Evaluation metrics",
}
# test function -> suite; the file name in "fullname" must agree when present
TEST_SUITE: Dict[str, str] = {
    "test_knn": "flat",
    "test_read_floor": "flat",
    "test_compute_floor": "flat",
    "test_mih": "mih",
    "test_op": "ops",
    "test_flat": "distributed",
    "test_sharded": "distributed",
    "test_merge": "distributed",
    "test_metric": "metrics",
}
FILE_SUITE: Dict[str, str] = {Path(path).name: suite for suite, path in SUITES.items()}
FLAT_KINDS = ("knn", "single", "floor", "compute", "pair")
DISTRIBUTED_KINDS = ("FlatIndex", "ShardedIndex", "merge_topk")
OPS = ("radius", "rank")  # the ops suite's operations, in the order of its tables
OP_TITLES = {"radius": "Radius search", "rank": "Full ranking"}
# Point.kind: the order of the rows of each suite in the list of losses
KIND_ORDER = {"knn": 0, "single": 1, "radius": 2, "rank": 3}
REQUIRED: Dict[str, Tuple[str, ...]] = {
    "flat": ("library", "nbits", "n", "k", "threads"),
    "mih": ("library", "data", "nbits", "n", "k", "threads"),
    "ops": ("library", "variant", "op", "data", "nbits", "n", "threads", "nq"),
    "distributed": ("library", "kind", "nbits", "n", "k", "nq"),
    "metrics": ("implementation", "task", "data", "nbits", "n", "nq", "threads"),
}
# The ops suite's searchers: (library, variant) -> label, in column order.
OPS_LABELS: Tuple[Tuple[Tuple[str, str], str], ...] = (
    (("hamsearch", "flat"), "flat"),
    (("hamsearch", "mih"), "mih"),
    (("hamsearch", "sharded"), "sharded"),
    (("faiss", "IndexBinaryFlat"), "faiss-flat"),
    (("faiss", "IndexBinaryMultiHash"), "faiss-multihash"),
    (("numpy", "scan"), "numpy"),
)

# The peers each suite runs: label (as in the tables) -> (module whose
# version says whether it could run, description). hamsearch's own indexes
# and backends are not peers.
PEERS: Dict[str, Dict[str, Tuple[str, str]]] = {
    "flat": {
        "faiss": ("faiss", "faiss `IndexBinaryFlat`"),
        "usearch": ("usearch", "usearch exact search"),
        "numpy": ("numpy", "the numpy scan"),
    },
    "mih": {
        "faiss-flat": ("faiss", "faiss `IndexBinaryFlat`"),
        "faiss-multihash": ("faiss", "faiss `IndexBinaryMultiHash`, approximate"),
        "faiss-hnsw": ("faiss", "faiss `IndexBinaryHNSW`, approximate"),
        "usearch": ("usearch", "usearch exact search"),
        "numpy": ("numpy", "the numpy scan"),
    },
    "ops": {
        "faiss-flat": ("faiss", "faiss `IndexBinaryFlat`"),
        "faiss-multihash": ("faiss", "faiss `IndexBinaryMultiHash`, approximate"),
        "numpy": ("numpy", "the numpy scan"),
    },
    "distributed": {},
}
OWN: Dict[str, Dict[str, Tuple[str, str]]] = {
    "flat": {"hamsearch": ("hamsearch", "`FlatIndex`, native core"),
             "hamsearch-numba": ("numba", "`FlatIndex`, Numba backend")},
    "mih": {"mih": ("hamsearch", "`MIHIndex`"), "flat": ("hamsearch", "`FlatIndex`")},
    "ops": {"flat": ("hamsearch", "`FlatIndex`"), "mih": ("hamsearch", "`MIHIndex`"),
            "sharded": ("hamsearch", "`ShardedIndex` (Ray)")},
    "distributed": {},
}
MIH_HAMSEARCH = frozenset(label for (library, _), label in mih_report.LABELS if library == "hamsearch")
VERSION_ORDER = ("hamsearch", "numpy", "faiss", "usearch", "numba")


class ReportError(ValueError):
    """A JSON file or README the report cannot use; the message says what was
    expected and what was found."""


# -- reading -------------------------------------------------------------------
@dataclass
class Run:
    """One pytest-benchmark JSON file, its entries split by suite."""

    path: str
    tag: str
    doc: Dict[str, Any]
    by_suite: Dict[str, List[Dict[str, Any]]] = field(default_factory=dict)
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def subdoc(self, suite: str) -> Dict[str, Any]:
        """The document with only ``suite``'s benchmarks (for the renderers of
        ``ratios.py`` and ``mih_report.py``, which read a whole document)."""
        return dict(self.doc, benchmarks=list(self.by_suite.get(suite, [])))

    @property
    def hook_info(self) -> Dict[str, Any]:
        """What ``bench/conftest.py``'s machine-info hook recorded ({} before it existed)."""
        info = (self.doc.get("machine_info") or {}).get("hamsearch_bench")
        return info if isinstance(info, dict) else {}


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:6])
        return f"an object with keys {keys}" if keys else "an empty object"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return f"a {type(value).__name__}"


def load_document(path: str) -> Dict[str, Any]:
    """Read one pytest-benchmark JSON document.

    Parameters
    ----------
    path : str
        A file written by ``pytest --benchmark-json``.

    Returns
    -------
    dict
        The document: ``machine_info``, ``commit_info``, ``benchmarks``, ``datetime``.

    Raises
    ------
    ReportError
        If the file cannot be read, is not JSON, or is not pytest-benchmark output.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise ReportError(f"{path}: could not read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: expected a pytest-benchmark JSON file, got text that is not JSON ({exc})") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list)
            and isinstance(doc.get("machine_info"), dict)):
        raise ReportError(
            f"{path}: expected pytest-benchmark output (an object with 'machine_info' and a "
            f"'benchmarks' list, as written by pytest --benchmark-json), got {_describe(doc)}"
        )
    return doc


def recognise(bench: Any) -> Tuple[Optional[str], str]:
    """The suite of one benchmark entry, or ``(None, reason)``.

    The test function (``name`` before ``[``) names the suite; ``fullname``'s
    file, where present, must agree; the suite's ``extra_info`` keys and a
    positive median must be there.
    """
    if not isinstance(bench, dict):
        return None, f"expected a benchmark object, got {_describe(bench)}"
    name = str(bench.get("name", ""))
    func = name.split("[", 1)[0]
    suite = TEST_SUITE.get(func)
    fullname = str(bench.get("fullname", ""))
    if "::" in fullname:
        by_file = FILE_SUITE.get(Path(fullname.split("::", 1)[0]).name)
        if by_file is None or by_file != suite:
            return None, f"test {fullname.split('[', 1)[0]!r} is in no known suite ({', '.join(SUITES.values())})"
    if suite is None:
        return None, f"test {func!r} is in no known suite ({', '.join(SUITES.values())})"
    info = bench.get("extra_info")
    info = info if isinstance(info, dict) else {}
    missing = [key for key in REQUIRED[suite] if info.get(key) is None]
    if missing:
        return None, f"{suite} entry without extra_info {', '.join(missing)}"
    median = (bench.get("stats") or {}).get("median") if isinstance(bench.get("stats"), dict) else None
    if not isinstance(median, (int, float)) or not median > 0:
        return None, f"expected a positive stats.median, got {median!r}"
    try:
        for key in ("nbits", "n", "k", "threads", "nq"):
            if info.get(key) is not None:
                int(info[key])
    except (TypeError, ValueError):
        return None, f"expected integer nbits, n, k, threads, nq in extra_info, got {key}={info[key]!r}"
    if suite == "flat" and str(info.get("kind", "knn")) not in FLAT_KINDS:
        return None, f"flat entry of kind {info.get('kind')!r}, expected one of {FLAT_KINDS}"
    if suite == "distributed" and str(info["kind"]) not in DISTRIBUTED_KINDS:
        return None, f"distributed entry of kind {info['kind']!r}, expected one of {DISTRIBUTED_KINDS}"
    if suite == "ops":
        if info["op"] not in OPS:
            return None, f"ops entry of op {info['op']!r}, expected one of {OPS}"
        r = info.get("r")
        if info["op"] == "radius" and not (isinstance(r, int) and not isinstance(r, bool) and r >= 0):
            return None, f"radius entry without an integer radius: expected extra_info r >= 0, got {r!r}"
    return suite, ""


def _tag(path: str, taken: set) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem) or "run"
    tag, i = base, 2
    while tag in taken:
        tag, i = f"{base}-{i}", i + 1
    taken.add(tag)
    return tag


def load_runs(paths: Sequence[str]) -> List[Run]:
    """Read every file and split its entries by suite.

    Raises
    ------
    ReportError
        If no path is given, or a file is not pytest-benchmark output.
    """
    if not paths:
        raise ReportError("expected at least one pytest-benchmark JSON file, got none")
    runs: List[Run] = []
    taken: set = set()
    for path in paths:
        doc = load_document(path)
        run = Run(path=str(path), tag=_tag(str(path), taken), doc=doc)
        for bench in doc["benchmarks"]:
            suite, reason = recognise(bench)
            if suite is None:
                name = (bench.get("fullname") or bench.get("name")) if isinstance(bench, dict) else None
                run.skipped.append((str(name or "(unnamed)"), reason))
            else:
                run.by_suite.setdefault(suite, []).append(bench)
        runs.append(run)
    return runs


# -- the comparison every row is checked by --------------------------------------
@dataclass(frozen=True)
class Point:
    """One searcher's queries per second in one row of a suite's table."""

    run: str
    suite: str
    # (data, nbits, n, k, threads, kind): the cases compared; in the ops suite
    # k is the radius r (0 for ranking) and kind the operation, "radius" or "rank"
    row: Tuple[Any, ...]
    label: str
    hamsearch: bool
    qps: float
    recall: Optional[float]
    kth_distance_mean: Optional[float] = None
    exact: bool = True  # False: an approximate searcher (recall None: not recorded)

    @property
    def data(self) -> str:
        return str(self.row[0])

    @property
    def nbits(self) -> int:
        return int(self.row[1])

    @property
    def n(self) -> int:
        return int(self.row[2])

    @property
    def k(self) -> int:
        return int(self.row[3])

    @property
    def threads(self) -> int:
        return int(self.row[4])

    @property
    def kind(self) -> str:
        return str(self.row[5])


@dataclass(frozen=True)
class OpsRow:
    """One entry of ``bench/bench_ops.py``: a radius search (every code within
    Hamming distance ``r``) or a full ranking of a batch of ``nq`` queries."""

    label: str
    hamsearch: bool
    op: str  # "radius" or "rank"
    data: str
    nbits: int
    n: int
    r: Optional[int]  # None for "rank"
    threads: int
    nq: int
    median: float  # seconds per round
    results_per_query: Optional[float]
    exact: bool
    recall: Optional[float]  # approximate searchers: fraction of the exact results found
    build_seconds: Optional[float]
    memory_per_code: Optional[float]
    params: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    fallbacks: Optional[int] = None  # MIH's radius: queries of the batch the scan answered

    @property
    def qps(self) -> float:
        return self.nq / self.median if self.median > 0 else math.nan

    @property
    def key(self) -> Tuple[Any, ...]:
        """The row of the op's table: (data, nbits, n, r, threads), or (data, nbits, n, threads) for "rank"."""
        if self.op == "radius":
            return (self.data, self.nbits, self.n, self.r, self.threads)
        return (self.data, self.nbits, self.n, self.threads)


def _ops_label(library: str, variant: str) -> str:
    for key, label in OPS_LABELS:
        if key == (library, variant):
            return label
    return f"{library}-{variant}"


def _number(info: Dict[str, Any], key: str) -> Optional[float]:
    v = info.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def ops_rows(run: Run) -> List[OpsRow]:
    """The ops suite's entries of ``run`` (validated by :func:`recognise`), in file order."""
    out = []
    for b in run.by_suite.get("ops", []):
        info = b["extra_info"]
        op = str(info["op"])
        recall = _number(info, "recall")
        out.append(OpsRow(
            label=_ops_label(str(info["library"]), str(info["variant"])),
            hamsearch=info["library"] == "hamsearch", op=op, data=str(info["data"]),
            nbits=int(info["nbits"]), n=int(info["n"]), r=int(info["r"]) if op == "radius" else None,
            threads=int(info["threads"]), nq=int(info["nq"]), median=float(b["stats"]["median"]),
            results_per_query=_number(info, "results_per_query"),
            exact=bool(info["exact"]) if isinstance(info.get("exact"), bool) else recall is None,
            recall=recall, build_seconds=_number(info, "build_seconds"),
            memory_per_code=_number(info, "memory_bytes_per_code"),
            params=dict(info["params"]) if isinstance(info.get("params"), dict) else {},
            fallbacks=int(info["mih_fallbacks"]) if isinstance(info.get("mih_fallbacks"), int) else None,
        ))
    return out


def points(run: Run) -> List[Point]:
    """Every search measurement of ``run`` as a :class:`Point` (the bandwidth
    floor and the distributed suite, which has no peers, are left out)."""
    out: List[Point] = []
    flat_raw = run.by_suite.get("flat", [])
    entries = ratios.entries_from_json(run.subdoc("flat"))
    if len(entries) != len(flat_raw):  # every entry was validated: a mismatch is a bug here
        raise ReportError(f"{run.path}: expected {len(flat_raw)} flat-scan entries from bench.ratios, got {len(entries)}")
    for e in entries:
        if e.kind not in ("knn", "single"):
            continue
        out.append(Point(run.path, "flat", ("uniform", e.nbits, e.n, e.k, e.threads, e.kind), e.label,
                         e.label.startswith("hamsearch"), e.qps, None))
    mih_raw = run.by_suite.get("mih", [])
    rows = mih_report.rows_from_json(run.subdoc("mih"))
    if len(rows) != len(mih_raw):
        raise ReportError(f"{run.path}: expected {len(mih_raw)} MIH entries from bench.mih_report, got {len(rows)}")
    for r, raw in zip(rows, mih_raw):
        kth = (raw.get("extra_info") or {}).get("kth_distance_mean")
        kind = f"batch{r.batch}" if r.batch else "knn"
        out.append(Point(run.path, "mih", (r.data, r.nbits, r.n, r.k, r.threads, kind), r.label,
                         r.label in MIH_HAMSEARCH or r.label.startswith("hamsearch"), r.qps, r.recall,
                         float(kth) if kth is not None else None))
    for o in ops_rows(run):
        out.append(Point(run.path, "ops", (o.data, o.nbits, o.n, o.r or 0, o.threads, o.op), o.label,
                         o.hamsearch, o.qps, o.recall, exact=o.exact))
    return out


@dataclass(frozen=True)
class Loss:
    """A row where a peer answers at least as many queries per second as the
    best hamsearch index (``best`` is None where hamsearch has no result)."""

    run: str
    suite: str
    row: Tuple[Any, ...]
    best: Optional[Point]
    peer: Point

    @property
    def ratio(self) -> float:
        return self.best.qps / self.peer.qps if self.best is not None and self.peer.qps > 0 else math.nan


def _suite_order(suite: str) -> int:
    return list(SUITES).index(suite) if suite in SUITES else len(SUITES)


def _row_order(row: Tuple[Any, ...]) -> Tuple[Any, ...]:
    data, nbits, n, k, threads, kind = row
    return (KIND_ORDER.get(kind, len(KIND_ORDER)), str(kind)) + mih_report.data_key(str(data)) + (n, nbits, k, threads)


def not_ahead(pts: Sequence[Point]) -> List[Loss]:
    """Every (row, peer) where the peer's queries per second are >= those of
    hamsearch's best index in that row, exact and approximate peers alike.

    Parameters
    ----------
    pts : sequence of Point
        Measurements; rows are compared within one run and suite only.

    Returns
    -------
    list of Loss
        In file order, then row order, then peer label.
    """
    rows: Dict[Tuple[str, str, Tuple[Any, ...]], List[Point]] = {}
    for p in pts:
        rows.setdefault((p.run, p.suite, p.row), []).append(p)
    run_order = {r: i for i, r in enumerate(dict.fromkeys(p.run for p in pts))}
    out = []
    for (run, suite, row), cell in sorted(rows.items(), key=lambda kv: (run_order[kv[0][0]], _suite_order(kv[0][1]),
                                                                       _row_order(kv[0][2]))):
        own = [p for p in cell if p.hamsearch and math.isfinite(p.qps)]
        best = max(own, key=lambda p: p.qps) if own else None
        for peer in sorted((p for p in cell if not p.hamsearch), key=lambda p: p.label):
            if not math.isfinite(peer.qps):
                continue
            if best is None or peer.qps >= best.qps:
                out.append(Loss(run, suite, row, best, peer))
    return out


def row_text(row: Tuple[Any, ...], suite: str) -> str:
    """A row of a suite's table in words: ``clustered nbits=64 n=10^6 k=10 threads=1``,
    ``radius r=8 clustered nbits=64 n=10^6 threads=1``, ``rank uniform nbits=64 n=10^5 threads=2``."""
    data, nbits, n, k, threads, kind = row
    if suite == "ops":
        op = f"radius r={k}" if kind == "radius" else str(kind)
        return f"{op} {data} nbits={nbits} n={fmt_n(n)} threads={threads}"
    text = f"nbits={nbits} n={fmt_n(n)} k={k} threads={threads}"
    if suite == "mih":
        text = f"{data} {text}"
    if kind == "single":
        text += ", one query a round"
    elif str(kind).startswith("batch"):
        text += f", {str(kind)[5:]} queries a call"
    return text


def losses_table(losses: Sequence[Loss]) -> str:
    """The Markdown table of :func:`not_ahead`'s rows."""
    header = ["file", "suite", "row", "best hamsearch", "its q/s", "peer", "peer q/s", "peer recall",
              "hamsearch / peer"]
    body = []
    for x in losses:
        body.append([
            f"`{x.run}`", x.suite, row_text(x.row, x.suite),
            x.best.label if x.best else "(no hamsearch result)",
            fmt_qps(x.best.qps) if x.best else "—",
            x.peer.label, fmt_qps(x.peer.qps),
            f"{x.peer.recall:.3f}" if x.peer.recall is not None else "exact" if x.peer.exact else "not recorded",
            fmt_ratio(x.ratio),
        ])
    return markdown_table(header, body, "lllrrlrrr")


# -- the header of each file ------------------------------------------------------
def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _loads(doc: Dict[str, Any]) -> List[float]:
    out = []
    for b in doc.get("benchmarks", []):
        info = (b.get("extra_info") or {}) if isinstance(b, dict) else {}
        v = info.get("loadavg_1min")
        if isinstance(v, (int, float)):
            out.append(float(v))
    return out


def _isas(run: Run) -> List[str]:
    isa = run.hook_info.get("isa")
    if isa:
        return [str(isa)]
    found = set()
    for benches in run.by_suite.values():
        for b in benches:
            info = b.get("extra_info") or {}
            if info.get("library") == "hamsearch" and info.get("isa") and info.get("backend") != "numba":
                found.add(str(info["isa"]))
    return sorted(found)


def _date(text: Any) -> str:
    s = str(text or "")
    m = re.match(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(\+00:00|Z)?", s)
    if not m:
        return s or "not recorded"
    return f"{m.group(1)} {m.group(2)}" + (" UTC" if m.group(3) else "")


def machine_text(run: Run) -> str:
    """CPU model, CPU count, architecture and system of one run."""
    mi = run.doc.get("machine_info") or {}
    cpu: Dict[str, Any] = mi["cpu"] if isinstance(mi.get("cpu"), dict) else {}
    hook = run.hook_info
    model = hook.get("cpu_model") or cpu.get("brand_raw") or mi.get("processor") or "CPU model not recorded"
    parts = [str(model)]
    count = hook.get("cpu_count") or cpu.get("count")
    if count:
        usable = hook.get("cpus_usable")
        parts.append(f"{count} logical CPUs" + (f" ({usable} usable by the run)" if usable and usable != count else ""))
    if mi.get("machine"):
        parts.append(str(mi["machine"]))
    if mi.get("system"):
        parts.append(" ".join(str(x) for x in (mi.get("system"), mi.get("release")) if x))
    return ", ".join(parts)


def versions_text(run: Run) -> str:
    """Python and, where the hook recorded them, the libraries' versions of one run."""
    mi = run.doc.get("machine_info") or {}
    parts = []
    if mi.get("python_version"):
        parts.append(f"Python {mi['python_version']}")
    versions = run.hook_info.get("versions")
    if isinstance(versions, dict):
        for name in VERSION_ORDER:
            if name in versions:
                v = versions[name]
                parts.append(f"{name} {v}" if v else f"{name} not installed")
    else:
        parts.append("library versions not recorded in this file (it predates the machine-info hook "
                     "of `bench/conftest.py`)")
    return ", ".join(parts) or "not recorded"


def run_header(run: Run) -> List[str]:
    """The bullet list that states where, when and how a file was measured."""
    counts = ", ".join(f"{suite} ({len(run.by_suite[suite])} benchmarks)" for suite in SUITES if suite in run.by_suite)
    commit = run.doc.get("commit_info") or {}
    when = _date(run.doc.get("datetime"))
    if commit.get("id"):
        when += f", commit {str(commit['id'])[:10]}"
        if commit.get("dirty"):
            when += " (with uncommitted changes)"
    loads = _loads(run.doc)
    isas = _isas(run)
    command = run.hook_info.get("command")
    cwd = run.hook_info.get("cwd")
    out = [f"**`{run.path}`**", "",
           f"- Suites: {counts or 'none recognised'}",
           f"- Machine: {machine_text(run)}",
           f"- hamsearch ISA: {'/'.join(isas) if isas else 'not recorded'}",
           f"- Versions: {versions_text(run)}",
           f"- Date: {when}",
           "- 1-minute load average during the run: "
           + ("not recorded" if not loads else f"{loads[0]:.2f}" if min(loads) == max(loads)
              else f"{min(loads):.2f} to {max(loads):.2f}")]
    if command:
        out.append(f"- Command: `{command}`" + (f" (in `{cwd}`)" if cwd else ""))
    else:
        out.append("- Command: not recorded in this file (it predates the machine-info hook of "
                   "`bench/conftest.py`)")
    if run.skipped:
        count = len(run.skipped)
        out.append(f"- Skipped {count} {'entry' if count == 1 else 'entries'} of no known suite:")
        for name, reason in run.skipped[:20]:
            out.append(f"  - `{name}`: {reason}")
        if len(run.skipped) > 20:
            out.append(f"  - … and {len(run.skipped) - 20} more")
    return out + [""]


# -- per-suite sections ---------------------------------------------------------
def missing_notes(run: Run, suite: str, labels: Sequence[str]) -> List[str]:
    """A note for each of the suite's peers (and hamsearch indexes) with no
    result in the file, with the reason where the file tells it."""
    versions = run.hook_info.get("versions")
    out = []
    expected = dict(OWN.get(suite, {}))
    expected.update(PEERS.get(suite, {}))
    for label, (module, description) in expected.items():
        if label in labels:
            continue
        if isinstance(versions, dict) and module in versions and not versions[module]:
            why = f"{module} was not importable when the suite ran"
        elif label == "faiss-hnsw":
            why = "the suite builds HNSW only at n = 10^6 and not in quick mode, or it was skipped"
        elif suite == "mih" and label in ("usearch", "numpy") and not any(
                (b.get("extra_info") or {}).get("data") in mih_report.TRAINED for b in run.by_suite.get("mih", [])):
            why = (f"the suite runs it on the trained data kinds only ({', '.join(mih_report.TRAINED)}), "
                   "and this file has none")
        else:
            why = "skipped or deselected in this run"
        out.append(f"- No `{label}` result ({description}) in this file: {why}.")
    return out


def flat_section(run: Run) -> List[str]:
    """``bench_flat.py``'s tables (``bench/ratios.py``'s renderers) and missing-peer notes."""
    entries = ratios.entries_from_json(run.subdoc("flat"))
    knn_labels = sorted({e.label for e in entries if e.kind == "knn"})
    ref = ratios.reference_label(entries)
    out = [f"### {SUITE_TITLES['flat']} (`{SUITES['flat']}`): `{run.path}`", ""]
    out += missing_notes(run, "flat", knn_labels)
    if out[-1] != "":
        out.append("")
    header, rows = ratios.ratio_rows(entries)
    if rows:
        out.append(f"Queries per second; `{ref} / X` is {ref}'s queries per second over X's, medians of "
                   f"the same run (> 1: {ref} faster)." if ref else
                   "Queries per second (no hamsearch result in this file: no ratios).")
        out += ["", markdown_table(header, rows, "r" * len(header)), ""]
    out += ratios.detail_tables(entries, "####")
    out += ["Build time: this suite does not record it (a flat index's build is a copy of the codes; "
            "see the MIH suite for `FlatIndex` build times).", ""]
    return out


def mih_section(run: Run) -> List[str]:
    """``bench_mih.py``'s tables (``bench/mih_report.py``'s renderers) and missing-peer notes."""
    rows = mih_report.rows_from_json(run.subdoc("mih"))
    labels = sorted({r.label for r in rows})
    out = [f"### {SUITE_TITLES['mih']} (`{SUITES['mih']}`): `{run.path}`", ""]
    out += mih_report.source_lines(rows)
    out += missing_notes(run, "mih", labels)
    if out[-1] != "":
        out.append("")
    h, body = mih_report.qps_table(rows)
    out += ["Queries per second; `mih / X` is `MIHIndex`'s queries per second over X's, medians of the "
            "same run (> 1: MIH faster). Recall at k of the approximate faiss indexes against the exact "
            "answer (a returned id counts when its distance is within the exact k-th distance); usearch's "
            "exact search and the numpy scan run on the trained data kinds only. "
            "`mih fallbacks`: queries of the batch that MIH answered with the flat scan. `batch`: queries "
            "per call; 1 and 4 are a stream of queries asked that many at a time, as a retrieval service "
            "asks (`MIHIndex` and `FlatIndex` only).", "",
            markdown_table(h, body, "lrrrr" + "r" * (len(h) - 5)), ""]
    h, body = mih_report.build_table(rows)
    out += ["#### Build time and memory per code (resident-set growth at build / n)", "",
            "MIH build time includes its first query (k = 1), which builds the tables.", "",
            markdown_table(h, body, "lrr" + "r" * (len(h) - 4) + "l"), ""]
    return out


def distributed_section(run: Run) -> List[str]:
    """``bench_distributed.py``: the sharded index against one ``FlatIndex``."""
    cells: Dict[Tuple[int, int, int, int], Dict[str, Dict[str, Any]]] = {}
    for b in run.by_suite.get("distributed", []):
        info = dict(b.get("extra_info") or {})
        info["_median"] = float(b["stats"]["median"])
        key = (int(info["nbits"]), int(info["n"]), int(info["k"]), int(info["nq"]))
        cells.setdefault(key, {})[str(info["kind"])] = info
    header = ["nbits", "n", "k", "batch", "FlatIndex threads", "FlatIndex q/s", "shards",
              "ShardedIndex q/s", "sharded / flat", "interleaved", "merge of 64 shards' top k"]
    body = []
    for key in sorted(cells, key=lambda t: (t[1], t[0], t[2], t[3])):
        nbits, n, k, nq = key
        c = cells[key]
        flat, sharded, merge = c.get("FlatIndex"), c.get("ShardedIndex"), c.get("merge_topk")
        fq = nq / flat["_median"] if flat else math.nan
        sq = nq / sharded["_median"] if sharded else math.nan
        inter = sharded.get("ratio_interleaved") if sharded else None
        body.append([str(nbits), fmt_n(n), str(k), str(nq),
                     str(flat.get("threads", "—")) if flat else "—", fmt_qps(fq),
                     str(sharded.get("shards", "—")) if sharded else "—", fmt_qps(sq),
                     fmt_ratio(sq / fq) if (flat and sharded) else "—",
                     fmt_ratio(float(inter)) if isinstance(inter, (int, float)) else "—",
                     ratios.fmt_seconds(merge["_median"]) if merge else "—"])
    return [f"### {SUITE_TITLES['distributed']} (`{SUITES['distributed']}`): `{run.path}`", "",
            "hamsearch against itself, no peers: `ShardedIndex` (one Ray actor and one thread a shard) "
            "over one `FlatIndex` on the same codes; `sharded / flat` is a ratio of medians, "
            "`interleaved` the median, over alternating rounds, of the flat time over the sharded time.", "",
            markdown_table(header, body, "r" * len(header)), ""]


def _ordered(labels: Sequence[str], table: Sequence[Tuple[Tuple[str, str], str]]) -> List[str]:
    """``labels`` in the column order of ``table``, unknown ones after it by name."""
    seen = set(labels)
    known = [label for _, label in table if label in seen]
    return known + sorted(seen - set(known))


def _same(values: Sequence[float]) -> bool:
    return all(math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-12) for v in values)


def ops_table(rows: Sequence[OpsRow], op: str) -> Tuple[List[str], List[List[str]], str]:
    """One op's table: ``(header, body, alignment)``.

    A row per (data, nbits, n, r, threads) (``r`` only for "radius"), in the
    MIH tables' order; the queries per second of each searcher; the best
    hamsearch index of the row and its queries per second over each peer's;
    the mean results per query of the exact searchers (one number when they
    agree); the recall of each approximate searcher. Where the file records
    them, MIH's fallbacks (queries of its batch the flat scan answered) follow
    the queries per second.
    """
    rows = [r for r in rows if r.op == op]
    labels = _ordered([r.label for r in rows], OPS_LABELS)
    own = {r.label for r in rows if r.hamsearch}
    peers = [label for label in labels if label not in own]
    approximate = [label for label in labels
                   if any(r.label == label and (not r.exact or r.recall is not None) for r in rows)]
    cells: Dict[Tuple[Any, ...], Dict[str, OpsRow]] = {}
    for r in rows:
        cells.setdefault(r.key, {})[r.label] = r
    key_cols = ["data", "nbits", "n"] + (["r"] if op == "radius" else []) + ["threads"]
    header = key_cols + [f"{label} q/s" for label in labels]
    align = "l" + "r" * (len(header) - 1)
    fallbacks = any(r.fallbacks is not None for r in rows)
    if fallbacks:
        header.append("mih fallbacks")
        align += "r"
    if own and peers:
        header += ["best hamsearch"] + [f"hamsearch / {label}" for label in peers]
        align += "l" + "r" * len(peers)
    header += ["results/query"] + [f"{label} recall" for label in approximate]
    align += "r" * (1 + len(approximate))
    body = []
    for key in sorted(cells, key=lambda t: mih_report.data_key(t[0]) + (t[2], t[1]) + tuple(t[3:])):
        c = cells[key]
        line = [str(key[0]), str(key[1]), fmt_n(key[2])] + [str(x) for x in key[3:]]
        line += [fmt_qps(c[label].qps) if label in c else "—" for label in labels]
        if fallbacks:
            e = c.get("mih")
            line.append(f"{e.fallbacks}/{e.nq}" if (e and e.fallbacks is not None) else "—")
        if own and peers:
            mine = [c[label] for label in labels if label in own and label in c and math.isfinite(c[label].qps)]
            best = max(mine, key=lambda r: r.qps) if mine else None
            line.append(best.label if best else "—")
            line += [fmt_ratio(best.qps / c[label].qps) if (best and label in c and c[label].qps > 0) else "—"
                     for label in peers]
        # Results per query of the exact searchers, compared only between
        # those that answered the same batch (a slow searcher's smaller
        # batch has a mean of its own); the largest batch's is shown.
        by_nq: Dict[int, List[float]] = {}
        for label in labels:
            if label in c and c[label].exact and c[label].results_per_query is not None:
                by_nq.setdefault(c[label].nq, []).append(float(c[label].results_per_query))
        counts = by_nq[max(by_nq)] if by_nq else []
        if not counts:
            line.append("—")
        elif all(_same(v) for v in by_nq.values()):
            line.append(fmt_qps(counts[0]))
        else:
            odd = next(v for v in by_nq.values() if not _same(v))
            line.append(f"{fmt_qps(min(odd))} to {fmt_qps(max(odd))} (exact searchers disagree)")
        line += [f"{c[label].recall:.3f}" if (label in c and c[label].recall is not None) else "—"
                 for label in approximate]
        body.append(line)
    return header, body, align


def ops_section(run: Run) -> List[str]:
    """``bench_ops.py``: a table per operation (radius search, full ranking),
    build time and memory per code, and missing-peer notes."""
    rows = ops_rows(run)
    out = [f"### {SUITE_TITLES['ops']} (`{SUITES['ops']}`): `{run.path}`", ""]
    out += missing_notes(run, "ops", sorted({r.label for r in rows}))
    if out[-1] != "":
        out.append("")
    out += ["Queries per second of radius search (every code within Hamming distance r of the query) and "
            "of full ranking (every code, ordered by distance); `hamsearch / X` is the queries per second "
            "of the row's fastest hamsearch index (`best hamsearch`) over X's, medians of the same run "
            "(> 1: hamsearch faster). `results/query`: the mean number of results a query returned, from "
            "the exact searchers (they agree). Recall of an approximate searcher: the fraction of the exact "
            "results it found.", ""]
    if any(r.fallbacks is not None for r in rows):
        out += ["`mih fallbacks`: queries of the batch that MIH answered with the flat scan (a radius "
                "whose probes alone would cost more than half a scan sends the whole batch there).", ""]
    for op in OPS:
        if any(r.op == op for r in rows):
            header, body, align = ops_table(rows, op)
            out += [f"#### {OP_TITLES[op]}", "", markdown_table(header, body, align), ""]
    built = [mih_report.Row(label=r.label, data=r.data, nbits=r.nbits, n=r.n, k=r.r or 0, threads=r.threads,
                            nq=r.nq, median=r.median, build_seconds=r.build_seconds,
                            memory_per_code=r.memory_per_code, recall=r.recall, fallbacks=None, params=r.params)
             for r in sorted(rows, key=lambda r: OPS.index(r.op))]
    if any(r.build_seconds is not None or r.memory_per_code is not None for r in built):
        h, body = mih_report.build_table(built, [label for _, label in OPS_LABELS])
        out += ["#### Build time and memory per code (resident-set growth at build / n)", "",
                "Of each searcher's first entry at each data kind, nbits and n (radius search before "
                "ranking).", "",
                markdown_table(h, body, "lrr" + "r" * (len(h) - 4) + "l"), ""]
    return out


def metrics_section(run: Run) -> List[str]:
    """``bench_metrics.py``: the one-pass evaluation against sorting, per data set."""
    groups: Dict[Tuple[str, int, int, int], List[Dict[str, Any]]] = {}
    for b in run.by_suite.get("metrics", []):
        info = dict(b.get("extra_info") or {})
        info["_median"] = float(b["stats"]["median"])
        groups.setdefault((str(info["data"]), int(info["nbits"]), int(info["n"]), int(info["nq"])), []).append(info)
    out = [f"### {SUITE_TITLES['metrics']} (`{SUITES['metrics']}`): `{run.path}`", "",
           "Seconds per evaluation of the whole query set (median of the rounds); `vs numpy` and `vs reference` "
           "are ratios of medians over the numpy argsort MAP@all (DCMH's `calc_map`, one query at a time) and "
           "over the previous implementation's same task; `interleaved` gives the medians over alternating "
           "rounds (the numpy baselines and the reference over the one-thread `map+tie`, and `all` over `map` "
           "alone).", ""]
    order = {"numpy-argsort": 0, "numpy-vectorised": 1, "reference": 2, "hamsearch": 3, "hamsearch-numba": 4}
    tasks = {"map": 0, "map+tie": 1, "all": 2}
    for (data, nbits, n, nq), infos in sorted(groups.items()):
        numpy_map = [i["_median"] for i in infos if i["implementation"] == "numpy-argsort"]
        reference = {str(i["task"]): i["_median"] for i in infos if i["implementation"] == "reference"}
        header = ["implementation", "task", "threads", "seconds", "vs numpy", "vs reference", "MAP", "interleaved"]
        body = []
        for i in sorted(infos, key=lambda i: (order.get(str(i["implementation"]), 9), tasks.get(str(i["task"]), 9),
                                              int(i["threads"]))):
            med = i["_median"]
            notes = []
            for key, label in (("numpy", "numpy"), ("vectorised", "vectorised")):
                if isinstance(i.get(f"speedup_vs_{key}_interleaved"), (int, float)):
                    notes.append(f"{label} {fmt_ratio(float(i[f'speedup_vs_{key}_interleaved']))}")
            if isinstance(i.get("speedup_vs_reference_interleaved"), (int, float)):
                notes.append(f"reference {fmt_ratio(float(i['speedup_vs_reference_interleaved']))}")
            if isinstance(i.get("all_over_map_interleaved"), (int, float)):
                notes.append(f"all/map {float(i['all_over_map_interleaved']):.2f}")
            ref = reference.get(str(i["task"]))
            body.append([str(i["implementation"]), str(i["task"]), str(i["threads"]), ratios.fmt_seconds(med),
                         fmt_ratio(numpy_map[0] / med) if numpy_map else "—",
                         fmt_ratio(ref / med) if ref else "—",
                         f"{float(i['map']):.6f}" if isinstance(i.get("map"), (int, float)) else "—",
                         ", ".join(notes) or "—"])
        out += [f"**{data}**, nbits={nbits}, {nq:,} queries x {n:,} items", "",
                markdown_table(header, body, "lllrrrrl"), ""]
    return out


SECTIONS: Dict[str, Callable[[Run], List[str]]] = {
    "flat": flat_section, "mih": mih_section, "ops": ops_section, "distributed": distributed_section,
    "metrics": metrics_section,
}


# -- plots ---------------------------------------------------------------------
@dataclass
class Plots:
    files: List[Tuple[str, Path]] = field(default_factory=list)  # (caption, path)
    notes: List[str] = field(default_factory=list)


def _figure_class() -> Tuple[Optional[Any], str]:
    """matplotlib's ``Figure`` (no pyplot, no global backend), or None and why."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        return None, f"matplotlib is not importable ({exc}); `pip install matplotlib` to get them"
    return Figure, ""


_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf")


def _label_order(suite: str, labels: Sequence[str]) -> List[str]:
    table = ratios.LABELS if suite == "flat" else OPS_LABELS if suite == "ops" else mih_report.LABELS
    return _ordered(labels, table)


def _plot_name(tag: str, suite: str, kind: str, data: str, threads: int, suites: set, taken: set) -> str:
    """``qps_vs_n_<file>_<data>_t<threads>.png``; the operation before the data
    for the ops suite, the suite where one file holds both the flat and the MIH
    suite; a name already taken gets ``-2``, ``-3``..."""
    part = re.sub(r"[^A-Za-z0-9_.-]+", "_", data) or "data"
    if suite == "ops":
        part = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', kind)}_{part}"
    elif len(suites & {"flat", "mih"}) > 1:
        part = f"{suite}_{part}"
    base = f"qps_vs_n_{tag}_{part}_t{threads}"
    name, i = f"{base}.png", 2
    while name in taken:
        name, i = f"{base}-{i}.png", i + 1
    taken.add(name)
    return name


def qps_vs_n_plots(run: Run, pts: Sequence[Point], plots_dir: Path, figure: Any, plots: Plots) -> None:
    """One figure per (suite, data, threads) of ``run``, and per operation in
    the ops suite: subplots over nbits x k (x r for radius search, nbits alone
    for ranking), queries per second against n, log-log, one line per index
    and peer."""
    groups: Dict[Tuple[str, str, str, int], List[Point]] = {}
    for p in pts:
        if p.kind != "single" and math.isfinite(p.qps) and p.qps > 0:
            groups.setdefault((p.suite, p.kind, p.data, p.threads), []).append(p)
    suites = {suite for suite, _, _, _ in groups}
    taken: set = set()
    for (suite, kind, data, threads), group in sorted(groups.items(), key=lambda kv: (
            _suite_order(kv[0][0]), KIND_ORDER.get(kv[0][1], len(KIND_ORDER)), kv[0][1],
            mih_report.data_key(kv[0][2]), kv[0][3])):
        ns_of: Dict[Tuple[int, int, str], set] = {}
        for p in group:
            ns_of.setdefault((p.nbits, p.k, p.label), set()).add(p.n)
        panels = sorted({(nb, k) for (nb, k, _), ns in ns_of.items() if len(ns) >= 2})
        name = _plot_name(run.tag, suite, kind, data, threads, suites, taken)
        what = f"{suite} {kind}" if suite == "ops" else suite
        title = OP_TITLES.get(kind, kind) if suite == "ops" else SUITE_TITLES[suite]
        if not panels:
            ns = sorted({p.n for p in group})
            plots.notes.append(f"`{name}` not drawn: `{run.path}` ({what}, {data}, {threads} thread"
                               f"{'s' if threads != 1 else ''}) has one n only ({', '.join(fmt_n(n) for n in ns)}).")
            continue
        nbits_list = sorted({nb for nb, _ in panels})
        ks = sorted({k for _, k in panels})
        labels = _label_order(suite, sorted({p.label for p in group}))
        colour = {label: _COLOURS[i % len(_COLOURS)] for i, label in enumerate(labels)}
        approximate = {p.label for p in group if p.recall is not None}
        # Fixed margins, not constrained layout: it costs a second draw.
        # at least 7 inches: the title is one line (ranking always has one column)
        width, height = max(3.4 * len(ks) + 0.9, 7.0), 2.5 * len(nbits_list) + 1.4
        fig = figure(figsize=(width, height))
        fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, top=1 - 0.55 / height,
                            bottom=1.05 / height, hspace=0.45, wspace=0.3)
        axes = fig.subplots(len(nbits_list), len(ks), squeeze=False, sharex=True)
        for i, nb in enumerate(nbits_list):
            for j, k in enumerate(ks):
                ax = axes[i][j]
                cell = [p for p in group if p.nbits == nb and p.k == k]
                for label in labels:
                    line = sorted((p.n, p.qps) for p in cell if p.label == label)
                    if line:
                        ax.plot([x for x, _ in line], [y for _, y in line], marker="o", color=colour[label],
                                label=label + (" (approximate)" if label in approximate else ""))
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(f"nbits={nb}" if kind == "rank" else
                             f"nbits={nb}, {'r' if kind == 'radius' else 'k'}={k}", fontsize=9)
                ax.grid(True, which="major", alpha=0.3)
                if i == len(nbits_list) - 1:
                    ax.set_xlabel("n (codes)")
                if j == 0:
                    ax.set_ylabel("queries / s")
        handles = [h for h in (next((line for ax in axes.flat for line in ax.get_lines()
                                     if line.get_label().split(" (")[0] == label), None) for label in labels)
                   if h is not None]
        fig.legend(handles, [h.get_label() for h in handles], loc="lower center",
                   ncols=min(len(handles), 5), fontsize=8, frameon=False)
        fig.suptitle(f"{title}, {data} codes, {threads} thread{'s' if threads != 1 else ''}: "
                     f"queries per second against n ({Path(run.path).name})", fontsize=10)
        path = plots_dir / name
        fig.savefig(path, dpi=90)
        plots.files.append((f"Queries per second against n: {title.lower()}, {data} codes, "
                            f"{threads} thread{'s' if threads != 1 else ''} (`{run.path}`)", path))


DATA_MARKERS = {"uniform": "o", "clustered": "^", "trained-synthetic": "s", "trained-wiki": "D"}
_SPARE_MARKERS = ("v", "P", "X", "*", "<", ">", "h", "p", "8", "d")


def data_markers(kinds: Sequence[str]) -> Dict[str, str]:
    """A matplotlib marker per data kind: fixed ones for the known kinds, the
    spare ones in turn for the others (distinct up to ten others)."""
    out = {data: DATA_MARKERS[data] for data in kinds if data in DATA_MARKERS}
    others = sorted((d for d in set(kinds) if d not in DATA_MARKERS), key=mih_report.data_key)
    out.update({data: _SPARE_MARKERS[i % len(_SPARE_MARKERS)] for i, data in enumerate(others)})
    return out


def speedup_points(pts: Sequence[Point]) -> List[Tuple[Point, float]]:
    """``(mih point, MIH q/s over FlatIndex q/s of the same row and run)`` for
    every MIH measurement that carries ``kth_distance_mean``."""
    flat = {(p.run, p.row): p for p in pts if p.suite == "mih" and p.label == "flat"}
    out = []
    for p in pts:
        if p.suite == "mih" and p.label == "mih" and p.kth_distance_mean is not None:
            f = flat.get((p.run, p.row))
            if f is not None and f.qps > 0 and math.isfinite(p.qps):
                out.append((p, p.qps / f.qps))
    return out


def speedup_plot(pts: Sequence[Point], plots_dir: Path, figure: Any, plots: Plots) -> None:
    """``mih_speedup_vs_kth_distance.png``: :func:`speedup_points` of every MIH file, one figure."""
    name = "mih_speedup_vs_kth_distance.png"
    if not any(p.suite == "mih" for p in pts):
        return
    pairs = speedup_points(pts)
    if not pairs:
        plots.notes.append(f"`{name}` not drawn: no MIH result with both `FlatIndex` in the same run and "
                           "`extra_info[\"kth_distance_mean\"]` (files written before `bench/bench_mih.py` "
                           "recorded it lack it).")
        return
    fig = figure(figsize=(7.5, 5.0))
    fig.subplots_adjust(left=0.11, right=0.97, top=0.88, bottom=0.11)
    ax = fig.subplots()
    widths = sorted({p.nbits for p, _ in pairs})
    colour = {nb: _COLOURS[i % len(_COLOURS)] for i, nb in enumerate(widths)}
    kinds = sorted({p.data for p, _ in pairs}, key=mih_report.data_key)
    markers = data_markers(kinds)
    for data in kinds:
        for nb in widths:
            sel = [(p, s) for p, s in pairs if p.data == data and p.nbits == nb]
            if sel:
                ax.scatter([p.kth_distance_mean for p, _ in sel], [s for _, s in sel], s=28,
                           marker=markers[data], color=colour[nb], alpha=0.8,
                           label=f"{data}, {nb} bits")
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_yscale("log")
    ax.set_xlabel("mean Hamming distance to the exact k-th neighbour")
    ax.set_ylabel("MIHIndex q/s / FlatIndex q/s (same run)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Speed-up of exact multi-index hashing over the flat scan\n"
                 "(every n, k and thread count of the MIH suite)", fontsize=10)
    path = plots_dir / name
    fig.savefig(path, dpi=90)
    plots.files.append(("Speed-up of `MIHIndex` over `FlatIndex` against the mean distance to the k-th "
                        "neighbour", path))


def make_plots(runs: Sequence[Run], all_points: Dict[str, List[Point]], plots_dir: Path) -> Plots:
    """Draw every plot into ``plots_dir`` (created); without matplotlib, a note."""
    plots = Plots()
    figure, why = _figure_class()
    if figure is None:
        plots.notes.append(f"Plots skipped: {why}.")
        return plots
    plots_dir.mkdir(parents=True, exist_ok=True)
    for run in runs:
        qps_vs_n_plots(run, all_points[run.path], plots_dir, figure, plots)
    speedup_plot([p for run in runs for p in all_points[run.path]], plots_dir, figure, plots)
    return plots


# -- the whole section -------------------------------------------------------------
def render(runs: Sequence[Run], plots: Optional[Plots], readme_dir: Path, command: str,
           all_points: Optional[Dict[str, List[Point]]] = None) -> str:
    """The Markdown between the markers (without them).

    Parameters
    ----------
    runs : sequence of Run
        The files, in the order given.
    plots : Plots or None
        The drawn plots and notes; None when plots were not asked for.
    readme_dir : Path
        Directory of the README: plot links are relative to it.
    command : str
        The command that produced the section, stated in it.
    all_points : dict, optional
        ``points(run)`` by ``run.path``, when already computed.
    """
    if all_points is None:
        all_points = {run.path: points(run) for run in runs}
    out = ["## Benchmark report", "",
           f"Generated by `{command}` from the pytest-benchmark JSON files below; "
           "everything between the `report:begin` and `report:end` markers is rewritten on each run.", "",
           "### Runs", ""]
    for run in runs:
        out += run_header(run)
    losses = not_ahead([p for run in runs for p in all_points[run.path]])
    out += ["### Rows where hamsearch is not ahead of every peer", "",
            "Every row of the tables below where a peer, exact or approximate, answers at least as many "
            "queries per second as hamsearch's best index of that row (`FlatIndex` or its Numba backend in "
            "the flat suite, `MIHIndex` or `FlatIndex` in the MIH suite, `FlatIndex`, `MIHIndex` or "
            "`ShardedIndex` in the radius and ranking suite), with the peer's recall (at k, or of the "
            "radius results) where it is approximate.", ""]
    compared = [p for pts in all_points.values() for p in pts]
    if losses:
        out += [losses_table(losses), ""]
    elif compared:
        out += ["None: in every row hamsearch's best index answers more queries per second than every peer.", ""]
    else:
        out += ["No suite with peers in these files.", ""]
    for run in runs:
        for suite in SUITES:
            if run.by_suite.get(suite):
                out += SECTIONS[suite](run)
    out += ["### Plots", ""]
    if plots is None:
        out += ["Plots not drawn in this run of the report (`--no-plots`).", ""]
    else:
        for caption, path in plots.files:
            rel = Path(os.path.relpath(path, readme_dir)).as_posix()
            out += [f"**{caption}**", "", f"![{path.name}]({rel})", ""]
        out += [f"- {note}" for note in plots.notes]
        if not plots.files and not plots.notes:
            out.append("No plot applies to these files.")
        out.append("")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out)


def splice(text: str, section: str) -> str:
    """``text`` with ``section`` between its marker lines, or appended at the
    end within new markers; every character outside the markers is kept.

    Parameters
    ----------
    text : str
        The README, read with ``newline=""`` (line endings as they are).
    section : str
        The Markdown to put between the markers, ``\\n`` line endings.

    Raises
    ------
    ReportError
        If the markers are not one begin line followed by one end line.
    """
    nl = "\r\n" if "\r\n" in text else "\n"
    body = section.replace("\n", nl)
    begins, ends = list(_BEGIN_RE.finditer(text)), list(_END_RE.finditer(text))
    if not begins and not ends:
        if text and not text.endswith(("\n", "\r")):
            text += nl
        sep = nl if text and not text.endswith(nl + nl) else ""
        return f"{text}{sep}{BEGIN}{nl}{body}{nl}{END}{nl}"
    if len(begins) != 1 or len(ends) != 1 or ends[0].start() < begins[0].end():
        order = " (the end line first)" if len(begins) == 1 == len(ends) else ""
        raise ReportError(f"expected one line {BEGIN} followed by one line {END} in the README, got "
                          f"{len(begins)} begin and {len(ends)} end lines{order}")
    return text[: begins[0].end()] + nl + body + nl + text[ends[0].start():]


def write_readme(readme: Path, section: str) -> bool:
    """Put ``section`` between the markers of ``readme``; True if the file changed.

    Raises
    ------
    ReportError
        If the README does not exist or its markers are malformed.
    """
    try:
        with open(readme, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ReportError(f"expected an existing README at {readme}, got no such file "
                          "(create it, or pass --readme PATH or --stdout)") from None
    new = splice(text, section)
    if new == text:
        return False
    tmp = readme.with_name(readme.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(new)
    os.replace(tmp, readme)
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``python -m bench.report JSON [JSON ...] [options]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", help="pytest-benchmark --benchmark-json files of the bench suites")
    parser.add_argument("--readme", default=None,
                        help=f"README to write the section into (default {os.path.relpath(DEFAULT_README)})")
    parser.add_argument("--plots-dir", default=None,
                        help=f"directory of the PNG plots (default {os.path.relpath(DEFAULT_PLOTS)})")
    parser.add_argument("--stdout", action="store_true",
                        help="print the section to standard output and leave the README alone")
    parser.add_argument("--no-plots", action="store_true", help="draw no plots")
    args = parser.parse_args(argv)
    readme = Path(args.readme) if args.readme else DEFAULT_README
    plots_dir = Path(args.plots_dir) if args.plots_dir else DEFAULT_PLOTS
    shown = list(sys.argv[1:] if argv is None else argv)
    command = "python -m bench.report " + shlex.join(shown)
    try:
        runs = load_runs(args.json)
        all_points = {run.path: points(run) for run in runs}
        plots = None if args.no_plots else make_plots(runs, all_points, plots_dir)
        section = render(runs, plots, readme.resolve().parent, command, all_points)
        if args.stdout:
            print(section)
            return 0
        changed = write_readme(readme, section)
    except ReportError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    n_plots = len(plots.files) if plots else 0
    print(f"report: {'wrote' if changed else 'unchanged'} {readme} "
          f"({sum(len(r.doc['benchmarks']) for r in runs)} benchmarks from {len(runs)} file{'' if len(runs) == 1 else 's'}, "
          f"{n_plots} plot{'' if n_plots == 1 else 's'} in {plots_dir})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
