"""Packing between bits and the engine's code layout.

A code of ``nbits`` bits is ``W = ceil(nbits / 64)`` little-endian uint64
words; bit ``i`` lives in word ``i // 64`` at position ``i % 64`` (value
``1 << (i % 64)``). Pad bits above ``nbits`` are always zero.
"""
from __future__ import annotations

import warnings
from typing import Any, Literal, cast

import numpy as np

from ._validate import check_codes, check_nbits, to_numpy, words

BitOrder = Literal["little", "big"]
BITORDERS = ("little", "big")


def _bits_to_codes(bits: np.ndarray) -> np.ndarray:
    """(n, nbits) bool -> (n, W) uint64, pad bits zero."""
    n, nbits = bits.shape
    w = words(nbits)
    padded = np.zeros((n, w * 64), dtype=np.bool_)
    padded[:, :nbits] = bits
    packed = np.packbits(padded, axis=1, bitorder="little")  # (n, 8W) uint8
    return np.ascontiguousarray(packed.view("<u8"), dtype=np.uint64)


def pack(x: Any) -> np.ndarray:
    """Pack bits or real values into codes.

    Parameters
    ----------
    x : array_like of shape (n, nbits)
        A numpy array or a torch tensor (read through the array protocol; torch
        is never imported). Accepted contents:

        - bool: ``True`` is bit 1;
        - integers in {0, 1}: 1 is bit 1;
        - integers in {-1, +1}: +1 is bit 1;
        - real values (float dtypes): bit 1 where ``x >= 0``, so an exact 0
          becomes bit 1 and never half a bit.

    Returns
    -------
    codes : ndarray of uint64, shape (n, ceil(nbits / 64))
        C-contiguous, bit ``i`` in word ``i // 64`` at position ``i % 64``,
        pad bits zero.
    """
    arr = to_numpy(x, "x")
    if arr.ndim != 2:
        hint = "; for one code use x[None, :]" if arr.ndim == 1 else ""
        raise ValueError(f"x: expected a 2-D array of shape (n, nbits), got {arr.ndim}-D shape {arr.shape}{hint}")
    if arr.shape[1] < 1:
        raise ValueError(f"x: expected at least one bit per code, got shape {arr.shape}")
    check_nbits(arr.shape[1])
    kind = arr.dtype.kind
    if kind == "b":
        bits = arr.astype(np.bool_, copy=False)
    elif kind in "iu":
        if arr.size == 0:
            bits = np.zeros(arr.shape, dtype=np.bool_)
        else:
            lo, hi = int(arr.min()), int(arr.max())
            if lo >= 0 and hi <= 1:
                bits = arr == 1
            elif lo >= -1 and hi <= 1 and not np.any(arr == 0):
                bits = arr == 1
            else:
                raise ValueError(
                    "x: expected integers in {0, 1} or in {-1, +1}, "
                    f"got values from {lo} to {hi}"
                    + ("; {-1, 0, +1} is ambiguous" if lo == -1 and hi == 1 else "")
                    + "; for real-valued outputs pass a float array (bit = x >= 0)"
                )
    elif kind == "f":
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError("x: expected finite real values, got NaN or infinity")
        if arr.size and np.all((arr == 0) | (arr == 1)):
            warnings.warn(
                "hamsearch.pack: a float array holding only 0.0 and 1.0 maps by x >= 0, "
                "so every 0.0 becomes bit 1; pass a bool or integer array for {0, 1} bits",
                UserWarning,
                stacklevel=2,
            )
        bits = arr >= 0
    else:
        raise TypeError(f"x: expected bool, integer or float values, got dtype {arr.dtype}")
    return _bits_to_codes(bits)


def unpack(codes: Any, nbits: int) -> np.ndarray:
    """Unpack codes into bits.

    Parameters
    ----------
    codes : ndarray of uint64, shape (n, ceil(nbits / 64))
    nbits : int

    Returns
    -------
    bits : ndarray of uint8 in {0, 1}, shape (n, nbits)
    """
    nbits = check_nbits(nbits)
    arr = check_codes(codes, nbits)
    as_bytes = arr.astype("<u8", copy=False).view(np.uint8)
    return np.ascontiguousarray(np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :nbits])


def _check_bitorder(bitorder: Any) -> BitOrder:
    if bitorder not in BITORDERS:
        raise ValueError(f"bitorder: expected 'little' or 'big', got {bitorder!r}")
    return cast(BitOrder, bitorder)


def from_bytes(data: Any, nbits: int, bitorder: BitOrder = "little") -> np.ndarray:
    """Convert byte-packed codes (faiss's ``uint8`` layout, ``numpy.packbits``
    output) into the engine's uint64 codes.

    Parameters
    ----------
    data : ndarray of uint8, shape (n, ceil(nbits / 8))
    nbits : int
    bitorder : {"little", "big"}
        Where bit ``i`` sits inside byte ``i // 8``: ``"little"`` puts it at
        position ``i % 8`` (value ``1 << (i % 8)``; faiss's layout and
        ``np.packbits(..., bitorder="little")``); ``"big"`` at position
        ``7 - i % 8`` (``np.packbits`` default). Unused bits of the last byte
        must be zero.

    Returns
    -------
    codes : ndarray of uint64, shape (n, ceil(nbits / 64))
    """
    nbits = check_nbits(nbits)
    bitorder = _check_bitorder(bitorder)
    arr = to_numpy(data, "data")
    nbytes = (nbits + 7) // 8
    if arr.dtype != np.uint8:
        raise TypeError(f"data: expected dtype uint8 (byte-packed codes), got {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] != nbytes:
        raise ValueError(f"data: expected shape (n, {nbytes}) for nbits={nbits}, got shape {arr.shape}")
    bits = np.unpackbits(arr, axis=1, bitorder=bitorder)
    if bits[:, nbits:].any():
        row = int(np.flatnonzero(bits[:, nbits:].any(axis=1))[0])
        raise ValueError(
            f"data: expected the unused bits above nbits={nbits} in the last byte to be zero "
            f"(bitorder={bitorder!r}), got set bits in row {row}"
        )
    return _bits_to_codes(bits[:, :nbits].astype(np.bool_))


def to_bytes(codes: Any, nbits: int, bitorder: BitOrder = "little") -> np.ndarray:
    """Convert codes into byte-packed form, the inverse of :func:`from_bytes`.

    Returns
    -------
    data : ndarray of uint8, shape (n, ceil(nbits / 8))
        Bit ``i`` in byte ``i // 8``, at position ``i % 8`` for
        ``bitorder="little"`` (faiss's layout) or ``7 - i % 8`` for ``"big"``.
    """
    nbits = check_nbits(nbits)
    bitorder = _check_bitorder(bitorder)
    bits = unpack(codes, nbits)
    return np.ascontiguousarray(np.packbits(bits, axis=1, bitorder=bitorder))
