"""Options, data fixture and ordering for the benchmark suite.

Run from the repository root (the file is outside the default test paths)::

    python -m pytest bench/bench_flat.py -p no:cacheprovider \
        --benchmark-json=bench/results/flat.json
    HAMSEARCH_BENCH_QUICK=1 python -m pytest bench/bench_flat.py -p no:cacheprovider

Options (or environment variables):

- ``--hs-profile quick|standard|full``: the grid (``bench/grid.py``); the
  default, standard, is the whole suite in under 30 minutes on the 2-core
  reference machine;
- ``--hs-quick`` / ``HAMSEARCH_BENCH_QUICK=1``: the quick profile, n = 10^5
  and small batches, for smoke runs;
- ``--hs-n 1e5,1e6,1e7``: database sizes (default 10^5, 10^6 and 10^7;
  ``1e8`` is an opt-in: about 3.2 GB of codes at 256 bits, and twice that
  with faiss's copy);
- ``--hs-nbits 64,128,256``: code widths;
- ``--hs-nq N``: batch size of the fast searchers (default 1000, held to 10^9
  query x code pairs in the standard profile; quick 50);
- ``--hs-isa LEVEL``: hamsearch's native kernels at ``LEVEL`` (default: the
  best the CPU has) and faiss at the matching SIMD level, e.g. ``avx2`` on an
  AVX-512 machine to measure both libraries' AVX2 code; the levels are
  recorded in the JSON (``machine_info``, and each case's ``isa``).

The project's pytest settings turn every warning into an error; here that
stays so for hamsearch, while deprecation warnings raised inside the peers
(faiss, usearch, numba) are only reported.
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import Any, Dict, Optional

import pytest

from bench.grid import DEFAULT_PROFILE, PROFILES, bench_config
from bench.peers import DataCache

# Applied to every benchmark item: the peers' own deprecation noise must not
# fail a measurement. Other warnings (hamsearch's included) stay errors.
PEER_WARNING_FILTERS = (
    "default::DeprecationWarning:faiss.*",
    "default::DeprecationWarning:usearch.*",
    "default::DeprecationWarning:numba.*",
    "default::PendingDeprecationWarning:numba.*",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hamsearch-bench", "hamsearch benchmark grid")
    group.addoption("--hs-profile", default=None, choices=PROFILES,
                    help=f"grid profile (default {DEFAULT_PROFILE}): quick (smoke run), standard (the whole "
                         "suite, batches held to a budget of query x code pairs), full (batches of 1000 "
                         "at every n, and the slow builds)")
    group.addoption("--hs-quick", action="store_true", default=False,
                    help="the quick profile: n = 10^5, small batches (also HAMSEARCH_BENCH_QUICK=1)")
    group.addoption("--hs-n", default=None, metavar="N[,N...]",
                    help="database sizes, e.g. 1e5,1e6,1e7 (the default; quick: 1e5; 1e8 as an opt-in)")
    group.addoption("--hs-nbits", default=None, metavar="B[,B...]",
                    help="code widths in bits (default: 64,128,256)")
    group.addoption("--hs-nq", default=None, type=int, metavar="NQ",
                    help="batch size of hamsearch and faiss (default 1000; quick 50)")
    group.addoption("--hs-isa", default=None, metavar="LEVEL",
                    help="hamsearch's kernel level (scalar, popcnt, avx2, avx512_vpopcntdq; default: the CPU's "
                         "best) and faiss at the matching SIMD level, e.g. avx2 on an AVX-512 machine")


def pytest_configure(config: pytest.Config) -> None:
    level = config.getoption("--hs-isa", default=None)
    if level:
        from bench.peers import Unavailable, force_isa

        try:
            force_isa(level)
        except (ValueError, Unavailable) as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_collect_file(file_path, parent):
    # The suite's files are bench_*.py, outside python_files' test_*.py: collect
    # them when pytest is pointed at the directory (a file named on the command
    # line is collected by pytest itself).
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_report_header(config: pytest.Config) -> str:
    import hamsearch as hs
    from hamsearch import _backend

    cfg = bench_config(config)
    native = "native core loaded" if _backend._native is not None else f"no native core ({_backend._native_error!r})"
    from bench.peers import FORCED

    forced = f" (forced; faiss at {FORCED['faiss_simd'] or 'its own level'})" if FORCED["isa"] else ""
    return (
        f"hamsearch bench: {cfg.profile} grid, n={list(cfg.ns)}, "
        f"nbits={list(cfg.nbits)}, fast batch={cfg.fast_nq}; isa={hs.isa()}{forced}; {native}"
    )


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    # One data set at a time: order every item by its data set's place in the
    # grid (stable, so test functions keep their order within a data set).
    cfg = bench_config(config)
    order = {}
    for case in cfg.cases():
        order.setdefault(case.data_key, len(order))

    def key(item: pytest.Item) -> int:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec is not None else None
        return order.get(case.data_key, len(order)) if case is not None else len(order)

    items.sort(key=key)
    for item in items:
        for flt in PEER_WARNING_FILTERS:
            item.add_marker(pytest.mark.filterwarnings(flt))


@pytest.fixture(scope="module")
def bench_data(request: pytest.FixtureRequest):
    """The data set cache for the module: one (nbits, n) data set and its
    searchers' indexes at a time, freed when the grid moves on."""
    cfg = bench_config(request.config)
    cache = DataCache(seed=cfg.seed, nq=cfg.max_nq)
    yield cache
    cache.clear()


def _version_of(module: str) -> Optional[str]:
    """``module.__version__``, or None when it cannot be imported (never raises)."""
    import importlib
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return None
    version = getattr(mod, "__version__", None)
    return str(version) if version is not None else "unknown"


def _cpu_model() -> Optional[str]:
    """The first ``model name`` of ``/proc/cpuinfo``, or None where unreadable."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() in ("model name", "Processor", "cpu model"):
                    return value.strip() or None
    except OSError:
        return None
    return None


def _command_line() -> str:
    """``sys.argv`` as a shell command, ``python -m pytest`` for pytest's
    ``__main__``, prefixed by the ``HAMSEARCH_*`` variables that shape the grid."""
    argv = list(sys.argv)
    if argv and os.path.basename(os.path.dirname(argv[0])) == "pytest" and argv[0].endswith("__main__.py"):
        argv = ["python", "-m", "pytest"] + argv[1:]
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("HAMSEARCH_")]
    return " ".join([shlex.quote(e) for e in env] + [shlex.join(argv)])


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: Dict[str, Any]) -> None:
    """Record what ``bench/report.py`` states about a run: the versions, the
    ISA hamsearch chose, the CPU model and count, and the command (with its
    working directory). Every probe is guarded: a missing library is recorded
    as None, never an error."""
    info: Dict[str, Any] = {}
    try:
        import hamsearch as hs

        info["isa"] = str(hs.isa())
    except Exception as exc:  # noqa: BLE001
        info["isa"] = None
        info["isa_error"] = repr(exc)
    from bench.peers import FORCED

    info["forced_isa"] = FORCED["isa"]  # --hs-isa, or None: each library's own choice
    info["faiss_simd_level"] = FORCED["faiss_simd"]
    info["versions"] = {name: _version_of(name) for name in ("hamsearch", "numpy", "faiss", "usearch", "numba")}
    info["cpu_model"] = _cpu_model()
    info["cpu_count"] = os.cpu_count()
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        info["cpus_usable"] = None
    info["command"] = _command_line()
    info["cwd"] = os.getcwd()
    machine_info["hamsearch_bench"] = info
