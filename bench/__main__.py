"""The whole benchmark in one command: every suite in one pytest run, then the report.

    python -m bench [--profile standard|quick|full] [--out DIR] [--readme PATH]
                    [--plots-dir DIR] [--no-report] [-- PYTEST_ARGS...]

Runs ``bench/bench_flat.py``, ``bench/bench_mih.py``, ``bench/bench_ops.py``,
``bench/bench_distributed.py`` and ``bench/bench_metrics.py`` in one pytest process (so every peer is
measured in the same run, on the same data, under the same load) with the
grid profile given (``bench/grid.py``; the default, standard, takes under 30
minutes on the 2-core reference machine), writes the pytest-benchmark JSON to
``DIR/suite-PROFILE.json`` (default ``bench/results``), and then runs
``python -m bench.report`` on it, which rewrites the generated section of
``bench/README.md`` and the plots in ``bench/plots``. Arguments after ``--``
go to pytest (``-- -k "hamsearch or faiss"``, ``-- --hs-n 1e5,1e6,1e7,1e8``).
Exits with pytest's status when the suite fails (5, no benchmark collected,
counts as a failure), else with the report's. The suite runs with
``OPENBLAS_NUM_THREADS=1`` unless the environment sets it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Sequence

from bench import report
from bench.grid import DEFAULT_PROFILE, PROFILES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SUITE_FILES = ("bench_flat.py", "bench_mih.py", "bench_ops.py", "bench_distributed.py", "bench_metrics.py")


def pytest_command(profile: str, json_path: Path, extra: Sequence[str]) -> List[str]:
    """The pytest command line of the whole suite."""
    return ([sys.executable, "-m", "pytest", *(str(Path("bench") / f) for f in SUITE_FILES),
             "-p", "no:cacheprovider", "-q", f"--hs-profile={profile}", "--benchmark-disable-gc",
             f"--benchmark-json={json_path}"] + list(extra))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line of ``python -m bench``; returns the exit status."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    extra: List[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1:]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES,
                        help=f"grid profile (default {DEFAULT_PROFILE}; see bench/grid.py)")
    parser.add_argument("--out", default=str(HERE / "results"), help="directory of the JSON (default bench/results)")
    parser.add_argument("--readme", default=None, help="README to write the report into (default bench/README.md)")
    parser.add_argument("--plots-dir", default=None, help="directory of the plots (default bench/plots)")
    parser.add_argument("--no-report", action="store_true", help="run the suite only")
    args = parser.parse_args(args_in)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"suite-{args.profile}.json"
    cmd = pytest_command(args.profile, json_path, extra)
    print("bench: " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    # numpy's OpenBLAS threads spin after its BLAS calls (the trained codes'
    # training) and took the second core from the cases that followed: one
    # BLAS thread, unless the caller chose.
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    rc = subprocess.call(cmd, cwd=ROOT, env=env)
    print(f"bench: the suite took {(time.perf_counter() - t0) / 60:.1f} minutes (pytest exit {rc})",
          file=sys.stderr, flush=True)
    if rc == 5:
        print("bench: pytest collected no benchmark", file=sys.stderr)
        return 1
    if rc != 0:
        return rc
    if args.no_report:
        return 0
    # The report names the file as given: relative to here where it lies below.
    here = Path.cwd()
    rargs = [str(json_path.relative_to(here) if json_path.is_relative_to(here) else json_path)]
    if args.readme:
        rargs += ["--readme", args.readme]
    if args.plots_dir:
        rargs += ["--plots-dir", args.plots_dir]
    return report.main(rargs)


if __name__ == "__main__":
    sys.exit(main())
