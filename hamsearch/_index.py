"""The one index facade: validation, ids, threads, backend and per-call
statistics over a store (the contract is ``hamsearch._store.Store``)."""
from __future__ import annotations

import threading
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _backend
from ._store import Store
from ._validate import (
    check_codes,
    check_result_size,
    clash_error,
    default_ids,
    first_clash,
    check_ids,
    check_remove_ids,
    check_k,
    check_nbits,
    check_radius,
    check_threads,
    words,
)


class _IndexBase:
    """What every index (FlatIndex, MIHIndex, ShardedIndex) shares, whatever
    holds its codes: the code size and the search verbs' argument checks."""

    _nbits: int

    @property
    def nbits(self) -> int:
        """Bits per code."""
        return self._nbits

    @property
    def words(self) -> int:
        """uint64 words per code, ``ceil(nbits / 64)``."""
        return words(self._nbits)

    def _queries(self, q: Any) -> np.ndarray:
        """Queries checked as codes of this index."""
        return check_codes(q, self._nbits, "q")

    @staticmethod
    def _with_distances(with_distances: Any) -> bool:
        if not isinstance(with_distances, (bool, np.bool_)):
            raise TypeError(f"with_distances: expected a bool, got {type(with_distances).__name__}")
        return bool(with_distances)


