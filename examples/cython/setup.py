"""Builds nogil_search against the installed hamsearch (no source tree needed):

    pip install hamsearch cython setuptools
    python setup.py build_ext --inplace
    python -c "import nogil_search; print(nogil_search.version)"
"""
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

import hamsearch

extension = Extension(
    "nogil_search",
    ["nogil_search.pyx"],
    language="c++",
    include_dirs=[hamsearch.get_include()],
    library_dirs=[hamsearch.get_library_dir()],
    libraries=["hamsearch"],
    extra_compile_args=["/std:c++17"] if sys.platform == "win32" else ["-std=c++17"],
    extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
)

# include_path: where Cython finds hamsearch/libhamsearch.pxd (beside the headers).
setup(name="nogil_search", ext_modules=cythonize([extension], include_path=[hamsearch.get_include()]))
