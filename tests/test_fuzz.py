"""Fuzzing: random inputs through the public API and straight into the native
entry points (the pybind11 objects, behind no Python validation), and random
file bytes through ``hamsearch.load``.

The contract every test here checks: a call either returns the right answer
(checked against the numpy oracle in ``oracle.py`` whenever the input is
valid) or raises ``TypeError`` / ``ValueError`` with a message (and, for files,
``FileNotFoundError`` / ``IsADirectoryError`` / ``OSError``). Never a crash,
never another exception type (``RuntimeError``, ``SystemError``,
``MemoryError``, ``OverflowError``, ...), never a write to an input, and an
index a failed call leaves exactly as it was. A valid input must succeed: an
error for it is a failure too.

``HAMSEARCH_FUZZ_EXAMPLES=N`` runs N examples per test (an eighth of that on
the Numba backend) instead of the quick defaults; ``scripts/sanitize.sh`` runs
this file that way under AddressSanitizer and UndefinedBehaviorSanitizer.
The number of examples tried is printed at the end of the session.

Three inputs that the sanitizer run found mishandled (since fixed in the
core) are tried by targeted regression tests in a subprocess, so that a
regression corrupts a child's heap, not the test session's:
- ``rank`` over an index loaded with ``verify=False`` from a file whose pad
  bits are set: out-of-bounds writes (``test_unverified_load_with_set_pad_bits``);
- misaligned arrays passed straight to the native entry points: misaligned
  loads (``test_native_entry_points_with_misaligned_arrays``);
- ``k`` from ``2**62`` to ``2**63 - 1``: signed overflow (``test_huge_k_is_refused``).

Not fuzzed at all: ``k`` between about ``2**24`` and ``2**61`` with queries
present. The output is ``(nq, k)`` by contract, so such a ``k`` asks for that
much memory, and gets it (``k = 2**31`` is 24 GiB per query). ``k`` from
``2**62`` to ``2**63 - 1`` is tried in a subprocess (``test_huge_k_is_refused``:
the native binding used to overflow a signed multiplication working out the
output's strides). ``k >= 2**63`` is fuzzed.
"""
from __future__ import annotations

import collections
import operator
import os
import struct
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import hamsearch as hs
import format_oracle as fmt
from hamsearch import _backend
from oracle import (
    Reference,
    assert_knn_equal,
    assert_radius_equal,
    assert_rank_equal,
    bits_from_codes,
    codes_from_bits,
    knn as oracle_knn,
    radius as oracle_radius,
    rank as oracle_rank,
)

# -- example budget and counting ------------------------------------------------
_ENV_EXAMPLES = int(os.environ.get("HAMSEARCH_FUZZ_EXAMPLES", "0") or 0)


def examples(default: int, light: bool = False) -> int:
    """Examples for one test: the quick default, or HAMSEARCH_FUZZ_EXAMPLES
    (an eighth of it for ``light`` tests: the Numba backend)."""
    if _ENV_EXAMPLES > 0:
        return max(1, _ENV_EXAMPLES // 8) if light else _ENV_EXAMPLES
    return default


TRIED: "collections.Counter[str]" = collections.Counter()  # examples run, per test
OUTCOMES: "collections.Counter[str]" = collections.Counter()  # calls that succeeded / raised


class _Report:
    """Prints the example counts in pytest's terminal summary."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not TRIED:
            return
        total = sum(TRIED.values())
        per = ", ".join(f"{name} {count}" for name, count in sorted(TRIED.items()))
        terminalreporter.write_line(f"fuzz: {total} examples tried ({per})")
        calls = ", ".join(f"{name} {count}" for name, count in sorted(OUTCOMES.items()))
        terminalreporter.write_line(f"fuzz: {sum(OUTCOMES.values())} calls checked, by outcome: {calls}")


@pytest.fixture(scope="module", autouse=True)
def _report_examples(request: pytest.FixtureRequest) -> Any:
    plugin = _Report()
    pm = request.config.pluginmanager
    if not any(isinstance(p, _Report) for p in pm.get_plugins()):
        pm.register(plugin, "hamsearch-fuzz-report")
    yield


def tried(request: pytest.FixtureRequest) -> None:
    TRIED[request.node.name] += 1


# -- outcomes ---------------------------------------------------------------------
INPUT_ERRORS = (TypeError, ValueError)
FILE_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, OSError)


@dataclass
class Outcome:
    value: Any = None
    error: Optional[BaseException] = None

    @property
    def ok(self) -> bool:
        return self.error is None


def attempt(what: str, fn: Callable[[], Any], allowed: Tuple[type, ...] = INPUT_ERRORS) -> Outcome:
    """Calls fn: its result, or the error it raised if that is one of
    ``allowed`` and carries a message; any other exception fails the test.
    Counts the outcome under ``what``."""
    try:
        out = Outcome(value=fn())
    except allowed as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        OUTCOMES[f"{what} {type(exc).__name__}"] += 1
        return Outcome(error=exc)
    except BaseException as exc:  # noqa: BLE001 - the point is to catch anything else
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise AssertionError(f"expected a result or {'/'.join(a.__name__ for a in allowed)}, "
                             f"got {type(exc).__name__}: {exc}") from exc
    OUTCOMES[f"{what} ok"] += 1
    return out


def expect_error(out: Outcome, why: str) -> None:
    assert not out.ok, f"expected TypeError or ValueError ({why}), got a result"


def expect_ok(out: Outcome, why: str = "a valid input") -> Any:
    if not out.ok:
        raise AssertionError(f"expected a result for {why}, got {type(out.error).__name__}: {out.error}")
    return out.value


# -- generated inputs -------------------------------------------------------------
def nwords(nbits: int) -> int:
    return (nbits + 63) // 64


def pad_mask(nbits: int) -> np.uint64:
    rem = nbits % 64
    return np.uint64((1 << 64) - 1 if rem == 0 else (1 << rem) - 1)


def pads_clear(codes: np.ndarray, nbits: int) -> bool:
    if codes.size == 0:
        return True
    return not bool(np.any(codes[:, -1] & ~pad_mask(nbits)))


class Inp:
    """A generated input: the object passed, and copies to prove it was not
    written to (the object and, for a view, the whole buffer under it)."""

    def __init__(self, obj: Any, base: Any = None, label: str = "") -> None:
        self.obj = obj
        self.label = label
        self._pairs = []
        for a in (obj, base):
            if isinstance(a, np.ndarray):
                self._pairs.append((a, a.copy()))

    def assert_unchanged(self) -> None:
        for now, before in self._pairs:
            if now.dtype.hasobject:
                same = now.shape == before.shape and all(x is y or x == y for x, y in zip(now.ravel().tolist(),
                                                                                          before.ravel().tolist()))
            else:
                same = now.tobytes() == before.tobytes()
            assert same, f"the input {self.label} was written to"

    def __repr__(self) -> str:
        o = self.obj
        if isinstance(o, np.ndarray):
            return (f"Inp({self.label}: ndarray {o.dtype.str} shape={o.shape} strides={o.strides} "
                    f"C={o.flags.c_contiguous} aligned={o.flags.aligned} writeable={o.flags.writeable})")
        return f"Inp({self.label}: {type(o).__name__} {o!r:.80})"


# dtypes: the right one most of the time, then its near misses.
U64 = np.dtype(np.uint64)
CODE_DTYPES = [U64] * 10 + [np.dtype(">u8"), np.dtype(np.uint8), np.dtype(np.int64), np.dtype(np.uint32),
                            np.dtype(np.int8), np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.bool_),
                            np.dtype(object), np.dtype(np.complex128), np.dtype("U3"), np.dtype(np.float16),
                            np.dtype("V8")]
LAYOUTS = ["c"] * 8 + ["f", "rows2", "rev_rows", "rev_cols", "cols2", "transposed", "unaligned"]


def _words(rng: np.random.Generator, shape: Tuple[int, ...], pattern: str) -> np.ndarray:
    if pattern == "zeros":
        return np.zeros(shape, dtype=np.uint64)
    if pattern == "ones":
        return np.full(shape, np.uint64((1 << 64) - 1), dtype=np.uint64)
    if pattern == "few":  # few distinct codes: many ties
        choice = rng.integers(0, 2**64, size=(3,) + shape[1:], dtype=np.uint64, endpoint=False)
        if not shape or shape[0] == 0:
            return np.zeros(shape, dtype=np.uint64)
        return choice[rng.integers(0, 3, size=shape[0])].reshape(shape)
    if pattern == "sparse":
        out = np.zeros(int(np.prod(shape)), dtype=np.uint64)
        for i in range(out.size):
            out[i] = np.uint64(1) << np.uint64(int(rng.integers(0, 64)))
        return out.reshape(shape)
    return rng.integers(0, 2**64, size=shape, dtype=np.uint64, endpoint=False)


def _lay_out(logical: np.ndarray, layout: str) -> Tuple[np.ndarray, np.ndarray]:
    """(view, base): a view holding logical's values with the given memory layout."""
    a = logical
    if a.ndim == 0 or layout == "c":
        base = a.copy()
        return base, base
    if layout == "f":
        base = np.asfortranarray(a)
        return base, base
    if layout == "rows2":
        base = np.zeros((2 * a.shape[0] + 1,) + a.shape[1:], dtype=a.dtype)
        base[::2][: a.shape[0]] = a
        return base[: 2 * a.shape[0] : 2], base
    if layout == "rev_rows":
        base = a[::-1].copy()
        return base[::-1], base
    if layout == "rev_cols" and a.ndim >= 2:
        base = a[:, ::-1].copy()
        return base[:, ::-1], base
    if layout == "cols2" and a.ndim >= 2:
        base = np.zeros(a.shape[:1] + (2 * a.shape[1],) + a.shape[2:], dtype=a.dtype)
        base[:, ::2] = a
        return base[:, ::2], base
    if layout == "transposed" and a.ndim >= 2:
        base = np.ascontiguousarray(a.T)
        return base.T, base
    if layout == "unaligned" and a.dtype.itemsize > 1 and not a.dtype.hasobject:
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        view = raw[1:].view(a.dtype).reshape(a.shape)
        view[...] = a
        return view, raw
    base = a.copy()
    return base, base


@st.composite
def code_inputs(draw: Any, nbits: int, *, misaligned: bool = True, rows: int = 6) -> Inp:
    """Anything a caller might pass as codes of ``nbits`` bits: mostly a right
    array, else wrong dtypes, ndim 0..3, widths, layouts, read-only, lists,
    scalars and other objects."""
    w = nwords(nbits)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.integers(0, 2)) < 2:  # a valid array, so that the searches are checked often
        n = draw(st.integers(0, rows))
        vals = _words(rng, (n, w), draw(st.sampled_from(["random"] * 4 + ["zeros", "ones", "few", "sparse"])))
        vals[:, -1:] &= pad_mask(nbits)
        layout = draw(st.sampled_from(["c"] * 4 + (["unaligned"] if misaligned else [])))
        view, base = _lay_out(vals, layout)
        if draw(st.integers(0, 3)) == 0:
            view.flags.writeable = False
        return Inp(view, base, label=f"codes[valid,{layout}]")
    form = draw(st.sampled_from(["array"] * 12 + ["list", "other"]))
    if form == "other":
        obj = draw(st.sampled_from([None, 0, 7, 1.5, "codes", b"\x00" * 8, {}, (), [], [[]], object(),
                                    np.uint64(5), np.float64(2.0), range(3), memoryview(b"\x00" * 8)]))
        return Inp(obj, label="other")
    n = draw(st.integers(0, rows))
    width = w if draw(st.integers(0, 3)) else draw(st.integers(0, w + 2))
    if form == "list":
        vals = _words(rng, (n, width), "random")
        if draw(st.booleans()):
            vals[:, -1:] &= pad_mask(nbits)
        big = draw(st.booleans())
        obj = [[int(v) if big else int(v) >> 1 for v in row] for row in vals]
        return Inp(obj, label="list")
    ndim = draw(st.sampled_from([2] * 8 + [0, 1, 3]))
    if ndim == 2:
        shape: Tuple[int, ...] = (n, width)
    else:
        shape = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    pattern = draw(st.sampled_from(["random"] * 4 + ["zeros", "ones", "few", "sparse"]))
    vals = _words(rng, shape, pattern)
    if ndim == 2 and width == w and w and draw(st.integers(0, 7)):
        vals[:, -1] &= pad_mask(nbits)  # usually the pad bits are clear
    dtype = draw(st.sampled_from(CODE_DTYPES))
    if dtype == U64:
        logical = vals
    elif dtype.kind == "V":
        logical = vals.view(dtype) if vals.ndim else vals.reshape(1).view(dtype).reshape(())
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logical = vals.astype(dtype)
    layouts = LAYOUTS if misaligned else [x for x in LAYOUTS if x != "unaligned"]
    layout = draw(st.sampled_from(layouts))
    view, base = _lay_out(logical, layout)
    if draw(st.integers(0, 4)) == 0:
        view.flags.writeable = False
        if isinstance(base, np.ndarray) and base is not view and base.base is None:
            base.flags.writeable = False
    return Inp(view, base, label=f"codes[{layout}]")


