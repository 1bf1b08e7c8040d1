"""FlatIndex against the independent oracle: query, radius and rank, exactly.

Every test runs on the native core at each kernel level and on Numba (the
``backend`` fixture of conftest.py).
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hamsearch as hs
import oracle
from conftest import require_native
from oracle import (
    Reference,
    assert_knn_equal,
    assert_radius_equal,
    assert_rank_equal,
    codes_from_bits,
    random_bits,
)

DPAD = 2**31 - 1


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


# --- hypothesis: random databases with the awkward cases folded in ---------------


@dataclass
class Case:
    nbits: int
    batches: List[np.ndarray]  # bits per add() call
    batch_ids: List[Optional[np.ndarray]]  # custom ids per call, or None
    qbits: np.ndarray
    k: int
    r: int
    threads: int


@st.composite
def cases(draw) -> Case:
    nbits = draw(
        st.one_of(
            st.integers(1, 512),
            st.sampled_from([1, 2, 3, 8, 63, 64, 65, 127, 128, 129, 191, 192, 200, 255, 256, 257, 511, 512]),
        )
    )
    n = draw(st.one_of(st.integers(0, 300), st.integers(0, 12)))
    nq = draw(st.integers(0, 20))
    p = draw(st.sampled_from([0.5, 0.1, 0.9]))
    seed = draw(st.integers(0, 2**32 - 1))
    duplicates = draw(st.booleans())
    extremes = draw(st.booleans())
    near_queries = draw(st.booleans())
    nbatches = draw(st.integers(1, 3))
    id_modes = draw(st.lists(st.sampled_from(["default", "shuffled", "sparse"]), min_size=nbatches, max_size=nbatches))
    k = draw(st.integers(1, n + 5))
    r = draw(st.one_of(st.integers(0, 6), st.integers(0, nbits + 2)))
    threads = draw(st.integers(1, 3))

    rng = np.random.default_rng(seed)
    bits = random_bits(rng, n, nbits, p)
    if duplicates and n >= 2:
        dst = rng.integers(0, n, size=max(1, n // 3))
        src = rng.integers(0, n, size=dst.size)
        bits[dst] = bits[src]
    if extremes and n >= 1:
        rows = rng.integers(0, n, size=min(n, 4))
        bits[rows[: len(rows) // 2 + 1]] = 0
        bits[rows[len(rows) // 2 + 1 :]] = 1
    qbits = random_bits(rng, nq, nbits, p)
    if near_queries and n and nq:
        take = rng.integers(0, n, size=nq)
        flips = rng.random((nq, nbits)) < 2.0 / nbits
        qbits = bits[take] ^ flips.astype(np.uint8)
    if extremes and nq >= 2:
        qbits[0] = 0
        qbits[1] = 1

    cuts = np.sort(rng.integers(0, n + 1, size=nbatches - 1))
    batches = np.split(bits, cuts)
    # Custom ids never collide with any id already used, default ones included.
    used: set = set()
    next_default = 0
    batch_ids: List[Optional[np.ndarray]] = []
    for part, mode in zip(batches, id_modes):
        m = part.shape[0]
        if mode == "default":
            ids = None
            new = range(next_default, next_default + m)
        else:
            hi = 4 * (n + 10) if mode == "shuffled" else 2**62
            pool = rng.choice(hi, size=m + len(used) + 8, replace=False)
            new = [int(v) for v in pool if int(v) not in used][:m]
            ids = np.array(new, dtype=np.int64)
        used.update(new)
        if m:
            next_default = max(next_default, max(new) + 1)
        batch_ids.append(ids)
    return Case(nbits, batches, batch_ids, qbits, k, r, threads)


def _build(case: Case, backend: str):
    idx = hs.FlatIndex(case.nbits, backend=backend)
    ref = Reference(case.nbits)
    for part, ids in zip(case.batches, case.batch_ids):
        expected_ids = ref.add(part, ids)
        got = idx.add(codes_from_bits(part), ids=ids)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected_ids)
    assert len(idx) == ref.ids.size
    return idx, ref


@settings(max_examples=60)
@given(case=cases())
def test_query_matches_oracle(backend, case):
    idx, ref = _build(case, backend)
    q = codes_from_bits(case.qbits)
    got = idx.query(q, case.k, threads=case.threads)
    assert_knn_equal(got, ref.knn(case.qbits, case.k))


@settings(max_examples=40)
@given(case=cases())
def test_radius_matches_oracle(backend, case):
    idx, ref = _build(case, backend)
    q = codes_from_bits(case.qbits)
    got = idx.radius(q, case.r, threads=case.threads)
    assert_radius_equal(got, ref.radius(case.qbits, case.r))


@settings(max_examples=40)
@given(case=cases())
def test_rank_matches_oracle(backend, case):
    idx, ref = _build(case, backend)
    q = codes_from_bits(case.qbits)
    got = idx.rank(q, threads=case.threads)
    assert_rank_equal(got, ref.rank(case.qbits))


# --- hand-worked ---------------------------------------------------------------


def test_hand_worked_small(backend):
    idx = hs.FlatIndex(4, backend=backend)
    codes = np.array([[0b1111], [0b0001], [0b0111], [0b0000], [0b0011], [0b0001]], dtype=np.uint64)
    assert idx.add(codes).tolist() == [0, 1, 2, 3, 4, 5]
    q = np.array([[0b0000], [0b1000]], dtype=np.uint64)
    D, I = idx.query(q, 4)
    assert D.tolist() == [[0, 1, 1, 2], [1, 2, 2, 3]]
    assert I.tolist() == [[3, 1, 5, 4], [3, 1, 5, 0]]
    lims, D, I = idx.radius(q, 1)
    assert lims.tolist() == [0, 3, 4]
    assert D.tolist() == [0, 1, 1, 1]
    assert I.tolist() == [3, 1, 5, 3]
    assert idx.rank(q).tolist() == [[3, 1, 5, 4, 2, 0], [3, 1, 5, 0, 4, 2]]


def test_hand_worked_multiword(backend):
    # 130 bits: a difference in each of the three words.
    idx = hs.FlatIndex(130, backend=backend)
    a = np.array([[0, 0, 0]], dtype=np.uint64)
    b = np.array([[1, 2**63, 2]], dtype=np.uint64)  # bits 0, 127, 129
    c = np.array([[2**64 - 1, 2**64 - 1, 3]], dtype=np.uint64)  # all 130 bits
    idx.add(np.concatenate([c, b, a]), ids=np.array([7, 8, 9]))
    D, I = idx.query(a, 3)
    assert D.tolist() == [[0, 3, 130]]
    assert I.tolist() == [[9, 8, 7]]
    D, I = idx.query(c, 5)
    assert D.tolist() == [[0, 127, 130, DPAD, DPAD]]
    assert I.tolist() == [[7, 8, 9, -1, -1]]


def test_ties_break_by_ascending_custom_id(backend, rng):
    idx = hs.FlatIndex(64, backend=backend)
    code = np.array([[0xDEADBEEF]], dtype=np.uint64)
    ids = rng.permutation(1000)[:50] * 1000 + 3
    idx.add(np.repeat(code, 50, axis=0), ids=ids)
    D, I = idx.query(code, 50, threads=3)
    np.testing.assert_array_equal(D, 0)
    np.testing.assert_array_equal(I[0], np.sort(ids))
    assert idx.rank(code, threads=2)[0].tolist() == np.sort(ids).tolist()


def test_pad_constants():
    assert hs.DISTANCE_PAD == 2**31 - 1
    assert hs.ID_PAD == -1


@pytest.mark.parametrize("k", [4, 5, 9, 100])
def test_query_pads_when_k_exceeds_n(backend, k, rng):
    bits = random_bits(rng, 4, 70)
    qbits = random_bits(rng, 3, 70)
    idx = hs.FlatIndex(70, backend=backend)
    idx.add(codes_from_bits(bits))
    D, I = idx.query(codes_from_bits(qbits), k)
    assert D.shape == (3, k) and I.shape == (3, k)
    np.testing.assert_array_equal(D[:, 4:], DPAD)
    np.testing.assert_array_equal(I[:, 4:], -1)
    assert np.all(D[:, :4] <= 70) and np.all(I[:, :4] >= 0)
    ref = Reference(70)
    ref.add(bits)
    assert_knn_equal((D, I), ref.knn(qbits, k))


def test_empty_index(backend, rng):
    idx = hs.FlatIndex(100, backend=backend)
    assert len(idx) == 0
    q = codes_from_bits(random_bits(rng, 3, 100))
    D, I = idx.query(q, 5)
    assert D.dtype == np.int32 and I.dtype == np.int64
    assert D.shape == (3, 5) and I.shape == (3, 5)
    np.testing.assert_array_equal(D, DPAD)
    np.testing.assert_array_equal(I, -1)
    lims, D, I = idx.radius(q, 100)
    assert lims.dtype == np.int64 and D.dtype == np.int32 and I.dtype == np.int64
    assert lims.tolist() == [0, 0, 0, 0]
    assert D.shape == (0,) and I.shape == (0,)
    R = idx.rank(q)
    assert R.dtype == np.int64 and R.shape == (3, 0)


def test_empty_batch_add(backend):
    idx = hs.FlatIndex(64, backend=backend)
    out = idx.add(np.zeros((0, 1), dtype=np.uint64))
    assert out.dtype == np.int64 and out.shape == (0,)
    assert len(idx) == 0
    out = idx.add(np.zeros((0, 1), dtype=np.uint64), ids=np.zeros(0, dtype=np.int64))
    assert out.dtype == np.int64 and out.shape == (0,)
    assert idx.add(np.ones((2, 1), dtype=np.uint64)).tolist() == [0, 1]
    assert len(idx) == 2


def test_zero_queries(backend, rng):
    idx = hs.FlatIndex(129, backend=backend)
    idx.add(codes_from_bits(random_bits(rng, 10, 129)))
    q = np.zeros((0, 3), dtype=np.uint64)
    D, I = idx.query(q, 4)
    assert D.dtype == np.int32 and I.dtype == np.int64
    assert D.shape == (0, 4) and I.shape == (0, 4)
    lims, D, I = idx.radius(q, 10)
    assert lims.dtype == np.int64 and lims.tolist() == [0]
    assert D.shape == (0,) and I.shape == (0,)
    assert D.dtype == np.int32 and I.dtype == np.int64
    R = idx.rank(q)
    assert R.dtype == np.int64 and R.shape == (0, 10)


def test_zero_queries_on_empty_index(backend):
    idx = hs.FlatIndex(8, backend=backend)
    q = np.zeros((0, 1), dtype=np.uint64)
    D, I = idx.query(q, 1)
    assert D.shape == (0, 1) and I.shape == (0, 1)
    assert idx.radius(q, 0)[0].tolist() == [0]
    assert idx.rank(q).shape == (0, 0)


def test_read_only_inputs_are_accepted_and_left_alone(backend, rng):
    bits = random_bits(rng, 40, 200)
    qbits = random_bits(rng, 5, 200)
    codes = _frozen(codes_from_bits(bits))
    q = _frozen(codes_from_bits(qbits))
    ids = _frozen(rng.permutation(1000)[:40].astype(np.int64))
    codes_before, q_before, ids_before = codes.copy(), q.copy(), ids.copy()
    idx = hs.FlatIndex(200, backend=backend)
    out = idx.add(codes, ids=ids)
    np.testing.assert_array_equal(out, ids_before)
    ref = Reference(200)
    ref.add(bits, ids_before)
    assert_knn_equal(idx.query(q, 7), ref.knn(qbits, 7))
    assert_radius_equal(idx.radius(q, 95), ref.radius(qbits, 95))
    assert_rank_equal(idx.rank(q), ref.rank(qbits))
    np.testing.assert_array_equal(codes, codes_before)
    np.testing.assert_array_equal(q, q_before)
    np.testing.assert_array_equal(ids, ids_before)


def test_inputs_not_modified_writable(backend, rng):
    bits = random_bits(rng, 30, 64)
    codes = codes_from_bits(bits)
    ids = np.arange(30, dtype=np.int64)[::-1].copy()
    q = codes[:4].copy()
    snapshot = (codes.copy(), ids.copy(), q.copy())
    idx = hs.FlatIndex(64, backend=backend)
    idx.add(codes, ids=ids)
    idx.query(q, 50)
    idx.radius(q, 64)
    idx.rank(q)
    for before, after in zip(snapshot, (codes, ids, q)):
        np.testing.assert_array_equal(after, before)


def test_index_keeps_its_own_copy(backend, rng):
    """Changing the caller's arrays after add() must not change the index."""
    bits = random_bits(rng, 20, 96)
    qbits = random_bits(rng, 3, 96)
    codes = codes_from_bits(bits)
    ids = rng.permutation(100)[:20].astype(np.int64)
    ref = Reference(96)
    ref.add(bits, ids.copy())
    idx = hs.FlatIndex(96, backend=backend)
    returned = idx.add(codes, ids=ids)
    codes[:] = 0
    ids[:] = 0
    returned[:] = 0
    assert_knn_equal(idx.query(codes_from_bits(qbits), 20), ref.knn(qbits, 20))


