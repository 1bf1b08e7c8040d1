"""The scan's multi-query kernels against the oracle, at every kernel level.

A batch goes through the kernels a few queries at a time (four a load of the
codes on the avx2 and avx512_vpopcntdq levels), and from 32 queries a thread
on, at 128 and 256 bits on the avx2 level, through the byte-sliced kernel (a
block's codes sliced once for the whole batch). These tests choose sizes that
reach every part of those paths: batches that are not multiples of the block
of queries, databases that are not multiples of the kernels' steps and tiles
and span several blocks, thresholds of 0 and of nbits, ties, distances of
exactly nbits (256 wraps a byte), and widths that are not multiples of 64.
"""
from __future__ import annotations

import numpy as np
import pytest

import hamsearch as hs
from oracle import Reference, assert_knn_equal, assert_radius_equal, random_bits

# Past the scan's priming run (256 rows at small k) and across two blocks at
# 256 bits (4096 rows a block); 5037 = 32 * 157 + 13: not a multiple of any step.
N = 5037


def _index(backend: str, nbits: int, bits: np.ndarray, ids=None):
    idx = hs.FlatIndex(nbits, backend=backend)
    ref = Reference(nbits)
    ids = ref.add(bits, ids)
    idx.add(hs.pack(bits), ids)
    return idx, ref


def _database(rng: np.random.Generator, nbits: int, qbits: np.ndarray) -> np.ndarray:
    """Uniform codes with the awkward ones planted: each query itself
    (distance 0), its complement (distance nbits), near copies, all-zero and
    all-one codes, and duplicates (ties)."""
    bits = random_bits(rng, N, nbits)
    nq = qbits.shape[0]
    at = rng.choice(N, size=4 * nq + 40, replace=False)
    a, b, c = at[:nq], at[nq:2 * nq], at[2 * nq:3 * nq]
    bits[a] = qbits
    bits[b] = 1 - qbits
    near = qbits.copy()
    flips = rng.random(near.shape) < 4 / nbits
    bits[c] = near ^ flips
    bits[at[3 * nq:3 * nq + 10]] = 0
    bits[at[3 * nq + 10:3 * nq + 20]] = 1
    dup = at[3 * nq + 20:]
    bits[dup] = bits[rng.integers(0, N, size=dup.size)]
    return bits


@pytest.mark.parametrize("nbits", [100, 128, 200, 256])
@pytest.mark.parametrize("nq", [1, 5, 9, 70])
def test_knn_batches(backend, rng, nbits, nq):
    qbits = random_bits(rng, nq, nbits)
    idx, ref = _index(backend, nbits, _database(rng, nbits, qbits))
    for k in (1, 10, 37):
        assert_knn_equal(idx.query(hs.pack(qbits), k, threads=1), ref.knn(qbits, k))


@pytest.mark.parametrize("nbits", [128, 256])
def test_knn_batch_split_across_threads(backend, rng, nbits):
    # 131 queries on two threads: 65 and 66 a thread, each past the sliced
    # kernel's threshold, neither a multiple of its block of queries.
    qbits = random_bits(rng, 131, nbits)
    idx, ref = _index(backend, nbits, _database(rng, nbits, qbits))
    assert_knn_equal(idx.query(hs.pack(qbits), 10, threads=2), ref.knn(qbits, 10))


@pytest.mark.parametrize("nbits", [128, 256])
def test_knn_ties_with_custom_ids(backend, rng, nbits):
    # Few distinct codes: thousands tie at every distance, and the ids do not
    # ascend with the rows, so the scan cannot drop the ties at its threshold
    # early; they must come out by ascending id.
    qbits = random_bits(rng, 67, nbits)
    base = random_bits(rng, 40, nbits)
    bits = base[rng.integers(0, 40, size=N)]
    ids = rng.permutation(10 * N)[:N].astype(np.int64)
    idx, ref = _index(backend, nbits, bits, ids)
    for k in (1, 10, 150):
        assert_knn_equal(idx.query(hs.pack(qbits), k, threads=1), ref.knn(qbits, k))


@pytest.mark.parametrize("nbits", [100, 128, 200, 256])
@pytest.mark.parametrize("nq", [3, 66])
def test_radius_thresholds(backend, rng, nbits, nq):
    qbits = random_bits(rng, nq, nbits)
    idx, ref = _index(backend, nbits, _database(rng, nbits, qbits))
    q = hs.pack(qbits)
    for r in (0, 3, nbits // 2 - 8, nbits - 1, nbits):
        assert_radius_equal(idx.radius(q, r, threads=1), ref.radius(qbits, r))


def test_distance_of_every_bit(backend, rng):
    # At 256 bits a distance of 256 does not fit the sliced kernel's bytes:
    # the complement of each query must still rank last, and stay out of a
    # radius of 255.
    nbits = 256
    qbits = random_bits(rng, 65, nbits)
    bits = np.concatenate([1 - qbits, qbits, random_bits(rng, 700, nbits, 0.02)])
    idx, ref = _index(backend, nbits, bits)
    q = hs.pack(qbits)
    n = bits.shape[0]
    assert_knn_equal(idx.query(q, n, threads=1), ref.knn(qbits, n))
    for r in (254, 255, 256):
        assert_radius_equal(idx.radius(q, r, threads=1), ref.radius(qbits, r))
