"""The avx512_vpopcntdq kernels, run through SIMDe's portable AVX-512.

The CPUs that run this suite may lack AVX-512 VPOPCNTDQ, so the parametrized
ISA tests cannot reach those kernels there. This test compiles the kernel
source unchanged, except that the intrinsics come from SIMDe (portable C) and
the target attributes are dropped, links it with a harness that compares
every distance and every filter result with a scalar popcount, and runs it.
Skipped where g++ or the SIMDe headers (Debian: libsimde-dev) are missing.
"""
from __future__ import annotations

import pathlib
import platform
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIMDE = pathlib.Path("/usr/include/simde/x86/avx512.h")

SHIM = """#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
typedef simde__mmask8 __mmask8;
// Intrinsics SIMDe 0.7 lacks, written from Intel's definitions.
static inline long long _mm512_reduce_add_epi64(__m512i v) {
    alignas(64) long long a[8];
    _mm512_store_si512(a, v);
    long long s = 0;
    for (int i = 0; i < 8; ++i) s += a[i];
    return s;
}
static inline __m512i _mm512_maskz_loadu_epi64(__mmask8 m, const void* p) {
    alignas(64) long long a[8];
    const long long* s = static_cast<const long long*>(p);
    for (int i = 0; i < 8; ++i) a[i] = (m >> i) & 1 ? s[i] : 0;
    return _mm512_load_si512(a);
}
"""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 kernels")
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
@pytest.mark.skipif(not SIMDE.exists(), reason="SIMDe headers not installed (Debian: libsimde-dev)")
def test_avx512_kernels_match_scalar_popcount(tmp_path):
    source = (ROOT / "csrc" / "kernels_avx512.cpp").read_text()
    target = '#define HS_AVX512 HS_TARGET("avx512f,avx512bw,avx512vpopcntdq,avx2,popcnt")'
    assert "#include <immintrin.h>\n" in source and target in source, "kernel source layout changed"
    emulated = source.replace("#include <immintrin.h>\n", SHIM, 1).replace(target, "#define HS_AVX512")
    (tmp_path / "kernels_avx512_simde.cpp").write_text(emulated)
    exe = tmp_path / "harness"
    build = subprocess.run(
        ["g++", "-O1", "-std=c++17", f"-I{ROOT / 'csrc'}",
         f"-I{ROOT / 'hamsearch' / 'include'}", str(ROOT / "tests" / "native" / "avx512_harness.cpp"),
         str(tmp_path / "kernels_avx512_simde.cpp"), "-o", str(exe)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert ", 0 mismatches" in run.stdout
    cases = int(run.stdout.split(":")[1].split()[0])
    assert cases == 1650  # 10 widths x 11 sizes x (1 + 6 thresholds + 8 batch sizes)
