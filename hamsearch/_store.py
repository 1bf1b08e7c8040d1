"""The contract between an index and the object that holds its codes.

:class:`hamsearch.FlatIndex` and :class:`hamsearch.MIHIndex` are one facade
(``hamsearch._index._Index``: input checks, ids, threads, statistics) over a
store: the native core's ``_core.FlatIndex`` / ``_core.MIHIndex`` or the Numba
backend's ``FlatStore`` / ``MIHStore``. Every store implements :class:`Store`;
inputs reach it checked (C-contiguous, aligned, pad bits zero, ids unique and
new), so a store only answers. ``tests/test_store_protocol.py`` checks every
store against it.
"""
from __future__ import annotations

from typing import Optional, Protocol, Tuple, runtime_checkable

import numpy as np

KnnResult = Tuple[np.ndarray, np.ndarray, int]
RadiusResult = Tuple[np.ndarray, np.ndarray, np.ndarray, int]
RankResult = Tuple[Optional[np.ndarray], np.ndarray]


@runtime_checkable
class Store(Protocol):
    """What an index asks of its store.

    The searches end with a statistic of the call itself, never kept on the
    store: the number of queries a plain scan answered instead of the
    store's own search (MIH's fallback; always 0 for a flat scan). So
    concurrent calls never see each other's counts.
    """

    def size(self) -> int:
        """Codes held."""

    def ids(self) -> np.ndarray:
        """int64 ``(n,)``: the ids in row order (a copy)."""

    def codes(self) -> np.ndarray:
        """uint64 ``(n, words)``: the codes in row order (a copy)."""

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Appends codes with their (new, unique, non-negative) ids."""

    def remove(self, ids: np.ndarray) -> int:
        """Removes the codes with these ids (absent ones ignored); returns how many."""

    def knn(self, q: np.ndarray, k: int, threads: int) -> KnnResult:
        """``(D, I, fallbacks)``: int32 and int64 ``(nq, k)`` in ``(distance,
        id)`` order, padded with ``(DISTANCE_PAD, ID_PAD)``."""

    def radius(self, q: np.ndarray, r: int, threads: int) -> RadiusResult:
        """``(lims, D, I, fallbacks)``: every code within ``r``, per query in
        ``(distance, id)`` order, query ``j``'s at ``lims[j]:lims[j+1]``."""

    def rank(self, q: np.ndarray, threads: int, with_distances: bool) -> RankResult:
        """``(D, I)``: every id per query in ``(distance, id)`` order, ``D``
        their distances (None unless ``with_distances``)."""

    @property
    def mapped(self) -> bool:
        """Whether the codes are searched in place in a memory-mapped file."""

    # -- persistence (the file format lives in the native core, hamsearch/include/hamsearch/format.h)
    def save_file(self, path: bytes, next_id: int) -> None:
        """Writes the store as an index file (``docs/format.md``) atomically,
        with ``next_id`` in the header; the caller holds off changes."""

    def load_file(self, file: object, mmap: bool, verify: bool) -> None:
        """Fills this empty store from an open ``_core.IndexFile``, the very
        descriptor whose header was checked: read into memory or, where the
        store can, mapped (``mmap``); its data checked first (``verify``)."""