class _Index(_IndexBase):
    """The verbs every index shares: input checks, ids, threads and backend
    choice. Subclasses supply ``_new_store``, the native or Numba object that
    holds the codes and answers the searches (a :class:`~hamsearch._store.Store`)."""

    def _new_store(self) -> Store:  # pragma: no cover - abstract
        raise NotImplementedError

    def __init__(self, nbits: int, *, backend: Optional[str] = "auto", threads: Optional[int] = None) -> None:
        self._nbits = check_nbits(nbits)
        self._backend = _backend.resolve(backend)
        self._threads = check_threads(threads, 0) or None
        self._store = self._new_store()
        # Statistics of the calling thread's last search (see _record).
        self._stats = threading.local()
        self._next_id = 0
        # Serialises add: the id check, the default ids and the store's
        # append must happen as one step when several threads add at once.
        self._add_lock = threading.Lock()

    # -- properties -------------------------------------------------------
    @property
    def backend(self) -> str:
        """``"native"`` or ``"numba"``."""
        return self._backend

    @property
    def threads(self) -> Optional[int]:
        """Default worker threads (None: every usable core)."""
        return self._threads

    def __len__(self) -> int:
        return int(self._store.size())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(nbits={self._nbits}, n={len(self)}, backend={self._backend!r})"

    # -- mutation ---------------------------------------------------------
    def add(self, codes: Any, ids: Any = None) -> np.ndarray:
        """Append codes.

        Parameters
        ----------
        codes : ndarray of uint64, shape (n, words)
        ids : array_like of int, shape (n,), optional
            Unique non-negative ids, none already in the index. By default,
            consecutive integers from the largest id so far plus one.

        Returns
        -------
        ids : ndarray of int64, shape (n,)
        """
        arr = check_codes(codes, self._nbits)
        n = arr.shape[0]
        custom = None if ids is None else check_ids(ids, n)
        with self._add_lock:
            if custom is None:
                new_ids = default_ids(self._next_id, n)
            else:
                new_ids = custom
                # Ids above every id so far cannot clash (the common case);
                # otherwise compare against the stored ids.
                if n and int(new_ids.min()) < self._next_id and len(self):
                    clash = first_clash(new_ids, self._store.ids())
                    if clash >= 0:
                        raise clash_error(clash)
            if n == 0:
                return new_ids
            self._store.add(arr, new_ids)
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        return new_ids

    def remove(self, ids: Any) -> int:
        """Remove the codes with these ids.

        Parameters
        ----------
        ids : int or array_like of int
            Ids to remove; ids not in the index (negative ones included) are
            ignored, and an id given twice is removed once.

        Returns
        -------
        int
            The number of codes removed. The other codes keep their ids, and
            default ids never reuse a removed one.
        """
        arr = check_remove_ids(ids)
        with self._add_lock:
            if arr.size == 0:
                return 0
            return int(self._store.remove(arr))

    # -- persistence ------------------------------------------------------
    def save(self, path: Any) -> None:
        """Write the index to ``path`` (see ``docs/format.md``), atomically:
        a temporary file in the same directory, flushed, then renamed, so a
        crash never leaves a half-written index under ``path``. Read it back
        with :func:`hamsearch.load`. Files are written by the native core on
        either backend: ``RuntimeError`` where it is not available."""
        from . import _io

        _io.save(self, path)

    @property
    def mapped(self) -> bool:
        """Whether the codes are searched in place in a memory-mapped file
        (``hamsearch.load(path, mmap=True)``); an add or remove copies them
        into memory first."""
        return bool(self._store.mapped)

    # -- search -----------------------------------------------------------
    def _prepare(self, q: Any, threads: Optional[int]) -> Tuple[np.ndarray, int]:
        arr = self._queries(q)
        nthreads = check_threads(threads, self._threads or _backend.default_threads())
        return arr, nthreads

    def query(self, q: Any, k: int, *, threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query.

        Parameters
        ----------
        q : ndarray of uint64, shape (nq, words)
        k : int, >= 1
            May exceed ``len(self)``; missing results are padded.
        threads : int, optional

        Returns
        -------
        D : ndarray of int32, shape (nq, k)
            Hamming distances, ascending; ``2**31 - 1`` where no result exists.
        I : ndarray of int64, shape (nq, k)
            Ids, ties broken by ascending id; ``-1`` where no result exists.
        """
        k = check_k(k)
        arr, nthreads = self._prepare(q, threads)
        check_result_size(arr.shape[0], k)
        D, I, fallbacks = self._store.knn(arr, k, nthreads)
        self._record(fallbacks)
        return D, I

    def radius(self, q: Any, r: int, *, threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within Hamming distance ``r`` of each query.

        Returns
        -------
        lims : ndarray of int64, shape (nq + 1,)
            Query ``j``'s results are ``D[lims[j]:lims[j+1]]`` and ``I[lims[j]:lims[j+1]]``.
        D : ndarray of int32, shape (lims[-1],)
        I : ndarray of int64, shape (lims[-1],)
            Each query's results sorted by ``(distance, id)``.
        """
        r = min(check_radius(r), 64 * self.words)  # no distance exceeds 64 per word
        arr, nthreads = self._prepare(q, threads)
        lims, D, I, fallbacks = self._store.radius(arr, r, nthreads)
        self._record(fallbacks)
        return lims, D, I

    def rank(
        self, q: Any, *, threads: Optional[int] = None, with_distances: bool = False
    ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """The whole index for each query in ``(distance, id)`` order.

        Parameters
        ----------
        q : ndarray of uint64, shape (nq, words)
        threads : int, optional
        with_distances : bool, optional
            Also return the distances (default False: the ids alone).

        Returns
        -------
        I : ndarray of int64, shape (nq, len(self))
            Or, with ``with_distances``, ``(D, I)`` with ``D`` int32 of the
            same shape.
        """
        with_distances = self._with_distances(with_distances)
        arr, nthreads = self._prepare(q, threads)
        D, I = self._store.rank(arr, nthreads, with_distances)
        return (D, I) if with_distances else I

    # -- statistics -------------------------------------------------------
    def _record(self, fallbacks: int) -> None:
        self._stats.fallbacks = int(fallbacks)

    def _last_fallbacks(self) -> int:
        """Queries of this thread's last ``query`` or ``radius`` answered by a
        plain scan instead of the index's own search (0 before any)."""
        return int(getattr(self._stats, "fallbacks", 0))
