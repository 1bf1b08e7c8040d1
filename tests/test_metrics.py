"""hamsearch.metrics against hand-worked examples and independent oracles.

The oracles here never call hamsearch: codes are built from bits with
``np.packbits`` (``oracle.codes_from_bits``), distances are counted on the
unpacked bits, rankings come from ``np.lexsort`` by (distance, row), and
relevance from an integer product of the label rows. Tie-aware MAP is checked
against brute force over every ordering of every tied group, in exact
fractions, and against METHODS section 6's formula written out term by term.
The previous, numpy implementation (``metrics_reference``) is a second oracle.

Every test runs on the native core at each kernel level this CPU has and on
the Numba backend (the autouse ``engine`` fixture), and the backends are
checked to agree bit for bit.
"""
from __future__ import annotations

import itertools
import math
import os
import pathlib
import re
from fractions import Fraction
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hamsearch.metrics as hm
import metrics_reference
from hamsearch import _backend
from oracle import codes_from_bits, distances


@pytest.fixture(autouse=True)
def engine(backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The metrics choose their backend like the indexes (backend="auto"):
    through HAMSEARCH_IMPLEMENTATION, set here per parametrized engine."""
    monkeypatch.setenv("HAMSEARCH_IMPLEMENTATION", backend)
    return backend

# -- the oracle ---------------------------------------------------------------


class Case:
    """Bits, labels and everything the oracle derives from them."""

    def __init__(self, qbits: np.ndarray, dbbits: np.ndarray, qlabels: np.ndarray, dblabels: np.ndarray) -> None:
        self.nbits = qbits.shape[1]
        self.q = codes_from_bits(qbits)
        self.db = codes_from_bits(dbbits)
        self.ql = np.asarray(qlabels, dtype=np.uint8)
        self.dl = np.asarray(dblabels, dtype=np.uint8)
        self.dist = distances(np.asarray(qbits, dtype=np.uint8), np.asarray(dbbits, dtype=np.uint8))
        self.rel = (self.ql.astype(np.int64) @ self.dl.astype(np.int64).T) > 0
        n_db = dbbits.shape[0]
        self.order = np.array([np.lexsort((np.arange(n_db), d)) for d in self.dist]).reshape(self.dist.shape)
        self.ranked_rel = np.take_along_axis(self.rel, self.order, axis=1)
        self.ranked_dist = np.take_along_axis(self.dist, self.order, axis=1)

    def args(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.q, self.db, self.ql, self.dl


def ap_of(rel: Sequence[bool]) -> float:
    """AP of one ranked relevance list: mean over relevant items of m / pos_m."""
    pos = np.flatnonzero(np.asarray(rel)) + 1
    if pos.size == 0:
        return 0.0
    return float(np.mean(np.arange(1, pos.size + 1) / pos))


def oracle_map(case: Case, k: Optional[int] = None) -> float:
    cut = case.ranked_rel if k is None else case.ranked_rel[:, :k]
    return float(np.mean([ap_of(row) for row in cut]))


def oracle_precision(case: Case, n: int) -> float:
    return float(np.mean([row[:n].sum() / n for row in case.ranked_rel]))


def oracle_pr(case: Case) -> Tuple[np.ndarray, np.ndarray]:
    prec, rec = [], []
    total_rel = case.rel.sum()
    for r in range(case.nbits + 1):
        within = case.dist <= r
        hits = (within & case.rel).sum()
        prec.append(hits / within.sum() if within.sum() else 0.0)
        rec.append(hits / total_rel if total_rel else 0.0)
    return np.array(prec), np.array(rec)


def tie_ap_formula(dist: np.ndarray, rel: np.ndarray) -> float:
    """METHODS section 6, written out: a double loop over groups and places."""
    r_q = int(rel.sum())
    if r_q == 0:
        return 0.0
    total = 0.0
    before = before_pos = 0
    for d in np.unique(dist):
        in_group = dist == d
        n_d = int(in_group.sum())
        p_d = int(rel[in_group].sum())
        if n_d == 1:
            total += p_d * (before_pos + 1) / (before + 1)
        else:
            inner = sum((before_pos + 1 + (t - 1) * (p_d - 1) / (n_d - 1)) / (before + t) for t in range(1, n_d + 1))
            total += p_d * inner / n_d
        before += n_d
        before_pos += p_d
    return total / r_q


def tie_ap_brute_force(dist: Sequence[int], rel: Sequence[bool]) -> Fraction:
    """Exact mean AP over every ordering inside every group of equal distance."""
    groups: List[List[bool]] = [[bool(rel[j]) for j in range(len(dist)) if dist[j] == d] for d in sorted(set(dist))]
    total, count = Fraction(0), 0
    for parts in itertools.product(*(itertools.permutations(g) for g in groups)):
        ranking = [x for part in parts for x in part]
        pos = [i + 1 for i, x in enumerate(ranking) if x]
        total += sum((Fraction(m, p) for m, p in enumerate(pos, start=1)), Fraction(0)) / len(pos) if pos else 0
        count += 1
    return total / count


def random_case(
    rng: np.random.Generator,
    nq: int,
    n_db: int,
    nbits: int,
    classes: int,
    pool: Optional[int] = None,
    p_label: float = 0.4,
) -> Case:
    """Random bits and labels. With ``pool``, database rows repeat a few
    distinct codes, so that ties and duplicates abound."""
    qbits = (rng.random((nq, nbits)) < 0.5).astype(np.uint8)
    if pool is None:
        dbbits = (rng.random((n_db, nbits)) < 0.5).astype(np.uint8)
    else:
        distinct = (rng.random((pool, nbits)) < 0.5).astype(np.uint8)
        dbbits = distinct[rng.integers(0, pool, n_db)]
    ql = (rng.random((nq, classes)) < p_label).astype(np.uint8)
    dl = (rng.random((n_db, classes)) < p_label).astype(np.uint8)
    return Case(qbits, dbbits, ql, dl)


def case_from_distances(dists: Sequence[int], rel: Sequence[int], nbits: int = 8) -> Case:
    """One query (all zeros) against database items at the given distances
    (item j has its first dists[j] bits set), relevant where rel[j] = 1."""
    qbits = np.zeros((1, nbits), dtype=np.uint8)
    dbbits = np.array([[1] * d + [0] * (nbits - d) for d in dists], dtype=np.uint8)
    ql = np.array([[1, 0]], dtype=np.uint8)
    dl = np.array([[1, 0] if r else [0, 1] for r in rel], dtype=np.uint8)
    return Case(qbits, dbbits, ql, dl)


# -- hand-worked examples ----------------------------------------------------


def test_map_worked_example_from_methods():
    # Distinct distances 0..4, relevance [1, 0, 1, 1, 0] in rank order.
    # Relevant at ranks 1, 3, 4: AP = (1/1 + 2/3 + 3/4) / 3 = 2.41667 / 3 = 0.805556.
    case = case_from_distances([0, 1, 2, 3, 4], [1, 0, 1, 1, 0])
    expected = (1 / 1 + 2 / 3 + 3 / 4) / 3
    assert hm.mean_average_precision(*case.args()) == pytest.approx(expected, abs=1e-15)
    assert expected == pytest.approx(0.80556, abs=1e-5)
    # No ties, so the tie-aware value is the same.
    assert hm.mean_average_precision(*case.args(), tie_aware=True) == pytest.approx(expected, abs=1e-15)


def test_map_at_k_worked_example():
    # Relevance [1, 0, 1, 1, 0] in rank order.
    # k=1: one relevant in top 1, at rank 1          -> 1/1 / 1 = 1
    # k=2: one relevant in top 2 (rank 1)             -> 1
    # k=3: ranks 1, 3: (1/1 + 2/3) / 2                 = 0.833333
    # k=4: ranks 1, 3, 4: (1 + 2/3 + 3/4) / 3          = 0.805556
    # k=5: the same as k=4 (rank 5 is irrelevant)      = 0.805556
    case = case_from_distances([0, 1, 2, 3, 4], [1, 0, 1, 1, 0])
    expected = [1.0, 1.0, (1 + 2 / 3) / 2, (1 + 2 / 3 + 3 / 4) / 3, (1 + 2 / 3 + 3 / 4) / 3]
    for k, e in enumerate(expected, start=1):
        assert hm.mean_average_precision(*case.args(), k=k) == pytest.approx(e, abs=1e-15), k


def test_map_at_k_divides_by_relevant_within_top_k():
    # Relevance [0, 1, 0, 0, 1, 1] in rank order, k = 3.
    # Top 3 holds one relevant item, at rank 2: AP@3 = (1/2) / 1 = 0.5.
    # Dividing by min(k, R) = 3 would give 0.1667; the DCMH port's "first k
    # relevant items wherever they rank" would give (1/2 + 2/5 + 3/6)/3 = 0.4667.
    case = case_from_distances([0, 1, 2, 3, 4, 5], [0, 1, 0, 0, 1, 1])
    assert hm.mean_average_precision(*case.args(), k=3) == pytest.approx(0.5, abs=1e-15)
    # MAP@all: (1/2 + 2/5 + 3/6) / 3 = 1.4 / 3.
    assert hm.mean_average_precision(*case.args()) == pytest.approx(1.4 / 3, abs=1e-15)
    # k = 1: nothing relevant in the top 1 -> 0, although 3 relevant exist.
    assert hm.mean_average_precision(*case.args(), k=1) == 0.0


def test_tie_aware_worked_example():
    # Distances [0, 1, 1, 1, 2], relevance [0, 0, 1, 1, 1] by database row.
    # Ranking by (distance, row): relevance [0, 0, 1, 1, 1], so
    #   plain AP = (1/3 + 2/4 + 3/5) / 3 = 1.433333 / 3 = 0.477778.
    # Tie-aware, groups by distance:
    #   d=0: n=1, n+=0                                  -> 0
    #   d=1: n=3, n+=2, N=1, N+=0, slope (2-1)/(3-1) = 0.5:
    #        sum_t [1 + (t-1)*0.5] / (1 + t) = 1/2 + 1.5/3 + 2/4 = 1.5,
    #        times n+/n = 2/3                          -> 1.0
    #   d=2: n=1, n+=1, N=4, N+=2: (2 + 1)/(4 + 1)      -> 0.6
    #   AP_T = (0 + 1.0 + 0.6) / 3 = 0.533333.
    # By enumeration, the irrelevant tied item first, middle or last gives
    # relevant ranks (3,4,5), (2,4,5), (2,3,5): APs 1.43333/3, 1.6/3,
    # 1.76667/3, whose mean is 4.8/9 = 0.533333.
    case = case_from_distances([0, 1, 1, 1, 2], [0, 0, 1, 1, 1])
    assert hm.mean_average_precision(*case.args()) == pytest.approx((1 / 3 + 2 / 4 + 3 / 5) / 3, abs=1e-15)
    assert hm.mean_average_precision(*case.args(), tie_aware=True) == pytest.approx(4.8 / 9, abs=1e-15)


def test_ties_break_by_database_row():
    # Two identical database codes, one relevant. The earlier row ranks first:
    # relevant second -> AP = 1/2; relevant first -> AP = 1.
    # Tie-aware: one group of 2 with 1 relevant: (1/2)(1/1 + 1/2) = 0.75 either way.
    second = case_from_distances([3, 3], [0, 1])
    first = case_from_distances([3, 3], [1, 0])
    assert hm.mean_average_precision(*second.args()) == 0.5
    assert hm.mean_average_precision(*first.args()) == 1.0
    assert hm.mean_average_precision(*second.args(), tie_aware=True) == pytest.approx(0.75, abs=1e-15)
    assert hm.mean_average_precision(*first.args(), tie_aware=True) == pytest.approx(0.75, abs=1e-15)


def test_precision_worked_example():
    # Relevance [1, 0, 1, 1, 0] in rank order: P@1 = 1, P@2 = 1/2, P@3 = 2/3,
    # P@4 = 3/4, P@5 = 3/5.
    case = case_from_distances([0, 1, 2, 3, 4], [1, 0, 1, 1, 0])
    expected = np.array([1, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
    np.testing.assert_allclose(hm.precision_at_k(*case.args(), [1, 2, 3, 4, 5]), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(hm.topn_precision(*case.args()), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(hm.topn_precision(*case.args(), [5, 2]), expected[[4, 1]], rtol=0, atol=1e-15)
    got = hm.precision_at_k(*case.args(), 3)
    assert isinstance(got, np.ndarray) and got.shape == (1,) and got.dtype == np.float64
    assert got[0] == pytest.approx(2 / 3, abs=1e-15)


def test_precision_averages_over_queries():
    # Query 0 ranks [R, N, R]; query 1 ranks [N, N, R] (its own labels).
    # P@2 = (1/2 + 0/2) / 2 = 0.25; P@3 = (2/3 + 1/3) / 2 = 0.5.
    qbits = np.zeros((2, 4), dtype=np.uint8)
    dbbits = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=np.uint8)
    ql = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.uint8)
    dl = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], dtype=np.uint8)
    case = Case(qbits, dbbits, ql, dl)
    np.testing.assert_allclose(hm.precision_at_k(*case.args(), [2, 3]), [0.25, 0.5], rtol=0, atol=1e-15)


def test_pr_curve_worked_example():
    # Distances [0, 1, 1, 3] with relevance [1, 0, 1, 1], 4 bits, one query.
    # r=0: 1 pair within, 1 relevant   -> P = 1,    R = 1/3
    # r=1: 3 within, 2 relevant        -> P = 2/3,  R = 2/3
    # r=2: same as r=1                 -> P = 2/3,  R = 2/3
    # r=3: 4 within, 3 relevant        -> P = 3/4,  R = 1
    # r=4: same                        -> P = 3/4,  R = 1
    case = case_from_distances([0, 1, 1, 3], [1, 0, 1, 1], nbits=4)
    precision, recall = hm.pr_curve(*case.args(), 4)
    assert precision.shape == recall.shape == (5,)
    np.testing.assert_allclose(precision, [1, 2 / 3, 2 / 3, 3 / 4, 3 / 4], rtol=0, atol=1e-15)
    np.testing.assert_allclose(recall, [1 / 3, 2 / 3, 2 / 3, 1, 1], rtol=0, atol=1e-15)


def test_pr_curve_is_micro_averaged_and_zero_where_empty():
    # Database 110, 011, 101 (3 bits). Query A = 000 is at distance 2 from
    # every row, query B = 111 at distance 1. A's labels {0, 1} meet every
    # row; B's label {1} only row 0. Relevant pairs in all: 3 + 1 = 4.
    dbbits = np.array([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=np.uint8)
    dl = np.array([[1, 1], [1, 0], [1, 0]], dtype=np.uint8)
    # A alone: nothing within r = 0, 1 -> precision 0 (defined so), recall 0;
    # r = 2, 3: 3 pairs, 3 relevant -> P = 1, R = 1.
    case_a = Case(np.zeros((1, 3), np.uint8), dbbits, [[1, 1]], dl)
    p, r = hm.pr_curve(*case_a.args(), 3)
    np.testing.assert_allclose(p, [0, 0, 1, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(r, [0, 0, 1, 1], rtol=0, atol=1e-15)
    # A and B together, pooled over the 6 pairs:
    # r=0: no pair                    -> P = 0,         R = 0
    # r=1: B's 3 pairs, 1 relevant    -> P = 1/3,       R = 1/4
    # r=2: 6 pairs, 4 relevant        -> P = 4/6,       R = 4/4
    # r=3: the same                   -> P = 4/6,       R = 1
    # A per-query (macro) mean at r=1 would be (0 + 1/3)/2 = 1/6, not 1/3.
    qbits = np.array([[0, 0, 0], [1, 1, 1]], dtype=np.uint8)
    case = Case(qbits, dbbits, [[1, 1], [0, 1]], dl)
    p, r = hm.pr_curve(*case.args(), 3)
    np.testing.assert_allclose(p, [0, 1 / 3, 4 / 6, 4 / 6], rtol=0, atol=1e-15)
    np.testing.assert_allclose(r, [0, 1 / 4, 1, 1], rtol=0, atol=1e-15)


def test_query_without_relevant_item_counts_zero():
    # Query 0 shares label 0 with database row 0 at distance 0: AP = 1.
    # Query 1's label (2) appears nowhere: AP = 0, and it still counts: MAP = 1/2.
    qbits = np.zeros((2, 8), dtype=np.uint8)
    dbbits = np.array([[0] * 8, [1] + [0] * 7], dtype=np.uint8)
    ql = np.array([[1, 0, 0], [0, 0, 1]], dtype=np.uint8)
    dl = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.uint8)
    case = Case(qbits, dbbits, ql, dl)
    assert hm.mean_average_precision(*case.args()) == 0.5
    assert hm.mean_average_precision(*case.args(), tie_aware=True) == 0.5
    assert hm.mean_average_precision(*case.args(), k=1) == 0.5
    np.testing.assert_array_equal(hm.precision_at_k(*case.args(), [1, 2]), [0.5, 0.25])


def test_no_relevant_item_anywhere():
    # An all-zero label row relates to nothing; so does a database without
    # shared labels. Everything is 0, including recall (no relevant pair).
    case = case_from_distances([0, 1, 2], [0, 0, 0], nbits=3)
    assert hm.mean_average_precision(*case.args()) == 0.0
    assert hm.mean_average_precision(*case.args(), tie_aware=True) == 0.0
    assert hm.mean_average_precision(*case.args(), k=2) == 0.0
    np.testing.assert_array_equal(hm.topn_precision(*case.args()), [0, 0, 0])
    p, r = hm.pr_curve(*case.args(), 3)
    np.testing.assert_array_equal(p, [0, 0, 0, 0])
    np.testing.assert_array_equal(r, [0, 0, 0, 0])
    empty_labels = Case(np.zeros((1, 3), np.uint8), np.zeros((2, 3), np.uint8), [[0, 0]], [[1, 1], [1, 0]])
    assert hm.mean_average_precision(*empty_labels.args()) == 0.0


def test_relevant_items_outside_top_k_give_zero():
    # Relevant only at rank 3: MAP@2 = 0, MAP@3 = 1/3, MAP@all = 1/3.
    case = case_from_distances([0, 1, 2], [0, 0, 1], nbits=3)
    assert hm.mean_average_precision(*case.args(), k=2) == 0.0
    assert hm.mean_average_precision(*case.args(), k=3) == pytest.approx(1 / 3, abs=1e-15)
    assert hm.mean_average_precision(*case.args()) == pytest.approx(1 / 3, abs=1e-15)


def test_multi_label_relevance_is_any_shared_label():
    # Query labels {0, 2}. Rows: {2} shares 2 -> relevant; {1} -> not;
    # {0, 1} shares 0 -> relevant; {} -> not. Ranking by distance 0..3:
    # relevance [1, 0, 1, 0] -> AP = (1 + 2/3) / 2 = 0.833333.
    qbits = np.zeros((1, 4), dtype=np.uint8)
    dbbits = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=np.uint8)
    case = Case(qbits, dbbits, [[1, 0, 1]], [[0, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    assert hm.mean_average_precision(*case.args()) == pytest.approx((1 + 2 / 3) / 2, abs=1e-15)


def test_label_dtypes_agree():
    rng = np.random.default_rng(11)
    case = random_case(rng, nq=5, n_db=30, nbits=12, classes=4)
    ref = hm.mean_average_precision(*case.args())
    for dtype in (np.bool_, np.int32, np.float64, np.float32, np.uint16):
        got = hm.mean_average_precision(case.q, case.db, case.ql.astype(dtype), case.dl.astype(dtype))
        assert got == ref, dtype
    # Nested lists come in through the array protocol as well.
    assert hm.mean_average_precision(case.q, case.db, case.ql.tolist(), case.dl.tolist()) == ref


def test_nbits_keyword_and_inference_agree():
    # 20-bit codes: inferred nbits is 64 (pad bits are zero, so identical
    # distances and rankings); only the PR curve's length follows nbits.
    rng = np.random.default_rng(12)
    case = random_case(rng, nq=4, n_db=25, nbits=20, classes=3, pool=6)
    for kwargs in ({}, {"k": 7}, {"tie_aware": True}):
        assert hm.mean_average_precision(*case.args(), **kwargs) == hm.mean_average_precision(
            *case.args(), nbits=20, **kwargs
        )
    p20, r20 = hm.pr_curve(*case.args(), 20)
    p64, r64 = hm.pr_curve(*case.args(), 64)
    np.testing.assert_array_equal(p64[:21], p20)
    np.testing.assert_array_equal(r64[:21], r20)
    assert np.all(p64[21:] == p20[-1]) and np.all(r64[21:] == r20[-1])


# -- random inputs against the oracle --------------------------------------


@st.composite
def cases(draw: st.DrawFn, max_db: int = 40) -> Case:
    seed = draw(st.integers(0, 2**32 - 1))
    nbits = draw(st.sampled_from([1, 2, 3, 5, 8, 16, 63, 64, 65, 130]))
    nq = draw(st.integers(1, 6))
    n_db = draw(st.integers(1, max_db))
    classes = draw(st.integers(1, 5))
    pool = draw(st.one_of(st.none(), st.integers(1, 4)))
    p_label = draw(st.sampled_from([0.0, 0.2, 0.5, 1.0]))
    return random_case(np.random.default_rng(seed), nq, n_db, nbits, classes, pool, p_label)


@settings(max_examples=80)
@given(case=cases(), data=st.data())
def test_map_matches_oracle(case, data):
    n_db = case.db.shape[0]
    chunk = data.draw(st.one_of(st.none(), st.integers(1, 7)), label="chunk_size")
    k = data.draw(st.integers(1, n_db), label="k")
    assert hm.mean_average_precision(*case.args(), chunk_size=chunk) == pytest.approx(oracle_map(case), abs=1e-12)
    assert hm.mean_average_precision(*case.args(), k=k, chunk_size=chunk) == pytest.approx(
        oracle_map(case, k), abs=1e-12
    )
    expected_tie = np.mean([tie_ap_formula(d, r) for d, r in zip(case.dist, case.rel)])
    assert hm.mean_average_precision(*case.args(), tie_aware=True, chunk_size=chunk) == pytest.approx(
        expected_tie, abs=1e-12
    )


@settings(max_examples=60)
@given(case=cases(), data=st.data())
def test_precision_and_pr_match_oracle(case, data):
    n_db = case.db.shape[0]
    chunk = data.draw(st.one_of(st.none(), st.integers(1, 7)), label="chunk_size")
    ks = data.draw(st.lists(st.integers(1, n_db), min_size=1, max_size=5), label="ks")
    np.testing.assert_allclose(
        hm.precision_at_k(*case.args(), ks, chunk_size=chunk),
        [oracle_precision(case, k) for k in ks],
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        hm.topn_precision(*case.args(), chunk_size=chunk),
        [oracle_precision(case, n) for n in range(1, n_db + 1)],
        rtol=0,
        atol=1e-12,
    )
    precision, recall = hm.pr_curve(*case.args(), case.nbits, chunk_size=chunk)
    e_precision, e_recall = oracle_pr(case)
    np.testing.assert_allclose(precision, e_precision, rtol=0, atol=1e-12)
    np.testing.assert_allclose(recall, e_recall, rtol=0, atol=1e-12)


def test_tie_aware_matches_brute_force_over_orderings():
    # Tiny databases at 2 or 3 bits: large tied groups. Every ordering of
    # every group is enumerated and AP averaged in exact fractions.
    rng = np.random.default_rng(2018)
    checked = 0
    for _ in range(60):
        nbits = int(rng.integers(1, 4))
        n_db = int(rng.integers(1, 8))
        case = random_case(rng, nq=2, n_db=n_db, nbits=nbits, classes=3, pool=int(rng.integers(1, 4)))
        expected = [tie_ap_brute_force(list(d), list(r)) for d, r in zip(case.dist, case.rel)]
        got = hm.mean_average_precision(*case.args(), tie_aware=True)
        assert got == pytest.approx(float(sum(expected) / len(expected)), abs=1e-12)
        checked += sum(len(set(d)) < len(d) for d in case.dist)
    assert checked > 50  # most queries did have ties


def test_tie_aware_brute_force_on_one_big_tie():
    # One group of 7 (5040 orderings), 3 relevant, nothing before it
    # (N = N+ = 0), slope (3-1)/(7-1) = 1/3. By the formula:
    # AP_T = (1/3) * 3 * (1/7) * sum_{t=1..7} [1 + (t-1)/3] / t
    #      = (1/7) * (1 + 2/3 + 5/9 + 1/2 + 7/15 + 4/9 + 3/7) = 0.5786...
    case = case_from_distances([2] * 7, [0, 1, 0, 0, 1, 1, 0], nbits=3)
    exact = tie_ap_brute_force([2] * 7, [0, 1, 0, 0, 1, 1, 0])
    by_hand = sum((1 + Fraction(t - 1, 3)) / t for t in range(1, 8)) / 7
    assert exact == by_hand
    assert hm.mean_average_precision(*case.args(), tie_aware=True) == pytest.approx(float(exact), abs=1e-15)


def test_tie_aware_ignores_database_order():
    # The expectation over tie orderings cannot depend on the tie-breaking
    # row order; the plain value does (the example below changes it).
    rng = np.random.default_rng(7)
    case = random_case(rng, nq=6, n_db=60, nbits=4, classes=3)
    perm = rng.permutation(60)
    shuffled = (case.q, np.ascontiguousarray(case.db[perm]), case.ql, np.ascontiguousarray(case.dl[perm]))
    tie = hm.mean_average_precision(*case.args(), tie_aware=True)
    assert hm.mean_average_precision(*shuffled, tie_aware=True) == pytest.approx(tie, abs=1e-12)
    assert hm.mean_average_precision(*shuffled) != hm.mean_average_precision(*case.args())


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(3)
    case = random_case(rng, nq=23, n_db=150, nbits=10, classes=4, pool=40)
    ref_map = oracle_map(case)
    for chunk in (1, 2, 7, 22, 23, 100, None):
        assert hm.mean_average_precision(*case.args(), chunk_size=chunk) == pytest.approx(ref_map, abs=1e-12)
        assert hm.mean_average_precision(*case.args(), k=9, chunk_size=chunk) == pytest.approx(
            oracle_map(case, 9), abs=1e-12
        )
        np.testing.assert_allclose(
            hm.topn_precision(*case.args(), [1, 10, 150], chunk_size=chunk),
            [oracle_precision(case, n) for n in (1, 10, 150)],
            rtol=0,
            atol=1e-12,
        )
        p, r = hm.pr_curve(*case.args(), 10, chunk_size=chunk)
        ep, er = oracle_pr(case)
        np.testing.assert_allclose(p, ep, rtol=0, atol=1e-12)
        np.testing.assert_allclose(r, er, rtol=0, atol=1e-12)


def test_memory_does_not_grow_with_pairs():
    # 400 queries x 50,000 items = 2e7 pairs: any (queries x database)
    # array would take 20 MB at one byte a pair. What Python allocates stays
    # within the inputs' size (labels as bit sets, per-query results), and
    # the native core keeps a few counters per distance per thread.
    import tracemalloc

    rng = np.random.default_rng(16)
    q = rng.integers(0, 2**63, size=(400, 1), dtype=np.uint64)
    db = rng.integers(0, 2**63, size=(50_000, 1), dtype=np.uint64)
    ql = (rng.random((400, 5)) < 0.3).astype(np.uint8)
    dl = (rng.random((50_000, 5)) < 0.3).astype(np.uint8)
    hm.evaluate(q, db, ql, dl, map_at=(None, 10), ks=[5], pr=True)  # compiled, pools started
    tracemalloc.start()
    try:
        hm.evaluate(q, db, ql, dl, map_at=(None, 10), ks=[5], pr=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak


def test_wide_codes_against_oracle():
    # 200 bits (4 words) and a moderate database, several query chunks.
    rng = np.random.default_rng(200)
    case = random_case(rng, nq=9, n_db=300, nbits=200, classes=6, p_label=0.25)
    assert hm.mean_average_precision(*case.args(), chunk_size=4) == pytest.approx(oracle_map(case), abs=1e-12)
    assert hm.mean_average_precision(*case.args(), k=50, chunk_size=4) == pytest.approx(oracle_map(case, 50), abs=1e-12)
    expected_tie = np.mean([tie_ap_formula(d, r) for d, r in zip(case.dist, case.rel)])
    assert hm.mean_average_precision(*case.args(), tie_aware=True) == pytest.approx(expected_tie, abs=1e-12)


# -- bad inputs ----------------------------------------------------------------


def _good() -> Case:
    return case_from_distances([0, 1, 2, 3], [1, 0, 1, 0], nbits=8)


def _with(case: Case, **replace) -> dict:
    args = {"query_codes": case.q, "db_codes": case.db, "query_labels": case.ql, "db_labels": case.dl}
    args.update(replace)
    return args


BAD_ARGUMENTS = [
    ("query_codes", lambda c: c.q.astype(np.uint8), TypeError, "uint64"),
    ("db_codes", lambda c: c.db.astype(np.int64), TypeError, "uint64"),
    ("db_codes", lambda c: c.db.ravel(), ValueError, "2-D"),
    ("db_codes", lambda c: np.zeros((4, 0), np.uint64), ValueError, "got shape (4, 0)"),
    ("query_codes", lambda c: np.zeros((1, 2), np.uint64), ValueError, "(n, 1)"),
    ("query_codes", lambda c: np.zeros((0, 1), np.uint64), ValueError, "at least one query"),
    ("db_codes", lambda c: np.zeros((8, 1), np.uint64)[::2], ValueError, "C-contiguous"),
    ("query_labels", lambda c: c.ql.ravel(), ValueError, "2-D"),
    ("query_labels", lambda c: c.ql * 2, ValueError, "{0, 1}"),
    ("db_labels", lambda c: c.dl - 1, ValueError, "{0, 1}"),
    ("db_labels", lambda c: np.where(c.dl == 1, 0.5, 0.0), ValueError, "{0, 1}"),
    ("db_labels", lambda c: np.full(c.dl.shape, np.nan), ValueError, "{0, 1}"),
    ("db_labels", lambda c: c.dl.astype(str), TypeError, "labels"),
    ("query_labels", lambda c: np.zeros((1, 0), np.uint8), ValueError, "at least one label"),
    ("query_labels", lambda c: np.ones((2, 2), np.uint8), ValueError, "1 rows"),
    ("db_labels", lambda c: c.dl[:3], ValueError, "4 rows"),
    ("db_labels", lambda c: np.ones((4, 3), np.uint8), ValueError, "2 label columns"),
    ("db_codes", lambda c: object(), TypeError, "array protocol"),
]


@pytest.mark.parametrize("name, make, exc, fragment", BAD_ARGUMENTS)
@pytest.mark.parametrize("function", ["map", "precision", "topn", "pr"])
def test_rejects_bad_arrays(name, make, exc, fragment, function):
    case = _good()
    args = _with(case, **{name: make(case)})
    call = {
        "map": lambda: hm.mean_average_precision(**args),
        "precision": lambda: hm.precision_at_k(**args, ks=[1]),
        "topn": lambda: hm.topn_precision(**args),
        "pr": lambda: hm.pr_curve(**args, nbits=8),
    }[function]
    with pytest.raises(exc, match=rf"^{name}: expected") as info:
        call()
    assert fragment in str(info.value)


def test_rejects_empty_database():
    case = _good()
    with pytest.raises(ValueError, match=r"^db_codes: expected at least one database code"):
        hm.mean_average_precision(case.q, np.zeros((0, 1), np.uint64), case.ql, np.zeros((0, 2), np.uint8))


def test_rejects_pad_bits_beyond_nbits():
    case = _good()
    with pytest.raises(ValueError, match=r"^db_codes: expected the pad bits above nbits=2"):
        hm.mean_average_precision(*case.args(), nbits=2)
    with pytest.raises(ValueError, match=r"^db_codes: expected the pad bits above nbits=2"):
        hm.pr_curve(*case.args(), 2)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        ({"k": 0}, ValueError, r"^k: expected 1 <= k <= 4"),
        ({"k": 5}, ValueError, r"^k: expected 1 <= k <= 4"),
        ({"k": -1}, ValueError, r"^k: expected"),
        ({"k": 2.0}, TypeError, r"^k: expected an int"),
        ({"k": True}, TypeError, r"^k: expected an int, got bool"),
        ({"k": 2, "tie_aware": True}, ValueError, r"^k: expected k=None with tie_aware=True"),
        ({"tie_aware": 1}, TypeError, r"^tie_aware: expected a bool"),
        ({"chunk_size": 0}, ValueError, r"^chunk_size: expected"),
        ({"chunk_size": 1.5}, TypeError, r"^chunk_size: expected an int"),
        ({"nbits": 0}, ValueError, r"^nbits: expected"),
        ({"nbits": 65}, ValueError, r"^db_codes: expected shape \(n, 2\)"),
        ({"nbits": "8"}, TypeError, r"^nbits: expected an int"),
    ],
)
def test_map_rejects_bad_options(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        hm.mean_average_precision(*_good().args(), **kwargs)


@pytest.mark.parametrize(
    "cutoffs, exc, pattern",
    [
        (0, ValueError, r"expected 1 <= {s} <= 4 .*got 0"),
        (5, ValueError, r"expected 1 <= {s} <= 4"),
        ([1, 5], ValueError, r"expected 1 <= {s} <= 4 .*got 5"),
        ([], ValueError, r"non-empty 1-D"),
        ([[1, 2]], ValueError, r"non-empty 1-D"),
        ([1.0, 2.0], TypeError, r"dtype float64"),
        (True, TypeError, r"got bool"),
        (np.array([1, 9], dtype=np.uint64), ValueError, r"got 9"),
    ],
)
@pytest.mark.parametrize("function, name, symbol", [("precision", "ks", "k"), ("topn", "ns", "N")])
def test_cutoffs_rejected(cutoffs, exc, pattern, function, name, symbol):
    call = hm.precision_at_k if function == "precision" else hm.topn_precision
    with pytest.raises(exc, match=rf"^{name}: expected") as info:
        call(*_good().args(), cutoffs)
    assert re.search(pattern.format(s=symbol), str(info.value)), str(info.value)


def test_pr_curve_requires_nbits():
    with pytest.raises(TypeError, match=r"^nbits: expected an int"):
        hm.pr_curve(*_good().args(), None)
    with pytest.raises(ValueError, match=r"^db_codes: expected shape \(n, 2\)"):
        hm.pr_curve(*_good().args(), 100)


def test_numpy_scalar_cutoffs_accepted():
    case = _good()
    assert hm.mean_average_precision(*case.args(), k=np.int32(3)) == hm.mean_average_precision(*case.args(), k=3)
    np.testing.assert_array_equal(hm.precision_at_k(*case.args(), np.int64(2)), hm.precision_at_k(*case.args(), [2]))


# -- real labels -----------------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(os.environ.get("HAMSEARCH_DATA", ROOT.parent / "shared" / "data")) / "mirflickr25k"


def test_mirflickr_labels_random_codes():
    # MIRFLICKR-25K's real 24-label vectors, the field's split sizes (2,000
    # queries, 18,015 database items), random 16-bit codes: the ranking is
    # random, so MAP sits near the 0.565 floor of DATA's README. 200 of the
    # queries are checked against the oracle exactly; all 2,000 go through
    # the chunked path (the memory-bounded case the issue names).
    path = DATA / "mirflickr25k-lall.mat"
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    sio = pytest.importorskip("scipy.io")
    labels = np.ascontiguousarray(sio.loadmat(str(path))["LAll"], dtype=np.uint8)
    assert labels.shape == (20015, 24)
    rng = np.random.default_rng(25)
    perm = rng.permutation(labels.shape[0])
    qrows, dbrows = perm[:2000], perm[2000:]
    nbits = 16
    qbits = (rng.random((2000, nbits)) < 0.5).astype(np.uint8)
    dbbits = (rng.random((dbrows.size, nbits)) < 0.5).astype(np.uint8)

    full = hm.mean_average_precision(codes_from_bits(qbits), codes_from_bits(dbbits), labels[qrows], labels[dbrows])
    assert 0.53 < full < 0.60

    sub = Case(qbits[:200], dbbits, labels[qrows[:200]], labels[dbrows])
    assert hm.mean_average_precision(*sub.args()) == pytest.approx(oracle_map(sub), abs=1e-12)
    assert hm.mean_average_precision(*sub.args(), k=500) == pytest.approx(oracle_map(sub, 500), abs=1e-12)
    # 16 bits over 18,015 items: groups of hundreds of tied items.
    few = Case(qbits[:20], dbbits, labels[qrows[:20]], labels[dbrows])
    expected_tie = np.mean([vectorised_tie_ap(d, r) for d, r in zip(few.dist, few.rel)])
    assert hm.mean_average_precision(*few.args(), tie_aware=True) == pytest.approx(expected_tie, abs=1e-10)


def vectorised_tie_ap(dist: np.ndarray, rel: np.ndarray) -> float:
    """METHODS section 6's formula, its inner sum over places as a numpy sum
    (the loop of ``tie_ap_formula`` is too slow for groups of thousands)."""
    r_q = int(rel.sum())
    if r_q == 0:
        return 0.0
    parts = []
    before = before_pos = 0
    for d in np.unique(dist):
        in_group = dist == d
        n_d = int(in_group.sum())
        p_d = int(rel[in_group].sum())
        t = np.arange(1, n_d + 1, dtype=np.float64)
        slope = (p_d - 1) / (n_d - 1) if n_d > 1 else 0.0
        parts.append(p_d / n_d * math.fsum((before_pos + 1 + (t - 1) * slope) / (before + t)))
        before += n_d
        before_pos += p_d
    return math.fsum(parts) / r_q


# -- the one-pass evaluation: evaluate(), any relevance, both backends -------------


def oracle_from_relevance(dist: np.ndarray, rel: np.ndarray) -> dict:
    """Every metric of ``evaluate`` from a distance matrix and a relevance
    matrix, by lexsort ranking (the module's oracles, relevance given)."""
    order = np.array([np.lexsort((np.arange(dist.shape[1]), d)) for d in dist]).reshape(dist.shape)
    ranked = np.take_along_axis(rel, order, axis=1)
    return {
        "ranked": ranked,
        "map": float(np.mean([ap_of(r) for r in ranked])),
        "map_tie_aware": float(np.mean([tie_ap_formula(d, r) for d, r in zip(dist, rel)])),
    }


def test_evaluate_equals_the_single_functions_exactly():
    rng = np.random.default_rng(160)
    case = random_case(rng, nq=13, n_db=240, nbits=9, classes=4, pool=50)
    got = hm.evaluate(*case.args(), map_at=(None, 7, 100), ks=[1, 10, 240], topn=[5, 50], pr=True, nbits=9)
    assert set(got) == {"map", "map@7", "map@100", "map_tie_aware", "precision_at_k", "topn_precision", "pr_curve"}
    assert got["map"] == hm.mean_average_precision(*case.args())
    assert got["map@7"] == hm.mean_average_precision(*case.args(), k=7)
    assert got["map@100"] == hm.mean_average_precision(*case.args(), k=100)
    assert got["map_tie_aware"] == hm.mean_average_precision(*case.args(), tie_aware=True)
    np.testing.assert_array_equal(got["precision_at_k"], hm.precision_at_k(*case.args(), [1, 10, 240]))
    np.testing.assert_array_equal(got["topn_precision"], hm.topn_precision(*case.args(), [5, 50]))
    for a, b in zip(got["pr_curve"], hm.pr_curve(*case.args(), 9)):
        np.testing.assert_array_equal(a, b)
    # And the oracle, for good measure.
    assert got["map"] == pytest.approx(oracle_map(case), abs=1e-12)
    assert got["map@7"] == pytest.approx(oracle_map(case, 7), abs=1e-12)
    # Only what is asked for.
    assert set(hm.evaluate(*case.args(), map_at=(), tie_aware=False, ks=3)) == {"precision_at_k"}
    assert set(hm.evaluate(*case.args())) == {"map", "map_tie_aware"}


@st.composite
def wide_cases(draw: st.DrawFn) -> Case:
    """Any width 1..256, heavy ties (a pool of 1 makes every code equal),
    label widths on both sides of 64 bits, a database of one item."""
    seed = draw(st.integers(0, 2**32 - 1))
    nbits = draw(st.integers(1, 256))
    nq = draw(st.integers(1, 5))
    n_db = draw(st.sampled_from([1, 2, 3, 17, 64, 150]))
    classes = draw(st.sampled_from([1, 3, 24, 64, 65, 130]))
    pool = draw(st.one_of(st.none(), st.integers(1, 3)))
    p_label = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    return random_case(np.random.default_rng(seed), nq, n_db, nbits, classes, pool, p_label)


@settings(max_examples=60)
@given(case=wide_cases(), data=st.data())
def test_evaluate_matches_oracles(case, data):
    n_db = case.db.shape[0]
    ks = data.draw(st.lists(st.integers(1, n_db), min_size=1, max_size=3), label="ks")
    chunk = data.draw(st.one_of(st.none(), st.integers(1, 4)), label="chunk_size")
    got = hm.evaluate(*case.args(), map_at=(None, *ks), ks=ks, topn=ks, pr=True, nbits=case.nbits, chunk_size=chunk)
    assert got["map"] == pytest.approx(oracle_map(case), abs=1e-12)
    for k in ks:
        assert got[f"map@{k}"] == pytest.approx(oracle_map(case, k), abs=1e-12)
    expected_tie = np.mean([tie_ap_formula(d, r) for d, r in zip(case.dist, case.rel)])
    assert got["map_tie_aware"] == pytest.approx(expected_tie, abs=1e-12)
    np.testing.assert_allclose(got["precision_at_k"], [oracle_precision(case, k) for k in ks], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(got["topn_precision"], got["precision_at_k"])
    for a, b in zip(got["pr_curve"], oracle_pr(case)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    # The previous implementation agrees too.
    ref = metrics_reference
    assert got["map"] == pytest.approx(ref.mean_average_precision(*case.args()), abs=1e-12)
    assert got["map_tie_aware"] == pytest.approx(ref.mean_average_precision(*case.args(), tie_aware=True), abs=1e-12)


def test_matches_previous_implementation_on_many_ties_and_large_groups():
    # 6 bits over 3,000 items: groups of hundreds, so the tie-aware sum takes
    # every branch of the harmonic range (short ranges term by term, ranges
    # from below 32, and both ends large through log1p).
    rng = np.random.default_rng(61)
    case = random_case(rng, nq=12, n_db=3000, nbits=6, classes=5, p_label=0.2)
    ref = metrics_reference
    assert hm.mean_average_precision(*case.args(), tie_aware=True) == pytest.approx(
        ref.mean_average_precision(*case.args(), tie_aware=True), abs=1e-13
    )
    expected = np.mean([vectorised_tie_ap(d, r) for d, r in zip(case.dist, case.rel)])
    assert hm.mean_average_precision(*case.args(), tie_aware=True) == pytest.approx(expected, abs=1e-13)
    for k in (None, 1, 40, 2999):
        assert hm.mean_average_precision(*case.args(), k=k) == pytest.approx(
            ref.mean_average_precision(*case.args(), k=k), abs=1e-13
        )
    np.testing.assert_allclose(
        hm.topn_precision(*case.args()), ref.topn_precision(*case.args()), rtol=0, atol=1e-13
    )


def test_all_equal_codes_single_item_and_k_beyond_database():
    # Every code equal: one tied group, the ranking is database row order.
    # Relevance [0, 1, 1, 0, 1] by row: AP = (1/2 + 2/3 + 3/5)/3; tie-aware
    # one group of 5 with 3 relevant: (1/5) sum_t [1 + (t-1)/2]/t.
    case = case_from_distances([4] * 5, [0, 1, 1, 0, 1], nbits=4)
    got = hm.evaluate(*case.args(), map_at=(None, 2), ks=[1, 5])
    assert got["map"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3, abs=1e-15)
    assert got["map@2"] == pytest.approx(1 / 2, abs=1e-15)
    assert got["map_tie_aware"] == pytest.approx(sum((1 + (t - 1) / 2) / t for t in range(1, 6)) / 5, abs=1e-15)
    np.testing.assert_allclose(got["precision_at_k"], [0, 3 / 5], rtol=0, atol=1e-15)
    # A single database item, relevant or not.
    one = case_from_distances([2], [1], nbits=3)
    got = hm.evaluate(*one.args(), map_at=(None, 1), ks=1, pr=True, nbits=3)
    assert (got["map"], got["map@1"], got["map_tie_aware"]) == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(got["precision_at_k"], [1.0])
    np.testing.assert_array_equal(got["pr_curve"][0], [0, 0, 1, 1])
    none = case_from_distances([2], [0], nbits=3)
    got = hm.evaluate(*none.args(), map_at=(None, 1), ks=1)
    assert (got["map"], got["map@1"], got["map_tie_aware"]) == (0.0, 0.0, 0.0)
    # k beyond the database is an error, as it always was.
    with pytest.raises(ValueError, match=r"^map_at: expected 1 <= k <= 1 "):
        hm.evaluate(*one.args(), map_at=(2,))
    with pytest.raises(ValueError, match=r"^ks: expected 1 <= k <= 1 "):
        hm.evaluate(*one.args(), ks=[2])
    with pytest.raises(ValueError, match=r"^k: expected 1 <= k <= 1 "):
        hm.mean_average_precision(*one.args(), k=2)


def test_any_relevance_matrix_and_id_lists():
    # Relevance unrelated to any labels: a random matrix, the same as id
    # lists, against the lexsort oracle; labels turned into a matrix give
    # the label results exactly.
    rng = np.random.default_rng(33)
    case = random_case(rng, nq=9, n_db=120, nbits=7, classes=3, pool=20)
    rel = rng.random((9, 120)) < 0.25
    rel[3] = False  # a query with nothing relevant
    lists = [np.flatnonzero(r) for r in rel]
    lists[0] = np.concatenate([lists[0], lists[0][:2]])  # repeats count once
    oracle = oracle_from_relevance(case.dist, rel)
    for given in (rel, lists, [list(map(int, x)) for x in lists]):
        got = hm.evaluate(case.q, case.db, relevance=given, map_at=(None, 10), ks=[10, 120], pr=True, nbits=7)
        assert got["map"] == pytest.approx(oracle["map"], abs=1e-12)
        assert got["map_tie_aware"] == pytest.approx(oracle["map_tie_aware"], abs=1e-12)
        expected_k = np.mean([ap_of(r[:10]) for r in oracle["ranked"]])
        assert got["map@10"] == pytest.approx(expected_k, abs=1e-12)
        np.testing.assert_allclose(
            got["precision_at_k"], [oracle["ranked"][:, :k].sum() / (9 * k) for k in (10, 120)], rtol=0, atol=1e-12
        )
    by_matrix = hm.evaluate(case.q, case.db, relevance=case.rel, map_at=(None, 5), ks=[3], pr=True)
    by_labels = hm.evaluate(*case.args(), map_at=(None, 5), ks=[3], pr=True)
    for key in ("map", "map@5", "map_tie_aware"):
        assert by_matrix[key] == by_labels[key]
    np.testing.assert_array_equal(by_matrix["precision_at_k"], by_labels["precision_at_k"])


def test_backends_and_kernel_levels_agree_bit_for_bit(engine):
    # Run once (under the numba engine): every native level and Numba must
    # give identical floats, whatever the thread count and chunking.
    if engine != "numba":
        pytest.skip("compares every engine at once; runs in the numba parametrization")
    rng = np.random.default_rng(99)
    outputs = []
    for nbits, classes, pool in ((16, 24, None), (64, 5, 30), (200, 70, 4), (3, 2, None)):
        case = random_case(rng, nq=17, n_db=700, nbits=nbits, classes=classes, pool=pool, p_label=0.15)
        rel = rng.random((17, 700)) < 0.1
        runs = []
        engines = [("numba", None)] + [("native", lvl) for lvl in _backend.available_isas()]
        for name, level in engines:
            previous = _backend.set_isa(level) if level else None
            try:
                for threads, chunk in ((1, None), (3, 5)):
                    kw = dict(map_at=(None, 1, 50), ks=[1, 33, 700], topn=[2], pr=True, threads=threads,
                              chunk_size=chunk, backend=name)
                    runs.append((name, level, hm.evaluate(*case.args(), **kw),
                                 hm.evaluate(case.q, case.db, relevance=rel, **kw)))
            finally:
                if previous:
                    _backend.set_isa(previous)
        first = runs[0]
        for other in runs[1:]:
            for a, b in ((first[2], other[2]), (first[3], other[3])):
                for key in a:
                    if key == "pr_curve":
                        for x, y in zip(a[key], b[key]):
                            np.testing.assert_array_equal(x, y)
                    else:
                        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} {other[:2]}")
        outputs.append(first[2]["map"])
    assert len(outputs) == 4


# MAP@all takes one pass over the database up to these limits (the kept
# cursors' fields in csrc/metrics.cpp), a second pass beyond them.
ONE_PASS_ROWS = 2**22 - 1
ONE_PASS_NBITS = 2**20 - 1


def assert_same_results(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "pr_curve":
            for x, y in zip(a[key], b[key]):
                np.testing.assert_array_equal(x, y, err_msg=f"{key} {what}")
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} {what}")


@pytest.mark.parametrize("n_db", [ONE_PASS_ROWS, ONE_PASS_ROWS + 1])
def test_one_pass_row_limit_both_sides(engine, n_db):
    # Either side of the row limit: MAP@all and the cut-offs against a numpy
    # oracle (stable argsort of popcounts), and the backends bit for bit.
    if engine != "native":
        pytest.skip("compares both backends at once; runs in the native parametrization")
    rng = np.random.default_rng(n_db)
    nq, nbits = 3, 8
    db = rng.integers(0, 256, size=(n_db, 1), dtype=np.uint64)
    q = rng.integers(0, 256, size=(nq, 1), dtype=np.uint64)
    dl = (rng.random((n_db, 3)) < 0.3).astype(np.uint8)
    ql = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], dtype=np.uint8)  # the last: nothing relevant
    kw = dict(nbits=nbits, map_at=(None, 100), ks=[10, 1000], pr=True, threads=2)
    native = hm.evaluate(q, db, ql, dl, backend="native", **kw)
    assert_same_results(native, hm.evaluate(q, db, ql, dl, backend="numba", **kw), f"n_db={n_db}")
    aps, aps_100, p_1000 = [], [], []
    for j in range(nq):
        dist = np.bitwise_count(db[:, 0] ^ q[j, 0])
        ranked = (dl[np.argsort(dist, kind="stable")].astype(np.int64) @ ql[j].astype(np.int64)) > 0
        aps.append(ap_of(ranked))
        aps_100.append(ap_of(ranked[:100]))
        p_1000.append(ranked[:1000].mean())
    assert native["map"] == pytest.approx(np.mean(aps), rel=1e-12, abs=1e-15)
    assert native["map@100"] == pytest.approx(np.mean(aps_100), rel=1e-12, abs=1e-15)
    assert native["precision_at_k"][1] == pytest.approx(np.mean(p_1000), rel=1e-12)
    assert native["map"] > 0.1


@pytest.mark.parametrize("nbits", [ONE_PASS_NBITS, ONE_PASS_NBITS + 1])
def test_one_pass_distance_limit_both_sides(engine, nbits):
    # Either side of the distance limit, against the oracle on unpacked bits.
    if engine != "native":
        pytest.skip("compares both backends at once; runs in the native parametrization")
    rng = np.random.default_rng(nbits)
    case = random_case(rng, nq=2, n_db=9, nbits=nbits, classes=3, pool=4)
    kw = dict(map_at=(None, 3), ks=[2], pr=True)
    native = hm.evaluate(*case.args(), backend="native", **kw)
    assert_same_results(native, hm.evaluate(*case.args(), backend="numba", **kw), f"nbits={nbits}")
    assert native["map"] == pytest.approx(oracle_map(case), rel=1e-12, abs=1e-15)
    assert native["map@3"] == pytest.approx(oracle_map(case, 3), rel=1e-12, abs=1e-15)
    assert native["precision_at_k"][0] == pytest.approx(oracle_precision(case, 2), rel=1e-12, abs=1e-15)


def test_mirflickr_protocol_all_metrics_against_previous_implementation():
    # The real 24-label vectors, 2,000 queries against 18,015, 64-bit random
    # codes: evaluate over all queries, the previous implementation over 300.
    path = DATA / "mirflickr25k-lall.mat"
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    sio = pytest.importorskip("scipy.io")
    labels = np.ascontiguousarray(sio.loadmat(str(path))["LAll"], dtype=np.uint8)
    rng = np.random.default_rng(2000)
    perm = rng.permutation(labels.shape[0])
    qrows, dbrows = perm[:300], perm[2000:]
    q = codes_from_bits(rng.random((300, 64)) < 0.5)
    db = codes_from_bits(rng.random((dbrows.size, 64)) < 0.5)
    args = (q, db, labels[qrows], labels[dbrows])
    got = hm.evaluate(*args, map_at=(None, 50, 5000), ks=[100, 1000], pr=True)
    ref = metrics_reference
    assert got["map"] == pytest.approx(ref.mean_average_precision(*args), abs=1e-12)
    assert got["map@50"] == pytest.approx(ref.mean_average_precision(*args, k=50), abs=1e-12)
    assert got["map@5000"] == pytest.approx(ref.mean_average_precision(*args, k=5000), abs=1e-12)
    assert got["map_tie_aware"] == pytest.approx(ref.mean_average_precision(*args, tie_aware=True), abs=1e-12)
    np.testing.assert_allclose(got["precision_at_k"], ref.precision_at_k(*args, [100, 1000]), rtol=0, atol=1e-12)
    for a, b in zip(got["pr_curve"], ref.pr_curve(*args, 64)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


EVALUATE_BAD = [
    (dict(relevance=np.ones((1, 4), bool)), ValueError, r"^relevance: expected either relevance or query_labels"),
    (dict(query_labels=None), TypeError, r"^query_labels: expected \{0, 1\} labels \(or relevance=...\)"),
    (dict(query_labels=None, db_labels=None, relevance=np.ones((1, 4), np.uint8)), TypeError,
     r"^relevance: expected a bool matrix of shape \(1, 4\).*astype\(bool\)"),
    (dict(query_labels=None, db_labels=None, relevance=np.ones((1, 3), bool)), ValueError,
     r"^relevance: expected a bool matrix of shape \(1, 4\), got shape \(1, 3\)"),
    (dict(query_labels=None, db_labels=None, relevance=[[0], [1]]), ValueError, r"^relevance: expected 1 id lists"),
    (dict(query_labels=None, db_labels=None, relevance=[[4]]), ValueError, r"^relevance\[0\]: expected database rows in \[0, 4\), got 4"),
    (dict(query_labels=None, db_labels=None, relevance=[[-1]]), ValueError, r"^relevance\[0\]: expected database rows"),
    (dict(query_labels=None, db_labels=None, relevance=[[0.5]]), TypeError, r"^relevance\[0\]: expected integer database rows"),
    (dict(query_labels=None, db_labels=None, relevance=[[[1]]]), ValueError, r"^relevance\[0\]: expected a 1-D"),
    (dict(map_at=None), TypeError, r"^map_at: expected a tuple or list"),
    (dict(map_at=(0,)), ValueError, r"^map_at: expected 1 <= k <= 4"),
    (dict(map_at=(1.5,)), TypeError, r"^map_at: expected an int"),
    (dict(tie_aware="yes"), TypeError, r"^tie_aware: expected a bool"),
    (dict(pr=1), TypeError, r"^pr: expected a bool"),
    (dict(topn=[5]), ValueError, r"^topn: expected 1 <= N <= 4"),
    (dict(threads=0), ValueError, r"^threads: expected"),
    (dict(backend="gpu"), ValueError, r"^backend: expected one of"),
]


@pytest.mark.parametrize("kwargs, exc, pattern", EVALUATE_BAD)
def test_evaluate_rejects_bad_arguments(kwargs, exc, pattern):
    case = _good()
    args = _with(case, **{k: v for k, v in kwargs.items() if k in ("query_labels", "db_labels")})
    options = {k: v for k, v in kwargs.items() if k not in ("query_labels", "db_labels")}
    with pytest.raises(exc, match=pattern):
        hm.evaluate(**args, **options)


def _native_call(**replace):
    """hamsearch._core.evaluate_metrics with good arguments, some replaced."""
    from hamsearch import _core

    case = _good()
    ql, _ = hm._check_labels(case.ql, "query_labels")
    dl, _ = hm._check_labels(case.dl, "db_labels")
    args = dict(q=case.q, db=case.db, nbits=8, query_labels=ql, db_labels=dl, matrix=None, lims=None, ids=None,
                map_all=True, tie_aware=True, map_ks=[2], depth=3, pr=True, threads=2)
    args.update(replace)
    return _core.evaluate_metrics(**args)


NATIVE_BAD = [
    dict(nbits=0),
    dict(nbits=65),
    dict(q=np.full((1, 1), 1 << 9, np.uint64)),  # pad bits above nbits=8
    dict(db=np.zeros((0, 1), np.uint64)),
    dict(query_labels=None),
    dict(matrix=np.ones((1, 4), np.uint8)),  # two forms at once
    dict(query_labels=None, db_labels=None, matrix=np.ones((1, 3), np.uint8)),
    dict(query_labels=np.zeros((2, 1), np.uint64)),
    dict(db_labels=np.zeros((4, 2), np.uint64)),
    dict(query_labels=None, db_labels=None, lims=np.array([0, 1], np.int64), ids=np.array([4], np.int64)),
    dict(query_labels=None, db_labels=None, lims=np.array([0, 2], np.int64), ids=np.array([1], np.int64)),
    dict(query_labels=None, db_labels=None, lims=np.array([1, 1], np.int64), ids=np.array([1], np.int64)),
    dict(map_ks=[0]),
    dict(map_ks=[5]),
    dict(depth=5),
    dict(depth=-1),
    dict(threads=0),
]


@pytest.mark.parametrize("replace", NATIVE_BAD, ids=lambda r: ",".join(sorted(r)))
def test_native_core_rejects_bad_arguments(native_backend, replace):
    # The second line of defence: std::invalid_argument, as ValueError.
    with pytest.raises(ValueError):
        _native_call(**replace)


def test_native_core_rejects_unconverted_dtypes(native_backend):
    with pytest.raises(TypeError):
        _native_call(q=np.zeros((1, 1), np.int64))
    with pytest.raises(TypeError):
        _native_call(query_labels=None, db_labels=None, matrix=np.ones((1, 4), np.bool_))


def test_inputs_are_never_written(native_backend):
    rng = np.random.default_rng(5)
    case = random_case(rng, nq=6, n_db=80, nbits=12, classes=3)
    arrays = [case.q, case.db, case.ql, case.dl]
    rel = rng.random((6, 80)) < 0.3
    for a in arrays + [rel]:
        a.flags.writeable = False
    before = [a.copy() for a in arrays + [rel]]
    for backend in ("native", "numba"):
        hm.evaluate(*arrays, map_at=(None, 5), ks=[4], pr=True, backend=backend)
        hm.evaluate(case.q, case.db, relevance=rel, map_at=(None, 5), backend=backend)
    for a, b in zip(arrays + [rel], before):
        np.testing.assert_array_equal(a, b)


@st.composite
def native_arguments(draw: st.DrawFn) -> dict:
    """Arguments for hamsearch._core.evaluate_metrics, each valid or broken
    at random: shapes, dtypes, misaligned or strided views, out-of-range
    ids, offsets and cut-offs, huge integers."""
    nbits = draw(st.sampled_from([1, 7, 64, 65, 130]))
    w = (nbits + 63) // 64
    nq = draw(st.integers(0, 4))
    n = draw(st.integers(0, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def codes(rows: int) -> np.ndarray:
        how = draw(st.sampled_from(["ok"] * 6 + ["pad", "shape", "int64", "strided", "misaligned", "1d"]))
        arr = codes_from_bits(rng.random((rows, nbits)) < 0.5)
        if how == "pad" and nbits % 64 and rows:
            arr[:, -1] |= np.uint64(1) << np.uint64(63)
        elif how == "shape":
            arr = np.zeros((rows, w + 1), np.uint64)
        elif how == "int64":
            arr = arr.astype(np.int64)
        elif how == "strided":
            arr = np.zeros((rows, 2 * w), np.uint64)[:, ::2]
        elif how == "misaligned":
            buf = np.zeros(rows * w * 8 + 1, np.uint8)
            arr = buf[1:].view(np.uint64).reshape(rows, w)
        elif how == "1d":
            arr = arr.ravel()
        return arr

    args = dict(q=codes(nq), db=codes(n), nbits=draw(st.sampled_from([nbits, nbits, 0, nbits + 64, 2**70])),
                query_labels=None, db_labels=None, matrix=None, lims=None, ids=None,
                map_all=draw(st.booleans()), tie_aware=draw(st.booleans()),
                map_ks=draw(st.lists(st.integers(-2, 45) | st.sampled_from([2**63 - 1, -(2**63)]), max_size=3)),
                depth=draw(st.integers(-1, 45) | st.sampled_from([2**62, 2**63 - 1])), pr=draw(st.booleans()),
                threads=draw(st.integers(0, 5) | st.sampled_from([2**31, 2**63 - 1, 2**64])))
    kind = draw(st.sampled_from(["labels", "matrix", "lists", "none", "two"]))
    lw = draw(st.integers(0, 2))
    if kind in ("labels", "two"):
        args["query_labels"] = rng.integers(0, 4, size=(nq + draw(st.integers(0, 1)), lw), dtype=np.uint64)
        args["db_labels"] = rng.integers(0, 4, size=(n, lw + draw(st.integers(0, 1))), dtype=np.uint64)
    if kind in ("matrix", "two"):
        args["matrix"] = (rng.random((nq, n + draw(st.integers(0, 1)))) < 0.5).astype(
            draw(st.sampled_from([np.uint8, np.uint8, np.bool_, np.int32])))
    if kind == "lists":
        counts = rng.integers(0, 4, size=nq)
        lims = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        lims = lims + draw(st.sampled_from([0, 0, 0, 1, -1]))
        ids = rng.integers(draw(st.sampled_from([0, 0, -1])), max(n, 1) + draw(st.integers(0, 1)),
                           size=max(int(lims[-1]), 0)).astype(np.int64)
        args.update(lims=lims, ids=ids)
    return args


@settings(max_examples=int(os.environ.get("HAMSEARCH_FUZZ_EXAMPLES", 150)))
@given(args=native_arguments())
def test_native_entry_point_fuzz(args, engine):
    # Never a crash and never another exception: a result of the promised
    # shapes or a TypeError / ValueError; the inputs unchanged either way.
    if engine != "native":
        pytest.skip("the native entry point, once per kernel level")
    from hamsearch import _core

    before = {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray)}
    try:
        ap_all, ap_tie, ap_k, hits, pairs, relevant = _core.evaluate_metrics(**args)
    except (TypeError, ValueError):
        pass
    else:
        nq, nb = args["q"].shape[0], args["nbits"] + 1
        assert ap_all.shape == (nq if args["map_all"] else 0,) and ap_tie.shape == (nq if args["tie_aware"] else 0,)
        assert ap_k.shape == (nq, len(args["map_ks"])) and hits.shape == (args["depth"],)
        assert pairs.shape == relevant.shape == ((nb,) if args["pr"] else (0,))
        assert np.all((ap_all >= 0) & (ap_all <= 1)) and np.all((ap_k >= 0) & (ap_k <= 1))
        assert np.all(relevant <= pairs) and int(hits.sum()) <= nq * args["depth"]
    for k, v in before.items():
        np.testing.assert_array_equal(args[k], v)
