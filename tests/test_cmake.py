"""The CMake build of the core for embedding from C++: configure, build and
ctest in a temporary directory, an install whose package config lets
examples/cpp build with find_package(hamsearch), and files that cross between
the C++ example and Python both ways. Skipped where cmake or a C++ compiler
is missing."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

import format_oracle as fmt
import hamsearch as hs

ROOT = Path(__file__).resolve().parents[1]
CMAKE = shutil.which("cmake")
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

pytestmark = pytest.mark.skipif(CMAKE is None or CXX is None, reason="cmake or a C++ compiler is not installed")


def _run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(args)}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """The core built and installed, and examples/cpp built against the install."""
    tmp = tmp_path_factory.mktemp("cmake")
    build, prefix, example = tmp / "build", tmp / "prefix", tmp / "example-build"
    _run(str(CMAKE), "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release")
    _run(str(CMAKE), "--build", str(build), "-j2")
    _run(str(CMAKE), "--install", str(build), "--prefix", str(prefix))
    _run(str(CMAKE), "-S", str(ROOT / "examples" / "cpp"), "-B", str(example), f"-DCMAKE_PREFIX_PATH={prefix}",
         "-DCMAKE_BUILD_TYPE=Release")
    _run(str(CMAKE), "--build", str(example), "-j2")
    return {"build": build, "prefix": prefix, "example": example / "hamsearch_example"}


def _neighbours(stdout: str) -> List[List[Tuple[int, int]]]:
    """The "query J: ID:DIST ..." lines of the example, as (id, distance) lists."""
    rows = []
    for line in stdout.splitlines():
        m = re.match(r"query \d+:(.*)$", line)
        if m:
            rows.append([tuple(int(x) for x in pair.split(":")) for pair in m.group(1).split()])
    return rows


def test_version_header_matches_the_package() -> None:
    text = (ROOT / "hamsearch" / "include" / "hamsearch" / "version.h").read_text()
    parts = [re.search(rf"#define HAMSEARCH_VERSION_{p} (\d+)", text).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert ".".join(parts) == re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    # The extension takes its version string from the same header.
    core = pytest.importorskip("hamsearch._core")
    assert core.__version__ == ".".join(parts)


def test_ctest_passes(builds: Dict[str, Path]) -> None:
    ctest = shutil.which("ctest", path=str(Path(CMAKE).parent)) or shutil.which("ctest")
    res = _run(str(ctest),
               "--test-dir", str(builds["build"]), "--output-on-failure")
    assert "100% tests passed" in res.stdout


def test_install_tree_holds_the_public_headers_only(builds: Dict[str, Path]) -> None:
    headers = sorted(p.name for p in (builds["prefix"] / "include" / "hamsearch").iterdir())
    assert "hamsearch.h" in headers and "version.h" in headers and "format.h" in headers
    assert not {"topk.h", "parallel.h", "mih_policy.h", "kernels_portable.h"} & set(headers)
    assert "Python.h" not in "".join((builds["prefix"] / "include" / "hamsearch" / h).read_text() for h in headers)
    assert list((builds["prefix"]).glob("lib*/cmake/hamsearch/hamsearchConfigVersion.cmake"))


def test_file_saved_by_cpp_loads_in_python(builds: Dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cpp.hsi"
    res = _run(str(builds["example"]), str(out), timeout=120)
    cpp = _neighbours(res.stdout)
    assert len(cpp) == 6 and cpp[:3] == cpp[3:]  # before and after its own round trip
    index = hs.load(out)
    assert len(index) == 1000 and index.nbits == 128
    parsed = fmt.parse(out.read_bytes())
    assert parsed.ids.tolist() == list(range(100, 1100))
    q = parsed.codes[:3].copy()  # the example's queries: the first codes with bits flipped
    q[0, 0] ^= np.uint64(0x7)
    q[1, 1] ^= np.uint64(1 << 63)
    D, I = index.query(q, k=5)
    assert [list(zip(i.tolist(), d.tolist())) for i, d in zip(I, D)] == cpp[:3]


def test_file_saved_by_python_loads_in_cpp(builds: Dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(18)
    codes = hs.pack(rng.standard_normal((200, 96)))
    index = hs.MIHIndex(96, m=4)
    index.add(codes, ids=np.arange(7, 207, dtype=np.int64)[::-1].copy())
    index.save(tmp_path / "py.hsi")
    res = _run(str(builds["example"]), str(tmp_path / "cpp.hsi"), str(tmp_path / "py.hsi"), timeout=120)
    assert f"loaded {tmp_path / 'py.hsi'} kind 2 nbits 96 count 200" in res.stdout
    D, I = index.query(codes[:1], k=3)
    assert _neighbours(res.stdout)[-1] == list(zip(I[0].tolist(), D[0].tolist()))
