"""Ratio tables from a pytest-benchmark JSON file of ``bench/bench_flat.py``.

    python -m bench.ratios bench/results/flat.json [--out table.md]
    python bench/ratios.py bench/results/flat.json

Prints Markdown: for every (nbits, n, k, threads) the queries per second of
each searcher and hamsearch's ratio to it (a ratio of the medians:
``(nq_h / median_h) / (nq_p / median_p)``; above 1 means hamsearch is faster),
the single-query latency against the memory-bandwidth floor, the batch sizes,
and the memory per code. Needs only the standard library.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

# Column order and labels; "hamsearch" is the native backend.
LABELS: Tuple[Tuple[Tuple[str, str], str], ...] = (
    (("hamsearch", "native"), "hamsearch"),
    (("hamsearch", "numba"), "hamsearch-numba"),
    (("faiss", "IndexBinaryFlat"), "faiss"),
    (("usearch", "exact"), "usearch"),
    (("numpy", "scan"), "numpy"),
)
REFERENCE = "hamsearch"
FALLBACK_REFERENCE = "hamsearch-numba"


@dataclass(frozen=True)
class Entry:
    """One benchmark of the JSON file, reduced to what the tables need."""

    name: str
    label: str
    kind: str
    nbits: int
    n: int
    k: int
    threads: int
    nq: int
    median: float  # seconds per round (one batch of nq queries)
    isa: str
    memory_per_code: Optional[float]
    bytes_scanned: Optional[int]
    # The interleaved pair cases' own figures (kind "pair"): both medians,
    # their ratio and faiss's level.
    pair: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def qps(self) -> float:
        return self.nq / self.median if self.median > 0 else math.nan


def _label(library: str, backend: str) -> str:
    for key, label in LABELS:
        if key == (library, backend):
            return label
    return f"{library}-{backend}" if backend else library


def entries_from_json(doc: Dict[str, Any]) -> List[Entry]:
    """Every benchmark of a pytest-benchmark JSON document that carries the
    suite's extra_info (others are ignored)."""
    out = []
    for b in doc.get("benchmarks", []):
        info = b.get("extra_info") or {}
        stats = b.get("stats") or {}
        if "library" not in info or "median" not in stats:
            continue
        if "data" in info or "threads" not in info:  # bench_mih.py (see mih_report.py), bench_distributed.py merge
            continue
        kind = str(info.get("kind", "knn"))
        library, backend = str(info["library"]), str(info.get("backend", ""))
        out.append(
            Entry(
                name=str(b.get("name", "")),
                label=kind if kind in ("floor", "compute") else _label(library, backend),
                kind=kind,
                nbits=int(info["nbits"]),
                n=int(info["n"]),
                k=int(info["k"]),
                threads=int(info["threads"]),
                nq=int(info.get("nq", 1)),
                median=float(stats["median"]),
                isa=str(info.get("isa", "")),
                memory_per_code=(float(info["memory_bytes_per_code"])
                                 if info.get("memory_bytes_per_code") is not None else None),
                bytes_scanned=int(info["bytes_scanned"]) if info.get("bytes_scanned") is not None else None,
                pair={key: info[key] for key in ("hamsearch_median_s", "faiss_median_s", "ratio", "faiss_isa")
                      if key in info} if kind == "pair" else {},
            )
        )
    return out


def load(path: str) -> Tuple[Dict[str, Any], List[Entry]]:
    with open(path) as fh:
        doc = json.load(fh)
    return doc, entries_from_json(doc)


# -- formatting ----------------------------------------------------------------
def fmt_n(n: int) -> str:
    exp = round(math.log10(n)) if n > 0 else 0
    return f"10^{exp}" if 10**exp == n else f"{n:,}"


def fmt_qps(x: float) -> str:
    if not math.isfinite(x):
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ratio(x: float) -> str:
    if not math.isfinite(x):
        return "—"
    return f"{x:.2f}×" if x < 10 else f"{x:.1f}×" if x < 100 else f"{x:,.0f}×"


def fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "—"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: Optional[str] = None) -> str:
    rows = [list(r) for r in rows]
    align = align or ("l" * len(header))
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# -- tables --------------------------------------------------------------------
def _present_labels(entries: Sequence[Entry]) -> List[str]:
    seen = {e.label for e in entries}
    known = [label for _, label in LABELS if label in seen]
    return known + sorted(seen - set(known) - {"floor", "compute"})


def reference_label(entries: Sequence[Entry]) -> Optional[str]:
    labels = {e.label for e in entries if e.kind == "knn"}
    if REFERENCE in labels:
        return REFERENCE
    if FALLBACK_REFERENCE in labels:
        return FALLBACK_REFERENCE
    return None


def ratio_rows(entries: Sequence[Entry]) -> Tuple[List[str], List[List[str]]]:
    """Rows of the main table: (nbits, n, k, threads), queries/s per searcher,
    and the reference's ratio to each other searcher."""
    knn = [e for e in entries if e.kind == "knn"]
    ref = reference_label(knn)
    labels = _present_labels(knn)
    by_key: Dict[Tuple[int, int, int, int], Dict[str, Entry]] = {}
    for e in knn:
        by_key.setdefault((e.nbits, e.n, e.k, e.threads), {})[e.label] = e
    header = ["nbits", "n", "k", "threads"]
    for label in labels:
        header.append(f"{label} q/s")
        if ref is not None and label != ref:
            header.append(f"{ref} / {label}")
    rows = []
    for key in sorted(by_key, key=lambda t: (t[1], t[0], t[2], t[3])):
        nbits, n, k, threads = key
        cell = by_key[key]
        r = cell.get(ref) if ref is not None else None
        row = [str(nbits), fmt_n(n), str(k), str(threads)]
        for label in labels:
            e = cell.get(label)
            row.append(fmt_qps(e.qps) if e else "—")
            if ref is not None and label != ref:
                row.append(fmt_ratio(r.qps / e.qps) if (e and r) else "—")
        rows.append(row)
    return header, rows


def pair_rows(entries: Sequence[Entry]) -> Tuple[List[str], List[List[str]]]:
    """hamsearch against faiss with their rounds interleaved (kind "pair"):
    each one's median, the ratio, and the level each ran at."""
    header = ["nbits", "n", "k", "threads", "batch", "hamsearch isa", "faiss", "hamsearch q/s", "faiss q/s",
              "hamsearch / faiss"]
    rows = []
    for e in sorted((e for e in entries if e.kind == "pair" and "ratio" in e.pair),
                    key=lambda e: (e.n, e.nbits, e.k, e.threads)):
        hs_s, faiss_s = float(e.pair["hamsearch_median_s"]), float(e.pair["faiss_median_s"])
        rows.append([str(e.nbits), fmt_n(e.n), str(e.k), str(e.threads), str(e.nq), e.isa or "—",
                     str(e.pair.get("faiss_isa", "—")), fmt_qps(e.nq / hs_s), fmt_qps(e.nq / faiss_s),
                     fmt_ratio(float(e.pair["ratio"]))])
    return header, rows


def floor_rows(entries: Sequence[Entry]) -> Tuple[List[str], List[List[str]]]:
    """One row per (nbits, n, threads) with a floor measurement: one-query
    latency of each searcher, the time to read the codes once, and the ratio."""
    floors = {(e.nbits, e.n, e.threads): e for e in entries if e.kind == "floor"}
    singles: Dict[Tuple[int, int, int], Dict[str, Entry]] = {}
    for e in entries:
        if e.kind == "single":
            singles.setdefault((e.nbits, e.n, e.threads), {})[e.label] = e
    labels = _present_labels([e for d in singles.values() for e in d.values()])
    header = ["nbits", "n", "threads", "bytes scanned", "floor (read once)", "bandwidth"]
    for label in labels:
        header += [f"{label} 1 query", f"{label} / floor"]
    rows = []
    for key in sorted(set(floors) | set(singles), key=lambda t: (t[1], t[0], t[2])):
        nbits, n, threads = key
        f = floors.get(key)
        nbytes = f.bytes_scanned if f and f.bytes_scanned else None
        row = [str(nbits), fmt_n(n), str(threads),
               f"{nbytes / 1e6:,.0f} MB" if nbytes else "—",
               fmt_seconds(f.median) if f else "—",
               f"{nbytes / f.median / 1e9:.1f} GB/s" if (f and nbytes) else "—"]
        for label in labels:
            s = singles.get(key, {}).get(label)
            per_query = s.median / s.nq if s else math.nan
            row.append(fmt_seconds(per_query) if s else "—")
            row.append(fmt_ratio(per_query / f.median) if (s and f) else "—")
        rows.append(row)
    return header, rows


