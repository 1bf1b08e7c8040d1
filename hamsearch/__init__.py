"""hamsearch: exact, fast Hamming search over packed binary codes.

>>> import numpy as np, hamsearch as hs
>>> codes = hs.pack(np.random.default_rng(0).standard_normal((1000, 128)))
>>> idx = hs.FlatIndex(128)
>>> ids = idx.add(codes)
>>> D, I = idx.query(codes[:5], k=10)
"""
from __future__ import annotations

import os

from ._backend import isa
from ._codes import from_bytes, pack, to_bytes, unpack
from ._load import load
from ._limits import DISTANCE_PAD, ID_PAD
from .flat import FlatIndex
from .mih import MIHIndex

__version__ = "0.1.0"

_HERE = os.path.dirname(os.path.abspath(__file__))


def get_include() -> str:
    """The directory of the C++ headers, for extensions that embed the core.

    ``#include <hamsearch/hamsearch.h>`` (C++) compiles against it, and it
    holds the Cython declarations too: ``from hamsearch.libhamsearch cimport
    ...`` with ``cythonize(..., include_path=[hamsearch.get_include()])``.
    Link the library in :func:`get_library_dir`. The headers ship with the package, so an installed
    wheel needs no source tree.
    """
    return os.path.join(_HERE, "include")


def get_library_dir() -> str:
    """The directory of the core's static library (``libhamsearch.a``;
    ``hamsearch.lib`` on Windows): link it as ``libraries=["hamsearch"]``.

    It holds the code the Python module runs, built with it, and needs the
    same C++ standard library (build the extension with the same compiler).
    Raises ``RuntimeError`` when the package was installed without its native
    build, which makes the library.
    """
    path = os.path.join(_HERE, "lib")
    if not any(os.path.exists(os.path.join(path, f)) for f in ("libhamsearch.a", "hamsearch.lib")):
        raise RuntimeError(f"hamsearch's static library is missing from {path}: the package was installed "
                           "without its native build (reinstall with a C++17 compiler: pip install hamsearch)")
    return path


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # hs.distributed on first use: the package imports Ray only when an index
    # is created or loaded, and the engine never imports it.
    if name == "distributed":
        import importlib

        return importlib.import_module(".distributed", __name__)
    raise AttributeError(f"module 'hamsearch' has no attribute {name!r}")

__all__ = [
    "DISTANCE_PAD",
    "ID_PAD",
    "FlatIndex",
    "MIHIndex",
    "from_bytes",
    "get_include",
    "get_library_dir",
    "isa",
    "load",
    "pack",
    "to_bytes",
    "unpack",
    "__version__",
]
