"""Save and load times and memory per code of index files.

    python -m bench.lifecycle [--n 1e7] [--nbits 64 128] [--kind flat mih] [--dir DIR]

For each (kind, nbits): builds an index of n uniform random codes, saves it,
then loads it four ways (copied or memory-mapped, with and without the data
check) in fresh subprocesses, and prints a Markdown table: save seconds, file
bytes per code, load seconds, private resident memory (RssAnon: a mapped
file's pages are shared page cache, not counted) per code after the load and
after a first query of 100 codes at k = 10 (an MIH index builds its tables
there), and that first query's seconds. The page cache is warm (the file
was just written); a cold read adds the disk's time. Native core only.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

_CHILD = r"""
import json, sys, time
import numpy as np
import hamsearch as hs
path, mmap, verify, nbits = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", int(sys.argv[4])
def rss():  # private (anonymous) resident bytes: a mapped file's pages are shared page cache
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0
q = np.random.default_rng(1).integers(0, 2**63, size=(100, (nbits + 63) // 64), dtype=np.uint64)
if nbits % 64:
    q[:, -1] &= np.uint64((1 << (nbits % 64)) - 1)
r0 = rss()
t = time.perf_counter()
idx = hs.load(path, mmap=mmap, backend="native", verify=verify)
load_s = time.perf_counter() - t
r1 = rss()
t = time.perf_counter()
idx.query(q, 10)
query_s = time.perf_counter() - t
r2 = rss()
print(json.dumps({"load_s": load_s, "after_load": r1 - r0, "after_query": r2 - r0, "query_s": query_s,
                  "mapped": idx.mapped, "n": len(idx)}))
"""


def _codes(n: int, nbits: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, nbits, n])
    w = (nbits + 63) // 64
    out = rng.integers(0, 2**64, size=(n, w), dtype=np.uint64)
    if nbits % 64:
        out[:, -1] &= np.uint64((1 << (nbits % 64)) - 1)
    return out


def measure(kind: str, nbits: int, n: int, directory: str) -> List[Dict[str, object]]:
    import hamsearch as hs

    idx = hs.MIHIndex(nbits, backend="native") if kind == "mih" else hs.FlatIndex(nbits, backend="native")
    idx.add(_codes(n, nbits, 0))
    path = os.path.join(directory, f"{kind}-{nbits}.hsi")
    t = time.perf_counter()
    idx.save(path)
    save_s = time.perf_counter() - t
    size = os.path.getsize(path)
    del idx
    rows = []
    for mmap in (False, True):
        for verify in (True, False):
            out = subprocess.run([sys.executable, "-c", _CHILD, path, str(int(mmap)), str(int(verify)), str(nbits)],
                                 check=True, capture_output=True, text=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            assert got["n"] == n and got["mapped"] == mmap
            rows.append({"kind": kind, "nbits": nbits, "n": n, "save_s": save_s, "file_bytes_per_code": size / n,
                         "mmap": mmap, "verify": verify, **got})
    os.unlink(path)
    return rows


def render(rows: Sequence[Dict[str, object]]) -> str:
    head = ("| kind | nbits | n | save s | file B/code | load | verify | load s | private B/code after load "
            "| private B/code after first query | first query s |")
    out = [head, "|" + "---|" * 3 + "---:|" * 2 + "---|---|" + "---:|" * 4]
    for r in rows:
        n = int(r["n"])  # type: ignore[call-overload]
        out.append(
            f"| {r['kind']} | {r['nbits']} | {n:.0e} | {r['save_s']:.2f} | {r['file_bytes_per_code']:.1f} "
            f"| {'mapped' if r['mmap'] else 'copied'} | {'yes' if r['verify'] else 'no'} | {r['load_s']:.3f} "
            f"| {int(r['after_load']) / n:.1f} | {int(r['after_query']) / n:.1f} | {r['query_s']:.3f} |"  # type: ignore[call-overload]
        )
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lifecycle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, default=1e7, help="codes per index (default 1e7)")
    parser.add_argument("--nbits", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--kind", nargs="+", default=["flat", "mih"], choices=["flat", "mih"])
    parser.add_argument("--dir", help="where to write the files (default: a temporary directory)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    n = int(args.n)
    if n < 1:
        parser.error("--n: expected at least 1")
    rows: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        for kind in args.kind:
            for nbits in args.nbits:
                rows += measure(kind, nbits, n, d)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