def compute_bounds(entries: Sequence[Entry]) -> Dict[Tuple[int, int], float]:
    """(nbits, threads) -> comparisons per second of the cache-resident native
    scan (the ``compute`` cases): the popcount compute bound."""
    return {(e.nbits, e.threads): e.nq * e.n / e.median
            for e in entries if e.kind == "compute" and e.median > 0}


def ceiling_rows(entries: Sequence[Entry]) -> Tuple[List[str], List[List[str]]]:
    """Batch k-NN of the reference against the hardware's compute bound.

    A batch is compute-bound (the blocked scan reads the codes once per block
    of queries, not once per query), so its ceiling is the compute bound
    divided by n: the queries per second of a scan running at the cache-resident
    comparison rate. One row per (nbits, n, k, threads) with both numbers.
    """
    bounds = compute_bounds(entries)
    ref = reference_label(entries)
    header = ["nbits", "n", "k", "threads", "compute bound (comparisons/s)", "ceiling q/s",
              f"{ref} q/s", f"{ref} / ceiling"]
    rows = []
    for e in sorted((e for e in entries if e.kind == "knn" and e.label == ref),
                    key=lambda e: (e.n, e.nbits, e.k, e.threads)):
        cps = bounds.get((e.nbits, e.threads))
        if cps is None:
            continue
        ceiling = cps / e.n
        rows.append([str(e.nbits), fmt_n(e.n), str(e.k), str(e.threads), f"{cps / 1e9:.2f} G",
                     fmt_qps(ceiling), fmt_qps(e.qps), f"{e.qps / ceiling:.0%}"])
    return header, rows


def batch_rows(entries: Sequence[Entry]) -> Tuple[List[str], List[List[str]]]:
    """Batch sizes (queries per timed round) by n and searcher."""
    knn = [e for e in entries if e.kind == "knn"]
    labels = _present_labels(knn)
    sizes: Dict[int, Dict[str, set]] = {}
    for e in knn:
        sizes.setdefault(e.n, {}).setdefault(e.label, set()).add(e.nq)
    rows = []
    for n in sorted(sizes):
        row = [fmt_n(n)]
        for label in labels:
            s = sizes[n].get(label)
            row.append(", ".join(str(x) for x in sorted(s)) if s else "—")
        rows.append(row)
    return ["n"] + labels, rows


def memory_rows(entries: Sequence[Entry]) -> Tuple[List[str], List[List[str]]]:
    """Memory per code the searcher added (RSS growth at build / n)."""
    knn = [e for e in entries if e.kind == "knn" and e.memory_per_code is not None]
    labels = _present_labels(knn)
    mem: Dict[Tuple[int, int], Dict[str, float]] = {}
    for e in knn:
        d = mem.setdefault((e.nbits, e.n), {})
        d[e.label] = max(d.get(e.label, 0.0), float(e.memory_per_code or 0.0))
    rows = []
    for key in sorted(mem, key=lambda t: (t[1], t[0])):
        nbits, n = key
        rows.append([str(nbits), fmt_n(n)] + [
            f"{mem[key][label]:.1f}" if label in mem[key] else "—" for label in labels
        ])
    return ["nbits", "n"] + [f"{label} B/code" for label in labels], rows