def test_adds_in_batches_default_ids_continue(backend, rng):
    nbits = 100
    ref = Reference(nbits)
    idx = hs.FlatIndex(nbits, backend=backend)
    steps = [
        (3, None, [0, 1, 2]),
        (2, np.array([10, 5]), [10, 5]),
        (2, None, [11, 12]),
        (0, None, []),
        (1, np.array([4]), [4]),
        (3, None, [13, 14, 15]),
        (2, np.array([1000, 20], dtype=np.int32), [1000, 20]),
        (1, None, [1001]),
    ]
    for m, ids, expected in steps:
        bits = random_bits(rng, m, nbits)
        got = idx.add(codes_from_bits(bits), ids=ids)
        assert got.dtype == np.int64
        assert got.tolist() == expected
        ref.add(bits, np.array(expected, dtype=np.int64))
    assert len(idx) == 14
    qbits = random_bits(rng, 6, nbits)
    q = codes_from_bits(qbits)
    assert_knn_equal(idx.query(q, 9), ref.knn(qbits, 9))
    assert_radius_equal(idx.radius(q, 50), ref.radius(qbits, 50))
    assert_rank_equal(idx.rank(q), ref.rank(qbits))


def test_custom_ids_of_other_integer_dtypes(backend, rng):
    idx = hs.FlatIndex(16, backend=backend)
    for dtype in (np.int8, np.uint16, np.int32, np.uint32, np.uint64):
        start = len(idx) * 10 + 3
        ids = np.array([start + 1, start], dtype=dtype)
        out = idx.add(codes_from_bits(random_bits(rng, 2, 16)), ids=ids)
        assert out.dtype == np.int64
        assert out.tolist() == [start + 1, start]
    assert len(idx) == 10


