"""Routing ids to shards and merging the shards' answers exactly, in numpy
alone (no Ray): what the driver does with the replies it gathers."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .._limits import DISTANCE_PAD, ID_PAD

__all__ = ["merge_radius", "merge_rank", "merge_topk", "owned", "partition", "route"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def route(ids: np.ndarray, num_shards: int) -> np.ndarray:
    """The shard of each id: ``splitmix64(id) % num_shards`` as intp.

    A hash rather than ``id % num_shards`` so that strided custom ids (all
    multiples of the shard count, say) still spread evenly."""
    ids = np.asarray(ids, dtype=np.int64)
    if num_shards == 1:
        return np.zeros(ids.shape, dtype=np.intp)
    z = ids.astype(np.uint64)  # a copy; uint64 arithmetic wraps, as splitmix64 wants
    z += _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return (z % np.uint64(num_shards)).astype(np.intp)


def partition(shard: np.ndarray, num_shards: int) -> Tuple[np.ndarray, np.ndarray]:
    """(order, bounds): rows of shard ``s`` are ``order[bounds[s]:bounds[s+1]]``,
    in their original order."""
    key = shard.astype(np.uint16) if num_shards <= 1 << 16 else shard
    order = np.argsort(key, kind="stable")  # radix sort for 16-bit keys
    bounds = np.zeros(num_shards + 1, dtype=np.int64)
    np.cumsum(np.bincount(shard, minlength=num_shards), out=bounds[1:])
    return order, bounds


def _key_shift(nbits: int, next_id: int) -> Optional[int]:
    """Bits left for the id in a composite ``distance << shift | id`` key that
    sorts as ``(distance, id)``, with distance ``nbits + 1`` kept for padding;
    None when the ids are too large to fit."""
    shift = 63 - (nbits + 1).bit_length()
    return shift if next_id <= (1 << shift) else None


def owned(a: np.ndarray, dtype: Any) -> np.ndarray:
    """``a`` as a writable C-contiguous array of ``dtype``: arrays that come
    out of the object store are read-only views, the merged results are not."""
    out = np.ascontiguousarray(a, dtype=dtype)
    return out if out.flags.writeable else out.copy()


def merge_topk(Ds: Sequence[np.ndarray], Is: Sequence[np.ndarray], k: int, nbits: int,
               next_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """Merges per-shard top-k lists, each ``(nq, k_s)`` sorted by
    ``(distance, id)``, into the first ``k`` of their union, padded with
    ``(2**31 - 1, -1)``: int32 ``(nq, k)`` and int64 ``(nq, k)``."""
    nq = Ds[0].shape[0]
    D = np.concatenate(Ds, axis=1) if len(Ds) > 1 else Ds[0]
    I = np.concatenate(Is, axis=1) if len(Is) > 1 else Is[0]
    width = D.shape[1]
    if len(Ds) > 1 and width:
        shift = _key_shift(nbits, next_id)
        pad = I < 0
        if shift is not None:
            # One int64 key per result, unique but for padding: select the k
            # smallest (introselect, linear in the shards' results), then sort
            # those k.
            key = D.astype(np.int64)
            key <<= shift
            key |= I
            if pad.any():
                key[pad] = np.int64(nbits + 1) << shift
            if width > 2 * k:
                key = np.partition(key, k - 1, axis=1)[:, :k]
            key.sort(axis=1)
            key = key[:, :k]
            D = (key >> shift).astype(np.int32)
            I = key & np.int64((1 << shift) - 1)
            gone = D == nbits + 1
            if gone.any():
                D[gone] = DISTANCE_PAD
                I[gone] = ID_PAD
        else:
            Dk = np.where(pad, np.int64(DISTANCE_PAD), D.astype(np.int64))
            order = np.lexsort((I, Dk), axis=1)[:, :k]
            D = np.take_along_axis(D, order, axis=1)
            I = np.take_along_axis(I, order, axis=1)
    width = D.shape[1]
    if width >= k:
        return owned(D[:, :k], np.int32), owned(I[:, :k], np.int64)
    outD = np.full((nq, k), DISTANCE_PAD, dtype=np.int32)
    outI = np.full((nq, k), ID_PAD, dtype=np.int64)
    outD[:, :width] = D
    outI[:, :width] = I
    return outD, outI


def merge_radius(parts: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]], nq: int, nbits: int,
                 next_id: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merges per-shard CSR radius results into one CSR ``(lims, D, I)``,
    each query's results in ``(distance, id)`` order."""
    counts = np.zeros(nq, dtype=np.int64)
    for lims, _, _ in parts:
        counts += np.diff(lims)
    lims = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(counts, out=lims[1:])
    if not parts:
        return lims, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    if len(parts) == 1:
        _, D, I = parts[0]
        return lims, owned(D, np.int32), owned(I, np.int64)
    qidx = np.concatenate([np.repeat(np.arange(nq, dtype=np.int64), np.diff(p[0])) for p in parts])
    D = np.concatenate([p[1] for p in parts]).astype(np.int32, copy=False)
    I = np.concatenate([p[2] for p in parts]).astype(np.int64, copy=False)
    shift = _key_shift(nbits, next_id)
    if shift is not None:
        order = np.lexsort(((D.astype(np.int64) << shift) | I, qidx))
    else:
        order = np.lexsort((I, D, qidx))
    return lims, D[order], I[order]


def merge_rank(Ds: Sequence[np.ndarray], Is: Sequence[np.ndarray], nbits: int,
               next_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """Merges per-shard full rankings (``(nq, n_s)`` distances and ids, each
    sorted by ``(distance, id)``) into the ``(nq, sum n_s)`` ranking: int32
    distances and int64 ids."""
    D = np.concatenate(Ds, axis=1)
    I = np.concatenate(Is, axis=1)
    shift = _key_shift(nbits, next_id)
    if shift is not None:
        key = (D.astype(np.int64) << shift) | I
        key.sort(axis=1, kind="stable")
        return (key >> shift).astype(np.int32), key & np.int64((1 << shift) - 1)
    order = np.lexsort((I, D), axis=1)
    return np.take_along_axis(D, order, axis=1).astype(np.int32, copy=False), np.take_along_axis(I, order, axis=1)
