"""The store contract (hamsearch/_store.py): every store implements it, the
facade's searches answer as a numpy oracle does, ``rank`` gives distances on
request, and MIH's fallback count is per call, so threads never see each
other's."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import hamsearch as hs
from hamsearch._store import Store
from oracle import codes_from_bits, distances, rank as oracle_rank

NBITS = 70  # two words, pad bits in the second


def _data(seed: int, n: int = 300, nq: int = 7):
    rng = np.random.default_rng(seed)
    bits = (rng.random((n, NBITS)) < 0.5).astype(np.uint8)
    qbits = (rng.random((nq, NBITS)) < 0.5).astype(np.uint8)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)  # not ascending: ties must still break by id
    return bits, qbits, ids


@pytest.fixture(params=["flat", "mih"])
def kind(request):
    return request.param


def _index(kind: str, backend: str):
    return hs.FlatIndex(NBITS, backend=backend) if kind == "flat" else hs.MIHIndex(NBITS, backend=backend)


def test_every_store_implements_the_protocol(kind, backend):
    idx = _index(kind, backend)
    assert isinstance(idx._store, Store)
    bits, qbits, ids = _data(1)
    idx.add(codes_from_bits(bits), ids)
    q = codes_from_bits(qbits)
    D, I, fallbacks = idx._store.knn(q, 5, 1)
    assert D.dtype == np.int32 and I.dtype == np.int64 and D.shape == I.shape == (7, 5)
    assert isinstance(int(fallbacks), int) and 0 <= fallbacks <= 7
    lims, D, I, fallbacks = idx._store.radius(q, 30, 1)
    assert lims.shape == (8,) and D.shape == I.shape == (int(lims[-1]),) and 0 <= fallbacks <= 7
    D, I = idx._store.rank(q, 1, False)
    assert D is None and I.shape == (7, 300)


def test_rank_with_distances_matches_the_oracle(kind, backend):
    bits, qbits, ids = _data(2)
    idx = _index(kind, backend)
    idx.add(codes_from_bits(bits), ids)
    q = codes_from_bits(qbits)
    for threads in (1, 3):
        D, I = idx.rank(q, threads=threads, with_distances=True)
        assert D.dtype == np.int32 and D.shape == I.shape == (7, 300)
        oD, oI = oracle_rank(distances(qbits, bits), ids)
        np.testing.assert_array_equal(I, oI)
        np.testing.assert_array_equal(D, oD)
        np.testing.assert_array_equal(idx.rank(q, threads=threads), I)  # the default: ids alone
    D, I = idx.rank(q[:0], with_distances=True)
    assert D.shape == I.shape == (0, 300)
    empty = _index(kind, backend)
    D, I = empty.rank(q, with_distances=True)
    assert D.shape == I.shape == (7, 0)


def test_rank_rejects_a_non_bool_with_distances(backend):
    idx = hs.FlatIndex(NBITS, backend=backend)
    with pytest.raises(TypeError, match=r"with_distances: expected a bool, got int"):
        idx.rank(np.zeros((1, 2), np.uint64), with_distances=1)


def test_mih_fallback_counts_are_per_thread(backend):
    # Clustered codes: near queries are mostly answered by the tables, uniform
    # random ones all give up and go to the scan. Two threads search at once,
    # each seeing its own last call's count.
    rng = np.random.default_rng(3)
    n = 100_000
    centres = (rng.random((1000, 64)) < 0.5).astype(np.uint8)
    bits = centres[rng.integers(0, 1000, n)] ^ (rng.random((n, 64)) < 0.03).astype(np.uint8)
    idx = hs.MIHIndex(64, backend=backend)
    idx.add(codes_from_bits(bits))
    near = codes_from_bits(bits[:64] ^ (rng.random((64, 64)) < 0.02).astype(np.uint8))
    far = codes_from_bits((rng.random((64, 64)) < 0.5).astype(np.uint8))
    idx.query(near, 10, threads=1)
    expect_near = idx.last_fallbacks
    idx.query(far, 10, threads=1)
    expect_far = idx.last_fallbacks
    assert expect_near < expect_far == 64
    barrier = threading.Barrier(2)
    seen = {"near": [], "far": []}

    def run(name, q):
        for _ in range(30):
            barrier.wait()
            idx.query(q, 10, threads=1)
            barrier.wait()  # the other thread's call has finished too
            seen[name].append(idx.last_fallbacks)

    threads = [threading.Thread(target=run, args=a) for a in (("near", near), ("far", far))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["near"] == [expect_near] * 30
    assert seen["far"] == [expect_far] * 30
    assert hs.MIHIndex(64, backend=backend).last_fallbacks == 0  # before any search