def test_large_ids(backend, rng):
    bits = random_bits(rng, 5, 32)
    ids = np.array([2**62, 2**63 - 1, 0, 2**40, 17], dtype=np.int64)
    idx = hs.FlatIndex(32, backend=backend)
    idx.add(codes_from_bits(bits), ids=ids)
    ref = Reference(32)
    ref.add(bits, ids)
    q = bits[:2]
    assert_knn_equal(idx.query(codes_from_bits(q), 6), ref.knn(q, 6))
    assert_rank_equal(idx.rank(codes_from_bits(q)), ref.rank(q))


def test_properties(backend):
    for nbits, words in [(1, 1), (64, 1), (65, 2), (200, 4), (512, 8)]:
        idx = hs.FlatIndex(nbits, backend=backend)
        assert idx.nbits == nbits
        assert isinstance(idx.nbits, int)
        assert idx.words == words
        assert idx.backend == backend
        assert len(idx) == 0
        idx.add(np.zeros((3, words), dtype=np.uint64))
        assert len(idx) == 3
        assert nbits == idx.nbits
    idx = hs.FlatIndex(np.int64(96), backend=backend)
    assert idx.nbits == 96 and type(idx.nbits) is int


def test_thread_counts_give_identical_results(backend, rng):
    nbits = 77
    bits = random_bits(rng, 1500, nbits, 0.3)
    bits[700:760] = bits[0]  # a tie group that straddles any split
    qbits = np.concatenate([bits[:3], random_bits(rng, 5, nbits, 0.3)])
    ref = Reference(nbits)
    ref.add(bits)
    q = codes_from_bits(qbits)
    expected_knn = ref.knn(qbits, 25)
    expected_radius = ref.radius(qbits, 15)
    expected_rank = ref.rank(qbits)
    for ctor_threads in (None, 1, 2):
        idx = hs.FlatIndex(nbits, backend=backend, threads=ctor_threads)
        idx.add(codes_from_bits(bits))
        for threads in (None, 1, 2, 3, 4, 7, 64):
            assert_knn_equal(idx.query(q, 25, threads=threads), expected_knn)
            assert_radius_equal(idx.radius(q, 15, threads=threads), expected_radius)
            assert_rank_equal(idx.rank(q, threads=threads), expected_rank)


