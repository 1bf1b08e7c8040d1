#!/usr/bin/env bash
# Builds hamsearch's native core with AddressSanitizer and
# UndefinedBehaviorSanitizer, out of tree, and runs the test suite against it
# on the native backend. Exits non-zero on any sanitizer report or test
# failure. See docs/robustness.md.
#
#   scripts/sanitize.sh                  # the default: tests/ on the native core
#   scripts/sanitize.sh -x               # extra arguments go to pytest
#   SANITIZE_K="not slow" scripts/sanitize.sh   # another -k selection
#
# Environment:
#   PYTHON                    interpreter with numpy, pytest, hypothesis and
#                             pybind11 (default: python3)
#   HAMSEARCH_FUZZ_EXAMPLES   Hypothesis examples per fuzz test (default here: 2000)
#   SANITIZE_TESTS            test files to run (default: every tests/test_*.py
#                             but the build tests, which spawn compilers, the
#                             trainer's, which test PyTorch code, and the Ray
#                             tests, whose workers trip ASan in Ray itself)
#   SANITIZE_K                pytest -k expression (default: "not numba"; a -k
#                             among the extra arguments would replace it)
#   SANITIZE_KEEP=1           keep the work directory (build, logs) for inspection
#   JOBS                      parallel compiles (default: nproc)
#
# How:
# - The package is copied to a temporary directory and csrc/*.cpp (the sources
#   setup.py compiles: every .cpp in csrc/, sorted) is compiled into that
#   copy's _core module with setup.py's flags, except -O3 becomes
#   "-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined
#   -fno-sanitize-recover=undefined". Python's own -fwrapv is left out, so
#   signed overflow is reported. Nothing in the source tree is written: the
#   in-place extension stays untouched.
# - Python is not built with ASan, so libasan is preloaded (LD_PRELOAD, found
#   with `gcc -print-file-name=libasan.so`), and libstdc++ right behind it (or
#   the first C++ exception trips ASan's __cxa_throw interceptor); detect_leaks=0 because CPython
#   keeps objects alive until exit by design; allocator_may_return_null=1 so a
#   too-large allocation surfaces as MemoryError (which the fuzz tests flag)
#   instead of an abort.
# - The tests run from the copy with HAMSEARCH_IMPLEMENTATION=native and the
#   Numba tests deselected (-k "not numba"): LLVM's JIT is not instrumented
#   and its allocations under ASan are not what is being tested. A pytest
#   plugin written into the work directory fails the run unless hamsearch and
#   hamsearch._core are imported from the sanitized copy, and prints both.
# - ASan reports go to log files (log_path); UBSan's, which ignores log_path
#   here, to stderr, which pytest leaves uncaptured (--capture=sys) and the
#   script searches. Any report, or a non-zero pytest status, fails the
#   script. Subprocesses started by the tests inherit all of this.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc 2> /dev/null || echo 2)}

