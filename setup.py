"""Builds the private native module ``hamsearch._core`` from ``csrc/``, and the
core alone as a static library for C++ and Cython extensions that embed it.

The build is baseline for the target architecture: no ``-march=native``. Faster
kernels (POPCNT, AVX2, AVX-512 VPOPCNTDQ) are compiled per function with
``__attribute__((target(...)))`` and chosen at import from the CPU, so one
wheel runs everywhere. ``HAMSEARCH_NATIVE_BUILD=1`` adds ``-march=native`` for
a local build tuned to the build machine (opt-in, never the default).

The public headers live in ``hamsearch/include/hamsearch/`` and ship with the
package (``hamsearch.get_include()``); the core's objects, every ``csrc/*.cpp``
but the binding, are also archived into ``hamsearch/lib/`` (``libhamsearch.a``,
``hamsearch.lib`` on Windows; ``hamsearch.get_library_dir()``), so an extension
links the same code the Python module runs, compiled once.
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
        # A changed header rebuilds the module (setuptools checks only the sources otherwise).
        depends=sorted(
            os.path.join(d, name)
            for d in ("csrc", os.path.join("hamsearch", "include", "hamsearch"))
            for name in os.listdir(d)
            if name.endswith(".h")
        ),
        cxx_std=17,
        extra_compile_args=extra_compile_args,
    ),
]

BINDING = "binding.cpp"
LIBRARY = "hamsearch"
LIBRARY_FILE = "hamsearch.lib" if sys.platform == "win32" else "libhamsearch.a"


class BuildExt(build_ext):
    """build_ext that also archives the core's objects (all but the binding's)
    into the package's lib/ directory, next to the module it builds (in place
    for an editable install, in the build tree for a wheel)."""

    def _library(self, ext):
        out = os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), "lib")
        return out, os.path.join(out, LIBRARY_FILE)

    def build_extension(self, ext):
        out, path = self._library(ext)
        if not os.path.exists(path):
            self.force = True  # the objects must exist: compile them even if the module is up to date
        super().build_extension(ext)
        objects = self.compiler.object_filenames(
            [s for s in ext.sources if os.path.basename(s) != BINDING], output_dir=self.build_temp)
        os.makedirs(out, exist_ok=True)
        self.compiler.create_static_lib(objects, LIBRARY, output_dir=out)

    def get_outputs(self):
        return super().get_outputs() + [self._library(ext)[1] for ext in self.extensions]

    # In place (--inplace, and pip's editable installs), setuptools builds in
    # the build tree and copies the module into the package: the library too.
    def _library_in_place(self, ext):
        inplace, regular = self._get_inplace_equivalent(self.get_finalized_command("build_py"), ext)
        return (os.path.join(os.path.dirname(inplace), "lib", LIBRARY_FILE),
                os.path.join(os.path.dirname(regular), "lib", LIBRARY_FILE))

    def copy_extensions_to_source(self):
        super().copy_extensions_to_source()
        for ext in self.extensions:
            inplace, regular = self._library_in_place(ext)
            self.mkpath(os.path.dirname(inplace))
            self.copy_file(regular, inplace, level=self.verbose)

    def _get_output_mapping(self):
        yield from super()._get_output_mapping()
        if self.inplace:
            for ext in self.extensions:
                inplace, regular = self._library_in_place(ext)
                yield regular, inplace


setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