def public_codes(obj: Any, nbits: int) -> Optional[np.ndarray]:
    """The codes the public API must accept (as an array), or None where it
    must refuse them: C-contiguous native uint64, shape (n, W), pad bits
    zero; lists go through np.asarray, other objects only with the array
    protocol."""
    if isinstance(obj, (list, tuple)):
        try:
            arr = np.asarray(obj)
        except (ValueError, TypeError, OverflowError):
            return None
    elif isinstance(obj, np.ndarray):
        arr = obj
    elif hasattr(obj, "__array__") or hasattr(obj, "__array_interface__"):
        arr = np.asarray(obj)
    else:
        return None
    if arr.dtype != U64 or arr.dtype.byteorder == ">" or arr.ndim != 2 or arr.shape[1] != nwords(nbits):
        return None
    if not arr.flags.c_contiguous or not pads_clear(arr, nbits):
        return None
    return arr


def native_codes(obj: Any, nbits: int) -> Tuple[Optional[type], Optional[np.ndarray]]:
    """What a native entry point must do with codes: (TypeError, None) when
    pybind11 cannot take them without a conversion (not a C-contiguous
    native-endian uint64 ndarray), (ValueError, None) for a wrong shape or
    set pad bits, (None, array) when valid."""
    if not (isinstance(obj, np.ndarray) and obj.dtype == U64 and obj.dtype.byteorder != ">"
            and obj.flags.c_contiguous):
        return TypeError, None
    if obj.ndim != 2 or obj.shape[1] != nwords(nbits) or not pads_clear(obj, nbits):
        return ValueError, None
    return None, obj


def native_int64(v: Any) -> Optional[int]:
    """The int a native int64_t parameter takes from v, or None where pybind11
    refuses it (TypeError): no Python floats, strings, None or sequences,
    nothing outside int64. pybind11 converts anything else with ``__int__``
    (bools, numpy bools and integers, numpy floats other than float64,
    truncated)."""
    if isinstance(v, (float, str, bytes, list, tuple)) or v is None:
        return None
    try:
        i = operator.index(v)
    except TypeError:
        if not hasattr(type(v), "__int__"):
            return None
        i = int(v)
    return i if -(2**63) <= i < 2**63 else None


def public_int(v: Any) -> Optional[int]:
    """The int the public API takes from v, or None where it refuses it
    (bools, floats, strings: TypeError)."""
    if isinstance(v, (bool, np.bool_)):
        return None
    try:
        return operator.index(v)
    except TypeError:
        return None


JUNK_INTS = [None, True, False, 2.0, 1.5, "3", b"1", np.float32(3), np.bool_(True), [3], (1,)]


def _mostly(valid: Any, *others: Any) -> Any:
    """valid seven times in ten, else one of the others."""
    return st.integers(0, 9).flatmap(lambda c: valid if c < 7 else others[c % len(others)])


def k_values(n: int) -> Any:
    """k: mostly small, else zero, negative, int64 edges, beyond int64 and
    junk. Not 2**62 to 2**63 - 1: the native core overflows computing the
    output's strides (test_huge_k_is_refused, in a subprocess); not k in
    between either: that would allocate a (nq, k) result for real."""
    return _mostly(st.integers(1, n + 4), st.integers(-3, 0),
                   st.sampled_from([2**63, 2**64, 10**30, -(2**63), -(2**63) - 1, np.int64(3),
                                    np.int32(-1), np.uint64(2), np.uint64(2**63)] + JUNK_INTS))


def r_values(nbits: int) -> Any:
    return _mostly(st.integers(0, nbits + 2), st.integers(-3, -1),
                   st.sampled_from([2**31 - 1, 2**31, 2**62, 2**63 - 1, -(2**63), np.int64(5), np.uint8(3)]
                                   + JUNK_INTS))


def thread_values() -> Any:
    return _mostly(st.integers(1, 3), st.sampled_from([0, -1, -(2**63), 2**31, 2**62, 2**63 - 1, np.int16(2)]),
                   st.sampled_from(JUNK_INTS))


