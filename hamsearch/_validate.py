"""Input checks shared by every public call.

Each check raises ``TypeError`` (wrong kind of object or dtype) or
``ValueError`` (right kind, wrong value) with a message of the form
"<name>: expected ..., got ..." and, where one helps, a hint.
"""
from __future__ import annotations

import operator
from typing import Any, Optional

import numpy as np

from ._limits import ID_LIMIT, MAX_NBITS, MAX_THREADS, RESULT_BYTES


def words(nbits: int) -> int:
    """Number of uint64 words in a code of ``nbits`` bits."""
    return (nbits + 63) // 64


def pad_mask(nbits: int) -> int:
    """Mask of the valid bits of the last word of a code."""
    rem = nbits % 64
    return (1 << 64) - 1 if rem == 0 else (1 << rem) - 1


def as_int(value: Any, name: str) -> int:
    """``value`` as a Python int; bools and non-integers are a ``TypeError``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None


def check_nbits(nbits: Any) -> int:
    nbits = as_int(nbits, "nbits")
    if not 1 <= nbits <= MAX_NBITS:
        raise ValueError(f"nbits: expected 1 <= nbits <= {MAX_NBITS}, got {nbits}")
    return nbits


def check_k(k: Any) -> int:
    k = as_int(k, "k")
    if k < 1:
        raise ValueError(f"k: expected k >= 1, got {k}")
    return k


def check_radius(r: Any) -> int:
    """``r >= 0``; any size: a radius past every possible distance (64 per
    word) means the same as that bound, and the caller clamps it."""
    r = as_int(r, "r")
    if r < 0:
        raise ValueError(f"r: expected r >= 0, got {r}")
    return r


def check_threads(threads: Any, default: int) -> int:
    if threads is None:
        return default
    threads = as_int(threads, "threads")
    if threads < 1:
        raise ValueError(f"threads: expected None or an int >= 1, got {threads}")
    return min(threads, MAX_THREADS)


def to_numpy(x: Any, name: str) -> np.ndarray:
    """A numpy view of ``x`` through the array protocol (numpy arrays, torch
    tensors, anything with ``__array__``), or an array made from a list or
    tuple; torch is never imported."""
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x)
        except ValueError as exc:  # ragged nesting
            raise ValueError(f"{name}: expected a rectangular nested sequence: {exc}") from None
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        # A torch tensor: leave autograd and the device behind first.
        device = getattr(getattr(x, "device", None), "type", None)
        if device == "meta":
            raise TypeError(f"{name}: expected a tensor with data, got one on the 'meta' device (shapes only)")
        try:
            x = x.detach().cpu()
        except Exception as exc:  # a device or tensor kind without a copy to the CPU
            raise TypeError(f"{name}: could not copy the {type(x).__name__} to the CPU: {exc}") from exc
    if not (hasattr(x, "__array__") or hasattr(x, "__array_interface__") or hasattr(x, "__dlpack__")):
        raise TypeError(
            f"{name}: expected a numpy array, a list, or an object with the array "
            f"protocol (torch tensor), got {type(x).__name__}"
        )
    try:
        return np.asarray(x)
    except Exception as exc:  # conversion failures of foreign objects vary
        raise TypeError(f"{name}: could not convert {type(x).__name__} to a numpy array: {exc}") from exc


def check_codes(codes: Any, nbits: int, name: str = "codes") -> np.ndarray:
    """Packed codes: C-contiguous uint64 of shape ``(n, ceil(nbits/64))`` with
    the pad bits above ``nbits`` zero. Returned as given (no copy), except
    that a misaligned buffer is copied to an aligned one."""
    arr = to_numpy(codes, name)
    w = words(nbits)
    if arr.dtype != np.uint64:
        if arr.dtype == np.uint8:
            hint = f"; byte-packed codes come in through hamsearch.from_bytes(codes, {nbits})"
        elif arr.dtype == np.bool_ or arr.dtype.kind in "iuf":
            hint = "; unpacked bits or real values come in through hamsearch.pack(x)"
        else:
            hint = ""
        raise TypeError(f"{name}: expected dtype uint64 (packed codes), got {arr.dtype}{hint}")
    if arr.dtype.byteorder == ">":
        raise TypeError(f"{name}: expected native-endian uint64, got big-endian; use codes.astype(np.uint64)")
    if arr.ndim != 2:
        hint = "; for one code use codes[None, :]" if arr.ndim == 1 else ""
        raise ValueError(f"{name}: expected a 2-D array of shape (n, {w}), got {arr.ndim}-D shape {arr.shape}{hint}")
    if arr.shape[1] != w:
        raise ValueError(
            f"{name}: expected shape (n, {w}) for nbits={nbits} ({w} uint64 words per code), "
            f"got shape {arr.shape}"
        )
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array, got a strided view; use np.ascontiguousarray({name})")
    if not arr.flags.aligned:
        # A buffer at an odd offset (np.frombuffer, a packed record): the
        # kernels read whole words, so give them an aligned copy.
        arr = arr.copy()
    mask = pad_mask(nbits)
    if arr.shape[0] and mask != (1 << 64) - 1:
        bad = np.flatnonzero(arr[:, -1] & np.uint64(~mask & ((1 << 64) - 1)))
        if bad.size:
            raise ValueError(
                f"{name}: expected the pad bits above nbits={nbits} to be zero, "
                f"got set pad bits in row {int(bad[0])} ({bad.size} rows in all); "
                "was the code packed for a wider nbits?"
            )
    return arr


def check_ids(ids: Any, n: int) -> np.ndarray:
    """Custom ids: ``n`` unique non-negative integers, as a C-contiguous int64 copy."""
    arr = to_numpy(ids, "ids")
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"ids: expected an integer array, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"ids: expected a 1-D array of length {n}, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"ids: expected {n} ids (one per code), got {arr.shape[0]}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"ids: expected values below 2**63, got {int(arr.max())}")
    out = np.ascontiguousarray(arr, dtype=np.int64).copy()
    if out.size and int(out.min()) < 0:
        raise ValueError(f"ids: expected non-negative ids, got {int(out.min())}")
    if out.size > 1:
        s = np.sort(out)
        dup = s[1:][s[1:] == s[:-1]]
        if dup.size:
            raise ValueError(f"ids: expected unique ids, got {int(dup[0])} more than once")
    return out



def check_remove_ids(ids: Any) -> np.ndarray:
    """Ids to remove: an integer or a 1-D integer array, as C-contiguous
    int64. Values that cannot be ids (negative, or 2**63 and above) are
    dropped: they are not in any index, so they count as not removed."""
    if isinstance(ids, bool):
        raise TypeError("ids: expected an integer or an integer array, got bool")
    if isinstance(ids, (int, np.integer)):
        ids = [int(ids)] if -(2**63) <= int(ids) < 2**63 else []
    arr = to_numpy(ids, "ids")
    if arr.size == 0 and arr.ndim == 1 and arr.dtype.kind in "iuf":  # [] comes in as float64
        return np.zeros(0, dtype=np.int64)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"ids: expected an integer or an integer array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"ids: expected a 1-D array of ids, got shape {arr.shape}")
    if arr.dtype.kind == "u":
        arr = arr[arr <= np.iinfo(np.int64).max]
    # Aligned as well as contiguous: the native core refuses misaligned views.
    out = np.require(arr, dtype=np.int64, requirements=["C", "A"])
    return out[out >= 0] if out.size and int(out.min()) < 0 else out


def check_m(m: Any, nbits: int) -> Optional[int]:
    """MIH substrings: None (automatic) or ``ceil(nbits / 64) <= m <= nbits``
    (substrings of at most 64 bits)."""
    if m is None:
        return None
    m = as_int(m, "m")
    lo = words(nbits)
    if not lo <= m <= nbits:
        raise ValueError(f"m: expected None or {lo} <= m <= {nbits} (substrings of at most 64 bits), got {m}")
    return m


def check_result_size(nq: int, k: int) -> None:
    """``nq * k`` results (an int32 distance and an int64 id each, 16 bytes)
    within ``RESULT_BYTES``."""
    if k > (RESULT_BYTES // 16) // max(1, nq):
        raise ValueError(f"k: expected nq * k results to fit in memory, got nq = {nq}, k = {k}")


def default_ids(next_id: int, n: int) -> np.ndarray:
    """The ids ``add`` gives ``n`` codes by default: consecutive from
    ``next_id`` (one above the largest id so far); ValueError where they
    would reach 2**63."""
    if n and next_id + n > ID_LIMIT:
        raise ValueError(
            f"ids: no default ids left for {n} codes: the largest id so far is {next_id - 1} "
            "and ids stay below 2**63; pass ids explicitly"
        )
    return np.arange(next_id, next_id + n, dtype=np.int64)


def first_clash(ids: np.ndarray, held: np.ndarray) -> int:
    """The first of ``ids`` that is among ``held``, or -1."""
    clash = ids[np.isin(ids, held)] if held.size else ids[:0]
    return int(clash[0]) if clash.size else -1


def clash_error(id_: int) -> ValueError:
    """The error of an id given twice to one index."""
    return ValueError(f"ids: expected ids not already in the index, got {id_} again")
