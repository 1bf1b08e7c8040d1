"""The previous implementation of :mod:`hamsearch.metrics`, kept as a test
oracle and a benchmark baseline (``bench/bench_metrics.py``): numpy
post-processing of a materialised ranking, exact and slow. It ranks through
the engine's ``FlatIndex`` (``rank``, ``query``, ``radius``) and scores with
``cumsum``, ``bincount`` and a long-double harmonic table.

Retrieval metrics for binary codes, ranked by the engine.

Every function ranks a database of packed codes for each query through
:class:`hamsearch.FlatIndex` (Hamming distance, ties broken by ascending
database row, the engine's ``(distance, id)`` order) and scores the ranking
against {0,1} label vectors: a database item is *relevant* to a query when
their label vectors share at least one 1.

Definitions follow the evaluation protocol of the project (DESIGN section 5,
METHODS section 6):

- :func:`mean_average_precision`: MAP over the whole ranking, MAP@k, and
  tie-aware MAP (He, Cakir, Bargal and Sclaroff, CVPR 2018);
- :func:`precision_at_k` and :func:`topn_precision`: precision of the top k
  (top N) items, averaged over the queries;
- :func:`pr_curve`: precision and recall by Hamming radius 0..nbits,
  micro-averaged over all query-database pairs.

Queries are scored in chunks, so memory grows with the chunk size times the
database size, never with the number of queries times the database size.
numpy only; torch tensors come in through the array protocol.
"""
from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from hamsearch._validate import as_int, to_numpy
from hamsearch.flat import FlatIndex
# The input checks are the package's own (the same contract, one copy); the
# ranking and the scoring below, the oracle, are this module's.
from hamsearch.metrics import _check_cutoffs
from hamsearch.metrics import _Problem as _CheckedInputs

__all__ = ["mean_average_precision", "precision_at_k", "pr_curve", "topn_precision"]

# Query-database pairs scored at once when chunk_size is None. A chunk holds a
# few arrays of this many elements (ids, relevance, running counts): about
# 2**21 pairs keeps the peak near 100 MB, whatever the number of queries.
PAIRS_PER_CHUNK = 1 << 21

IntOrInts = Union[int, Sequence[int], np.ndarray]


