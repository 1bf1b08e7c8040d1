"""The package's limits and padding values, in one place (the native core's
are in ``hamsearch/include/hamsearch/constants.h``; ``tests/test_limits.py`` checks the two agree)."""
from __future__ import annotations

import numpy as np

MAX_NBITS = 1 << 20  # bits per code
MAX_THREADS = 1024  # the most worker threads a call starts; larger requests mean this
DISTANCE_PAD = int(np.iinfo(np.int32).max)  # distance of a missing result (faiss's convention)
ID_PAD = -1  # id of a missing result
ID_LIMIT = 1 << 63  # ids are below this; a next default id may equal it (no default id left)
RESULT_BYTES = 1 << 62  # the most bytes of results (distances and ids) one call may ask for
FORMAT_VERSION = 1  # of the index file (docs/format.md)
