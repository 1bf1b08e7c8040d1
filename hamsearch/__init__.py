"""hamsearch: exact, fast Hamming search over packed binary codes.

>>> import numpy as np, hamsearch as hs
>>> codes = hs.pack(np.random.default_rng(0).standard_normal((1000, 128)))
>>> idx = hs.FlatIndex(128)
>>> ids = idx.add(codes)
>>> D, I = idx.query(codes[:5], k=10)
"""
from __future__ import annotations

from ._backend import isa
from ._codes import from_bytes, pack, to_bytes, unpack
from ._load import load
from ._limits import DISTANCE_PAD, ID_PAD
from .flat import FlatIndex
from .mih import MIHIndex

__version__ = "0.1.0"


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
    "isa",
    "load",
    "pack",
    "to_bytes",
    "unpack",
    "__version__",
]