# -- validation -------------------------------------------------------------
def _check_chunk_size(chunk_size: Any, n_db: int) -> int:
    if chunk_size is None:
        return max(1, PAIRS_PER_CHUNK // n_db)
    size = as_int(chunk_size, "chunk_size")
    if size < 1:
        raise ValueError(f"chunk_size: expected None or an int >= 1, got {size}")
    return size


class _Problem:
    """Checked inputs of one metric call and the index that ranks them."""

    def __init__(
        self,
        query_codes: Any,
        db_codes: Any,
        query_labels: Any,
        db_labels: Any,
        nbits: Any,
        chunk_size: Any,
    ) -> None:
        checked = _CheckedInputs(query_codes, db_codes, query_labels, db_labels, nbits, None)
        self.nbits, self.db, self.q = checked.nbits, checked.db, checked.q
        nq, n_db = checked.nq, checked.n_db
        self.ql = np.ascontiguousarray(to_numpy(query_labels, "query_labels"), dtype=np.float32)
        self.dl = np.ascontiguousarray(to_numpy(db_labels, "db_labels"), dtype=np.float32)
        self.nq, self.n_db = nq, n_db
        self.chunk = _check_chunk_size(chunk_size, n_db)
        self._index: Optional[FlatIndex] = None

    @property
    def index(self) -> FlatIndex:
        if self._index is None:
            self._index = FlatIndex(self.nbits)
            self._index.add(self.db)  # ids 0..n_db-1: the database rows
        return self._index

    def chunks(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """(query codes, query labels) of consecutive query chunks."""
        for start in range(0, self.nq, self.chunk):
            stop = min(start + self.chunk, self.nq)
            yield self.q[start:stop], self.ql[start:stop]

    def relevance(self, qlabels: np.ndarray) -> np.ndarray:
        """(chunk, n_db) bool: the query and the database item share a label."""
        rel: np.ndarray = (qlabels @ self.dl.T) > 0
        return rel

    def top(self, q: np.ndarray, qlabels: np.ndarray, k: int) -> np.ndarray:
        """(chunk, k) bool: relevance of each query's top k in (distance, row) order."""
        # rank is the engine's cheapest path to a long prefix; query (a
        # bounded top-k) wins for a short one. Both order by (distance, id).
        if 4 * k >= self.n_db:
            ids = self.index.rank(q)[:, :k]
        else:
            ids = self.index.query(q, k)[1]
        return np.take_along_axis(self.relevance(qlabels), ids, axis=1)

    def ranked_with_distances(self, q: np.ndarray, qlabels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(chunk, n_db) distances (int64, ascending per row) and relevance of
        the full ranking: the engine's radius search with r = nbits returns
        every item, in (distance, id) order, with its distance."""
        _, dist, ids = self.index.radius(q, self.nbits)
        shape = (q.shape[0], self.n_db)
        rel = np.take_along_axis(self.relevance(qlabels), ids.reshape(shape), axis=1)
        return dist.reshape(shape).astype(np.int64), rel


# -- average precision ------------------------------------------------------
def _ap_sums(rel: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per row of a ranked relevance matrix: (sum over relevant positions of
    precision at that position, number of relevant items)."""
    hits = np.cumsum(rel, axis=1, dtype=np.int64)
    rows, cols = np.nonzero(rel)
    prec = hits[rows, cols] / (cols + 1.0)
    return np.bincount(rows, weights=prec, minlength=rel.shape[0]), hits[:, -1]


def _harmonic(n: int) -> np.ndarray:
    """H[m] = sum_{i=1}^{m} 1/i for m = 0..n, in extended precision (where the
    platform has it) so that differences H[b] - H[a] of nearby large
    arguments keep their digits."""
    table = np.zeros(n + 1, dtype=np.longdouble)
    np.cumsum(1 / np.arange(1, n + 1, dtype=np.longdouble), out=table[1:])
    return table


def _tie_aware_ap(dist: np.ndarray, rel: np.ndarray, nbits: int, harmonic: np.ndarray) -> np.ndarray:
    """Tie-aware AP of each row of a (rows, n_db) distance matrix and the
    aligned relevance matrix (any order along a row).

    The group at distance d holds n_d items, n_d^+ of them relevant, after
    N_{d-1} items (N_{d-1}^+ relevant). METHODS section 6's inner sum over
    the group's places t = 1..n_d,
    sum_t [a + (t-1) b] / (N_{d-1} + t) with a = N_{d-1}^+ + 1 and
    b = (n_d^+ - 1)/(n_d - 1) (0 for a group of one), is, with u = N_{d-1} + t,
    sum_u [b + (a - (N_{d-1} + 1) b) / u]
    = n_d b + (a - (N_{d-1} + 1) b) (H[N_{d-1} + n_d] - H[N_{d-1}]).
    Each group then weighs n_d^+ / n_d; the sum over d divided by R_q is AP_T.
    """
    nrow = dist.shape[0]
    groups = nbits + 1
    flat = (np.arange(nrow, dtype=np.int64)[:, None] * groups + dist).ravel()
    n_d = np.bincount(flat, minlength=nrow * groups).reshape(nrow, groups)
    pos_d = np.bincount(flat[rel.ravel()], minlength=nrow * groups).reshape(nrow, groups)
    before = np.cumsum(n_d, axis=1) - n_d  # N_{d-1}
    pos_before = np.cumsum(pos_d, axis=1) - pos_d  # N^+_{d-1}
    # b: the expected share of the other relevant items among the other
    # places of the group; a group of one has no other places.
    b = np.divide(pos_d - 1.0, n_d - 1.0, out=np.zeros(n_d.shape), where=n_d > 1)
    a = pos_before + 1.0
    tail = (harmonic[before + n_d] - harmonic[before]).astype(np.float64)
    inner = n_d * b + (a - (before + 1.0) * b) * tail
    weight = np.divide(pos_d, n_d, out=np.zeros(n_d.shape), where=n_d > 0)
    r = pos_d.sum(axis=1)
    ap: np.ndarray = np.divide((weight * inner).sum(axis=1), r, out=np.zeros(nrow), where=r > 0)
    return ap


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
    """MAP@all, MAP@k or tie-aware MAP, as :func:`hamsearch.metrics.mean_average_precision`."""
    if not isinstance(tie_aware, (bool, np.bool_)):
        raise TypeError(f"tie_aware: expected a bool, got {type(tie_aware).__name__}")
    prob = _Problem(query_codes, db_codes, query_labels, db_labels, nbits, chunk_size)
    if k is not None:
        if tie_aware:
            raise ValueError(f"k: expected k=None with tie_aware=True (tie-aware MAP@k is not defined), got k={k!r}")
        k = as_int(k, "k")
        if not 1 <= k <= prob.n_db:
            raise ValueError(
                f"k: expected 1 <= k <= {prob.n_db} (the database size), got {k}; "
                "k=None scores the whole ranking"
            )
    harmonic = _harmonic(prob.n_db) if tie_aware else np.zeros(0)
    total = 0.0
    for q, ql in prob.chunks():
        if tie_aware:
            dist, rel = prob.ranked_with_distances(q, ql)
            total += float(_tie_aware_ap(dist, rel, prob.nbits, harmonic).sum())
        else:
            rel = prob.top(q, ql, prob.n_db if k is None else k)
            sums, counts = _ap_sums(rel)
            total += float(np.divide(sums, counts, out=np.zeros(len(sums)), where=counts > 0).sum())
    return float(total / prob.nq)


# -- precision ----------------------------------------------------------------
def _precision_curve(prob: _Problem, cutoffs: np.ndarray) -> np.ndarray:
    """Mean over queries of (relevant items in the top N) / N at each N."""
    deepest = int(cutoffs.max())
    hits = np.zeros(cutoffs.shape[0], dtype=np.int64)
    for q, ql in prob.chunks():
        rel = prob.top(q, ql, deepest)
        hits += np.cumsum(rel, axis=1, dtype=np.int64)[:, cutoffs - 1].sum(axis=0)
    # Every query shares the denominator N, so the mean of the precisions is
    # the total of the hits over (nq * N): exact integer counts until here.
    precision: np.ndarray = hits / (prob.nq * cutoffs.astype(np.float64))
    return precision


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
    """P@k, as :func:`hamsearch.metrics.precision_at_k`."""
    prob = _Problem(query_codes, db_codes, query_labels, db_labels, nbits, chunk_size)
    return _precision_curve(prob, _check_cutoffs(ks, "ks", "k", prob.n_db))


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
    """The top-N precision curve, as :func:`hamsearch.metrics.topn_precision`."""
    prob = _Problem(query_codes, db_codes, query_labels, db_labels, nbits, chunk_size)
    grid = np.arange(1, prob.n_db + 1, dtype=np.int64) if ns is None else _check_cutoffs(ns, "ns", "N", prob.n_db)
    return _precision_curve(prob, grid)


# -- precision-recall by radius --------------------------------------------
def pr_curve(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    nbits: int,
    *,
    chunk_size: Optional[int] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Micro-averaged precision and recall by radius, as :func:`hamsearch.metrics.pr_curve`."""
    if nbits is None:
        raise TypeError("nbits: expected an int (the radii run over 0..nbits), got None")
    prob = _Problem(query_codes, db_codes, query_labels, db_labels, nbits, chunk_size)
    groups = prob.nbits + 1
    pairs = np.zeros(groups, dtype=np.int64)
    relevant = np.zeros(groups, dtype=np.int64)
    for q, ql in prob.chunks():
        dist, rel = prob.ranked_with_distances(q, ql)
        pairs += np.bincount(dist.ravel(), minlength=groups)
        relevant += np.bincount(dist[rel], minlength=groups)
    within = np.cumsum(pairs)
    hits = np.cumsum(relevant)
    precision = np.divide(hits, within, out=np.zeros(groups), where=within > 0)
    recall = np.divide(hits, hits[-1], out=np.zeros(groups), where=hits[-1] > 0)
    return precision, recall
