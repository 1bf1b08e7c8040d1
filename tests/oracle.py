"""Independent oracle for the search tests.

Nothing here calls hamsearch: codes are built from bits with ``np.packbits``
and distances are counted on unpacked bits, then ranked with ``np.lexsort``
by ``(distance, id)``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

DISTANCE_PAD = 2**31 - 1
ID_PAD = -1


def nwords(nbits: int) -> int:
    return (nbits + 63) // 64


def codes_from_bits(bits: np.ndarray) -> np.ndarray:
    """(n, nbits) {0,1} -> (n, ceil(nbits/64)) uint64, bit i in word i//64 at i%64."""
    bits = np.asarray(bits)
    n, nbits = bits.shape
    padded = np.zeros((n, nwords(nbits) * 64), dtype=np.uint8)
    padded[:, :nbits] = bits != 0
    as_bytes = np.packbits(padded, axis=1, bitorder="little")
    return np.ascontiguousarray(as_bytes.view("<u8").astype(np.uint64))


def bits_from_codes(codes: np.ndarray, nbits: int) -> np.ndarray:
    """(n, W) uint64 -> (n, nbits) uint8, through little-endian bytes."""
    as_bytes = np.ascontiguousarray(codes).astype("<u8").view(np.uint8)
    return np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :nbits]


def distances(qbits: np.ndarray, dbbits: np.ndarray) -> np.ndarray:
    """(nq, n) int64: the number of differing bits, one query at a time."""
    nq, n = qbits.shape[0], dbbits.shape[0]
    out = np.empty((nq, n), dtype=np.int64)
    for j in range(nq):
        out[j] = np.count_nonzero(dbbits != qbits[j], axis=1)
    return out


def rank(dist: np.ndarray, ids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Per query: (distances, ids) of the whole database in (distance, id) order."""
    nq, n = dist.shape
    D = np.empty((nq, n), dtype=np.int64)
    I = np.empty((nq, n), dtype=np.int64)
    for j in range(nq):
        order = np.lexsort((ids, dist[j]))
        D[j] = dist[j][order]
        I[j] = ids[order]
    return D, I


def knn(dist: np.ndarray, ids: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Top k per query, padded with (2**31 - 1, -1) where fewer than k exist."""
    nq, n = dist.shape
    Dall, Iall = rank(dist, ids)
    D = np.full((nq, k), DISTANCE_PAD, dtype=np.int64)
    I = np.full((nq, k), ID_PAD, dtype=np.int64)
    m = min(k, n)
    D[:, :m] = Dall[:, :m]
    I[:, :m] = Iall[:, :m]
    return D, I


def radius(dist: np.ndarray, ids: np.ndarray, r: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR (lims, D, I) of every result with distance <= r."""
    nq = dist.shape[0]
    lims = [0]
    Ds, Is = [], []
    for j in range(nq):
        keep = np.flatnonzero(dist[j] <= r)
        order = np.lexsort((ids[keep], dist[j][keep]))
        Ds.append(dist[j][keep][order])
        Is.append(ids[keep][order])
        lims.append(lims[-1] + keep.size)
    D = np.concatenate(Ds) if Ds else np.empty(0, dtype=np.int64)
    I = np.concatenate(Is) if Is else np.empty(0, dtype=np.int64)
    return np.asarray(lims, dtype=np.int64), D.astype(np.int64), I.astype(np.int64)


class Reference:
    """The expected contents of an index: the bits and ids added so far."""

    def __init__(self, nbits: int) -> None:
        self.nbits = nbits
        self.bits = np.zeros((0, nbits), dtype=np.uint8)
        self.ids = np.zeros(0, dtype=np.int64)
        self.next_id = 0  # one past the largest id ever added (removed ones too)

    def add(self, bits: np.ndarray, ids: Optional[np.ndarray] = None) -> np.ndarray:
        n = bits.shape[0]
        if ids is None:
            ids = np.arange(self.next_id, self.next_id + n, dtype=np.int64)
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size:
            self.next_id = max(self.next_id, int(ids.max()) + 1)
        self.bits = np.concatenate([self.bits, np.asarray(bits, dtype=np.uint8)])
        self.ids = np.concatenate([self.ids, ids])
        return ids

    def remove(self, ids) -> int:
        """Drops the rows whose ids are listed; returns how many."""
        gone = np.isin(self.ids, np.asarray(ids, dtype=np.int64).ravel())
        self.bits = self.bits[~gone]
        self.ids = self.ids[~gone]
        return int(gone.sum())

    def dist(self, qbits: np.ndarray) -> np.ndarray:
        return distances(np.asarray(qbits, dtype=np.uint8), self.bits)

    def knn(self, qbits: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        return knn(self.dist(qbits), self.ids, k)

    def radius(self, qbits: np.ndarray, r: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return radius(self.dist(qbits), self.ids, r)

    def rank(self, qbits: np.ndarray) -> np.ndarray:
        return rank(self.dist(qbits), self.ids)[1]


def random_bits(rng: np.random.Generator, n: int, nbits: int, p: float = 0.5) -> np.ndarray:
    """(n, nbits) uint8 bits, each 1 with probability p."""
    return (rng.random((n, nbits)) < p).astype(np.uint8)


def assert_knn_equal(got: Tuple[np.ndarray, np.ndarray], expected: Tuple[np.ndarray, np.ndarray]) -> None:
    D, I = got
    eD, eI = expected
    assert isinstance(D, np.ndarray) and isinstance(I, np.ndarray)
    assert D.dtype == np.int32, D.dtype
    assert I.dtype == np.int64, I.dtype
    assert D.shape == eD.shape, (D.shape, eD.shape)
    assert I.shape == eI.shape, (I.shape, eI.shape)
    np.testing.assert_array_equal(D, eD)
    np.testing.assert_array_equal(I, eI)


def assert_radius_equal(got, expected) -> None:
    lims, D, I = got
    elims, eD, eI = expected
    assert lims.dtype == np.int64, lims.dtype
    assert D.dtype == np.int32, D.dtype
    assert I.dtype == np.int64, I.dtype
    assert lims.shape == elims.shape, (lims.shape, elims.shape)
    assert D.ndim == 1 and I.ndim == 1
    np.testing.assert_array_equal(lims, elims)
    np.testing.assert_array_equal(D, eD)
    np.testing.assert_array_equal(I, eI)


def assert_rank_equal(got: np.ndarray, expected: np.ndarray) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.int64, got.dtype
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_array_equal(got, expected)
