"""The native core's benchmark probes (``_read_bandwidth``, ``_popcount_probe``).

They are private, but Python can reach them, so they obey the engine's rules:
the answer against a numpy oracle, clear errors on bad input, no crash, and
no write into their inputs (read-only arrays are accepted).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import require_native
from hamsearch import _backend
from oracle import bits_from_codes, codes_from_bits, random_bits

# Every kernel level this CPU has (the probe runs the level in force).
LEVELS = list(_backend.available_isas()) if _backend._native is not None else ["unavailable"]


@pytest.fixture
def core():
    require_native()
    from hamsearch import _backend

    return _backend._native


def _equal_pairs(q: np.ndarray, codes: np.ndarray) -> int:
    """Pairs (query, code) with the same bits: an unpacked-bits oracle."""
    qb = bits_from_codes(q, q.shape[1] * 64)
    cb = bits_from_codes(codes, codes.shape[1] * 64)
    return int((qb[:, None, :] == cb[None, :, :]).all(axis=2).sum())


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("nbits", [1, 64, 65, 128, 200, 256, 512])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_popcount_probe_counts_equal_pairs(core, level, nbits, threads):
    previous = _backend.set_isa(level)
    try:
        _check_probe(core, nbits, threads)
    finally:
        _backend.set_isa(previous)


def _check_probe(core, nbits: int, threads: int) -> None:
    rng = np.random.default_rng(nbits * 10 + threads)
    codes_bits = random_bits(rng, 37, nbits)
    q_bits = random_bits(rng, 23, nbits)
    q_bits[[2, 5, 9]] = codes_bits[[4, 4, 30]]  # planted duplicates, one code twice
    codes_bits[11] = codes_bits[4]
    codes, q = codes_from_bits(codes_bits), codes_from_bits(q_bits)
    expected = _equal_pairs(q, codes)
    assert expected >= 5
    for a in (codes, q):
        a.setflags(write=False)
    before = (codes.copy(), q.copy())
    assert core._popcount_probe(q, codes, threads) == expected
    np.testing.assert_array_equal(codes, before[0])
    np.testing.assert_array_equal(q, before[1])


def test_popcount_probe_empty_inputs(core):
    codes = np.zeros((5, 2), dtype=np.uint64)
    assert core._popcount_probe(np.zeros((0, 2), dtype=np.uint64), codes, 2) == 0
    assert core._popcount_probe(np.zeros((3, 2), dtype=np.uint64), codes[:0], 2) == 0


def test_popcount_probe_rejects_bad_input(core):
    codes = np.zeros((5, 2), dtype=np.uint64)
    q = np.zeros((3, 2), dtype=np.uint64)
    with pytest.raises(ValueError, match="q: expected 2 words per code, got 1"):
        core._popcount_probe(q[:, :1].copy(), codes, 1)
    with pytest.raises(ValueError, match="codes: expected a 2-D array, got 1-D"):
        core._popcount_probe(q, codes.ravel(), 1)
    with pytest.raises(ValueError, match="at least one word per code"):
        core._popcount_probe(q, np.zeros((3, 0), dtype=np.uint64), 1)
    with pytest.raises(ValueError, match="threads: expected threads >= 1"):
        core._popcount_probe(q, codes, 0)
    with pytest.raises(TypeError):
        core._popcount_probe(q.astype(np.int64), codes, 1)
    with pytest.raises(TypeError):
        core._popcount_probe(q, np.asfortranarray(np.zeros((5, 2), dtype=np.uint64)), 1)
    raw = np.zeros(5 * 2 * 8 + 1, dtype=np.uint8)
    misaligned = raw[1:].view(np.uint64).reshape(5, 2)
    with pytest.raises(ValueError, match="misaligned"):
        core._popcount_probe(q, misaligned, 1)


def test_read_bandwidth_sums_every_word(core):
    data = np.arange(1, 10_001, dtype=np.uint64)
    data.setflags(write=False)
    for threads in (1, 2, 5):
        assert core._read_bandwidth(data, threads) == int(data.sum())
    with pytest.raises(ValueError, match="threads"):
        core._read_bandwidth(data, 0)
