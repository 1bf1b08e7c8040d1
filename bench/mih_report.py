"""Tables from a pytest-benchmark JSON file of ``bench/bench_mih.py``.

    python -m bench.mih_report bench/results/mih.json [--out table.md]

Prints Markdown: the source of each data kind that records one (the trained
kinds), then for every (data, nbits, n, k, threads, batch) the queries per
second (batch: queries per call, ``all`` for the whole batch at once, 1 or 4
for the small-batch cases, a stream of queries asked that many at a time) of
hamsearch's MIHIndex (and how many of the batch's queries fell back to the flat
scan), FlatIndex, faiss IndexBinaryFlat, IndexBinaryMultiHash and
IndexBinaryHNSW (with their recall at k against the exact answer), usearch's
exact search and the numpy scan (on the trained kinds only), MIH's ratio to
each (a ratio of medians, > 1: MIH faster); then build time and memory per
code. Data kinds in the order uniform, clustered, trained-synthetic,
trained-wiki, then any other by name. Needs only the standard library.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from bench.ratios import fmt_n, fmt_qps, fmt_ratio, markdown_table

LABELS: Tuple[Tuple[Tuple[str, str], str], ...] = (
    (("hamsearch", "mih"), "mih"),
    (("hamsearch", "flat"), "flat"),
    (("faiss", "IndexBinaryFlat"), "faiss-flat"),
    (("faiss", "IndexBinaryMultiHash"), "faiss-multihash"),
    (("faiss", "IndexBinaryHNSW"), "faiss-hnsw"),
    (("usearch", "exact"), "usearch"),
    (("numpy", "scan"), "numpy"),
)
REFERENCE = "mih"
DATA_ORDER = {"uniform": 0, "clustered": 1, "trained-synthetic": 2, "trained-wiki": 3}
# data kinds whose codes come from the trainer (only they run usearch and numpy)
TRAINED = ("trained-synthetic", "trained-wiki")


def data_key(data: str) -> Tuple[int, str]:
    """Sort key of a data kind: :data:`DATA_ORDER`, then any other by name."""
    return (DATA_ORDER.get(data, len(DATA_ORDER)), data)


@dataclass(frozen=True)
class Row:
    label: str
    data: str
    nbits: int
    n: int
    k: int
    threads: int
    nq: int
    median: float
    build_seconds: Optional[float]
    memory_per_code: Optional[float]
    recall: Optional[float]
    fallbacks: Optional[int]
    params: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    source: Optional[str] = field(default=None, compare=False)  # extra_info["source"]: where the codes came from
    batch: int = 0  # queries per call (extra_info["batch"]); 0: the whole batch in one call

    @property
    def qps(self) -> float:
        return self.nq / self.median if self.median > 0 else math.nan


def _label(library: str, variant: str) -> str:
    for key, label in LABELS:
        if key == (library, variant):
            return label
    return f"{library}-{variant}"


def _opt(info: Dict[str, Any], key: str, cast=float):
    v = info.get(key)
    return cast(v) if v is not None else None


SUITE = "bench_mih.py"
REQUIRED = ("library", "data", "nbits", "n", "k", "threads")


def _from_suite(bench: Dict[str, Any]) -> bool:
    """Whether a benchmark entry comes from ``bench/bench_mih.py``: a
    whole-suite JSON (``python -m bench``) holds every suite's entries, and the
    radius and ranking entries of the others carry no ``k``."""
    fullname = str(bench.get("fullname", ""))
    return not fullname or fullname.split("::")[0].rsplit("/", 1)[-1] == SUITE


def rows_from_json(doc: Dict[str, Any]) -> List[Row]:
    out = []
    for b in doc.get("benchmarks", []):
        info = b.get("extra_info") or {}
        stats = b.get("stats") or {}
        if not _from_suite(b) or any(key not in info for key in REQUIRED) or "median" not in stats:
            continue
        out.append(Row(
            label=_label(str(info["library"]), str(info.get("variant", info.get("backend", "")))),
            data=str(info["data"]), nbits=int(info["nbits"]), n=int(info["n"]), k=int(info["k"]),
            threads=int(info["threads"]), nq=int(info.get("nq", 1)), median=float(stats["median"]),
            build_seconds=_opt(info, "build_seconds"), memory_per_code=_opt(info, "memory_bytes_per_code"),
            recall=_opt(info, "recall_at_k"), fallbacks=_opt(info, "mih_fallbacks", int),
            params=dict(info.get("params") or {}),
            source=" ".join(str(info["source"]).split()) if info.get("source") else None,
            batch=int(info.get("batch") or 0),
        ))
    return out


def sources(rows: Sequence[Row]) -> List[Tuple[str, str]]:
    """``(data, source)`` for each distinct source text of each data kind, data
    kinds in :func:`data_key` order, texts in the order first met."""
    seen: Dict[str, List[str]] = {}
    for r in rows:
        if r.source and r.source not in seen.setdefault(r.data, []):
            seen[r.data].append(r.source)
    return [(data, text) for data in sorted(seen, key=data_key) for text in seen[data]]


def source_lines(rows: Sequence[Row]) -> List[str]:
    """:func:`sources` as Markdown bullets, ``- Data: trained-wiki: ...``, then
    a blank line; nothing when no row records a source."""
    found = sources(rows)
    return [f"- Data: {data}: {text}" for data, text in found] + [""] if found else []


def _labels(rows: Sequence[Row], order: Optional[Sequence[str]] = None) -> List[str]:
    seen = {r.label for r in rows}
    known = [label for label in (order if order is not None else [lb for _, lb in LABELS]) if label in seen]
    return known + sorted(seen - set(known))


def _sortkey(key: Tuple) -> Tuple:
    data, nbits, n = key[:3]
    return data_key(data) + (n, nbits) + tuple(key[3:])


def qps_table(rows: Sequence[Row]) -> Tuple[List[str], List[List[str]]]:
    labels = _labels(rows)
    cells: Dict[Tuple, Dict[str, Row]] = {}
    for r in rows:
        cells.setdefault((r.data, r.nbits, r.n, r.k, r.threads, r.batch), {})[r.label] = r
    header = ["data", "nbits", "n", "k", "threads", "batch"]
    for label in labels:
        header.append(f"{label} q/s")
        if label == REFERENCE:
            header.append("mih fallbacks")
        if label in ("faiss-multihash", "faiss-hnsw"):
            header.append(f"{label} recall")
        if label != REFERENCE and REFERENCE in labels:
            header.append(f"mih / {label}")
    out = []
    for key in sorted(cells, key=_sortkey):
        data, nbits, n, k, threads, batch = key
        c = cells[key]
        ref = c.get(REFERENCE)
        row = [data, str(nbits), fmt_n(n), str(k), str(threads), str(batch) if batch else "all"]
        for label in labels:
            e = c.get(label)
            row.append(fmt_qps(e.qps) if e else "—")
            if label == REFERENCE:
                row.append(f"{e.fallbacks}/{e.nq}" if (e and e.fallbacks is not None) else "—")
            if label in ("faiss-multihash", "faiss-hnsw"):
                row.append(f"{e.recall:.3f}" if (e and e.recall is not None) else "—")
            if label != REFERENCE and REFERENCE in labels:
                row.append(fmt_ratio(ref.qps / e.qps) if (e and ref) else "—")
        out.append(row)
    return header, out


def build_table(rows: Sequence[Row], order: Optional[Sequence[str]] = None) -> Tuple[List[str], List[List[str]]]:
    """Build time and memory per code of each label, one row per (data, nbits,
    n) (the first row of each label there); columns in ``order`` (default
    :data:`LABELS`' order), unknown labels after it by name."""
    labels = _labels(rows, order)
    cells: Dict[Tuple, Dict[str, Row]] = {}
    for r in rows:
        cells.setdefault((r.data, r.nbits, r.n), {}).setdefault(r.label, r)
    header = ["data", "nbits", "n"]
    for label in labels:
        header += [f"{label} build", f"{label} B/code"]
    header.append("parameters")
    out = []
    for key in sorted(cells, key=_sortkey):
        data, nbits, n = key
        c = cells[key]
        row = [data, str(nbits), fmt_n(n)]
        params = []
        for label in labels:
            e = c.get(label)
            row.append(f"{e.build_seconds:.2f} s" if (e and e.build_seconds is not None) else "—")
            row.append(f"{e.memory_per_code:.1f}" if (e and e.memory_per_code is not None) else "—")
            if e and e.params:
                params.append(f"{label}: " + ", ".join(f"{k}={v}" for k, v in e.params.items()))
        row.append("; ".join(params) or "—")
        out.append(row)
    return header, out


def machine_line(doc: Dict[str, Any], rows: Sequence[Row]) -> str:
    mi = doc.get("machine_info") or {}
    cpu = mi.get("cpu") or {}
    parts = [str(cpu.get("brand_raw") or mi.get("processor") or "unknown CPU")]
    if cpu.get("count"):
        parts.append(f"{cpu['count']} logical CPUs")
    isas = sorted({str((b.get("extra_info") or {}).get("isa")) for b in doc.get("benchmarks", [])
                   if (b.get("extra_info") or {}).get("library") == "hamsearch"})
    if isas:
        parts.append("hamsearch isa " + "/".join(isas))
    if doc.get("datetime"):
        parts.append(str(doc["datetime"]))
    commit = (doc.get("commit_info") or {}).get("id")
    if commit:
        parts.append("commit " + str(commit)[:10])
    loads = [float((b.get("extra_info") or {})["loadavg_1min"]) for b in doc.get("benchmarks", [])
             if (b.get("extra_info") or {}).get("loadavg_1min") is not None]
    if loads:
        parts.append(f"1-min load average during the run {min(loads):.2f} to {max(loads):.2f}")
    batches = sorted({r.nq for r in rows})
    parts.append("batch " + ", ".join(str(x) for x in batches) + " queries")
    return "; ".join(parts)


def render(doc: Dict[str, Any], rows: Sequence[Row]) -> str:
    out = [f"Machine: {machine_line(doc, rows)}", ""] + source_lines(rows)
    out += ["### Queries per second, recall and ratios of medians", "",
           "`mih / X`: MIH queries/s divided by X's (> 1: MIH faster). Recall at k of the "
           "approximate faiss indexes against the exact answer (a returned id counts when its "
           "distance is within the exact k-th distance). `mih fallbacks`: queries of the batch "
           "that MIH answered with the flat scan.", ""]
    h, r = qps_table(rows)
    out += [markdown_table(h, r, "lrrrr" + "r" * (len(h) - 5)), ""]
    out += ["Batch 1 and 4: a stream of queries asked that many at a time, as a retrieval service asks "
            "(MIHIndex and FlatIndex only).", ""]
    h, r = build_table(rows)
    out += ["### Build time and memory per code (resident-set growth at build / n)", "",
            "MIH build time includes its first query (k = 1), which builds the tables.", "",
            markdown_table(h, r, "lrr" + "r" * (len(h) - 4) + "l"), ""]
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mih_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("json", help="a --benchmark-json file written by bench/bench_mih.py")
    parser.add_argument("--out", help="also write the Markdown to this file")
    args = parser.parse_args(argv)
    try:
        with open(args.json) as fh:
            doc = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"mih_report: could not read {args.json}: {exc}", file=sys.stderr)
        return 2
    rows = rows_from_json(doc)
    if not rows:
        print(f"mih_report: {args.json} has no bench_mih.py benchmarks", file=sys.stderr)
        return 1
    text = render(doc, rows)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