def test_more_threads_than_codes(backend):
    idx = hs.FlatIndex(8, backend=backend)
    idx.add(np.array([[3], [1]], dtype=np.uint64), ids=np.array([5, 2]))
    q = np.array([[1], [3], [0]], dtype=np.uint64)
    D, I = idx.query(q, 3, threads=16)
    assert D.tolist() == [[0, 1, DPAD], [0, 1, DPAD], [1, 2, DPAD]]
    assert I.tolist() == [[2, 5, -1], [5, 2, -1], [2, 5, -1]]
    assert idx.rank(q, threads=16).tolist() == [[2, 5], [5, 2], [2, 5]]


def test_numpy_integer_arguments(backend, rng):
    bits = random_bits(rng, 12, 40)
    idx = hs.FlatIndex(40, backend=backend)
    idx.add(codes_from_bits(bits))
    ref = Reference(40)
    ref.add(bits)
    q = codes_from_bits(bits[:2])
    assert_knn_equal(idx.query(q, np.int64(5), threads=np.int32(2)), ref.knn(bits[:2], 5))
    assert_radius_equal(idx.radius(q, np.uint8(18), threads=np.int64(1)), ref.radius(bits[:2], 18))


def test_radius_extremes(backend, rng):
    nbits = 65
    bits = random_bits(rng, 50, nbits)
    bits[0] = 0
    bits[1] = 1
    idx = hs.FlatIndex(nbits, backend=backend)
    idx.add(codes_from_bits(bits))
    ref = Reference(nbits)
    ref.add(bits)
    qbits = np.stack([np.zeros(nbits, np.uint8), np.ones(nbits, np.uint8), bits[7]])
    q = codes_from_bits(qbits)
    for r in (0, 1, nbits - 1, nbits, nbits + 1, 10**6):
        assert_radius_equal(idx.radius(q, r), ref.radius(qbits, r))
    lims, D, I = idx.radius(q, nbits)
    assert lims.tolist() == [0, 50, 100, 150]
    lims, D, I = idx.radius(q, 0)
    assert D.tolist() == [0] * (lims[-1])