@st.composite
def id_inputs(draw: Any, n: int, fresh_from: int, existing: np.ndarray) -> Inp:
    """Ids for n codes: mostly fresh unique int64, else duplicates, clashes,
    negatives, wrong lengths and dtypes, 2-D, strided, lists, junk."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    ids = fresh_from + rng.permutation(3 * n + 1)[:n].astype(np.int64)
    how = draw(st.sampled_from(["fresh"] * 6 + ["dup", "clash", "negative", "length", "int32", "uint64",
                                                 "uint64_big", "float", "bool", "2d", "strided", "readonly",
                                                 "list", "big_list", "none_like", "object"]))
    base = None
    if how == "dup" and n >= 2:
        ids[-1] = ids[0]
    elif how == "clash" and n >= 1 and existing.size:
        ids[0] = existing[int(rng.integers(0, existing.size))]
    elif how == "negative" and n >= 1:
        ids[int(rng.integers(0, n))] = -int(rng.integers(1, 2**62))
    elif how == "length":
        ids = np.concatenate([ids, ids[:1] + 10**6]) if draw(st.booleans()) or n == 0 else ids[:-1]
    elif how == "int32":
        return Inp(ids.astype(np.int32), label="ids[int32]")
    elif how == "uint64":
        return Inp(ids.astype(np.uint64), label="ids[uint64]")
    elif how == "uint64_big":
        big = ids.astype(np.uint64)
        if n:
            big[0] = np.uint64(2**63 + int(rng.integers(0, 2**62)))
        return Inp(big, label="ids[uint64 >= 2**63]")
    elif how == "float":
        return Inp(ids.astype(np.float64), label="ids[float]")
    elif how == "bool":
        return Inp(ids.astype(bool), label="ids[bool]")
    elif how == "2d":
        return Inp(ids.reshape(n, 1), label="ids[2d]")
    elif how == "strided":
        base = np.zeros(2 * n + 1, dtype=np.int64)
        base[: 2 * n : 2] = ids
        return Inp(base[: 2 * n : 2], base, label="ids[strided]")
    elif how == "readonly":
        ids.flags.writeable = False
    elif how == "list":
        return Inp([int(i) for i in ids], label="ids[list]")
    elif how == "big_list":
        return Inp([2**64 + int(i) for i in ids], label="ids[list > 2**64]")
    elif how == "none_like":
        return Inp(draw(st.sampled_from(["ids", 1.5, object(), {}])), label="ids[junk]")
    elif how == "object":
        return Inp(ids.astype(object), label="ids[object]")
    return Inp(ids, label=f"ids[{how}]")


@st.composite
def remove_inputs(draw: Any, existing: np.ndarray) -> Inp:
    """Ids to remove: present ones, absent, negative, repeated, 0-d, uint64
    above 2**63, lists, Python ints, and things that are not ids at all."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = [existing] if existing.size else []
    pool.append(rng.integers(-5, 50, size=int(rng.integers(0, 6))))
    vals = np.concatenate(pool).astype(np.int64) if pool else np.zeros(0, dtype=np.int64)
    pick = vals[rng.integers(0, vals.size, size=int(rng.integers(0, 6)))] if vals.size else vals
    how = draw(st.sampled_from(["int64"] * 5 + ["int8", "uint64", "uint64_big", "scalar", "pyint", "pybig", "0d",
                                                 "list", "float", "bool", "2d", "strided", "empty", "junk"]))
    if how == "int8":
        return Inp(np.clip(pick, -128, 127).astype(np.int8), label="remove[int8]")
    if how == "uint64":
        return Inp(pick[pick >= 0].astype(np.uint64), label="remove[uint64]")
    if how == "uint64_big":
        out = np.concatenate([pick[pick >= 0].astype(np.uint64), np.array([2**63, 2**64 - 1], dtype=np.uint64)])
        return Inp(out, label="remove[uint64 big]")
    if how == "scalar":
        return Inp(np.int64(pick[0]) if pick.size else np.int64(-1), label="remove[np scalar]")
    if how == "pyint":
        return Inp(int(pick[0]) if pick.size else 3, label="remove[int]")
    if how == "pybig":
        return Inp(draw(st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**30])), label="remove[big int]")
    if how == "0d":
        return Inp(np.array(pick[0] if pick.size else 0, dtype=np.int64), label="remove[0-d]")
    if how == "list":
        return Inp([int(i) for i in pick], label="remove[list]")
    if how == "float":
        return Inp(pick.astype(np.float64), label="remove[float]")
    if how == "bool":
        return Inp(pick > 0, label="remove[bool]")
    if how == "2d":
        return Inp(pick.reshape(-1, 1), label="remove[2d]")
    if how == "strided":
        base = np.repeat(pick, 2)
        return Inp(base[::2], base, label="remove[strided]")
    if how == "empty":
        return Inp(np.zeros(0, dtype=np.int64), label="remove[empty]")
    if how == "junk":
        return Inp(draw(st.sampled_from([None, "1", 1.5, object(), [1.5], [[1, 2], [3]]])), label="remove[junk]")
    return Inp(pick, label="remove[int64]")


EITHER = object()  # an edge case where both a result and an error are acceptable


def public_remove_ids(obj: Any) -> Any:
    """The ids the public remove must take (as int64), None where it must
    refuse: an integer (outside int64: the id of nothing) or a 1-D integer
    array or list (not bool); values outside int64 are ids of nothing. An
    empty float list or array (``[]`` comes in as float64): EITHER."""
    if isinstance(obj, (bool, np.bool_)):
        return None
    if isinstance(obj, (int, np.integer)):
        v = int(obj)
        return np.array([v], dtype=np.int64) if -(2**63) <= v < 2**63 else np.zeros(0, dtype=np.int64)
    if isinstance(obj, (list, tuple)):
        try:
            arr = np.asarray(obj)
        except (ValueError, TypeError, OverflowError):
            return None
    elif isinstance(obj, np.ndarray):
        arr = obj
    else:
        return None
    if arr.size == 0 and arr.ndim == 1 and arr.dtype.kind == "f":
        return EITHER
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        return None
    arr = arr.reshape(1) if arr.ndim == 0 else arr
    if arr.ndim != 1:
        return None
    if arr.dtype.kind == "u":
        arr = arr[arr <= np.iinfo(np.int64).max]
    return arr.astype(np.int64)


