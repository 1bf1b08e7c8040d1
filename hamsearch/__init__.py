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
from ._io import load
from .flat import DISTANCE_PAD, ID_PAD, FlatIndex
from .mih import MIHIndex

__version__ = "0.1.0"

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