def test_concurrent_queries_from_python_threads(backend, rng):
    nbits = 128
    bits = random_bits(rng, 3000, nbits)
    idx = hs.FlatIndex(nbits, backend=backend)
    idx.add(codes_from_bits(bits))
    ref = Reference(nbits)
    ref.add(bits)
    qs = [random_bits(rng, 4, nbits) for _ in range(8)]
    expected = [ref.knn(qb, 10) for qb in qs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda qb: idx.query(codes_from_bits(qb), 10, threads=2), qs))
    for got, exp in zip(results, expected):
        assert_knn_equal(got, exp)


def test_concurrent_adds_never_repeat_default_ids(backend, rng):
    nbits = 64
    idx = hs.FlatIndex(nbits, backend=backend)
    batches = [random_bits(rng, 3, nbits) for _ in range(4 * 50)]

    def add_many(part):
        return [idx.add(codes_from_bits(b)) for b in batches[part::4]]

    with ThreadPoolExecutor(max_workers=4) as pool:
        got = [ids for chunk in pool.map(add_many, range(4)) for ids in chunk]
    all_ids = np.concatenate(got)
    assert len(idx) == all_ids.size == 600
    assert np.array_equal(np.sort(all_ids), np.arange(600))
    # each returned id names the code that was added with it
    ref = Reference(nbits)
    order = np.argsort(all_ids)
    ref.add(np.concatenate([b for part in range(4) for b in batches[part::4]])[order])
    q = random_bits(rng, 5, nbits)
    assert_rank_equal(idx.rank(codes_from_bits(q)), ref.rank(q))