# -- the oracle side ----------------------------------------------------------------
class Model:
    """What an index holds (rows in insertion order), as bits and ids."""

    def __init__(self, nbits: int) -> None:
        self.ref = Reference(nbits)
        self.next_id = 0

    @property
    def ids(self) -> np.ndarray:
        return self.ref.ids

    def codes(self) -> np.ndarray:
        return codes_from_bits(self.ref.bits) if self.ref.ids.size else np.zeros((0, nwords(self.ref.nbits)),
                                                                                 dtype=np.uint64)

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        self.ref.bits = np.concatenate([self.ref.bits, bits_from_codes(codes, self.ref.nbits)])
        self.ref.ids = np.concatenate([self.ref.ids, np.asarray(ids, dtype=np.int64)])
        if ids.size:
            self.next_id = max(self.next_id, int(ids.max()) + 1)

    def remove(self, ids: np.ndarray) -> int:
        gone = np.isin(self.ref.ids, ids)
        self.ref.bits = self.ref.bits[~gone]
        self.ref.ids = self.ref.ids[~gone]
        return int(gone.sum())

    def dist(self, q: np.ndarray) -> np.ndarray:
        return self.ref.dist(bits_from_codes(q, self.ref.nbits))

    def knn(self, q: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        return oracle_knn(self.dist(q), self.ids, k)

    def radius(self, q: np.ndarray, r: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return oracle_radius(self.dist(q), self.ids, r)

    def rank(self, q: np.ndarray) -> np.ndarray:
        return oracle_rank(self.dist(q), self.ids)[1]


def store_state(store: Any) -> Tuple[bytes, bytes, int]:
    return store.ids().tobytes(), np.ascontiguousarray(store.codes()).tobytes(), int(store.size())


def assert_store_is(store: Any, model: Model) -> None:
    ids = store.ids()
    codes = store.codes()
    assert int(store.size()) == model.ids.size
    np.testing.assert_array_equal(ids, model.ids)
    np.testing.assert_array_equal(codes.reshape(-1, nwords(model.ref.nbits)), model.codes())


def nbits_values() -> Any:
    return st.one_of(st.integers(1, 130), st.sampled_from([1, 63, 64, 65, 127, 128, 129, 192, 255, 256, 300]))


def make_index(kind: str, nbits: int, backend: str, m: Optional[int] = None, scan_fraction: float = 0.5) -> Any:
    if kind == "mih":
        idx: Any = hs.MIHIndex(nbits, m=m, backend=backend)
        idx._store.scan_fraction = scan_fraction  # > 0.5 probes the tables more often on small indexes
        return idx
    return hs.FlatIndex(nbits, backend=backend)


# -- public API: codes, ids and search arguments ----------------------------------------
def _check_search(idx: Any, model: Model, op: str, q: np.ndarray, arg: Any, out: Outcome) -> None:
    v = expect_ok(out)
    if op == "query":
        assert_knn_equal(v, model.knn(q, arg))
    elif op == "radius":
        assert_radius_equal(v, model.radius(q, arg))
    else:
        assert_rank_equal(v, model.rank(q))


def _public_round(data: Any, be: str, request: pytest.FixtureRequest) -> None:
    tried(request)
    kind = data.draw(st.sampled_from(["flat", "mih"]), label="kind")
    nbits = data.draw(nbits_values(), label="nbits")
    w = nwords(nbits)
    m = None
    if kind == "mih" and data.draw(st.booleans()):
        m = data.draw(st.integers(w, min(nbits, w + 6)), label="m")
    sf = data.draw(st.sampled_from([0.5, 1e-9, 8.0, 1e3]), label="scan_fraction")
    idx = make_index(kind, nbits, be, m=m, scan_fraction=sf)
    model = Model(nbits)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    n0 = data.draw(st.integers(0, 24), label="n0")
    if n0:
        start = _words(rng, (n0, w), data.draw(st.sampled_from(["random", "zeros", "ones", "few", "sparse"])))
        start[:, -1] &= pad_mask(nbits)
        ids = idx.add(start)
        model.add(start, ids)
    for _ in range(data.draw(st.integers(1, 3), label="steps")):
        op = data.draw(st.sampled_from(["add", "query", "radius", "rank"]), label="op")
        inp = data.draw(code_inputs(nbits), label="codes")
        before = store_state(idx._store)
        if op == "add":
            custom = data.draw(st.booleans(), label="custom ids")
            valid = public_codes(inp.obj, nbits)
            ids_inp = None
            if custom:
                n_rows = valid.shape[0] if valid is not None else data.draw(st.integers(0, 4))
                ids_inp = data.draw(id_inputs(n_rows, model.next_id, model.ids), label="ids")
            out = attempt("add", lambda: idx.add(inp.obj, None if ids_inp is None else ids_inp.obj))
            ids_ok: Optional[np.ndarray] = None
            if valid is not None and ids_inp is None:
                ids_ok = np.arange(model.next_id, model.next_id + valid.shape[0], dtype=np.int64)
            elif valid is not None:
                ids_ok = public_ids(ids_inp.obj, valid.shape[0], model.ids)
            if ids_ok is EITHER:
                ids_ok = np.zeros(0, dtype=np.int64) if out.ok else None
            if ids_ok is None:
                expect_error(out, f"{inp!r} / {ids_inp!r}")
            else:
                got = expect_ok(out, f"{inp!r} / {ids_inp!r}")
                assert got.dtype == np.int64 and got.shape == (valid.shape[0],)
                np.testing.assert_array_equal(got, ids_ok)
                model.add(valid, ids_ok)
            if ids_inp is not None:
                ids_inp.assert_unchanged()
        else:
            valid = public_codes(inp.obj, nbits)
            if op == "query":
                arg = data.draw(k_values(model.ids.size), label="k")
                th = data.draw(st.one_of(st.none(), thread_values()), label="threads")
                out = attempt("query", lambda: idx.query(inp.obj, k=arg, threads=th))
                k_ok = public_int(arg)
                if k_ok is not None and k_ok >= 2**62 and valid is not None:
                    # numpy refuses an output of shape (nq, k); only an error is possible.
                    expect_error(out, f"k={arg}")
                    valid = None
                ok = valid is not None and k_ok is not None and k_ok >= 1 and _threads_ok(th)
                if ok:
                    _check_search(idx, model, op, valid, k_ok, out)
                else:
                    expect_error(out, f"{inp!r}, k={arg!r}, threads={th!r}")
            elif op == "radius":
                arg = data.draw(r_values(nbits), label="r")
                th = data.draw(st.one_of(st.none(), thread_values()), label="threads")
                out = attempt("radius", lambda: idx.radius(inp.obj, r=arg, threads=th))
                r_ok = public_int(arg)
                ok = valid is not None and r_ok is not None and r_ok >= 0 and _threads_ok(th)
                if ok:
                    _check_search(idx, model, op, valid, r_ok, out)
                else:
                    expect_error(out, f"{inp!r}, r={arg!r}, threads={th!r}")
            else:
                th = data.draw(st.one_of(st.none(), thread_values()), label="threads")
                out = attempt("rank", lambda: idx.rank(inp.obj, threads=th))
                if valid is not None and _threads_ok(th):
                    _check_search(idx, model, op, valid, None, out)
                else:
                    expect_error(out, f"{inp!r}, threads={th!r}")
        inp.assert_unchanged()
        if not out.ok:
            assert store_state(idx._store) == before, "a failed call changed the index"
    assert_store_is(idx._store, model)
    assert len(idx) == model.ids.size


def _threads_ok(th: Any) -> bool:
    if th is None:
        return True
    t = public_int(th)
    return t is not None and t >= 1


def public_ids(obj: Any, n: int, existing: np.ndarray) -> Optional[np.ndarray]:
    """Custom ids the public add must take, or None: n unique non-negative
    integers below 2**63 (any integer dtype, not bool), none already present."""
    if isinstance(obj, (list, tuple)):
        try:
            arr = np.asarray(obj)
        except (ValueError, TypeError, OverflowError):
            return None
    elif isinstance(obj, np.ndarray):
        arr = obj
    else:
        return None
    if arr.size == 0 and arr.ndim == 1 and arr.dtype.kind == "f" and n == 0:
        return EITHER
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu" or arr.ndim != 1 or arr.shape[0] != n:
        return None
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 2**63):
        return None
    out = arr.astype(np.int64)
    if np.unique(out).size != out.size or np.isin(out, existing).any():
        return None
    return out


@given(data=st.data())
@settings(max_examples=examples(400))
def test_public_api_native(data: Any, native_backend: str, request: pytest.FixtureRequest) -> None:
    """add / query / radius / rank through the public API, native core."""
    _public_round(data, "native", request)


@given(data=st.data())
@settings(max_examples=examples(20, light=True))
def test_public_api_numba(data: Any, request: pytest.FixtureRequest) -> None:
    """The same on the Numba backend, lightly."""
    _public_round(data, "numba", request)


# -- public API: remove sequences -----------------------------------------------------
def _remove_round(data: Any, be: str, request: pytest.FixtureRequest) -> None:
    tried(request)
    kind = data.draw(st.sampled_from(["flat", "mih"]), label="kind")
    nbits = data.draw(nbits_values(), label="nbits")
    w = nwords(nbits)
    idx = make_index(kind, nbits, be, scan_fraction=data.draw(st.sampled_from([0.5, 1e3])))
    model = Model(nbits)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    for _ in range(data.draw(st.integers(1, 8), label="steps")):
        op = data.draw(st.sampled_from(["add", "add_ids", "remove", "remove", "remove"]), label="op")
        if op.startswith("add"):
            n = int(rng.integers(0, 8))
            codes = _words(rng, (n, w), "few" if rng.random() < 0.3 else "random")
            codes[:, -1] &= pad_mask(nbits)
            if op == "add":
                ids = expect_ok(attempt("add", lambda: idx.add(codes)))
                np.testing.assert_array_equal(ids, np.arange(model.next_id, model.next_id + n))
            else:
                inp = data.draw(id_inputs(n, model.next_id + int(rng.integers(0, 3)), model.ids), label="ids")
                want = public_ids(inp.obj, n, model.ids)
                # Ids below ones removed earlier are fine: they may be reused by hand.
                out = attempt("add", lambda: idx.add(codes, inp.obj))
                if want is EITHER:
                    want = np.zeros(0, dtype=np.int64) if out.ok else None
                if want is None:
                    expect_error(out, repr(inp))
                    continue
                ids = expect_ok(out, repr(inp))
                np.testing.assert_array_equal(ids, want)
            model.add(codes, ids)
        else:
            inp = data.draw(remove_inputs(model.ids), label="remove")
            want = public_remove_ids(inp.obj)
            before = store_state(idx._store)
            out = attempt("remove", lambda: idx.remove(inp.obj))
            inp.assert_unchanged()
            if want is EITHER:
                assert store_state(idx._store) == before and (not out.ok or out.value == 0)
                continue
            if want is None:
                expect_error(out, repr(inp))
                assert store_state(idx._store) == before
                continue
            removed = expect_ok(out, repr(inp))
            assert isinstance(removed, int)
            assert removed == model.remove(want)
        assert len(idx) == model.ids.size
    assert_store_is(idx._store, model)
    # Removed ids never come back, the others keep theirs; default ids go on
    # from the largest ever given.
    q = _words(rng, (3, w), "random")
    q[:, -1] &= pad_mask(nbits)
    assert_rank_equal(idx.rank(q), model.rank(q))
    k = int(rng.integers(1, model.ids.size + 3))
    assert_knn_equal(idx.query(q, k=k), model.knn(q, k))
    r = int(rng.integers(0, nbits + 1))
    assert_radius_equal(idx.radius(q, r=r), model.radius(q, r))
    more = np.zeros((2, w), dtype=np.uint64)
    np.testing.assert_array_equal(idx.add(more), np.arange(model.next_id, model.next_id + 2))


@given(data=st.data())
@settings(max_examples=examples(200))
def test_remove_sequences_native(data: Any, native_backend: str, request: pytest.FixtureRequest) -> None:
    _remove_round(data, "native", request)


@given(data=st.data())
@settings(max_examples=examples(12, light=True))
def test_remove_sequences_numba(data: Any, request: pytest.FixtureRequest) -> None:
    _remove_round(data, "numba", request)


# -- public API: constructors and scalar arguments ------------------------------------
CTOR_VALUES = [0, -1, 1, 64, 2**20, 2**20 + 1, 2**31, 2**63, -(2**63), 2**64, None, True, 64.0, "64",
               np.int64(65), np.uint16(7), np.bool_(True), [64], 1.0e3]


@given(nbits=st.one_of(st.integers(-2, 300), st.sampled_from(CTOR_VALUES)),
       m=st.one_of(st.none(), st.integers(-2, 70), st.sampled_from(CTOR_VALUES)),
       # threads >= 2**63: test_radius_and_threads_beyond_int64
       threads=st.one_of(st.none(), st.integers(-2, 4),
                         st.sampled_from([v for v in CTOR_VALUES if not (isinstance(v, int) and v >= 2**63)])),
       backend=st.sampled_from(["native", "numba", "auto", None, "NATIVE", "gpu", "", 1, b"native"]),
       kind=st.sampled_from(["flat", "mih"]))
@settings(max_examples=examples(200))
def test_constructor_arguments(nbits: Any, m: Any, threads: Any, backend: Any, kind: str,
                               native_backend: str, request: pytest.FixtureRequest) -> None:
    tried(request)
    if kind == "mih":
        out = attempt("constructor", lambda: hs.MIHIndex(nbits, m=m, backend=backend, threads=threads))
    else:
        out = attempt("constructor", lambda: hs.FlatIndex(nbits, backend=backend, threads=threads))
    nb = public_int(nbits)
    ok = nb is not None and 1 <= nb <= 2**20
    if kind == "mih" and m is not None:
        mm = public_int(m)
        ok = ok and mm is not None and nwords(nb) <= mm <= nb
    ok = ok and _threads_ok(threads)
    ok = ok and (backend is None or (isinstance(backend, str) and backend.lower() in ("native", "numba", "auto")))
    if not ok:
        expect_error(out, f"nbits={nbits!r}, m={m!r}, threads={threads!r}, backend={backend!r}")
        return
    idx = expect_ok(out)
    assert idx.nbits == nb and len(idx) == 0
    q = np.zeros((1, nwords(nb)), dtype=np.uint64)
    D, I = idx.query(q, k=1)
    assert D.tolist() == [[2**31 - 1]] and I.tolist() == [[-1]]


# -- codecs --------------------------------------------------------------------------
@st.composite
def bit_inputs(draw: Any) -> Tuple[Inp, Optional[np.ndarray]]:
    """x for hs.pack, with the bits it must give (None where it must refuse)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, 5))
    nb = draw(st.sampled_from([0, 1, 7, 63, 64, 65, 130]))
    bits = rng.integers(0, 2, size=(n, nb)).astype(bool)
    enc = draw(st.sampled_from(["bool", "01", "pm1", "float", "uint8", "bad_int", "nan", "zero_pm", "complex",
                                "object", "str", "1d", "3d"]))
    want: Optional[np.ndarray] = bits
    if enc == "bool":
        x: Any = bits
    elif enc == "01":
        x = bits.astype(draw(st.sampled_from([np.int8, np.int64, np.uint16])))
    elif enc == "uint8":
        x = bits.astype(np.uint8)
    elif enc == "pm1":
        x = np.where(bits, 1, -1).astype(np.int32)
        if n * nb and not bits.any():
            want = bits  # all -1
    elif enc == "float":
        x = np.where(bits, rng.random((n, nb)) + 1e-3, -rng.random((n, nb)) - 1e-3).astype(np.float32)
    elif enc == "bad_int":
        x = bits.astype(np.int64) * 2
        want = bits if not bits.any() else None
    elif enc == "nan":
        x = np.where(bits, 1.0, -1.0)
        if n * nb:
            x[0, 0] = np.nan
            want = None
    elif enc == "zero_pm":
        x = np.where(bits, 1, -1).astype(np.int64)
        if n * nb:
            x[0, 0] = 0
            want = None if (x == -1).any() else bits.copy()
            if want is not None:
                want[0, 0] = False
    elif enc == "complex":
        x, want = bits.astype(np.complex64), None
    elif enc == "object":
        x, want = bits.astype(object), None
    elif enc == "str":
        x, want = bits.astype("U1"), None
    elif enc == "1d":
        x, want = bits.reshape(-1), None
    else:
        x, want = bits.reshape(n, nb, 1), None
    if want is not None and nb == 0:
        want = None  # no bits per code
    x = np.asarray(x)
    layout = draw(st.sampled_from(["c", "c", "f", "rev_rows", "rev_cols", "cols2", "unaligned"]))
    view, base = _lay_out(x, layout)
    if draw(st.booleans()):
        view.flags.writeable = False
    return Inp(view, base, label=f"x[{enc},{layout}]"), want


@given(case=bit_inputs(), bitorder=st.sampled_from(["little", "big", "LITTLE", None, 1]))
@settings(max_examples=examples(200))
def test_codecs(case: Tuple[Inp, Optional[np.ndarray]], bitorder: Any, request: pytest.FixtureRequest) -> None:
    """pack / unpack / to_bytes / from_bytes on anything: the oracle's packing,
    round trips, or an error."""
    tried(request)
    inp, want = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pack warns (by design) on floats of only 0.0 and 1.0
        out = attempt("pack", lambda: hs.pack(inp.obj))
    inp.assert_unchanged()
    if want is None:
        expect_error(out, repr(inp))
        return
    codes = expect_ok(out, repr(inp))
    nb = want.shape[1]
    np.testing.assert_array_equal(codes, codes_from_bits(want))
    assert codes.dtype == np.uint64 and codes.flags.c_contiguous
    np.testing.assert_array_equal(hs.unpack(codes, nb), want.astype(np.uint8))
    ok_order = bitorder in ("little", "big")
    out = attempt("to_bytes", lambda: hs.to_bytes(codes, nb, bitorder=bitorder))
    if not ok_order:
        expect_error(out, f"bitorder={bitorder!r}")
        return
    data = expect_ok(out)
    np.testing.assert_array_equal(data, np.packbits(want, axis=1, bitorder=bitorder))
    np.testing.assert_array_equal(hs.from_bytes(data, nb, bitorder=bitorder), codes)
    if data.size and nb % 8:
        bad = data.copy()
        bad[0, -1] |= np.uint8(1 if bitorder == "big" else 0x80)  # an unused bit of the last byte
        expect_error(attempt("from_bytes", lambda: hs.from_bytes(bad, nb, bitorder=bitorder)), "set unused bits")


# -- native entry points, straight -------------------------------------------------------
def _native_call_ints(*values: Any) -> Optional[Tuple[int, ...]]:
    out = tuple(native_int64(v) for v in values)
    return None if any(v is None for v in out) else out  # type: ignore[return-value]


def native_ids(obj: Any) -> Tuple[Optional[type], Optional[np.ndarray]]:
    if not (isinstance(obj, np.ndarray) and obj.dtype == np.dtype(np.int64) and obj.dtype.byteorder != ">"
            and obj.flags.c_contiguous):
        return TypeError, None
    return None, obj


@pytest.mark.parametrize("kind", ["flat", "mih"])
@given(data=st.data())
@settings(max_examples=examples(300))
def test_native_entry_points(kind: str, data: Any, native_backend: str, request: pytest.FixtureRequest) -> None:
    """FlatIndex / MIHIndex of hamsearch._core called directly with anything:
    add, remove, knn, radius, rank, ids, codes, size, version, the MIH knobs."""
    tried(request)
    N = _backend.native_module()
    nbits = data.draw(nbits_values(), label="nbits")
    w = nwords(nbits)
    if kind == "mih":
        m = data.draw(st.one_of(st.just(0), st.integers(w, min(nbits, w + 8))), label="m")
        store = N.MIHIndex(nbits, m)
        sf = data.draw(st.sampled_from([0.5, 1e-9, 8.0, 1e3]), label="scan_fraction")
        store.scan_fraction = sf
    else:
        store = N.FlatIndex(nbits)
    assert store.nbits == nbits
    model = Model(nbits)
    for _ in range(data.draw(st.integers(1, 6), label="steps")):
        op = data.draw(st.sampled_from(["add", "add", "knn", "radius", "rank", "remove", "state", "knobs"]),
                       label="op")
        before = store_state(store)
        version = store.version()
        if op == "add":
            inp = data.draw(code_inputs(nbits, misaligned=False), label="codes")
            err, codes = native_codes(inp.obj, nbits)
            n_rows = codes.shape[0] if codes is not None else data.draw(st.integers(0, 4))
            ids_inp = data.draw(id_inputs(n_rows, model.next_id, model.ids), label="ids")
            ierr, ids = native_ids(ids_inp.obj)
            out = attempt("native add", lambda: store.add(inp.obj, ids_inp.obj))
            if err is None and ierr is None:
                # The core checks shape and sign; uniqueness is the caller's contract.
                good = ids.ndim == 1 and ids.shape[0] == codes.shape[0] and (ids.size == 0 or ids.min() >= 0)
                if good:
                    assert expect_ok(out, f"{inp!r} / {ids_inp!r}") is None
                    model.add(codes, ids)
                else:
                    expect_error(out, f"{ids_inp!r}")
            else:
                expect_error(out, f"{inp!r} / {ids_inp!r}")
            ids_inp.assert_unchanged()
        elif op == "remove":
            inp = data.draw(remove_inputs(model.ids), label="remove")
            ierr, ids = native_ids(inp.obj)
            out = attempt("native remove", lambda: store.remove(inp.obj))
            if ierr is None and ids.ndim == 1:
                assert expect_ok(out, repr(inp)) == model.remove(ids)
            else:
                expect_error(out, repr(inp))
        elif op in ("knn", "radius", "rank"):
            inp = data.draw(code_inputs(nbits, misaligned=False), label="q")
            err, q = native_codes(inp.obj, nbits)
            th = data.draw(thread_values(), label="threads")
            if op == "knn":
                k = data.draw(k_values(model.ids.size), label="k")
                out = attempt("native knn", lambda: store.knn(inp.obj, k, th))
                ints = _native_call_ints(k, th)
                if err is None and ints is not None and ints[0] >= 1 and ints[1] >= 1:
                    got = expect_ok(out, f"{inp!r} k={k!r} threads={th!r}")
                    assert len(got) == 3 and 0 <= got[2] <= q.shape[0]  # the store contract's count
                    assert_knn_equal(got[:2], model.knn(q, ints[0]))
                else:
                    expect_error(out, f"{inp!r} k={k!r} threads={th!r}")
            elif op == "radius":
                r = data.draw(r_values(nbits), label="r")
                out = attempt("native radius", lambda: store.radius(inp.obj, r, th))
                ints = _native_call_ints(r, th)
                if err is None and ints is not None and ints[0] >= 0 and ints[1] >= 1:
                    got = expect_ok(out, f"{inp!r} r={r!r} threads={th!r}")
                    assert len(got) == 4 and 0 <= got[3] <= q.shape[0]
                    assert_radius_equal(got[:3], model.radius(q, ints[0]))
                else:
                    expect_error(out, f"{inp!r} r={r!r} threads={th!r}")
            else:
                with_d = data.draw(st.booleans(), label="with_distances")
                out = attempt("native rank", lambda: store.rank(inp.obj, th, with_d))
                ints = _native_call_ints(th)
                if err is None and ints is not None and ints[0] >= 1:
                    D, I = expect_ok(out, f"{inp!r} threads={th!r}")
                    assert_rank_equal(I, model.rank(q))
                    if with_d:
                        np.testing.assert_array_equal(D, oracle_rank(model.dist(q), model.ids)[0])
                    else:
                        assert D is None
                else:
                    expect_error(out, f"{inp!r} threads={th!r}")
            inp.assert_unchanged()
            assert store.version() == version  # searches change nothing
        elif op == "state":
            assert_store_is(store, model)
            out = Outcome(value=None)
        else:  # knobs
            if kind == "mih":
                n = int(store.size())
                subs = store.substrings()
                assert len(subs) == store.effective_m() >= 1
                assert [b for b, _ in subs] == list(np.cumsum([0] + [ln for _, ln in subs])[:-1])
                assert sum(ln for _, ln in subs) == nbits and all(1 <= ln <= 64 for _, ln in subs)
                assert store.m == m and n == model.ids.size
                f = data.draw(st.sampled_from([0.0, -1.0, float("nan"), float("-inf"), 1e-300, 0.25, 1e3,
                                               float("inf"), "1", None]), label="scan_fraction")
                out = attempt("native scan_fraction", lambda: setattr(store, "scan_fraction", f))
                good = isinstance(f, float) and f > 0
                if good:
                    expect_ok(out)
                    assert store.scan_fraction == f
                    store.scan_fraction = sf  # never search with an unbounded budget (minutes on wide substrings)
                else:
                    expect_error(out, f"scan_fraction={f!r}")
                    assert store.scan_fraction == sf
            else:
                out = Outcome(value=None)
        if not out.ok:
            assert store_state(store) == before, "a failed call changed the index"
            assert store.version() == version
    assert_store_is(store, model)


@given(nbits=st.one_of(st.integers(-3, 300), st.sampled_from([2**20, 2**20 + 1, 2**62, 2**63 - 1, 2**63, -(2**63),
                                                               1.0, None, "8", True])),
       m=st.one_of(st.integers(-3, 300), st.sampled_from([2**63, -(2**63), 1.5, None])),
       kind=st.sampled_from(["flat", "mih"]))
@settings(max_examples=examples(150))
def test_native_constructors(nbits: Any, m: Any, kind: str, native_backend: str,
                             request: pytest.FixtureRequest) -> None:
    tried(request)
    N = _backend.native_module()
    nb = native_int64(nbits)
    if kind == "flat":
        out = attempt("native constructor", lambda: N.FlatIndex(nbits))
        ok = nb is not None and 1 <= nb <= 2**20
    else:
        out = attempt("native constructor", lambda: N.MIHIndex(nbits, m))
        mm = native_int64(m)
        ok = nb is not None and mm is not None and 1 <= nb <= 2**20 and (mm == 0 or nwords(nb) <= mm <= nb)
    if ok:
        store = expect_ok(out)
        assert store.size() == 0 and store.nbits == nb
    else:
        expect_error(out, f"nbits={nbits!r} m={m!r}")


# -- files ------------------------------------------------------------------------------
# The layout from the format's description (docs/format.md), in the test
# oracle tests/format_oracle.py rather than taken from the package.
HEADER = fmt.HEADER
MAGIC = fmt.MAGIC
FIELDS = fmt.FIELDS
read_field, write_field = fmt.read_field, fmt.write_field
fix_header_crc, fix_data_crc = fmt.fix_header_crc, fmt.fix_data_crc


class Scratch:
    """A fresh file name per example in one directory, on tmpfs where there
    is one: idx.save fsyncs the file and its directory, which costs tens of
    milliseconds an example on a disk and nothing in memory."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.count = 0

    def path(self, name: str) -> str:
        self.count += 1
        return os.path.join(self.directory, f"{self.count}-{name}")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import shutil
    import tempfile

    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        directory = tempfile.mkdtemp(prefix="hamsearch-fuzz-", dir=shm)
    else:
        directory = str(tmp_path_factory.mktemp("fuzz-files"))
    yield Scratch(directory)
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Parsed:
    kind: str
    nbits: int
    next_id: int
    m: int
    ids: np.ndarray
    codes: np.ndarray
    contents_ok: bool  # ids unique, non-negative and below next_id; pad bits and padding zero
    crc_ok: bool


def judge(raw: bytes) -> Optional[Parsed]:
    """The file's contents if its header is valid by the format's rules (None
    if not), with whether the data checksum and the contents hold."""
    try:
        p = fmt.parse(raw)
    except fmt.Invalid:
        return None
    return Parsed(p.kind_name, p.nbits, p.next_id, p.m, p.ids, p.codes, p.contents_ok, p.crc_ok)


def check_loaded(idx: Any, p: Parsed, verify: bool, rng: np.random.Generator) -> None:
    """A loaded index against the file's contents: equal to the oracle when
    the contents are valid; otherwise (verify=False) searches that do not
    crash."""
    assert type(idx).__name__ == ("MIHIndex" if p.kind == "mih" else "FlatIndex")
    assert idx.nbits == p.nbits and len(idx) == p.ids.size
    if p.kind == "mih":
        assert (idx._m or 0) == p.m
    w = nwords(p.nbits)
    q = _words(rng, (2, w), "random")
    q[:, -1] &= pad_mask(p.nbits)
    if not p.contents_ok:
        assert not verify, "verify=True loaded a file with bad contents"
        # Unchecked contents: any answer, but no crash. Not rank where pad bits
        # are set: see test_unverified_load_with_set_pad_bits.
        idx.query(q, k=3)
        idx.radius(q, r=p.nbits // 2)
        if pads_clear(p.codes, p.nbits):
            idx.rank(q)
        return
    np.testing.assert_array_equal(idx._store.ids(), p.ids)
    np.testing.assert_array_equal(np.asarray(idx._store.codes()).reshape(-1, w), p.codes)
    model = Model(p.nbits)
    model.add(p.codes, p.ids)
    k = int(rng.integers(1, p.ids.size + 3))
    assert_knn_equal(idx.query(q, k=k), model.knn(q, k))
    r = int(rng.integers(0, p.nbits + 1))
    assert_radius_equal(idx.radius(q, r=r), model.radius(q, r))
    assert_rank_equal(idx.rank(q), model.rank(q))
    # Default ids go on from the file's next id.
    np.testing.assert_array_equal(idx.add(np.zeros((1, w), dtype=np.uint64)), [p.next_id])


def _load_and_check(path: str, raw: bytes, data: Any, backend: str, rng: np.random.Generator) -> None:
    mmap = data.draw(st.booleans(), label="mmap")
    verify = data.draw(st.integers(0, 3), label="verify") > 0
    out = attempt("load", lambda: hs.load(path, mmap=mmap, backend=backend, verify=verify), FILE_ERRORS)
    p = judge(raw)
    with open(path, "rb") as fh:
        assert fh.read() == raw, "load wrote to the file"
    if out.ok:
        assert p is not None, "loaded a file whose header breaks the format"
        if verify:
            assert p.crc_ok and p.contents_ok, "verify=True loaded a file with a bad checksum or contents"
        check_loaded(out.value, p, verify, rng)
        del out
    else:
        if p is not None and p.crc_ok and p.contents_ok:
            raise AssertionError(f"a valid file was refused: {out.error}")
        if p is not None and not verify:
            raise AssertionError(f"verify=False refused a file with a valid header: {out.error}")


@given(data=st.data())
@settings(max_examples=examples(200))
def test_load_random_bytes(data: Any, scratch: "Scratch", native_backend: str,
                           request: pytest.FixtureRequest) -> None:
    """Random bytes, some behind the right magic, some with a header checksum
    that matches, loaded every way."""
    tried(request)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    size = data.draw(st.sampled_from([0, 1, 7, 8, 9, 100, 127, 128, 129, 200, 256, 1000]), label="size")
    raw = bytearray(rng.integers(0, 256, size=size, dtype=np.uint8).tobytes())
    if data.draw(st.booleans(), label="magic"):
        raw[: min(8, size)] = MAGIC[: min(8, size)]
        if size >= HEADER and data.draw(st.booleans(), label="plausible"):
            write_field(raw, "version", 1)
            write_field(raw, "header_size", HEADER)
            write_field(raw, "kind", data.draw(st.sampled_from([1, 2, 3])))
            write_field(raw, "flags", 0)
            nb = data.draw(st.integers(1, 200))
            write_field(raw, "nbits", nb)
            write_field(raw, "words", nwords(nb))
            write_field(raw, "count", data.draw(st.sampled_from([0, 1, 2, 2**31, 2**40, 2**61, 2**64 - 1])))
            fix_header_crc(raw)
    path = scratch.path("x.hsi")
    with open(path, "wb") as fh:
        fh.write(raw)
    _load_and_check(path, bytes(raw), data, data.draw(st.sampled_from(["native", "native", "numba"])), rng)


FIELD_VALUES = [0, 1, 2, 3, 7, 63, 64, 65, 127, 128, 129, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**61,
                2**62, 2**63 - 1, 2**63, 2**64 - 1]


def _mutate(raw: bytearray, data: Any, rng: np.random.Generator) -> bytearray:
    p = judge(bytes(raw))
    assert p is not None
    how = data.draw(st.sampled_from(["flip", "flip", "truncate", "append", "field", "field", "field", "count",
                                     "contents", "none"]), label="mutation")
    note(f"mutation {how}")
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 3))):
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= data.draw(st.integers(1, 255))
        if data.draw(st.booleans()):
            fix_header_crc(raw)  # get past the header checksum to the checks behind it
    elif how == "truncate":
        del raw[data.draw(st.integers(0, len(raw) - 1)):]
    elif how == "append":
        raw += rng.integers(0, 256, size=data.draw(st.sampled_from([1, 7, 8, 64, 100])), dtype=np.uint8).tobytes()
    elif how in ("field", "count"):
        name = "count" if how == "count" else data.draw(st.sampled_from(sorted(set(FIELDS) - {"magic"})))
        old = read_field(raw, name)
        value = data.draw(st.one_of(st.sampled_from(FIELD_VALUES), st.integers(0, 2**64 - 1),
                                    st.sampled_from([old + 1, old - 1, old * 2, old + 64]) if old else st.just(1)))
        write_field(raw, name, value)
        if how == "count":
            # A forged count with consistent offsets: the size checks must catch it.
            count = value % 2**64
            nb = read_field(raw, "nbits")
            codes_offset = -(-(HEADER + 8 * count) // 64) * 64
            write_field(raw, "codes_offset", codes_offset)
            write_field(raw, "end", codes_offset + 8 * count * nwords(nb))
        if data.draw(st.integers(0, 4)):
            fix_header_crc(raw)
    elif how == "contents" and p.ids.size:
        count = p.ids.size
        codes_offset = read_field(raw, "codes_offset")
        w = nwords(p.nbits)
        problem = data.draw(st.sampled_from(["pad", "dup", "negative", "above_next", "shuffle", "code_bits",
                                             "padding"]))
        if problem == "padding" and codes_offset > HEADER + 8 * count:
            at = data.draw(st.integers(HEADER + 8 * count, codes_offset - 1))
            raw[at] = data.draw(st.integers(1, 255))
        elif problem == "pad" and p.nbits % 64:
            row = data.draw(st.integers(0, count - 1))
            at = codes_offset + 8 * (row * w + w - 1)
            word = struct.unpack_from("<Q", raw, at)[0] | (1 << data.draw(st.integers(p.nbits % 64, 63)))
            struct.pack_into("<Q", raw, at, word)
        elif problem == "dup" and count >= 2:
            struct.pack_into("<q", raw, HEADER + 8 * (count - 1), int(p.ids[0]))
        elif problem == "negative":
            struct.pack_into("<q", raw, HEADER, -data.draw(st.integers(1, 2**63)))
        elif problem == "above_next":
            struct.pack_into("<q", raw, HEADER, p.next_id + data.draw(st.integers(0, 5)))
        elif problem == "shuffle":  # still valid: ids need not ascend
            perm = rng.permutation(count)
            struct.pack_into(f"<{count}q", raw, HEADER, *p.ids[perm].tolist())
        else:  # other code bits: still valid
            row = data.draw(st.integers(0, count - 1))
            at = codes_offset + 8 * row * w
            struct.pack_into("<Q", raw, at, struct.unpack_from("<Q", raw, at)[0] ^ 1)
        if data.draw(st.integers(0, 5)):
            fix_data_crc(raw)
    return raw


def _mutated_round(backend: str, data: Any, scratch: "Scratch",
                   request: pytest.FixtureRequest) -> None:
    tried(request)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    kind = data.draw(st.sampled_from(["flat", "mih"]), label="kind")
    nbits = data.draw(nbits_values(), label="nbits")
    w = nwords(nbits)
    m = data.draw(st.integers(w, min(nbits, w + 4)), label="m") if kind == "mih" and rng.random() < 0.5 else None
    idx = make_index(kind, nbits, backend, m=m)
    n = data.draw(st.integers(0, 12), label="n")
    codes = _words(rng, (n, w), "random")
    codes[:, -1] &= pad_mask(nbits)
    if n and data.draw(st.booleans(), label="custom ids"):
        idx.add(codes, ids=rng.permutation(4 * n)[:n])
    else:
        idx.add(codes)
    if n and data.draw(st.booleans(), label="removed some"):
        idx.remove(idx._store.ids()[: n // 2])
    path = scratch.path("idx.hsi")
    idx.save(path)
    with open(path, "rb") as fh:
        raw = bytearray(fh.read())
    p = judge(bytes(raw))
    assert p is not None and p.crc_ok and p.contents_ok, "idx.save wrote a file that breaks the format"
    raw = _mutate(raw, data, rng)
    with open(path, "wb") as fh:
        fh.write(raw)
    _load_and_check(path, bytes(raw), data, backend, rng)


@given(data=st.data())
@settings(max_examples=examples(400))
def test_load_mutated_files_native(data: Any, scratch: "Scratch", native_backend: str,
                                   request: pytest.FixtureRequest) -> None:
    """A file saved by idx.save, then bytes flipped, cut, appended, header
    fields forged (behind a matching checksum or not), contents broken behind
    a matching data checksum; loaded with and without mmap and verify."""
    _mutated_round("native", data, scratch, request)


@given(data=st.data())
@settings(max_examples=examples(20, light=True))
def test_load_mutated_files_numba(data: Any, scratch: "Scratch",
                                  request: pytest.FixtureRequest) -> None:
    """The same on the Numba backend (which copies, as mmap=False does), lightly."""
    _mutated_round("numba", data, scratch, request)


def test_load_paths(tmp_path: Any, native_backend: str) -> None:
    """Paths that are not index files: the file-system errors, or TypeError."""
    TRIED["test_load_paths"] += 1
    for path, exc in [(tmp_path / "missing.hsi", FileNotFoundError), (tmp_path, IsADirectoryError),
                      (str(tmp_path / "missing.hsi"), FileNotFoundError), (None, TypeError), (3.5, TypeError),
                      (b"\xff" * 4, (TypeError, FileNotFoundError))]:
        with pytest.raises(exc):
            hs.load(path)
    empty = tmp_path / "empty.hsi"
    empty.write_bytes(b"")
    for mmap in (False, True):
        with pytest.raises(ValueError, match="not a hamsearch index|truncated"):
            hs.load(empty, mmap=mmap)
    for bad in [dict(mmap=1), dict(mmap=None), dict(verify="yes"), dict(backend="gpu"), dict(threads=0)]:
        with pytest.raises((TypeError, ValueError)):
            hs.load(empty, **bad)


# -- native file entry points -------------------------------------------------------------
@given(data=st.data())
@settings(max_examples=examples(250))
def test_native_save_arrays(data: Any, scratch: "Scratch", native_backend: str,
                            request: pytest.FixtureRequest) -> None:
    """save_arrays with any kind, nbits, m, next id, ids and codes: a file
    that the oracle reads back as exactly those, or ValueError / TypeError and
    no file."""
    tried(request)
    N = _backend.native_module()
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    kind = data.draw(st.sampled_from([0, 1, 1, 2, 2, 3, 2**32 - 1]), label="kind")
    nbits = data.draw(st.one_of(nbits_values(), st.sampled_from([0, -1, 2**20 + 1, 2**63 - 1])), label="nbits")
    w = nwords(max(nbits, 1)) if nbits <= 2**20 else 1
    m = data.draw(st.one_of(st.integers(0, 8), st.sampled_from([w, nbits if nbits > 0 else 0, 2**64 - 1])),
                  label="m")
    n = data.draw(st.integers(0, 6), label="n")
    codes = _words(rng, (n, w), "random")
    if nbits > 0 and data.draw(st.integers(0, 3)):
        codes[:, -1] &= pad_mask(nbits)
    ids = rng.permutation(4 * n + 1)[:n].astype(np.int64)
    if n and data.draw(st.integers(0, 5)) == 0:
        ids[0] = -data.draw(st.integers(1, 2**63))
    next_id = data.draw(st.one_of(st.just(int(ids.max()) + 1 if n else 0), st.integers(0, 2**64 - 1),
                                  st.sampled_from([2**63, 2**63 + 1, 0])), label="next_id")
    path = scratch.path("arrays.hsi")
    out = attempt("native save_arrays", lambda: N.save_arrays(os.fsencode(path), kind, nbits, m, next_id, ids, codes))
    valid = (kind in (1, 2) and 1 <= nbits <= 2**20 and (m == 0 if kind == 1 else (m == 0 or w <= m <= nbits))
             and next_id <= 2**63 and (n == 0 or (int(ids.min()) >= 0 and int(ids.max()) < next_id))
             and pads_clear(codes, nbits))
    if not valid:
        expect_error(out, f"kind={kind} nbits={nbits} m={m} next_id={next_id} ids={ids.tolist()}")
        assert not os.path.exists(path)
        assert not [f for f in os.listdir(scratch.directory) if f.endswith(".tmp")]
        return
    expect_ok(out)
    with open(path, "rb") as fh:
        p = fmt.parse(fh.read())
    assert p.crc_ok and (p.kind, p.nbits, p.m, p.next_id) == (kind, nbits, m, next_id)
    np.testing.assert_array_equal(p.ids, ids)
    np.testing.assert_array_equal(p.codes, codes)


def test_native_index_file_paths(tmp_path: Any, native_backend: str) -> None:
    """Paths that are not index files, straight into the core: OSError or
    ValueError with a message, never a crash; a closed file cannot be read."""
    TRIED["test_native_index_file_paths"] += 1
    N = _backend.native_module()
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    for path in [str(tmp_path / "missing"), str(tmp_path), "", "\x00", fifo, "/dev/null"]:
        with pytest.raises((OSError, ValueError)) as info:
            N.IndexFile(os.fsencode(path))
        assert str(info.value)
    for bad in (None, 3, ["x"]):
        with pytest.raises(TypeError):
            N.IndexFile(bad)
    good = tmp_path / "good.hsi"
    hs.FlatIndex(70, backend="native").save(good)
    f = N.IndexFile(os.fsencode(str(good)))
    f.close()
    with pytest.raises(ValueError, match="closed"):
        f.read(True)


@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_native_load_file_into_a_wrong_store(kind: str, tmp_path: Any, native_backend: str) -> None:
    """load_file into a store that is not empty or has other nbits: ValueError,
    the store unchanged."""
    TRIED["test_native_load_file_into_a_wrong_store"] += 1
    N = _backend.native_module()
    idx = hs.FlatIndex(70, backend="native")
    idx.add(np.ones((3, 2), dtype=np.uint64))
    idx.save(tmp_path / "f.hsi")
    full = N.FlatIndex(70) if kind == "flat" else N.MIHIndex(70, 0)
    full.add(np.ones((1, 2), dtype=np.uint64), np.arange(1, dtype=np.int64))
    other = N.FlatIndex(64) if kind == "flat" else N.MIHIndex(64, 0)
    for store in (full, other):
        before = store.size()
        for mmap in (False, True):
            with N.IndexFile(os.fsencode(str(tmp_path / "f.hsi"))) as f, pytest.raises(ValueError):
                store.load_file(f, mmap, True)
        assert store.size() == before and not store.mapped


# -- known out-of-bounds accesses, run in a subprocess ----------------------------------------------
def run_isolated(code: str, cwd: Any) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter that imports the same hamsearch as this
    one (under scripts/sanitize.sh: the sanitized build, LD_PRELOAD and all),
    so that memory errors kill that process, not the test session."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(hs.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    prelude = f"import hamsearch, sys; assert hamsearch.__file__ == {hs.__file__!r}, hamsearch.__file__\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=300)


SANITIZER_SIGNS = ("Sanitizer", "runtime error:")


def assert_clean_exit(res: subprocess.CompletedProcess) -> None:
    report = res.stdout + res.stderr
    if any(sign in report for sign in SANITIZER_SIGNS):
        # Past pytest's capture, so that scripts/sanitize.sh sees it even
        # where the test is an expected failure.
        sys.__stderr__.write(f"\n== sanitizer report from a subprocess:\n{res.stderr}\n")
        sys.__stderr__.flush()
    assert res.returncode == 0 and not any(sign in report for sign in SANITIZER_SIGNS), (
        f"exit status {res.returncode}\n{report[-4000:]}")


@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_unverified_load_with_set_pad_bits(kind: str, tmp_path: Any, native_backend: str) -> None:
    """hs.load(verify=False) checks only the header, so a flipped bit in the
    pad bits of a code gets into the index; rank must still stay inside its
    buffers. (Found by the sanitizer: FlatIndex::rank's counting sort has
    nbits + 2 bins but such a code's distance can reach 64 * words.)"""
    TRIED["test_unverified_load_with_set_pad_bits"] += 1
    res = run_isolated(f"""
        import numpy as np, hamsearch as hs
        idx = hs.{'MIHIndex' if kind == 'mih' else 'FlatIndex'}(3, backend="native")
        idx.add(np.array([[1], [2], [7]], dtype=np.uint64))
        idx.save("good.hsi")
        raw = bytearray(open("good.hsi", "rb").read())
        raw[192 + 7] = 0xFF  # the top byte of the first code: pad bits above nbits=3
        open("bad.hsi", "wb").write(raw)
        for mmap in (False, True):
            bad = hs.load("bad.hsi", mmap=mmap, verify=False, backend="native")
            print(bad.rank(np.zeros((2, 1), np.uint64)).tolist())
            print(bad.query(np.zeros((1, 1), np.uint64), k=3), bad.radius(np.zeros((1, 1), np.uint64), r=100))
        """, tmp_path)
    assert_clean_exit(res)


MISALIGNED_CALLS = {
    "add": "s.add(a, np.arange(a.shape[0]))",
    "add_ids": "s.add(np.zeros((4, w), np.uint64), ids)",
    "knn": "s.add(np.zeros((4, w), np.uint64), np.arange(4)); s.knn(a, 2, 1)",
    "radius": "s.add(np.zeros((4, w), np.uint64), np.arange(4)); s.radius(a, 40, 1)",
    "rank": "s.add(np.zeros((4, w), np.uint64), np.arange(4)); s.rank(a, 1, True)",
    "remove": "s.add(np.zeros((4, w), np.uint64), np.arange(4)); s.remove(ids)",
}


@pytest.mark.parametrize("kind", ["flat", "mih"])
@pytest.mark.parametrize("call", sorted(MISALIGNED_CALLS))
def test_native_entry_points_with_misaligned_arrays(call: str, kind: str, tmp_path: Any,
                                                    native_backend: str) -> None:
    """A C-contiguous uint64 / int64 array at an odd address, straight into
    the core: pybind11's array_t takes it (it does not require alignment), so
    the core must copy it or refuse it (ValueError), not read uint64 words at
    odd addresses (undefined behaviour; UBSan reports it). The public API
    copies such arrays before the call."""
    TRIED["test_native_entry_points_with_misaligned_arrays"] += 1
    res = run_isolated(f"""
        import numpy as np
        from hamsearch import _backend
        N = _backend.native_module()
        nbits, w = 100, 2
        s = N.{'MIHIndex(nbits, 0)' if kind == 'mih' else 'FlatIndex(nbits)'}
        raw = np.zeros(8 * 4 * w + 1, np.uint8)
        a = raw[1:].view(np.uint64).reshape(4, w)
        a[:] = np.arange(4 * w, dtype=np.uint64).reshape(4, w) & np.uint64(0xFFFFFFFF)
        rawi = np.zeros(8 * 4 + 1, np.uint8)
        ids = rawi[1:].view(np.int64)
        ids[:] = np.arange(10, 14)
        assert not a.flags.aligned and a.flags.c_contiguous and not ids.flags.aligned
        try:
            {MISALIGNED_CALLS[call]}
        except ValueError as exc:
            print("refused:", exc)
        """, tmp_path)
    assert_clean_exit(res)


@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_huge_k_is_refused(kind: str, tmp_path: Any, native_backend: str) -> None:
    """k from 2**62 to 2**63 - 1: no (nq, k) output can exist, so a
    ValueError, with or without queries, through the public API and the core.
    (Found by the sanitizer: knn_arrays in csrc/binding.cpp hands k to
    py::array_t, whose stride computation 4 * k overflows int64 before numpy
    refuses the shape.)"""
    TRIED["test_huge_k_is_refused"] += 1
    res = run_isolated(f"""
        import numpy as np, hamsearch as hs
        from hamsearch import _backend
        idx = hs.{'MIHIndex' if kind == 'mih' else 'FlatIndex'}(8, backend="native")
        idx.add(np.arange(5, dtype=np.uint64)[:, None])
        for nq in (1, 0):
            q = np.zeros((nq, 1), dtype=np.uint64)
            for k in (2**62, 2**62 + 1, 2**63 - 1):
                for call in (lambda: idx.query(q, k=k), lambda: idx._store.knn(q, k, 1)):
                    try:
                        call()
                    except ValueError as exc:
                        assert str(exc)
                    else:
                        raise AssertionError(f"k={{k}} nq={{nq}}: no error")
        print("ok")
        """, tmp_path)
    assert_clean_exit(res)
    assert res.stdout.strip().endswith("ok")


# -- findings of the fuzzer, fixed; kept as regression tests ---------------------------------------
@pytest.mark.parametrize("arg", ["r", "threads"])
@pytest.mark.parametrize("backend", ["native", "numba"])
def test_radius_and_threads_beyond_int64(arg: str, backend: str) -> None:
    """r and threads are ints >= 0 / >= 1 with no upper bound in the API:
    r = 2**63 means every code, threads = 2**64 every core."""
    TRIED["test_radius_and_threads_beyond_int64"] += 1
    if backend == "native":
        from conftest import require_native

        require_native()
    idx = hs.FlatIndex(8, backend=backend)
    idx.add(np.arange(5, dtype=np.uint64)[:, None])
    q = np.zeros((1, 1), dtype=np.uint64)
    if arg == "r":
        lims, D, I = idx.radius(q, r=2**63)
        assert lims.tolist() == [0, 5]
    else:
        D, I = idx.query(q, k=2, threads=2**64)
        assert I.tolist() == [[0, 1]]


@pytest.mark.parametrize("backend", ["native", "numba"])
def test_save_write_failure_is_oserror(backend: str, tmp_path: Any) -> None:
    """A save that cannot write (here: the file size limit) raises OSError and
    leaves no file behind."""
    TRIED["test_save_write_failure_is_oserror"] += 1
    if backend == "native":
        from conftest import require_native

        require_native()
    res = run_isolated(f"""
        import os, resource, signal, numpy as np, hamsearch as hs
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        idx = hs.FlatIndex(256, backend="{backend}")
        idx.add(np.ones((2000, 4), np.uint64))
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            idx.save("big.hsi")
        except BaseException as exc:
            print(type(exc).__name__, exc)
        print(sorted(os.listdir(".")))
        """, tmp_path)
    assert_clean_exit(res)
    first, listing = res.stdout.strip().splitlines()[-2:]
    assert listing == "[]", res.stdout
    assert first.split()[0] in ("OSError", "FileTooLargeError"), res.stdout
