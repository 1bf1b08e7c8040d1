"""``python -m hamsearch``: a self-check and speed report on this machine.

Builds a flat index of random codes (default 10^6 x 128 bits), checks a sample
of queries against a numpy brute force on unpacked bits, and prints the kernel
level, queries per second and the ratio against a numpy scan.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import numpy as np

from . import FlatIndex, __version__, isa, pack, unpack
from ._backend import default_threads


def _numpy_knn(db_bits: np.ndarray, q_bits: np.ndarray, k: int) -> np.ndarray:
    """Reference k-NN on unpacked bits: distances by counting differing bits,
    ties by row (the ids are the rows here)."""
    out = np.empty((q_bits.shape[0], k), dtype=np.int64)
    for j, qb in enumerate(q_bits):
        dist = np.count_nonzero(db_bits != qb, axis=1)
        out[j] = np.lexsort((np.arange(dist.size), dist))[:k]
    return out


def _numpy_scan(db: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """The fastest plain-numpy scan: popcount of XORed words, then a partial sort."""
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for j in range(q.shape[0]):
        dist = np.bitwise_count(db ^ q[j]).sum(axis=1, dtype=np.int32)
        part = np.argpartition(dist, k - 1)[:k]
        out[j] = part[np.lexsort((part, dist[part]))]
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hamsearch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="codes in the index (default 10^6)")
    parser.add_argument("--nbits", type=int, default=128, help="bits per code (default 128)")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--queries", type=int, default=1000, help="queries in the timed batch (default 1000)")
    parser.add_argument("--check", type=int, default=20, help="queries checked against numpy (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="worker threads (default: all usable cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1 or args.queries < 1 or args.k < 1 or args.check < 0:
        parser.error("--n, --queries and --k must be >= 1, --check >= 0")
    try:
        return _run(args)
    except (TypeError, ValueError) as exc:  # the library's own input checks
        parser.error(str(exc))
        return 2  # unreachable: parser.error exits


def _run(args: argparse.Namespace) -> int:

    rng = np.random.default_rng(args.seed)
    print(f"hamsearch {__version__}, kernels: {isa()}, threads: {args.threads or default_threads()}")
    t0 = time.perf_counter()
    db = pack(rng.integers(0, 2, size=(args.n, args.nbits), dtype=np.uint8))
    q = pack(rng.integers(0, 2, size=(args.queries, args.nbits), dtype=np.uint8))
    index = FlatIndex(args.nbits)
    index.add(db)
    print(f"index: {len(index):,} codes x {args.nbits} bits, backend {index.backend}, "
          f"built in {time.perf_counter() - t0:.2f} s")

    index.query(q[:1], args.k, threads=args.threads)  # warm up (Numba compiles here)
    t0 = time.perf_counter()
    D, I = index.query(q, args.k, threads=args.threads)
    elapsed = time.perf_counter() - t0
    qps = args.queries / elapsed

    ncheck = min(args.check, args.queries)
    expected = _numpy_knn(unpack(db, args.nbits), unpack(q[:ncheck], args.nbits), args.k)
    mismatches = int(np.count_nonzero(np.any(expected != I[:ncheck], axis=1)))
    print(f"check: {ncheck} queries against a numpy brute force on unpacked bits: "
          f"{'all equal' if mismatches == 0 else f'{mismatches} DIFFER'}")

    nscan = max(1, min(args.queries, 50))
    t0 = time.perf_counter()
    _numpy_scan(db, q[:nscan], args.k)
    numpy_qps = nscan / (time.perf_counter() - t0)
    print(f"query: {args.queries} queries, k={args.k}: {qps:,.0f} queries/s "
          f"({qps * args.n / 1e9:.2f} billion code comparisons/s)")
    print(f"numpy scan (np.bitwise_count, 1 thread): {numpy_qps:,.1f} queries/s; "
          f"hamsearch is {qps / numpy_qps:,.0f}x faster")
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