def test_misaligned_buffers_are_read_correctly(backend, rng):
    nbits = 128
    bits = random_bits(rng, 40, nbits)
    codes = codes_from_bits(bits)
    raw = np.zeros(codes.nbytes + 1, dtype=np.uint8)
    raw[1:] = codes.view(np.uint8).ravel()
    shifted = np.frombuffer(raw.data, dtype=np.uint64, count=codes.size, offset=1).reshape(codes.shape)
    assert not shifted.flags.aligned
    idx = hs.FlatIndex(nbits, backend=backend)
    idx.add(shifted)
    ref = Reference(nbits)
    ref.add(bits)
    assert_knn_equal(idx.query(shifted[:7], 5), ref.knn(bits[:7], 5))


def test_results_independent_of_query_batching(backend, rng):
    nbits = 192
    bits = random_bits(rng, 400, nbits)
    qbits = random_bits(rng, 9, nbits)
    idx = hs.FlatIndex(nbits, backend=backend)
    idx.add(codes_from_bits(bits))
    D, I = idx.query(codes_from_bits(qbits), 11)
    for j in range(9):
        Dj, Ij = idx.query(codes_from_bits(qbits[j : j + 1]), 11)
        np.testing.assert_array_equal(Dj[0], D[j])
        np.testing.assert_array_equal(Ij[0], I[j])


# --- larger deterministic cases: the native database-splitting path --------------

LARGE_N = 50_000


