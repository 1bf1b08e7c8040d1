"""MIHIndex against its own scan, calls interleaved: ratios of medians.

    python -m bench.mih_interleaved --n 1e6 --nbits 64,128,256 --batches 1,4,1000

For each data kind (uniform, clustered as in ``bench_mih.py``), nbits, k and
batch size, MIHIndex and FlatIndex answer the same batches call by call,
alternately (the order swapped every call), so that a shared machine's load
shifts both alike; prints the median time a query of each, MIH's speed over
the scan's (``mih/flat speed``, > 1: MIH faster), MIH's fallbacks and the
1-minute load average. Batches under 64 queries make ``--calls`` calls (a
stream of queries asked that many at a time), larger ones ``--rounds``.
The pytest-benchmark suite (``bench_mih.py``) times each case by itself;
this interleaving is the check to trust on a noisy machine.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import List, Optional, Sequence

import numpy as np

import hamsearch as hs
from bench.bench_mih import CLUSTER_SIZE, _clustered, _uniform


def _ints(text: str) -> List[int]:
    return [int(float(v)) for v in text.split(",") if v]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mih_interleaved", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=float, default=1e6, help="database size (default 1e6)")
    p.add_argument("--nbits", default="64,128,256")
    p.add_argument("--data", default="uniform,clustered")
    p.add_argument("--batches", default="1,4,1000", help="queries per call")
    p.add_argument("--ks", default="1,10,100")
    p.add_argument("--calls", type=int, default=160, help="calls per index for batches under 64")
    p.add_argument("--rounds", type=int, default=7, help="calls per index for batches of 64 and more")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    a = p.parse_args(argv)
    n = int(a.n)
    print(f"isa={hs.isa()} n={n} threads={a.threads} load={os.getloadavg()[0]:.2f}", flush=True)
    for data in a.data.split(","):
        for nbits in _ints(a.nbits):
            rng = np.random.default_rng([a.seed, nbits, n, data == "uniform"])
            if data == "uniform":
                db, qs = _uniform(rng, n, nbits), _uniform(rng, 1000, nbits)
            else:
                centres = _uniform(rng, max(1, n // CLUSTER_SIZE), nbits)
                db, qs = _clustered(rng, centres, n, nbits), _clustered(rng, centres, 1000, nbits)
            mih = hs.MIHIndex(nbits)
            mih.add(db)
            mih.query(qs[:1], 1)  # builds the tables
            flat = hs.FlatIndex(nbits)
            flat.add(db)
            for k in _ints(a.ks):
                for nq in _ints(a.batches):
                    calls = a.rounds if nq >= 64 else a.calls
                    tm: List[float] = []
                    tf: List[float] = []
                    fallbacks = asked = 0
                    for c in range(calls):
                        off = (c * nq) % (qs.shape[0] - nq + 1)
                        b = qs[off : off + nq]
                        for which in ((0, 1) if c % 2 == 0 else (1, 0)):
                            t0 = time.perf_counter()
                            if which == 0:
                                D1, _ = mih.query(b, k, threads=a.threads)
                                tm.append(time.perf_counter() - t0)
                                fallbacks += mih.last_fallbacks
                                asked += nq
                            else:
                                D2, _ = flat.query(b, k, threads=a.threads)
                                tf.append(time.perf_counter() - t0)
                        if not np.array_equal(D1, D2):
                            raise AssertionError(f"MIHIndex differs from FlatIndex ({data}, {nbits}, k={k})")
                    mm, mf = float(np.median(tm)) / nq, float(np.median(tf)) / nq
                    print(f"{data:9s} nbits={nbits:<3d} k={k:<3d} batch={nq:<5d} mih {mm * 1e6:9.1f} us "
                          f"flat {mf * 1e6:9.1f} us  mih/flat speed {mf / mm:6.2f}  fallbacks {fallbacks}/{asked}"
                          f"  load {os.getloadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
