"""The native core built for aarch64 (portable kernels only) and run under
qemu-user: checks that the non-x86 build compiles and answers like a brute
force. Skipped unless the cross compiler and qemu are installed (Debian:
g++-aarch64-linux-gnu, qemu-user-static)."""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CXX = shutil.which("aarch64-linux-gnu-g++")
QEMU = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")


@pytest.mark.skipif(CXX is None or QEMU is None, reason="aarch64 cross compiler or qemu-user not installed")
def test_aarch64_build_matches_brute_force(tmp_path):
    sources = [str(p) for p in sorted((ROOT / "csrc").glob("*.cpp")) if p.name != "binding.cpp"]
    exe = tmp_path / "portable"
    build = subprocess.run(
        [CXX, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-static", "-pthread",
         f"-I{ROOT / 'csrc'}", f"-I{ROOT / 'hamsearch' / 'include'}",
         str(ROOT / "tests" / "native" / "portable_harness.cpp"), *sources, "-o", str(exe)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([QEMU, str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "isa: scalar" in run.stdout
    assert "0 mismatches" in run.stdout