@functools.lru_cache(maxsize=None)
def _large_case(nbits: int, nq: int, custom_ids: bool):
    """Clustered codes with copies of the queries scattered over the whole
    database, so that tie groups cross every thread's share."""
    rng = np.random.default_rng(nbits * 1000 + nq * 10 + int(custom_ids))
    centres = random_bits(rng, 50, nbits)
    flips = (rng.random((LARGE_N, nbits)) < 0.08).astype(np.uint8)
    bits = centres[rng.integers(0, 50, LARGE_N)] ^ flips
    qbits = centres[rng.integers(0, 50, nq)] ^ (rng.random((nq, nbits)) < 0.08).astype(np.uint8)
    spots = rng.choice(LARGE_N, size=60 * nq + 2, replace=False).reshape(-1, 1)
    for j in range(nq):
        exact, near = spots[60 * j : 60 * j + 30, 0], spots[60 * j + 30 : 60 * j + 60, 0]
        bits[exact] = qbits[j]
        bits[near] = qbits[j]
        bits[near, j % nbits] ^= 1  # distance exactly 1
    bits[spots[-2, 0]] = 0
    bits[spots[-1, 0]] = 1
    ids = (rng.permutation(LARGE_N).astype(np.int64) * 7 + 11) if custom_ids else None
    ref = Reference(nbits)
    ref.add(bits, ids)
    r = max(2, nbits // 12)
    return bits, qbits, ids, ref, ref.knn(qbits, 100), ref.radius(qbits, r), r, ref.rank(qbits)


@pytest.mark.slow
@pytest.mark.parametrize("custom_ids", [False, True], ids=["default-ids", "custom-ids"])
@pytest.mark.parametrize("nq", [1, 7])
@pytest.mark.parametrize("nbits", [64, 128, 256, 200])
def test_large_two_threads(backend, nbits, nq, custom_ids):
    bits, qbits, ids, ref, (eD, eI), expected_radius, r, expected_rank = _large_case(nbits, nq, custom_ids)
    idx = hs.FlatIndex(nbits, backend=backend)
    half = LARGE_N // 2
    idx.add(codes_from_bits(bits[:half]), ids=None if ids is None else ids[:half])
    idx.add(codes_from_bits(bits[half:]), ids=None if ids is None else ids[half:])
    assert len(idx) == LARGE_N
    q = codes_from_bits(qbits)
    for k in (1, 10, 45, 100):
        assert_knn_equal(idx.query(q, k, threads=2), (eD[:, :k], eI[:, :k]))
    assert_radius_equal(idx.radius(q, r, threads=2), expected_radius)
    assert_rank_equal(idx.rank(q, threads=2), expected_rank)
    # The planted copies are found: 30 at distance 0, ordered by id.
    D, I = idx.query(q, 30, threads=2)
    assert np.all(D == 0)


def _huge_advised_bytes() -> int:
    """Bytes of this process's mappings advised for huge pages (the ``hg``
    flag of /proc/self/smaps), or -1 where the kernel does not say."""
    try:
        with open("/proc/self/smaps") as f:
            text = f.read()
    except OSError:
        return -1
    total, size = 0, 0
    for line in text.splitlines():
        if line.startswith("Size:"):
            size = int(line.split()[1]) * 1024
        elif line.startswith("VmFlags:"):
            total += size if " hg" in line else 0
    return total


def test_native_store_asks_for_huge_pages():
    # The native core advises a large store's room for huge pages before it
    # writes the codes (storage.h, advise_huge_pages): 10^6 codes of 128
    # bits (16 MB) and their ids (8 MB) add at least that much to the
    # mappings flagged ``hg``. Where the kernel has no transparent huge
    # pages the advice is refused and nothing is flagged: skip.
    require_native()
    if not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        pytest.skip("needs Linux transparent huge pages")
    codes = np.random.default_rng(3).integers(0, 2**63, size=(10**6, 2), dtype=np.uint64)
    before = _huge_advised_bytes()
    if before < 0:
        pytest.skip("/proc/self/smaps is not readable")
    idx = hs.FlatIndex(128, backend="native")
    idx.add(codes)
    grown = _huge_advised_bytes() - before
    assert grown >= codes.nbytes + 8 * 10**6 - 4 * 4096, grown
    # the store searches as ever
    assert idx.query(codes[5:6], 1)[1].tolist() == [[5]]


def _vm_flags_at(address: int) -> str:
    """The VmFlags of this process's mapping that holds ``address``."""
    with open("/proc/self/smaps") as f:
        inside = False
        for line in f:
            head = line.split(" ", 1)[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(v, 16) for v in head.split("-"))
                inside = lo <= address < hi
            elif inside and line.startswith("VmFlags:"):
                return line
    return ""


def test_native_large_results_ask_for_huge_pages():
    # A result of 4 MiB and more is advised for huge pages before the search
    # writes it (common.h, DefaultInitAllocator): the ranking of 200 queries
    # over 20,000 codes (32 MB of ids, 16 MB of distances) lies in mappings
    # flagged ``hg`` past its first page.
    require_native()
    if not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        pytest.skip("needs Linux transparent huge pages")
    if _huge_advised_bytes() < 0:
        pytest.skip("/proc/self/smaps is not readable")
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 2**63, size=(20_000, 1), dtype=np.uint64)
    idx = hs.FlatIndex(64, backend="native")
    idx.add(codes)
    q = rng.integers(0, 2**63, size=(200, 1), dtype=np.uint64)
    D, I = idx.rank(q, with_distances=True)
    for out in (D, I):
        assert " hg" in _vm_flags_at(out.ctypes.data + 2 * 4096), out.dtype
        assert " hg" in _vm_flags_at(out.ctypes.data + out.nbytes - 2 * 4096 - 1), out.dtype
    # the ranking itself, against numpy on the same codes
    d = np.bitwise_count(codes[:, 0][None, :] ^ q[:, 0][:, None]).astype(np.int32)
    assert np.array_equal(D, np.sort(d, axis=1))
    assert np.array_equal(I, np.argsort(d, axis=1, kind="stable"))
