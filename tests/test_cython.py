"""Cython extensions against the installed package: examples/cython is
compiled at test time in a temporary directory, from the headers and
declarations that hamsearch.get_include() names and the library in
hamsearch.get_library_dir(), with no source tree on its paths. Its k-NN, run
without the GIL, must equal the Python API's and a numpy oracle's on unpacked
bits. Skipped where Cython or a C++ compiler is missing, or without the
native core (a failure under HAMSEARCH_IMPLEMENTATION=native)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import hamsearch as hs
import oracle
from conftest import require_native

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cython"


def _compiler() -> str | None:
    cxx = (sysconfig.get_config_var("CXX") or "c++").split()[0]
    return shutil.which(cxx) or shutil.which("c++") or shutil.which("g++")


def _have_cython() -> bool:
    try:
        import Cython  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="the example's build flags are for GCC and Clang"),
    pytest.mark.skipif(not _have_cython(), reason="Cython is not installed (it is in the test extra)"),
    pytest.mark.skipif(_compiler() is None, reason="no C++ compiler to build a Cython extension"),
]


def test_get_include_holds_the_headers_and_declarations() -> None:
    inc = Path(hs.get_include())
    for name in ("hamsearch.h", "version.h", "flat_index.h", "mih_index.h", "format.h", "libhamsearch.pxd",
                 "__init__.pxd"):
        assert (inc / "hamsearch" / name).is_file(), name
    # The internals stay out of the shipped directory.
    for name in ("topk.h", "parallel.h", "mih_policy.h", "kernels_portable.h"):
        assert not (inc / "hamsearch" / name).exists(), name
    version = (inc / "hamsearch" / "version.h").read_text()
    parts = [re.search(rf"#define HAMSEARCH_VERSION_{p} (\d+)", version).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
    assert ".".join(parts) == hs.__version__


@pytest.fixture(scope="module")
def extension(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/cython built in a temporary directory: that directory."""
    require_native()
    lib = Path(hs.get_library_dir())  # raises, naming the problem, when the package has no native build
    assert any(lib.glob("*hamsearch.*")), lib
    work = tmp_path_factory.mktemp("cython")
    for name in ("nogil_search.pyx", "setup.py"):
        shutil.copy(EXAMPLE / name, work / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return work


def _run_in(work: Path, code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout


def _data(tmp: Path, nbits: int, n: int, nq: int, seed: int):
    rng = np.random.default_rng(seed)
    bits = oracle.random_bits(rng, n, nbits)
    bits[1::9] = bits[::9][: len(bits[1::9])]  # exact duplicates: ties broken by id
    qbits = np.concatenate([bits[:nq // 2], oracle.random_bits(rng, nq - nq // 2, nbits)])
    codes, queries = oracle.codes_from_bits(bits), oracle.codes_from_bits(qbits)
    ids = rng.permutation(np.arange(10 * n, dtype=np.int64))[:n]
    np.save(tmp / "codes.npy", codes)
    np.save(tmp / "queries.npy", queries)
    np.save(tmp / "ids.npy", ids)
    return bits, qbits, codes, queries, ids


@pytest.mark.parametrize("nbits", [100, 256])
@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_nogil_knn_equals_the_python_api_and_the_oracle(extension: Path, tmp_path: Path, nbits: int,
                                                        kind: str) -> None:
    n, nq, k = 3000, 12, 10
    bits, qbits, codes, queries, ids = _data(tmp_path, nbits, n, nq, seed=nbits)
    index = hs.FlatIndex(nbits) if kind == "flat" else hs.MIHIndex(nbits)
    index.add(codes, ids=ids)
    path = tmp_path / "index.hsi"
    index.save(path)
    # The Cython module, in another process, from the file and from the arrays;
    # four Python threads search the same index at once.
    _run_in(extension, f"""
import threading
import numpy as np
import nogil_search as ns
t = {str(tmp_path)!r}
codes, queries, ids = (np.load(t + f) for f in ("/codes.npy", "/queries.npy", "/ids.npy"))
for mmap in (True, False):
    s = ns.FileSearcher(t + "/index.hsi", mmap=mmap)
    assert len(s) == {n} and s.nbits == {nbits}
    D, I = s.knn(queries, {k}, threads=2)
    np.save(t + f"/file_D_{{int(mmap)}}.npy", D)
    np.save(t + f"/file_I_{{int(mmap)}}.npy", I)
out = {{}}
def search(j):
    out[j] = s.knn(queries, {k})
threads = [threading.Thread(target=search, args=(j,)) for j in range(4)]
for th in threads: th.start()
for th in threads: th.join()
for j in range(4):
    np.save(t + f"/thread_D_{{j}}.npy", out[j][0])
    np.save(t + f"/thread_I_{{j}}.npy", out[j][1])
D, I = ns.knn(codes, ids, queries, {nbits}, {k})
np.save(t + "/arrays_D.npy", D)
np.save(t + "/arrays_I.npy", I)
""")
    expected = oracle.knn(oracle.distances(qbits, bits), ids, k)
    api = index.query(queries, k)
    oracle.assert_knn_equal(api, expected)
    names = ["file_{}_0", "file_{}_1", "arrays_{}"] + [f"thread_{{}}_{j}" for j in range(4)]
    for name in names:
        got = (np.load(tmp_path / (name.format("D") + ".npy")), np.load(tmp_path / (name.format("I") + ".npy")))
        assert got[0].dtype == np.int32 and got[1].dtype == np.int64
        oracle.assert_knn_equal(got, expected)
        np.testing.assert_array_equal(got[0], api[0])
        np.testing.assert_array_equal(got[1], api[1])


def test_the_search_releases_the_gil(extension: Path) -> None:
    # The C++ calls sit inside `with nogil:` blocks: Cython brackets each with
    # a save and a restore of the thread state.
    generated = (extension / "nogil_search.cpp").read_text()
    assert generated.count("PyEval_SaveThread") >= 3 or generated.count("Py_UNBLOCK_THREADS") >= 3


def test_errors_cross_as_python_exceptions(extension: Path, tmp_path: Path) -> None:
    (tmp_path / "not_an_index").write_bytes(b"hello, world" * 20)
    out = _run_in(extension, f"""
import numpy as np
import nogil_search as ns
t = {str(tmp_path)!r}
cases = [
    lambda: ns.FileSearcher(t + "/not_an_index"),
    lambda: ns.FileSearcher(t + "/missing"),
    lambda: ns.knn(np.zeros((3, 2), np.uint64), np.array([1, 2, -3]), np.zeros((1, 2), np.uint64), 100, 2),
    lambda: ns.knn(np.full((3, 2), 2**63, np.uint64), np.array([1, 2, 3]), np.zeros((1, 2), np.uint64), 100, 2),
    lambda: ns.knn(np.zeros((3, 2), np.uint64), np.array([1, 2, 3]), np.zeros((1, 3), np.uint64), 100, 2),
]
for case in cases:
    try:
        case()
    except Exception as e:
        print(type(e).__name__, "|", e)
    else:
        print("no error")
""").splitlines()
    assert out[0].startswith("ValueError | ") and "not a hamsearch index file" in out[0]
    assert out[1].startswith("RuntimeError | ") and "No such file" in out[1]
    assert out[2].startswith("ValueError | ") and "non-negative" in out[2]
    assert out[3].startswith("ValueError | ") and "pad bits" in out[3]
    assert out[4].startswith("ValueError | ") and "shape (n, 2)" in out[4]
