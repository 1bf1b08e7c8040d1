"""The one index facade: the verbs of every index (``_IndexBase``; the
sharded index supplies its own steps), and validation, ids, threads,
backend and per-call statistics over a local store (``_Index``; the
contract is ``hamsearch._store.Store``)."""
from __future__ import annotations

import threading
from typing import Any, ContextManager, Optional, Tuple, Union

import numpy as np

from . import _backend
from ._store import RankResult, Store
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
    holds its codes: the code size and the verbs, each written once as a
    fixed order of steps (checks, ids, clash check, change; checks, search).

    A subclass supplies the steps that depend on where the codes live:

    ``_call()``
        what one call carries through its steps (ShardedIndex: the call's
        ``Deadline``, which bounds its lock wait and its shard calls too);
    ``_changing(call)``
        the context an ``add`` or ``remove`` runs in: the lock that
        serialises changes (and whatever else must hold during one);
    ``_first_clash(ids, call)``, ``_append(codes, ids, call)``, ``_discard(ids, call)``
        the change steps, on checked inputs: ids unique, non-negative, new
        where ``_first_clash`` found none;
    ``_search_threads(threads)``
        the thread count the searches pass on, checked;
    ``_knn``, ``_within``, ``_ranking``
        the searches, on checked queries.
    """

    _nbits: int
    _next_id: int

    @property
    def nbits(self) -> int:
        """Bits per code."""
        return self._nbits

    @property
    def words(self) -> int:
        """uint64 words per code, ``ceil(nbits / 64)``."""
        return words(self._nbits)

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _queries(self, q: Any) -> np.ndarray:
        """Queries checked as codes of this index."""
        return check_codes(q, self._nbits, "q")

    @staticmethod
    def _with_distances(with_distances: Any) -> bool:
        if not isinstance(with_distances, (bool, np.bool_)):
            raise TypeError(f"with_distances: expected a bool, got {type(with_distances).__name__}")
        return bool(with_distances)

    # -- the steps a subclass supplies --------------------------------------
    def _call(self) -> Any:
        return None

    def _changing(self, call: Any) -> ContextManager[Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _first_clash(self, ids: np.ndarray, call: Any) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _append(self, codes: np.ndarray, ids: np.ndarray, call: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _discard(self, ids: np.ndarray, call: Any) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _search_threads(self, threads: Optional[int]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _knn(self, q: np.ndarray, k: int, threads: Any, call: Any) -> Tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _within(self, q: np.ndarray, r: int, threads: Any, call: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _ranking(self, q: np.ndarray, threads: Any, with_distances: bool, call: Any) -> RankResult:
        raise NotImplementedError  # pragma: no cover - abstract

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
        call = self._call()
        arr = check_codes(codes, self._nbits)
        n = arr.shape[0]
        custom = None if ids is None else check_ids(ids, n)
        # The id check, the default ids and the append happen as one step
        # when several threads add at once.
        with self._changing(call):
            new_ids = default_ids(self._next_id, n) if custom is None else custom
            if n == 0:
                return new_ids
            # Ids above every id so far cannot clash (the common case);
            # otherwise compare against the stored ids.
            if custom is not None and int(new_ids.min()) < self._next_id and len(self):
                clash = self._first_clash(new_ids, call)
                if clash >= 0:
                    raise clash_error(clash)
            self._append(arr, new_ids, call)
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
        call = self._call()
        arr = check_remove_ids(ids)
        with self._changing(call):
            if arr.size == 0:
                return 0
            return int(self._discard(arr, call))

    # -- search -----------------------------------------------------------
    def _prepare(self, q: Any, threads: Optional[int]) -> Tuple[np.ndarray, Any]:
        return self._queries(q), self._search_threads(threads)

    def query(self, q: Any, k: int, *, threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query.

        Parameters
        ----------
        q : ndarray of uint64, shape (nq, words)
        k : int, >= 1
            May exceed ``len(self)``; missing results are padded. A ``k``
            whose ``nq * k`` results could never fit in memory is a
            ``ValueError``.
        threads : int, optional

        Returns
        -------
        D : ndarray of int32, shape (nq, k)
            Hamming distances, ascending; ``2**31 - 1`` where no result exists.
        I : ndarray of int64, shape (nq, k)
            Ids, ties broken by ascending id; ``-1`` where no result exists.
        """
        call = self._call()
        k = check_k(k)
        arr, nthreads = self._prepare(q, threads)
        check_result_size(arr.shape[0], k)  # before any search runs or any result is allocated
        return self._knn(arr, k, nthreads, call)

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
        call = self._call()
        r = min(check_radius(r), 64 * self.words)  # no distance exceeds 64 per word
        arr, nthreads = self._prepare(q, threads)
        return self._within(arr, r, nthreads, call)

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
        call = self._call()
        with_distances = self._with_distances(with_distances)
        arr, nthreads = self._prepare(q, threads)
        D, I = self._ranking(arr, nthreads, with_distances, call)
        return (D, I) if with_distances else I


class _Index(_IndexBase):
    """The index over one local store: threads and backend choice, and the
    verbs' steps as calls of the store. Subclasses supply ``_new_store``,
    the native or Numba object that holds the codes and answers the
    searches (a :class:`~hamsearch._store.Store`)."""

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
        # Serialises add, remove and save (see _IndexBase.add).
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

    # -- the verbs' steps, on the store -------------------------------------
    def _changing(self, call: Any) -> ContextManager[Any]:
        return self._add_lock

    def _first_clash(self, ids: np.ndarray, call: Any) -> int:
        return first_clash(ids, self._store.ids())

    def _append(self, codes: np.ndarray, ids: np.ndarray, call: Any) -> None:
        self._store.add(codes, ids)

    def _discard(self, ids: np.ndarray, call: Any) -> int:
        return int(self._store.remove(ids))

    def _search_threads(self, threads: Optional[int]) -> int:
        return check_threads(threads, self._threads or _backend.default_threads())

    def _knn(self, q: np.ndarray, k: int, threads: int, call: Any) -> Tuple[np.ndarray, np.ndarray]:
        D, I, fallbacks = self._store.knn(q, k, threads)
        self._record(fallbacks)
        return D, I

    def _within(self, q: np.ndarray, r: int, threads: int, call: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        lims, D, I, fallbacks = self._store.radius(q, r, threads)
        self._record(fallbacks)
        return lims, D, I

    def _ranking(self, q: np.ndarray, threads: int, with_distances: bool, call: Any) -> RankResult:
        return self._store.rank(q, threads, with_distances)

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

    # -- statistics -------------------------------------------------------
    def _record(self, fallbacks: int) -> None:
        self._stats.fallbacks = int(fallbacks)

    def _last_fallbacks(self) -> int:
        """Queries of this thread's last ``query`` or ``radius`` answered by a
        plain scan instead of the index's own search (0 before any)."""
        return int(getattr(self._stats, "fallbacks", 0))
