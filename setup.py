"""Builds the private native module ``hamsearch._core`` from ``csrc/``.

The build is baseline for the target architecture: no ``-march=native``. Faster
kernels (POPCNT, AVX2, AVX-512 VPOPCNTDQ) are compiled per function with
``__attribute__((target(...)))`` and chosen at import from the CPU, so one
wheel runs everywhere. ``HAMSEARCH_NATIVE_BUILD=1`` adds ``-march=native`` for
a local build tuned to the build machine (opt-in, never the default).
"""
import os
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

extra_compile_args = []
if sys.platform == "win32":
    extra_compile_args += ["/O2"]
else:
    # -ffp-contract=off: no fused multiply-adds where a target has them, so
    # the metrics' floating point rounds as the Numba backend's does.
    extra_compile_args += ["-O3", "-fno-math-errno", "-ffp-contract=off", "-Wall", "-Wextra",
                           "-Wno-unused-parameter"]
    if os.environ.get("HAMSEARCH_NATIVE_BUILD") == "1":
        extra_compile_args.append("-march=native")

ext_modules = [
    Pybind11Extension(
        "hamsearch._core",
        sorted(
            os.path.join("csrc", name)
            for name in os.listdir("csrc")
            if name.endswith(".cpp")
        ),
        include_dirs=["hamsearch/include", "csrc"],
        cxx_std=17,
        extra_compile_args=extra_compile_args,
    ),
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
