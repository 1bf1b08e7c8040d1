"""MIHIndex against the oracle: exact k-NN, radius and rank, ties included.

Run on the native core at each kernel level and on the Numba backend.
Databases are uniform (the queries' probing gives up and the scan answers)
and clustered (near neighbours, found in the tables), with duplicates, custom
shuffled ids and several adds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hamsearch as hs
from oracle import Reference, assert_knn_equal, assert_radius_equal, assert_rank_equal, codes_from_bits


def clustered_bits(rng: np.random.Generator, n: int, nbits: int, flip: float = 0.05) -> np.ndarray:
    centres = rng.integers(0, 2, size=(max(1, n // 20), nbits), dtype=np.uint8)
    bits = centres[rng.integers(0, len(centres), n)]
    return bits ^ (rng.random((n, nbits)) < flip).astype(np.uint8)


def _skip_numba(backend: str) -> None:
    """Every test here runs on the Numba backend too (nothing to skip)."""


@settings(max_examples=40, deadline=None, database=None)
@given(
    nbits=st.integers(16, 256),
    n=st.integers(1, 400),
    clustered=st.booleans(),
    m_choice=st.sampled_from(["auto", "min", "small"]),
    custom_ids=st.booleans(),
    batches=st.integers(1, 3),
    tables_only=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_mih_equals_oracle(backend, nbits, n, clustered, m_choice, custom_ids, batches, tables_only, seed):
    _skip_numba(backend)
    rng = np.random.default_rng(seed)
    bits = clustered_bits(rng, n, nbits) if clustered else rng.integers(0, 2, size=(n, nbits), dtype=np.uint8)
    if n > 4:
        bits[: n // 4] = bits[n // 4 : 2 * (n // 4)]  # duplicate codes: ties
    m = {"auto": None, "min": (nbits + 63) // 64, "small": max((nbits + 63) // 64, min(nbits, 3))}[m_choice]
    idx = hs.MIHIndex(nbits, m=m, backend=backend)
    # Never hand a query to the scan (small indexes would), so the tables'
    # k-NN and radius logic must be exact on their own; only with substrings
    # short enough that probing every key of a table stays cheap.
    tables_only = tables_only and max(length for _, length in idx.substrings) <= 12
    if tables_only:
        idx._store.scan_fraction = float("inf")
    ref = Reference(nbits)
    ids = rng.permutation(5 * n)[:n].astype(np.int64) if custom_ids else None
    for part in np.array_split(np.arange(n), batches):
        part_ids = None if ids is None else ids[part]
        got = idx.add(codes_from_bits(bits[part]), ids=part_ids)
        assert np.array_equal(got, ref.add(bits[part], part_ids))
    near = bits[rng.integers(0, n, 5)] ^ (rng.random((5, nbits)) < 0.03).astype(np.uint8)
    q = np.concatenate([near, rng.integers(0, 2, size=(2, nbits), dtype=np.uint8)])
    qc = codes_from_bits(q)
    for k in (1, 3, n, n + 2):
        assert_knn_equal(idx.query(qc, k, threads=2), ref.knn(q, k))
        if tables_only:
            assert idx.last_fallbacks == 0
    for r in (0, 1, nbits // 8, nbits // 3, nbits):
        assert_radius_equal(idx.radius(qc, r, threads=2), ref.radius(q, r))
    assert_rank_equal(idx.rank(qc[:3]), ref.rank(q[:3]))


def test_mih_large_clustered_uses_tables_and_uniform_falls_back(backend):
    _skip_numba(backend)
    rng = np.random.default_rng(11)
    # Large enough that a scan costs more than probing for near neighbours.
    # The sample cannot see clusters of 20, so each query peeks; at 10^5
    # codes the peek affords radius 0 only, which finds enough of a query's
    # neighbours within 2 flipped bits in 100 (at 3 in 100, about half of
    # the queries the tables could answer go to the scan after their peek).
    nbits, n = 64, 100000
    bits = clustered_bits(rng, n, nbits, flip=0.02)
    idx = hs.MIHIndex(nbits, backend=backend)
    idx.add(codes_from_bits(bits))
    ref = Reference(nbits)
    ref.add(bits)
    q = bits[rng.integers(0, n, 50)] ^ (rng.random((50, nbits)) < 0.02).astype(np.uint8)
    assert_knn_equal(idx.query(codes_from_bits(q), 10), ref.knn(q, 10))
    assert idx.last_fallbacks < 25  # near neighbours: most answered by the tables
    uq = rng.integers(0, 2, size=(40, nbits), dtype=np.uint8)
    assert_knn_equal(idx.query(codes_from_bits(uq), 10), ref.knn(uq, 10))
    assert idx.last_fallbacks > 20  # far neighbours: the scan answers
    # the paper's round(64 / log2(10^5)) = round(3.85) = 4 tables, capped at
    # floor((8 * 1 + 8) / 4.65) = 3 so that the tables cost at most the codes and ids
    assert round(nbits / np.log2(n)) == 4 and idx.m == 3
    subs = idx.substrings
    assert [b for b, _ in subs] == list(np.cumsum([0] + [length for _, length in subs[:-1]]))
    assert sum(length for _, length in subs) == nbits


@pytest.mark.parametrize("nq, far, trials", [(64, 4, 4), (100, 3, 6), (320, 8, 16)])
def test_mih_batch_goes_to_the_scan_after_its_trials(backend, nq, far, trials):
    # The documented rule: once half of the first nq // 16 queries (at least
    # 4, at most 16) tried on the tables have given up, the rest of the batch
    # goes to the scan. A trial is a query the prediction sent to the
    # tables: here `far` copies of a fresh random code q0, which the
    # prediction misjudges because every other sampled row holds q0's
    # complement (distance 64: the sample's spread puts the normal tail's
    # k-th distance at 0) while its true nearest code is far; they give up
    # at the budget. They lead a batch of exact copies of database codes,
    # each answered by one probe of the first table (its bucket holds about
    # one code of a uniform set), after a peek, as their sample predicts
    # the scan.
    rng = np.random.default_rng(21)
    nbits, n = 64, 20000
    bits = rng.integers(0, 2, size=(n, nbits), dtype=np.uint8)
    q0 = rng.integers(0, 2, size=nbits, dtype=np.uint8)
    sampled = np.asarray(hs._core.mih_sample_rows(n))
    bits[sampled[::2]] = 1 - q0
    idx = hs.MIHIndex(nbits, backend=backend, threads=1)
    idx.add(codes_from_bits(bits))
    ref = Reference(nbits)
    ref.add(bits)
    q = bits[rng.integers(0, n, nq)].copy()
    q[:far] = q0
    assert_knn_equal(idx.query(codes_from_bits(q), 1), ref.knn(q, 1))
    # half of the trials gave up: the rest of the batch went to the scan
    want = far + nq - trials if 2 * far >= trials else far
    assert idx.last_fallbacks == want
    # the same near queries alone: none falls back
    assert_knn_equal(idx.query(codes_from_bits(q[far:]), 1), ref.knn(q[far:], 1))
    assert idx.last_fallbacks == 0
    # a peek that finds nothing near is a trial given up too: fresh random
    # codes (predicted far) leading the batch
    q[:far] = rng.integers(0, 2, size=(far, nbits), dtype=np.uint8)
    assert_knn_equal(idx.query(codes_from_bits(q), 1), ref.knn(q, 1))
    assert idx.last_fallbacks == want


def _radius_keys(substrings, r):
    """Keys a radius-r search probes, from the pigeonhole bound: substring
    radius s in table j for every m*s + j <= r."""
    m = len(substrings)
    return sum(math.comb(length, s) for s in range(r // m + 1) for j, (_, length) in enumerate(substrings)
               if m * s + j <= r)


def test_mih_radius_whose_probes_pass_the_budget_goes_to_the_scan(backend):
    # The documented rule: a radius whose probes alone cost more than half a
    # scan (a probe 256 words, the scan n * W) sends the batch to the scan
    # before any probe; below it exact copies of database codes are answered
    # by the tables.
    rng = np.random.default_rng(22)
    nbits, n, nq = 64, 20000, 20
    bits = rng.integers(0, 2, size=(n, nbits), dtype=np.uint8)
    idx = hs.MIHIndex(nbits, backend=backend, threads=1)
    idx.add(codes_from_bits(bits))
    ref = Reference(nbits)
    ref.add(bits)
    subs = idx.substrings
    budget = 0.5 * n * 1
    cheap = max(r for r in range(nbits) if 256 * _radius_keys(subs, r) <= budget / 2)
    dear = min(r for r in range(nbits) if 256 * _radius_keys(subs, r) > budget)
    assert 1 <= cheap < dear <= 8
    q = bits[rng.integers(0, n, nq)]
    assert_radius_equal(idx.radius(codes_from_bits(q), cheap), ref.radius(q, cheap))
    assert idx.last_fallbacks == 0
    assert_radius_equal(idx.radius(codes_from_bits(q), dear), ref.radius(q, dear))
    assert idx.last_fallbacks == nq


@pytest.mark.parametrize("nq, far, trials", [(64, 4, 4), (100, 3, 6), (320, 8, 16)])
def test_mih_radius_batch_goes_to_the_scan_after_its_trials(backend, nq, far, trials):
    # As for k-NN: once half of the first nq // 16 queries (4 to 16) tried
    # on the tables gave up, the rest of the batch goes to the scan. Here a
    # query gives up on its candidates: 2000 database rows hold one code,
    # and `far` queries equal to it lead a batch of exact copies of other
    # database codes; radius 2 probes one key in each of the first 3 tables.
    # The 2000 rows avoid the sampled ones, so the prediction (sampled codes
    # within r: none) sends those queries to the tables; where the sample
    # sees the copies, it sends them to the scan before any probe, no trial.
    rng = np.random.default_rng(23)
    nbits, n, r = 64, 20000, 2
    bits = rng.integers(0, 2, size=(n, nbits), dtype=np.uint8)
    sampled = np.asarray(hs._core.mih_sample_rows(n))
    copies = np.setdiff1d(np.arange(n), sampled)[:2000]
    bits[copies] = bits[copies[0]]
    rest = np.setdiff1d(np.arange(n), copies)
    idx = hs.MIHIndex(nbits, backend=backend, threads=1)
    idx.add(codes_from_bits(bits))
    ref = Reference(nbits)
    ref.add(bits)
    q = bits[rng.choice(rest, nq)].copy()
    q[:far] = bits[copies[0]]
    assert_radius_equal(idx.radius(codes_from_bits(q), r), ref.radius(q, r))
    want = far + nq - trials if 2 * far >= trials else far
    assert idx.last_fallbacks == want
    assert_radius_equal(idx.radius(codes_from_bits(q[far:]), r), ref.radius(q[far:], r))
    assert idx.last_fallbacks == 0
    seen = hs.MIHIndex(nbits, backend=backend, threads=1)
    bits[sampled] = bits[copies[0]]
    seen.add(codes_from_bits(bits))
    ref = Reference(nbits)
    ref.add(bits)
    assert_radius_equal(seen.radius(codes_from_bits(q), r), ref.radius(q, r))
    assert seen.last_fallbacks == far


@pytest.mark.parametrize("m, exc", [(1, ValueError), (300, ValueError), (0, ValueError), (2.5, TypeError), (True, TypeError)])
def test_mih_bad_m(m, exc):
    with pytest.raises(exc, match="m: expected"):
        hs.MIHIndex(256, m=m, backend="native")


def test_mih_validates_like_flat(native_backend):
    idx = hs.MIHIndex(64, backend=native_backend)
    with pytest.raises(TypeError, match="from_bytes"):
        idx.add(np.zeros((2, 8), np.uint8))
    idx.add(np.zeros((2, 1), np.uint64))
    with pytest.raises(ValueError, match="k: expected"):
        idx.query(np.zeros((1, 1), np.uint64), 0)
    with pytest.raises(ValueError, match="ids: expected ids not already"):
        idx.add(np.zeros((1, 1), np.uint64), ids=[1])
    D, I = idx.query(np.zeros((0, 1), np.uint64), 4)
    assert D.shape == (0, 4) and I.shape == (0, 4)
    assert repr(idx) == "MIHIndex(nbits=64, n=2, backend='native')"


@pytest.mark.parametrize("nbits", [64, 128])
def test_mih_long_substrings_and_crowded_buckets(backend, nbits):
    # m = nbits / 64: 64-bit substrings, far more key bits than a table entry
    # keeps beside its row, so a bucket's run can hold rows of other keys (extra
    # candidates the search must verify and drop); and 150 copies of one code,
    # a bucket too big for the short linear search. Tables only, no scan.
    rng = np.random.default_rng(5)
    n = 300
    bits = clustered_bits(rng, n, nbits)
    bits[:150] = bits[150]
    idx = hs.MIHIndex(nbits, m=nbits // 64, backend=backend)
    idx._store.scan_fraction = float("inf")
    idx.add(codes_from_bits(bits))
    ref = Reference(nbits)
    ref.add(bits)
    q = bits[rng.integers(0, n, 12)].copy()
    for j in range(12):  # 0, 1 or 2 bits flipped: the nearest code is within 2
        q[j, rng.choice(nbits, size=j % 3, replace=False)] ^= 1
    qc = codes_from_bits(q)
    assert_knn_equal(idx.query(qc, 1), ref.knn(q, 1))
    assert idx.last_fallbacks == 0
    assert_radius_equal(idx.radius(qc, 2), ref.radius(q, 2))


@pytest.mark.parametrize("nbits, want", [(64, 3), (128, 5), (256, 8), (512, 15)])
def test_mih_default_m_is_capped_by_memory(nbits, want, backend):
    # n = 1000: the paper's round(nbits / log2(1000)) = round(nbits / 9.97) is
    # 6, 13, 26 and 51 tables; the cap floor((8 W + 8) / 4.65) allows
    # floor(16 / 4.65) = 3, floor(24 / 4.65) = 5, floor(40 / 4.65) = 8 and
    # floor(72 / 4.65) = 15, so that the tables cost at most the codes and ids.
    rng = np.random.default_rng(nbits)
    idx = hs.MIHIndex(nbits, backend=backend)
    idx.add(codes_from_bits(rng.integers(0, 2, size=(1000, nbits), dtype=np.uint8)))
    assert round(nbits / np.log2(1000)) > want
    assert idx.m == want
    assert sum(length for _, length in idx.substrings) == nbits
    small = hs.MIHIndex(nbits, m=2 * want, backend=backend)  # an explicit m is not capped
    small.add(codes_from_bits(rng.integers(0, 2, size=(100, nbits), dtype=np.uint8)))
    assert small.m == 2 * want


def test_table_shapes_worked_example():
    # 100,000 codes of 64 bits, m automatic (csrc/mih_policy.h, by hand):
    # round(64 / log2(100000)) = round(3.85) = 4 tables, capped by memory at
    # floor((8 + 8) / 4.65) = 3; substrings 22, 21, 21 bits; rows need 17
    # bits; the directory budget 16/3 - 4 - 0.4 = 0.93 bytes a code admits
    # s = 8 (4/8 = 0.5), not 4 (1.0), so 8 << 13 = 65,536 <= n < 8 << 14 gives
    # 14 directory bits; tags take the next 8, 7 and 7 key bits (15 free).
    from hamsearch import _core

    assert _core.mih_table_shapes(64, 0, 100_000) == [(0, 22, 14, 17, 8), (22, 21, 14, 17, 7), (43, 21, 14, 17, 7)]
    # An explicit m is kept; 5 tables of 64 bits: budget 16/5 - 4.4 < 0.25,
    # so s = 16 and 16 << 12 = 65,536 <= n gives 13 directory bits.
    assert _core.mih_table_shapes(64, 5, 100_000) == [
        (0, 13, 13, 17, 0), (13, 13, 13, 17, 0), (26, 13, 13, 17, 0), (39, 13, 13, 17, 0), (52, 12, 12, 17, 0)]
    with pytest.raises(ValueError, match=r"m: expected 0 \(automatic\) or 1 <= m <= 64, got 65"):
        _core.mih_table_shapes(64, 65, 10)


def _clustered(rng: np.random.Generator, n: int, nbits: int, clusters: int, noise: float) -> np.ndarray:
    centres = (rng.random((clusters, nbits)) < 0.5).astype(np.uint8)
    return centres[rng.integers(0, clusters, n)] ^ (rng.random((n, nbits)) < noise).astype(np.uint8)


@pytest.mark.parametrize("nbits, n, m", [(64, 40_000, None), (128, 20_000, None), (256, 8_000, None), (64, 20_000, 4)])
def test_backends_choose_the_same_tables_and_fallbacks(nbits, n, m):
    # MIH's policy lives in the native core and the Numba backend takes it
    # from there: the same m, substrings and table shapes and, batch for
    # batch, the same queries sent to the scan, at every kernel level (the
    # candidate's cost depends on it) and scan budget. One thread: a batch's
    # give-up rule then sees its queries in order on both.
    from hamsearch import _backend

    rng = np.random.default_rng(nbits + n)
    bits = _clustered(rng, n, nbits, n // 5, 0.03)
    codes = codes_from_bits(bits)
    batches = [codes_from_bits(bits[:40] ^ (rng.random((40, nbits)) < f).astype(np.uint8))
               for f in (0.0, 0.03, 0.1, 0.5)]
    batches.append(np.concatenate([batches[0][:20], batches[3][:20]]))
    numba = hs.MIHIndex(nbits, m, backend="numba")
    numba.add(codes)
    seen, single = set(), set()
    for level in _backend.available_isas():
        previous = _backend.set_isa(level)
        try:
            native = hs.MIHIndex(nbits, m, backend="native")
            native.add(codes)
            assert native.m == numba.m and native.substrings == numba.substrings
            tabs = numba._store._current()
            shapes = [tuple(int(v) for v in row) for row in np.column_stack([tabs.tbegin, tabs.tlen, tabs.tinfo[:, :3]])]
            assert shapes == hs._core.mih_table_shapes(nbits, m or 0, n)
            for fraction in (0.5, 2.0):
                native._store.scan_fraction = numba._store.scan_fraction = fraction
                for q in batches:
                    for k in (1, 3, 10):
                        assert_knn_equal(native.query(q, k, threads=1), numba.query(q, k, threads=1))
                        assert native.last_fallbacks == numba.last_fallbacks, (level, fraction, k)
                        seen.add(native.last_fallbacks)
                    r = nbits // 16
                    assert_radius_equal(native.radius(q, r, threads=1), numba.radius(q, r, threads=1))
                    assert native.last_fallbacks == numba.last_fallbacks, (level, fraction, r)
                    seen.add(native.last_fallbacks)
                # Query by query (no batch trials): the same prediction, peek
                # and give-up for each.
                for j in range(0, 40, 3):
                    q = batches[4][j : j + 1]
                    for k in (1, 10):
                        assert_knn_equal(native.query(q, k), numba.query(q, k))
                        assert native.last_fallbacks == numba.last_fallbacks, (level, fraction, k, j)
                        single.add(native.last_fallbacks)
                    assert_radius_equal(native.radius(q, nbits // 16), numba.radius(q, nbits // 16))
                    assert native.last_fallbacks == numba.last_fallbacks, (level, fraction, j)
        finally:
            _backend.set_isa(previous)
    assert 0 in seen and 40 in seen  # batches all on the tables and all on the scan
    assert single == {0, 1}  # single queries both ways


def _bench_clusters(rng: np.random.Generator, n: int, nbits: int) -> np.ndarray:
    """The benchmark's clustered codes: n // 100 centres, 5 bits in 100 flipped."""
    return _clustered(rng, n, nbits, max(1, n // 100), 0.05)


@pytest.mark.parametrize("nbits, m", [(64, None), (64, 5), (256, None)])
def test_prediction_sends_far_queries_to_the_scan_and_near_ones_to_the_tables(backend, nbits, m):
    # One query at a time, as a retrieval service asks (no batch trials to
    # learn from). Uniform codes: the sample predicts a k-th neighbour far
    # beyond what the budget affords, for every query and k, and the scan
    # answers each after a peek of at most 1/16 of a scan. Clustered codes at k = 1: the sample cannot see a
    # cluster of 100 in 200,000, but the peek finds its members and the
    # tables answer almost every query (at k = 10 the 10th neighbour lies
    # beyond what half a scan of 200,000 codes affords, with or without the
    # prediction). m = 5 at 64 bits: substrings of 13 bits, which uniform
    # codes share with 24 others each, about as many as a cluster's codes
    # share with their cluster: only their distance tells the two apart.
    rng = np.random.default_rng(nbits)
    n, nq = 200_000, 12
    core = hs._core
    for data in ("uniform", "clustered"):
        bits = (rng.integers(0, 2, size=(n, nbits), dtype=np.uint8) if data == "uniform"
                else _bench_clusters(rng, n, nbits))
        codes = codes_from_bits(bits)
        idx = hs.MIHIndex(nbits, m, backend=backend, threads=1)
        idx.add(codes)
        q = (rng.integers(0, 2, size=(nq, nbits), dtype=np.uint8) if data == "uniform"
             else bits[rng.integers(0, n, nq)] ^ (rng.random((nq, nbits)) < 0.05).astype(np.uint8))
        qc = codes_from_bits(q)
        ref = Reference(nbits)
        ref.add(bits)
        lens = [length for _, length in idx.substrings]
        cost, _, _, uniform_near = core.mih_knn_model(nbits, lens, n)
        sampled = np.asarray(core.mih_sample_rows(n))
        # Over the tables, the codes sharing a sampled code's substring
        # within floor((nbits - len) / 2 - 2 sqrt(nbits - len)) of it.
        near = 0
        for begin, length in idx.substrings:
            bound = math.floor((nbits - length) / 2 - 2 * math.sqrt(nbits - length))
            keys = (bits[:, begin : begin + length].astype(np.uint64) << np.arange(length, dtype=np.uint64)).sum(axis=1)
            for i in sampled:
                same = np.flatnonzero(keys == keys[i])
                same = same[same != i]
                near += int(((bits[same] != bits[i]).sum(axis=1) <= bound).sum())
        dc, budget, peek, deep = core.mih_knn_plan(cost, uniform_near, len(lens), n, 0.5, len(sampled), near)
        # only the clustered codes have local structure: a peek goes past radius 0
        assert deep == (data == "clustered"), (near, uniform_near)
        if backend == "numba":
            # the twin counts the same (and the native core decides as the
            # twin: test_backends_choose_the_same_tables_and_fallbacks)
            assert idx._store._current().sample_near == near
        if m is not None:
            continue  # 13-bit substrings: a peek cannot afford the 5 probes of radius 0 at 200,000 codes
        sample = codes[sampled]
        dist = np.bitwise_count(qc[:, None, :] ^ sample[None]).sum(axis=2).astype(np.int32)
        for k in (1, 10, 100) if data == "uniform" else (1,):
            fallbacks = 0
            for j in range(nq):
                assert_knn_equal(idx.query(qc[j : j + 1], k), ref.knn(q[j : j + 1], k))
                fallbacks += idx.last_fallbacks
            predicted = core.mih_predict_kth(dist, nbits, n, k)
            if data == "uniform":
                assert (predicted > dc).all(), (k, dc, predicted)
                assert fallbacks == nq
            else:
                assert fallbacks <= 2, (k, fallbacks)
        assert budget == 0.5 * n * ((nbits + 63) // 64) and peek == budget / 8


def test_prediction_policy_worked_examples():
    # csrc/mih_policy.h by hand. Rows: none below 1024 codes; then one per
    # 1024, at most 256, evenly spaced.
    core = hs._core
    assert core.mih_sample_rows(1023) == []
    assert core.mih_sample_rows(4096) == [0, 1024, 2048, 3072]
    assert core.mih_sample_rows(10**6)[:3] == [0, 3906, 7812] and len(core.mih_sample_rows(10**6)) == 256
    # Four sampled codes of 4096 at distances 10, 20, 30 and 40. k = 2048:
    # ceil(2048 * 4 / 4096) = the 2nd smallest, 20. k = 1: the smallest, 10,
    # or the normal tail (mean 25, sd sqrt(125), Phi^-1(1/4096) = -3.35:
    # 25 - 37.5 - 0.5 < 0), so 0.
    dist = np.array([[40, 10, 30, 20]], dtype=np.int32)
    assert core.mih_predict_kth(dist, 64, 4096, 2048).tolist() == [20]
    assert core.mih_predict_kth(dist, 64, 4096, 1).tolist() == [0]
    assert core.mih_predict_kth(np.zeros((1, 0), np.int32), 64, 500, 1).tolist() == [65]  # no sample
    # A peek costs at most 1/8 of the budget: 1/16 of a scan by default;
    # with an infinite budget nothing is predicted dearer.
    lens = [22, 21, 21]
    cost, weight, probes, uniform_near = core.mih_knn_model(64, lens, 10**6)
    # A code sharing a substring is near within floor((64 - len) / 2 -
    # 2 sqrt(64 - len)): 8 for 42 and 43 other bits; uniform codes share a
    # substring and are that near with (n - 1) * P(Binomial(42 or 43) <= 8)
    # / 2^len, the sum over the tables.
    assert [core.mih_near_bound(64, v) for v in (22, 21, 64)] == [8, 8, 0]
    assert core.mih_near_bound(256, 32) == 82 and core.mih_near_bound(3, 1) == -1
    tail = sum(math.comb(42, x) for x in range(9)) + 2 * sum(math.comb(43, x) for x in range(9))
    assert uniform_near == pytest.approx((10**6 - 1) * tail / 2**64)
    assert cost.shape == (66,) and np.isinf(cost[65]) and np.all(np.diff(cost[:65]) >= 0)
    assert weight.shape == (core.MIH_WEIGHED_RADII, 65) and probes[1] == pytest.approx(64)
    # within m - 1 = 2 bits every code is found at radius 0, within 5 at radius 1
    assert weight[0, :3].tolist() == [1, 1, 1] and weight[0, 3] > 1 and weight[1, :6].tolist() == [1] * 6
    dc, budget, peek, deep = core.mih_knn_plan(cost, uniform_near, 3, 10**6, 0.5, 256, 0)
    assert budget == 0.5e6 and peek == budget / 8 and cost[dc] <= budget < cost[dc + 1] and not deep
    # local structure: the sampled codes share substrings with more near
    # codes than 4 * 2.2e-5 + 1 each
    assert not core.mih_knn_plan(cost, uniform_near, 3, 10**6, 0.5, 256, 256)[3]
    assert core.mih_knn_plan(cost, uniform_near, 3, 10**6, 0.5, 256, 257)[3]
    assert core.mih_knn_plan(cost, uniform_near, 3, 10**6, float("inf"), 256, 0)[0] == 65
    with pytest.raises(ValueError, match="lens: expected substring lengths summing to nbits"):
        core.mih_knn_model(64, [22, 21], 10**6)
    with pytest.raises(ValueError, match="scan_fraction: expected a positive number"):
        core.mih_knn_plan(cost, uniform_near, 3, 10**6, 0.0, 256, 0)
    with pytest.raises(ValueError, match="len: expected 1 <= len <= min"):
        core.mih_near_bound(64, 65)


def test_peek_rule_worked_examples():
    # mih_policy.h's mih_peek_may_reach by hand, native and the Numba twin
    # alike. k = 100, a peek of 1000 units; the estimate's upper bound is
    # evidence * (1 + 2 / sqrt(near)).
    core = hs._core
    assert core.MIH_EVIDENCE_SPREAD == 2.0
    cases = [
        # found none within dc: nothing known yet, it goes on
        ((1, 0, 0.0, 900.0, 5000.0, 1000.0, 100), True),
        # an estimated cluster of 47 from 25 near codes, at most
        # 47 * (1 + 2 / 5) = 65.8: fewer than k, it stops
        ((1, 25, 47.0, 100.0, 200.0, 1000.0, 100), False),
        # ... but not after radius 0, where the estimate says little
        ((0, 25, 47.0, 100.0, 200.0, 1000.0, 100), True),
        # 4 near codes estimating 60: at most 60 * 2 = 120, it goes on
        ((1, 4, 60.0, 100.0, 200.0, 1000.0, 100), True),
        # an estimate of k or more and the next radius affordable: on
        ((1, 40, 100.0, 100.0, 900.0, 1000.0, 100), True),
        # ... not affordable: a fifth of it (200 of 1000 left) adds at most
        # 0.2 * (135 * (1 + 2 / 8) - 64) = 20.95 to the 64 counted, short of 100
        ((1, 64, 135.0, 800.0, 1000.0, 1000.0, 100), False),
        # ... with 81 counted of 150, at most 150 * (1 + 2 / 9) = 183.3, it
        # may reach 81 + 0.2 * 102.3 = 101.5
        ((1, 81, 150.0, 800.0, 1000.0, 1000.0, 100), True),
        # past the peek already: no share of the radius left
        ((1, 99, 400.0, 1200.0, 10.0, 1000.0, 100), False),
        ((0, 99, 400.0, 1200.0, 10.0, 1000.0, 100), False),
    ]
    from hamsearch._numba import _mih_peek_may_reach as twin

    for args, want in cases:
        assert core.mih_peek_may_reach(*args) is want, args
        assert bool(twin(*args, core.MIH_EVIDENCE_SPREAD)) is want, args
    with pytest.raises(ValueError, match="k: expected k >= 1"):
        core.mih_peek_may_reach(1, 1, 1.0, 0.0, 1.0, 1.0, 0)


def test_numba_mih_without_the_native_core_says_why(monkeypatch):
    # MIH's policy lives in the native core: without it the Numba backend's
    # MIHIndex refuses at construction, naming the build problem; the flat
    # index still searches on Numba.
    from hamsearch import _backend

    monkeypatch.setattr(_backend, "_native", None)
    monkeypatch.setattr(_backend, "_native_error", ImportError("no compiler here"))
    with pytest.raises(RuntimeError, match=r"native core.*no compiler here"):
        hs.MIHIndex(64, backend="numba")
    idx = hs.FlatIndex(64, backend="numba")
    idx.add(np.arange(5, dtype=np.uint64).reshape(5, 1))
    assert idx.query(np.zeros((1, 1), np.uint64), 1)[1].tolist() == [[0]]
