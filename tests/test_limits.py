"""The limits have one home per language: hamsearch/_limits.py and
hamsearch/include/hamsearch/constants.h. The native core exports its values; they must agree."""
from __future__ import annotations

import numpy as np
import pytest

import hamsearch
from hamsearch import _backend, _limits


def test_python_limits_are_the_documented_values():
    assert _limits.MAX_NBITS == 2**20
    assert _limits.DISTANCE_PAD == np.iinfo(np.int32).max == 2**31 - 1
    assert _limits.ID_PAD == -1
    assert _limits.ID_LIMIT == 2**63
    assert hamsearch.DISTANCE_PAD == _limits.DISTANCE_PAD and hamsearch.ID_PAD == _limits.ID_PAD


def test_native_core_limits_agree_with_python():
    if _backend._native is None:
        pytest.skip("the native core is not built")
    core = _backend._native
    assert core.MAX_BITS == _limits.MAX_NBITS
    assert core.MAX_THREADS == _limits.MAX_THREADS
    assert core.DISTANCE_PAD == _limits.DISTANCE_PAD
    assert core.ID_PAD == _limits.ID_PAD
    assert core.ID_LIMIT == _limits.ID_LIMIT
    assert core.FORMAT_VERSION == _limits.FORMAT_VERSION


def test_nbits_limit_is_enforced_at_the_limit():
    hamsearch.FlatIndex(_limits.MAX_NBITS, backend="numba")
    with pytest.raises(ValueError, match=r"nbits: expected 1 <= nbits <= 1048576"):
        hamsearch.FlatIndex(_limits.MAX_NBITS + 1)