def machine_line(doc: Dict[str, Any], entries: Sequence[Entry]) -> str:
    mi = doc.get("machine_info") or {}
    cpu = mi.get("cpu") or {}
    brand = cpu.get("brand_raw") or mi.get("processor") or "unknown CPU"
    cores = cpu.get("count")
    isas = sorted({e.isa for e in entries if e.label == REFERENCE and e.isa})
    commit = (doc.get("commit_info") or {}).get("id")
    parts = [str(brand)]
    if cores:
        parts.append(f"{cores} logical CPUs")
    if isas:
        parts.append("hamsearch isa " + "/".join(isas))
    if mi.get("python_version"):
        parts.append("Python " + str(mi["python_version"]))
    if doc.get("datetime"):
        parts.append(str(doc["datetime"]))
    if commit:
        parts.append("commit " + str(commit)[:10])
    loads = [float((b.get("extra_info") or {})["loadavg_1min"]) for b in doc.get("benchmarks", [])
             if (b.get("extra_info") or {}).get("loadavg_1min") is not None]
    if loads:
        parts.append(f"1-min load average during the run {min(loads):.2f} to {max(loads):.2f}")
    return "; ".join(parts)


def render(doc: Dict[str, Any], entries: Sequence[Entry]) -> str:
    """The whole Markdown report."""
    ref = reference_label(entries)
    out = [f"Machine: {machine_line(doc, entries)}", ""]
    header, rows = ratio_rows(entries)
    out += ["### Queries per second and ratios of medians", ""]
    if ref is None:
        out.append("(no hamsearch case in this file: ratios omitted)")
        out.append("")
    else:
        out.append(f"Ratio columns: {ref} queries/s divided by the peer's (> 1: {ref} faster).")
        out.append("")
    out += [markdown_table(header, rows, "rrrr" + "r" * (len(header) - 4)), ""]
    out += detail_tables(entries, "###")
    return "\n".join(out)


def detail_tables(entries: Sequence[Entry], heading: str) -> List[str]:
    """The tables beside the ratio table, each under a ``heading`` (``"###"``,
    ``"####"``...) title with its caption, as Markdown lines: the one-query
    bandwidth floor, the batch against the compute bound, the batch sizes and
    the memory per code; a table without rows is left out."""
    parts = [
        ("hamsearch against faiss IndexBinaryFlat, rounds interleaved",
         "One batch of each a round, the order alternating, so that both see the same load; "
         "the ratio is faiss's median time over hamsearch's.", pair_rows(entries)),
        ("One query against the memory-bandwidth floor",
         "Floor: the time to read every code once with the same threads; "
         "`/ floor` is the one-query time divided by it (1 is the floor).", floor_rows(entries)),
        ("Batch k-NN against the popcount compute bound",
         "Compute bound: the scan kernel's comparisons per second, with no selection, over 128 KiB "
         "of cache-resident codes, same width and threads (the hardware's other ceiling besides the "
         "read bandwidth); the ceiling is that rate over n.", ceiling_rows(entries)),
        ("Batch sizes (queries per timed round)", None, batch_rows(entries)),
        ("Memory per code (resident-set growth at build / n)", None, memory_rows(entries)),
    ]
    out: List[str] = []
    for title, caption, (header, rows) in parts:
        if rows:
            out += [f"{heading} {title}", ""] + ([caption, ""] if caption else [])
            out += [markdown_table(header, rows, "r" * len(header)), ""]
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ratios", description=__doc__.split("\n\n")[0])
    parser.add_argument("json", help="a --benchmark-json file written by bench/bench_flat.py")
    parser.add_argument("--out", help="also write the Markdown to this file")
    args = parser.parse_args(argv)
    try:
        doc, entries = load(args.json)
    except (OSError, json.JSONDecodeError) as exc:
        print(f"ratios: could not read {args.json}: {exc}", file=sys.stderr)
        return 2
    if not entries:
        print(f"ratios: {args.json} has no bench_flat.py benchmarks (no extra_info.library; "
              "for bench_mih.py results use python -m bench.mih_report)", file=sys.stderr)
        return 1
    text = render(doc, entries)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