work=$(mktemp -d "${TMPDIR:-/tmp}/hamsearch-sanitize.XXXXXX")
cleanup() {
    if [ "${SANITIZE_KEEP:-0}" = 1 ]; then
        echo "sanitize: work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

libasan=$(gcc -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
    echo "sanitize: libasan.so not found (gcc -print-file-name=libasan.so gave '$libasan')" >&2
    exit 2
fi
libasan=$(readlink -f "$libasan")
# libstdc++ is preloaded right behind libasan: Python does not link it, and
# without it at start-up ASan cannot find the real __cxa_throw, so the first
# C++ exception (every std::invalid_argument the core raises) aborts with
# "CHECK failed: asan_interceptors.cpp ... real___cxa_throw".
libstdcxx=$(readlink -f "$(${CXX:-g++} -print-file-name=libstdc++.so)")

echo "== sanitized build in $work"
mkdir -p "$work/pkg" "$work/obj" "$work/logs"
cp -r hamsearch "$work/pkg/hamsearch"
rm -f "$work"/pkg/hamsearch/_core*.so
find "$work/pkg" -name __pycache__ -type d -prune -exec rm -rf {} +
cp pyproject.toml "$work/pkg/"
cp -r tests "$work/pkg/tests"
find "$work/pkg/tests" -name __pycache__ -type d -prune -exec rm -rf {} +

read -r pyinc pybind_inc ext_suffix < <("$PYTHON" -c '
import sysconfig, pybind11
print(sysconfig.get_paths()["include"], pybind11.get_include(), sysconfig.get_config_var("EXT_SUFFIX"))')

CXX=${CXX:-g++}
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
cxxflags=(-std=c++17 -fPIC -fvisibility=hidden -O1 -g "${san[@]}" -fno-math-errno -Wall -Wextra
          -Wno-unused-parameter '-DHAMSEARCH_VERSION="0.1.0"' -Icsrc "-I$pybind_inc" "-I$pyinc")
# The same source list as setup.py: every .cpp in csrc/, sorted.
mapfile -t sources < <(cd csrc && ls -1 -- *.cpp | LC_ALL=C sort)
echo "sources: ${sources[*]}"
pids=()
for s in "${sources[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.2; done
    "$CXX" "${cxxflags[@]}" -c "csrc/$s" -o "$work/obj/$s.o" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || { echo "sanitize: compile failed" >&2; exit 2; }
done
objects=()
for s in "${sources[@]}"; do objects+=("$work/obj/$s.o"); done
core="$work/pkg/hamsearch/_core$ext_suffix"
"$CXX" -shared "${san[@]}" -o "$core" "${objects[@]}"
echo "built $core"

# Fails the session unless the sanitized copy is the one imported.
cat > "$work/pkg/sanitize_check.py" << EOF
import os

import pytest


def _where():
    import hamsearch
    from hamsearch import _backend

    return hamsearch.__file__, getattr(_backend._native, "__file__", None)


def pytest_configure(config):
    want = os.path.realpath("$work/pkg/hamsearch")
    pkg, core = _where()
    if core is None or {os.path.dirname(os.path.realpath(p)) for p in (pkg, core)} != {want}:
        raise pytest.UsageError(f"sanitize: expected hamsearch and its _core from {want}, got {pkg} and {core}")


def pytest_terminal_summary(terminalreporter):
    pkg, core = _where()
    terminalreporter.write_line(f"sanitize: hamsearch imported from {pkg}")
    terminalreporter.write_line(f"sanitize: hamsearch._core imported from {core}")
EOF

if [ -n "${SANITIZE_TESTS:-}" ]; then
    read -r -a tests <<< "$SANITIZE_TESTS"
else
    tests=()
    for t in tests/test_*.py; do
        case "$t" in
            # These compile native harnesses with the system compiler (which
            # would run under the preloaded libasan); they test the build, not
            # the core's memory safety.
            tests/test_portable_build.py | tests/test_avx512_emulated.py) ;;
            # The trainer's tests exercise PyTorch training code, not the core.
            tests/test_trainer*.py) ;;
            # Ray's worker processes inherit the preload and trip ASan in Ray's
            # own code (a heap-use-after-free in _raylet.so's spt_setup).
            tests/test_distributed.py) ;;
            *) tests+=("$t") ;;
        esac
    done
fi
echo "tests: ${tests[*]}"

export HAMSEARCH_IMPLEMENTATION=native
SANITIZE_K=${SANITIZE_K:-not numba}
export HAMSEARCH_FUZZ_EXAMPLES=${HAMSEARCH_FUZZ_EXAMPLES:-2000}
# The real-data tests find their files relative to the source tree, not the copy.
export HAMSEARCH_DATA=${HAMSEARCH_DATA:-$(dirname "$repo")/shared/data}
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:log_path=$work/logs/asan"
# UBSan (GCC's runtime, next to a preloaded libasan) ignores log_path: its
# reports go to stderr, which pytest must therefore not capture at the file
# descriptor level (--capture=sys); the output is kept and searched below.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONDONTWRITEBYTECODE=1
export PYTHONFAULTHANDLER=1

echo "== pytest (native core, ASan + UBSan, HAMSEARCH_FUZZ_EXAMPLES=$HAMSEARCH_FUZZ_EXAMPLES)"
status=0
(
    cd "$work/pkg"
    LD_PRELOAD="$libasan:$libstdcxx" "$PYTHON" -m pytest -p sanitize_check -q --capture=sys -k "$SANITIZE_K" \
        "${tests[@]}" "$@"
) 2>&1 | tee "$work/pytest.log" || status=$?

signs='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer'
inline=$(grep -c -E "$signs" "$work/pytest.log" || true)
files=$(find "$work/logs" -type f | sort)
echo "== summary"
grep -E '^(fuzz|concurrency|sanitize): ' "$work/pytest.log" || true
tail -n 1 "$work/pytest.log"
if [ -n "$files" ] || [ "$inline" -gt 0 ]; then
    for f in $files; do
        echo "--- $f" >&2
        cat "$f" >&2
    done
    echo "sanitize: FAILED: sanitizer reports: $(echo "$files" | grep -c . || true) log file(s)," \
        "$inline report line(s) in the test output (grep -E '$signs' above)" >&2
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "sanitize: FAILED: pytest exited with status $status (no sanitizer report)" >&2
    exit "$status"
fi
echo "sanitize: OK: no sanitizer reports, tests passed (source tree: $repo)"
