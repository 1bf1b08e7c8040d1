"""The exact flat index: a blocked, threaded popcount scan."""
from __future__ import annotations

from typing import Any

from . import _backend
from ._index import _Index
from ._limits import DISTANCE_PAD, ID_PAD

__all__ = ["DISTANCE_PAD", "ID_PAD", "FlatIndex"]


class FlatIndex(_Index):
    """Exact Hamming search by a linear popcount scan.

    Parameters
    ----------
    nbits : int
        Bits per code, 1 to 2**20. Codes are uint64 arrays of shape
        ``(n, ceil(nbits / 64))`` with the pad bits zero (see :func:`hamsearch.pack`).
    backend : {"auto", "native", "numba"}, optional
        ``"auto"`` follows ``HAMSEARCH_IMPLEMENTATION`` (native when the
        compiled core loads, else Numba with a ``RuntimeWarning``).
    threads : int or None, optional
        Default worker threads for searches; None uses every usable core.

    Notes
    -----
    Results are sorted by ``(distance, id)`` and are identical across
    backends, kernel levels and thread counts. Queries release the GIL.
    Thread safety: ``query``, ``radius`` and ``rank`` may run concurrently from
    many Python threads, and with ``add`` and ``remove``: a search sees the
    index before or after a change, never half of one (a reader-writer lock in
    the native core; the Numba store publishes a new snapshot). Changes and
    ``save`` are serialised, so default ids are never handed out twice and a
    saved file is one snapshot. ``save`` / :func:`hamsearch.load` persist the
    index (``docs/format.md``).
    """

    _kind = "flat"

    def _new_store(self) -> Any:
        if self._backend == "native":
            return _backend.native_module().FlatIndex(self._nbits)
        from . import _numba

        return _numba.FlatStore(self._nbits)
