"""Retrieval metrics for binary codes, at engine speed: no sort, no ranking.

Every function ranks a database of packed codes for each query by Hamming
distance, ties broken by ascending database row (the engine's ``(distance,
id)`` order, as the MATLAB reference's stable sort), and scores the ranking
against {0,1} label vectors: a database item is *relevant* to a query when
their label vectors share at least one 1. :func:`evaluate` also takes any
relevance: a boolean matrix or ground-truth id lists.

Definitions follow the evaluation protocol of the project (DESIGN section 5,
METHODS section 6):

- :func:`mean_average_precision`: MAP over the whole ranking, MAP@k, and
  tie-aware MAP (He, Cakir, Bargal and Sclaroff, CVPR 2018);
- :func:`precision_at_k` and :func:`topn_precision`: precision of the top k
  (top N) items, averaged over the queries;
- :func:`pr_curve`: precision and recall by Hamming radius 0..nbits,
  micro-averaged over all query-database pairs;
- :func:`evaluate`: any of them together, in one pass.

How: distances lie in [0, nbits], so a histogram per query over distance,
split by relevance, gives tie-aware AP (in closed form) and the PR curve. A
relevant item's rank is the number of items in closer buckets plus those
before it in its own: the native core keeps, in the same pass over the
database in row order, each relevant item's place in its bucket and adds
the bucket's offset once the histogram is complete (MAP@all, databases of
up to 2**22 - 1 rows); otherwise a second pass in row order, knowing each
bucket's offset, places the items (the cut-offs alone stop once the top
ranks are placed). MAP@k and precision at k come from the same ranks. Native
core (``hamsearch._core.evaluate_metrics``, threads over queries, GIL
released) or its Numba twin, with identical results. Memory: a few counters
per distance per thread, and for the one pass 8 bytes per relevant item per
thread; never a query x database matrix.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _backend
from ._validate import as_int, check_codes, check_nbits, check_threads, to_numpy

__all__ = ["evaluate", "mean_average_precision", "precision_at_k", "pr_curve", "topn_precision"]

IntOrInts = Union[int, Sequence[int], np.ndarray]


# -- validation -------------------------------------------------------------
def _infer_nbits(db_codes: Any, nbits: Any) -> int:
    """``nbits`` checked, or ``64 * words`` of ``db_codes`` when it is None."""
    if nbits is not None:
        return check_nbits(nbits)
    arr = to_numpy(db_codes, "db_codes")
    if arr.dtype != np.uint64:
        check_codes(arr, 64, "db_codes")  # raises the dtype error with its hint
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(
            f"db_codes: expected a 2-D uint64 array of shape (n, words) with words >= 1, got shape {arr.shape}"
        )
    return check_nbits(64 * arr.shape[1])


def _check_labels(labels: Any, name: str) -> Tuple[np.ndarray, int]:
    """{0,1} labels of shape (n, c), c >= 1, as bit sets (C-contiguous uint64
    of shape (n, ceil(c / 64)), label i at bit i % 64 of word i // 64), and c.
    Two items share a label exactly when their bit sets intersect."""
    arr = to_numpy(labels, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected bool, integer or float labels in {{0, 1}}, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = "; for one label per item use one-hot rows of shape (n, classes)" if arr.ndim == 1 else ""
        raise ValueError(
            f"{name}: expected a 2-D array of shape (n, classes), got {arr.ndim}-D shape {arr.shape}{hint}"
        )
    if arr.shape[1] < 1:
        raise ValueError(f"{name}: expected at least one label column, got shape {arr.shape}")
    if arr.dtype.kind != "b" and arr.size:
        bad = ~((arr == 0) | (arr == 1))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"{name}: expected labels in {{0, 1}}, got {arr[row, col].item()!r} at row {row}, column {col}; "
                "class ids become one-hot rows, e.g. np.eye(classes, dtype=np.uint8)[ids]"
            )
    n, classes = arr.shape
    packed = np.packbits(arr != 0, axis=1, bitorder="little")
    words = np.zeros((n, -(-classes // 64) * 8), dtype=np.uint8)
    words[:, : packed.shape[1]] = packed
    return np.ascontiguousarray(words.view("<u8").astype(np.uint64, copy=False)), classes


def _check_chunk_size(chunk_size: Any) -> Optional[int]:
    if chunk_size is None:
        return None
    size = as_int(chunk_size, "chunk_size")
    if size < 1:
        raise ValueError(f"chunk_size: expected None or an int >= 1, got {size}")
    return size


def _check_cutoffs(values: Any, name: str, symbol: str, n_db: int) -> np.ndarray:
    """Cut-offs: an int or a non-empty 1-D sequence of ints, each in [1, n_db]."""
    if isinstance(values, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an int or a 1-D sequence of ints, got bool")
    if isinstance(values, (int, np.integer)):
        out = np.array([int(values)], dtype=np.int64)
    else:
        arr = to_numpy(values, name)
        if arr.ndim > 1 or arr.size == 0:
            raise ValueError(f"{name}: expected an int or a non-empty 1-D sequence of ints, got shape {arr.shape}")
        if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected an int or a 1-D sequence of ints, got dtype {arr.dtype}")
        if arr.dtype.kind == "u" and int(arr.max()) > n_db:
            raise ValueError(f"{name}: expected 1 <= {symbol} <= {n_db} (the database size), got {int(arr.max())}")
        out = arr.reshape(-1).astype(np.int64)
    bad = out[(out < 1) | (out > n_db)]
    if bad.size:
        raise ValueError(f"{name}: expected 1 <= {symbol} <= {n_db} (the database size), got {int(bad[0])}")
    return out


def _check_k(k: Any, n_db: int, name: str = "k") -> int:
    k = as_int(k, name)
    if not 1 <= k <= n_db:
        raise ValueError(
            f"{name}: expected 1 <= k <= {n_db} (the database size), got {k}; k=None scores the whole ranking"
        )
    return k


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def _check_relevance(relevance: Any, nq: int, n_db: int) -> Tuple[str, Tuple[np.ndarray, ...]]:
    """``("matrix", (uint8 (nq, n_db),))`` from a bool matrix, or
    ``("lists", (lims, ids))`` (int64 offsets and database rows) from a
    sequence of nq id sequences."""
    if not isinstance(relevance, (list, tuple)):
        arr = to_numpy(relevance, "relevance")
        if arr.dtype == np.object_ and arr.ndim == 1:
            return _check_relevance(list(arr), nq, n_db)
        if arr.dtype != np.bool_:
            raise TypeError(
                f"relevance: expected a bool matrix of shape ({nq}, {n_db}) or a sequence of {nq} id lists, "
                f"got an array of dtype {arr.dtype}; a 0/1 matrix becomes relevance.astype(bool), "
                "equal-length id rows list(ids)"
            )
        if arr.shape != (nq, n_db):
            raise ValueError(f"relevance: expected a bool matrix of shape ({nq}, {n_db}), got shape {arr.shape}")
        return "matrix", (np.ascontiguousarray(arr).view(np.uint8),)
    if len(relevance) != nq:
        raise ValueError(f"relevance: expected {nq} id lists (one per query), got {len(relevance)}")
    rows: List[np.ndarray] = []
    for j, ids in enumerate(relevance):
        arr = to_numpy(ids, f"relevance[{j}]")
        if arr.ndim != 1:
            raise ValueError(f"relevance[{j}]: expected a 1-D sequence of database rows, got shape {arr.shape}")
        if arr.size and (arr.dtype == np.bool_ or arr.dtype.kind not in "iu"):
            raise TypeError(
                f"relevance[{j}]: expected integer database rows, got dtype {arr.dtype}; "
                "a bool matrix goes in as one ndarray of dtype bool"
            )
        arr = arr.astype(np.int64) if arr.size else np.zeros(0, dtype=np.int64)
        bad = arr[(arr < 0) | (arr >= n_db)] if arr.dtype.kind == "i" else arr[arr >= n_db]
        if bad.size:
            raise ValueError(f"relevance[{j}]: expected database rows in [0, {n_db}), got {int(bad[0])}")
        rows.append(arr)
    lims = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum([r.size for r in rows], out=lims[1:])
    ids = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return "lists", (lims, np.ascontiguousarray(ids, dtype=np.int64))


class _Problem:
    """Checked codes and relevance of one metric call."""

    def __init__(
        self,
        query_codes: Any,
        db_codes: Any,
        query_labels: Any,
        db_labels: Any,
        nbits: Any,
        chunk_size: Any,
        relevance: Any = None,
    ) -> None:
        self.nbits = _infer_nbits(db_codes, nbits)
        self.db = check_codes(db_codes, self.nbits, "db_codes")
        self.q = check_codes(query_codes, self.nbits, "query_codes")
        nq, n_db = self.q.shape[0], self.db.shape[0]
        if nq < 1:
            raise ValueError(f"query_codes: expected at least one query, got shape {self.q.shape}")
        if n_db < 1:
            raise ValueError(f"db_codes: expected at least one database code, got shape {self.db.shape}")
        if n_db >= 1 << 32:  # ranks are 32-bit in the native pass
            raise ValueError(f"db_codes: expected fewer than 2**32 database codes, got {n_db}; split the database")
        self.nq, self.n_db = nq, n_db
        labels_given = query_labels is not None or db_labels is not None
        if relevance is not None:
            if labels_given:
                raise ValueError("relevance: expected either relevance or query_labels and db_labels, got both")
            self.kind, self.arrays = _check_relevance(relevance, nq, n_db)
        else:
            if query_labels is None or db_labels is None:
                missing = "query_labels" if query_labels is None else "db_labels"
                raise TypeError(f"{missing}: expected {{0, 1}} labels (or relevance=...), got None")
            ql, q_classes = _check_labels(query_labels, "query_labels")
            dl, db_classes = _check_labels(db_labels, "db_labels")
            if ql.shape[0] != nq:
                raise ValueError(f"query_labels: expected {nq} rows (one per query code), got {ql.shape[0]}")
            if dl.shape[0] != n_db:
                raise ValueError(f"db_labels: expected {n_db} rows (one per database code), got {dl.shape[0]}")
            if q_classes != db_classes:
                raise ValueError(f"db_labels: expected {q_classes} label columns (as query_labels), got {db_classes}")
            self.kind, self.arrays = "labels", (ql, dl)
        self.chunk = _check_chunk_size(chunk_size)

    def _relevance_of(self, a: int, b: int) -> Dict[str, Optional[np.ndarray]]:
        """The backend's relevance arguments for queries a:b."""
        out: Dict[str, Optional[np.ndarray]] = dict(query_labels=None, db_labels=None, matrix=None, lims=None, ids=None)
        if self.kind == "labels":
            ql, dl = self.arrays
            out.update(query_labels=ql[a:b], db_labels=dl)
        elif self.kind == "matrix":
            out.update(matrix=self.arrays[0][a:b])
        else:
            lims, ids = self.arrays
            out.update(lims=lims[a : b + 1] - lims[a], ids=ids[lims[a] : lims[b]])
        return out

    def score(
        self,
        *,
        map_all: bool = False,
        tie_aware: bool = False,
        map_ks: Sequence[int] = (),
        depth: int = 0,
        pr: bool = False,
        threads: Optional[int] = None,
        backend: Optional[str] = None,
    ) -> Tuple[np.ndarray, ...]:
        """``(ap_all, ap_tie, ap_k, hits, pairs, relevant)`` over every query:
        per-query APs (length nq, or (nq, len(map_ks))), relevant items at
        each rank 1..depth and items (relevant items) at each distance
        0..nbits, summed over the queries; length 0 where not requested."""
        name = _backend.resolve(backend)
        if name == "native":
            run = _backend.native_module().evaluate_metrics
        else:
            from . import _numba

            run = _numba.evaluate_metrics
        nthreads = check_threads(threads, _backend.default_threads())
        step = self.chunk or self.nq
        parts = []
        for a in range(0, self.nq, step):
            b = min(a + step, self.nq)
            parts.append(
                run(
                    self.q[a:b], self.db, self.nbits, **self._relevance_of(a, b), map_all=map_all,
                    tie_aware=tie_aware, map_ks=[int(k) for k in map_ks], depth=int(depth), pr=pr, threads=nthreads,
                )
            )
        per_query = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
        totals = tuple(np.sum([p[i] for p in parts], axis=0, dtype=np.int64) for i in range(3, 6))
        return per_query + totals


def _mean(values: np.ndarray, nq: int) -> float:
    return float(np.sum(values) / nq)


def _precision_from_hits(hits: np.ndarray, cutoffs: np.ndarray, nq: int) -> np.ndarray:
    """Mean over queries of (relevant items in the top N) / N at each N, from
    the relevant items at each rank summed over queries: every query shares
    the denominator N, so the mean is the total over (nq * N)."""
    within = np.cumsum(hits)[cutoffs - 1]
    precision: np.ndarray = within / (nq * cutoffs.astype(np.float64))
    return precision


def _pr_from_counts(pairs: np.ndarray, relevant: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    within = np.cumsum(pairs)
    hits = np.cumsum(relevant)
    groups = within.shape[0]
    precision = np.divide(hits, within, out=np.zeros(groups), where=within > 0)
    recall = np.divide(hits, hits[-1], out=np.zeros(groups), where=hits[-1] > 0)
    return precision, recall


# -- the public functions -------------------------------------------------------
def mean_average_precision(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    k: Optional[int] = None,
    tie_aware: bool = False,
    nbits: Optional[int] = None,
    chunk_size: Optional[int] = None,
) -> float:
    """Mean average precision of Hamming ranking.

    Each query ranks the whole database by Hamming distance, ties broken by
    ascending database row (the engine's ``(distance, id)`` order, as the
    MATLAB reference's stable sort). Item j is relevant to query q when
    ``query_labels[q] @ db_labels[j] > 0``.

    - ``k=None`` (MAP@all): with R_q relevant items, the m-th at 1-based
      rank pos_m, ``AP_q = (1/R_q) sum_m m / pos_m``.
    - ``k`` given (MAP@k): the ranking truncated to its top k; with R_q^k
      relevant items within the top k, ``AP@k_q = (1/R_q^k) sum_{m<=R_q^k}
      m / pos_m``. The denominator is the relevant count *within the top
      k*, not ``min(k, R_q)`` and not the first k relevant items wherever
      they rank.
    - ``tie_aware=True``: the expected AP over every ordering of each group
      of equal distance (He, Cakir, Bargal and Sclaroff, "Hashing as
      Tie-Aware Learning to Rank", CVPR 2018; ``kunhe/TALR``,
      ``+eval/tieAP.m``), in closed form. With n_d items at distance d,
      n_d^+ of them relevant, N_{d-1} and N_{d-1}^+ the items and relevant
      items at distances below d::

          AP_T = (1/R_q) sum_d n_d^+ (1/n_d) sum_{t=1}^{n_d}
                 [N_{d-1}^+ + 1 + (t-1)(n_d^+ - 1)/(n_d - 1)] / (N_{d-1} + t)

      where a group with n_d = 1 contributes n_d^+ (N_{d-1}^+ + 1)/(N_{d-1} + 1).
      It does not depend on the tie-breaking rule. Tie-aware MAP@k is not
      defined by the paper and is not offered.

    A query with no relevant item (within the top k for MAP@k) has AP 0 and
    still counts in the mean, as in the DCMH reference code. Several of these
    metrics at once cost little more than one: see :func:`evaluate`.

    Parameters
    ----------
    query_codes : ndarray of uint64, shape (nq, words)
        Packed codes (:func:`hamsearch.pack`), nq >= 1.
    db_codes : ndarray of uint64, shape (n_db, words)
        n_db >= 1.
    query_labels : array_like of {0, 1}, shape (nq, classes)
        bool, integer or float values, each 0 or 1.
    db_labels : array_like of {0, 1}, shape (n_db, classes)
    k : int, optional
        Truncate each ranking at its top k, ``1 <= k <= n_db``. None ranks
        the whole database.
    tie_aware : bool, optional
        Expected AP over the orderings of tied items; only with ``k=None``.
    nbits : int, optional
        Bits per code; the pad bits above it must be zero. None means
        ``64 * words``, which ranks identically (pad bits are zero).
    chunk_size : int, optional
        Queries per call of the backend (None: all at once; memory does not
        grow with it beyond the per-query results). The result does not
        depend on it.

    Returns
    -------
    float
        The mean over all nq queries, in [0, 1].
    """
    tie_aware = _check_flag(tie_aware, "tie_aware")
    prob = _Problem(query_codes, db_codes, query_labels, db_labels, nbits, chunk_size)
    if k is not None:
        if tie_aware:
            raise ValueError(f"k: expected k=None with tie_aware=True (tie-aware MAP@k is not defined), got k={k!r}")
        k = _check_k(k, prob.n_db)
        return _mean(prob.score(map_ks=[k])[2][:, 0], prob.nq)
    if tie_aware:
        return _mean(prob.score(tie_aware=True)[1], prob.nq)
    return _mean(prob.score(map_all=True)[0], prob.nq)


def precision_at_k(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    ks: IntOrInts,
    *,
    nbits: Optional[int] = None,
    chunk_size: Optional[int] = None,
) -> np.ndarray:
    """Precision of the top k of each Hamming ranking, averaged over queries.

    ``P@k = (1/nq) sum_q (relevant items among the top k of q) / k``, the
    ranking in the engine's ``(distance, database row)`` order and relevance
    meaning a shared label, as in :func:`mean_average_precision`.

    Parameters
    ----------
    query_codes, db_codes, query_labels, db_labels
        As in :func:`mean_average_precision`.
    ks : int or sequence of int
        Cut-offs, each ``1 <= k <= n_db``.
    nbits, chunk_size
        As in :func:`mean_average_precision`.

    Returns
    -------
    ndarray of float64, shape (len(ks),)
        P@k for each k in the order given (shape (1,) for a single int).
    """
    prob = _Problem(query_codes, db_codes, query_labels, db_labels, nbits, chunk_size)
    cutoffs = _check_cutoffs(ks, "ks", "k", prob.n_db)
    return _precision_from_hits(prob.score(depth=int(cutoffs.max()))[3], cutoffs, prob.nq)


def topn_precision(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    ns: Optional[IntOrInts] = None,
    *,
    nbits: Optional[int] = None,
    chunk_size: Optional[int] = None,
) -> np.ndarray:
    """The top-N precision curve: precision of the top N retrieved items,
    averaged over queries, for a grid of N.

    Parameters
    ----------
    query_codes, db_codes, query_labels, db_labels
        As in :func:`mean_average_precision`.
    ns : int or sequence of int, optional
        The grid, each ``1 <= N <= n_db``. None means every N from 1 to n_db,
        so that element ``N - 1`` of the result is P@N.
    nbits, chunk_size
        As in :func:`mean_average_precision`.

    Returns
    -------
    ndarray of float64, shape (len(ns),), or (n_db,) when ns is None
        P@N at each N, as :func:`precision_at_k` defines it.
    """
    prob = _Problem(query_codes, db_codes, query_labels, db_labels, nbits, chunk_size)
    grid = np.arange(1, prob.n_db + 1, dtype=np.int64) if ns is None else _check_cutoffs(ns, "ns", "N", prob.n_db)
    return _precision_from_hits(prob.score(depth=int(grid.max()))[3], grid, prob.nq)


def pr_curve(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    nbits: int,
    *,
    chunk_size: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Precision and recall of Hamming-ball retrieval at every radius.

    Micro-averaged over all query-database pairs, as DCMH's
    ``calcPreRecRadiusLabel.m``: for r = 0..nbits,

    - ``precision[r]`` = (relevant pairs with distance <= r) / (pairs with
      distance <= r), 0 where no pair lies within r;
    - ``recall[r]`` = (relevant pairs with distance <= r) / (relevant pairs
      in all), 0 where no pair is relevant.

    A per-query (macro) average gives different numbers.

    Parameters
    ----------
    query_codes, db_codes, query_labels, db_labels
        As in :func:`mean_average_precision`.
    nbits : int
        Bits per code: the radii run over 0..nbits. The codes' pad bits
        above it must be zero.
    chunk_size : int, optional
        As in :func:`mean_average_precision`.

    Returns
    -------
    precision : ndarray of float64, shape (nbits + 1,)
    recall : ndarray of float64, shape (nbits + 1,)
        Indexed by radius; recall is non-decreasing and ends at 1 when any
        pair is relevant.
    """
    if nbits is None:
        raise TypeError("nbits: expected an int (the radii run over 0..nbits), got None")
    prob = _Problem(query_codes, db_codes, query_labels, db_labels, nbits, chunk_size)
    scores = prob.score(pr=True)
    return _pr_from_counts(scores[4], scores[5])


def evaluate(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any = None,
    db_labels: Any = None,
    *,
    relevance: Any = None,
    map_at: Sequence[Optional[int]] = (None,),
    tie_aware: bool = True,
    ks: Optional[IntOrInts] = None,
    topn: Optional[IntOrInts] = None,
    pr: bool = False,
    nbits: Optional[int] = None,
    chunk_size: Optional[int] = None,
    threads: Optional[int] = None,
    backend: Optional[str] = None,
) -> Dict[str, Any]:
    """Several retrieval metrics of one Hamming ranking in one pass.

    Each metric is defined as by its own function (:func:`mean_average_precision`,
    :func:`precision_at_k`, :func:`topn_precision`, :func:`pr_curve`) and
    equals it exactly; computed together, the database is scanned once for
    the distance histograms and at most once more for the ranks, whatever
    is asked.

    Parameters
    ----------
    query_codes : ndarray of uint64, shape (nq, words)
    db_codes : ndarray of uint64, shape (n_db, words)
    query_labels, db_labels : array_like of {0, 1}, shapes (nq, classes) and (n_db, classes), optional
        Relevance as a shared label. Give these or ``relevance``.
    relevance : optional
        Any relevance instead of labels: a bool ndarray of shape (nq, n_db)
        (True = relevant), or a sequence of nq sequences of database rows
        (the ground truth of each query; repeats count once, an empty
        sequence is a query with nothing relevant). Other dtypes are
        rejected rather than guessed: pass ``m.astype(bool)`` for a 0/1 matrix.
    map_at : sequence of (int or None), optional
        MAP cut-offs: None for MAP@all (key ``"map"``), an int k for MAP@k
        (key ``"map@k"``, ``1 <= k <= n_db``). Default: MAP@all only; ``()``
        for none.
    tie_aware : bool, optional
        Tie-aware MAP (key ``"map_tie_aware"``); default True.
    ks : int or sequence of int, optional
        Precision cut-offs (key ``"precision_at_k"``, float64, aligned with ks).
    topn : int or sequence of int, optional
        The top-N grid (key ``"topn_precision"``, aligned with topn).
    pr : bool, optional
        The PR curve by radius 0..nbits (key ``"pr_curve"``: (precision,
        recall)), micro-averaged as :func:`pr_curve`.
    nbits : int, optional
        Bits per code (None: ``64 * words``); sets the PR curve's length.
    chunk_size : int, optional
        Queries per backend call (None: all at once); the result does not depend on it.
    threads : int, optional
        Worker threads (None: every usable core). The result does not depend on it.
    backend : {"auto", "native", "numba"}, optional
        As for the indexes (None or "auto": ``HAMSEARCH_IMPLEMENTATION``,
        else native when it loads).

    Returns
    -------
    dict
        The requested keys among ``"map"``, ``"map@k"`` (one per int in
        ``map_at``), ``"map_tie_aware"`` (floats), ``"precision_at_k"``,
        ``"topn_precision"`` (ndarrays) and ``"pr_curve"`` (a tuple of two
        ndarrays of shape (nbits + 1,)).

    Examples
    --------
    >>> scores = evaluate(q, db, ql, dl, map_at=(None, 50), ks=[100], pr=True)  # doctest: +SKIP
    >>> scores["map"], scores["map@50"], scores["map_tie_aware"]  # doctest: +SKIP
    """
    tie_aware = _check_flag(tie_aware, "tie_aware")
    pr = _check_flag(pr, "pr")
    prob = _Problem(query_codes, db_codes, query_labels, db_labels, nbits, chunk_size, relevance)
    if isinstance(map_at, (str, bytes)) or not isinstance(map_at, (list, tuple)):
        raise TypeError(f"map_at: expected a tuple or list of None and ints, got {type(map_at).__name__}")
    map_all = any(k is None for k in map_at)
    map_ks = sorted({_check_k(k, prob.n_db, "map_at") for k in map_at if k is not None})
    precision_ks = None if ks is None else _check_cutoffs(ks, "ks", "k", prob.n_db)
    grid = None if topn is None else _check_cutoffs(topn, "topn", "N", prob.n_db)
    depth = max([0] + [int(c.max()) for c in (precision_ks, grid) if c is not None])
    ap_all, ap_tie, ap_k, hits, pairs, relevant = prob.score(
        map_all=map_all, tie_aware=tie_aware, map_ks=map_ks, depth=depth, pr=pr, threads=threads, backend=backend
    )
    out: Dict[str, Any] = {}
    if map_all:
        out["map"] = _mean(ap_all, prob.nq)
    for j, k in enumerate(map_ks):
        out[f"map@{k}"] = _mean(ap_k[:, j], prob.nq)
    if tie_aware:
        out["map_tie_aware"] = _mean(ap_tie, prob.nq)
    if precision_ks is not None:
        out["precision_at_k"] = _precision_from_hits(hits, precision_ks, prob.nq)
    if grid is not None:
        out["topn_precision"] = _precision_from_hits(hits, grid, prob.nq)
    if pr:
        out["pr_curve"] = _pr_from_counts(pairs, relevant)
    return out
