"""The Numba backend: the flat scan as JIT-compiled kernels.

``FlatStore`` is the Numba twin of the native core's ``FlatIndex``: the same
methods and the same results, bit for bit. :class:`hamsearch.FlatIndex`
validates every input before it gets here. Results are sorted by
``(distance, id)``, so they depend on neither row order nor thread count.

Layout: the codes are kept in blocks of ``B`` rows stored word-major, shape
``(blocks, W, B)``: word ``j`` of the block's rows is one contiguous column.
The distance loops then read every word as a unit-stride stream that LLVM
vectorizes as well as 64-bit codes (row-major 128- and 256-bit codes need
interleaved loads, 1.5 to 1.7 times slower here). A block (at most 128 KiB)
stays in L2 while every query of a task runs over it, so a batch reads the
database from memory once.

Threads: a search is cut into tasks, each a range of queries against a range
of blocks (a *part*), with one k-NN state per (part, query) that a second step
merges. The database is split, one part per thread, when it is large, and the
queries otherwise. The kernels are serial, compiled with ``nogil=True``, and
run on a shared pool of Python threads. Numba's ``parallel=True`` is avoided
on purpose: its default ``workqueue`` threading layer aborts the process when
two threads launch parallel kernels at once (concurrent searches would queue
behind a lock), and its ``prange`` drivers took longer to compile than every
kernel here together.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._limits import DISTANCE_PAD, ID_PAD, MAX_THREADS

__all__ = ["FlatStore", "MIHStore"]

_DISTANCE_PAD = DISTANCE_PAD
_ID_PAD = ID_PAD

# Rows per block: at most 8192, and at most 128 KiB of codes (measured best
# here; a quarter of an L2, so the block stays there while all the queries of
# a task run over it).
_BLOCK_ROWS = 8192
_BLOCK_BYTES = 1 << 17
# The k-NN candidate buffer holds k + max(k, _SLACK) entries, so compaction
# (a pass over the buffer) runs at most once per max(k, _SLACK) admissions.
_SLACK = 256
# Rows per admission chunk: a vectorized minimum skips chunks with no candidate.
_CHUNK = 64
# Blocks per thread below which the queries, not the database, are split.
_MIN_PART_BLOCKS = 2
# Bytes of k-NN candidate buffers per pass; larger query batches go in chunks.
_STATE_BYTES = 64 << 20


def _jit(func: Callable) -> Any:
    """``njit(nogil=True)``, cached on disk where Numba finds a writable
    cache directory (``__pycache__`` next to this file, else the user's
    cache directory), compiled in memory where it finds none.

    Numba raises ``RuntimeError`` at decoration when no cache directory is
    writable (a read-only install and no writable home).
    """
    try:
        return numba.njit(nogil=True, cache=True)(func)
    except RuntimeError:
        return numba.njit(nogil=True)(func)


@intrinsic
def _popcount(typingctx: Any, x: Any) -> Any:
    """Population count of a 64-bit integer through ``llvm.ctpop.i64``.

    Numba does not compile ``np.bitwise_count``. LLVM lowers the intrinsic to
    ``popcnt`` (the host CPU is the target), or in a loop it vectorizes to an
    AVX2 nibble-table sequence.
    """
    if not isinstance(x, types.Integer) or x.bitwidth != 64:  # type: ignore[attr-defined]
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.ctpop.i64")
        return builder.call(fn, args)

    return types.uint64(x), codegen


# -- distances ---------------------------------------------------------------
@_jit
def _distances(cols, m, qv, out):  # pragma: no cover - compiled
    """Hamming distances of the first ``m`` rows of a block ``cols`` (uint64,
    ``(W, B)``, word-major) to ``qv`` (uint64, ``(W,)``), into ``out[:m]``
    (int32).

    Every word is a unit-stride column, so each loop vectorizes; widths of
    1 to 4 words take one pass, wider codes one pass per 4 words.
    """
    w = cols.shape[0]
    if w == 1:
        c0 = cols[0]
        q0 = qv[0]
        for i in range(m):
            out[i] = np.int32(_popcount(c0[i] ^ q0))
    elif w == 2:
        c0 = cols[0]
        c1 = cols[1]
        q0 = qv[0]
        q1 = qv[1]
        for i in range(m):
            out[i] = np.int32(_popcount(c0[i] ^ q0) + _popcount(c1[i] ^ q1))
    elif w == 3:
        c0 = cols[0]
        c1 = cols[1]
        c2 = cols[2]
        q0 = qv[0]
        q1 = qv[1]
        q2 = qv[2]
        for i in range(m):
            out[i] = np.int32(_popcount(c0[i] ^ q0) + _popcount(c1[i] ^ q1) + _popcount(c2[i] ^ q2))
    elif w == 4:
        c0 = cols[0]
        c1 = cols[1]
        c2 = cols[2]
        c3 = cols[3]
        q0 = qv[0]
        q1 = qv[1]
        q2 = qv[2]
        q3 = qv[3]
        for i in range(m):
            out[i] = np.int32(
                _popcount(c0[i] ^ q0) + _popcount(c1[i] ^ q1) + _popcount(c2[i] ^ q2) + _popcount(c3[i] ^ q3)
            )
    else:
        for i in range(m):
            out[i] = 0
        j = 0
        while j < w:
            if j + 4 <= w:
                c0 = cols[j]
                c1 = cols[j + 1]
                c2 = cols[j + 2]
                c3 = cols[j + 3]
                q0 = qv[j]
                q1 = qv[j + 1]
                q2 = qv[j + 2]
                q3 = qv[j + 3]
                for i in range(m):
                    out[i] += np.int32(
                        _popcount(c0[i] ^ q0) + _popcount(c1[i] ^ q1) + _popcount(c2[i] ^ q2) + _popcount(c3[i] ^ q3)
                    )
                j += 4
            else:
                c0 = cols[j]
                q0 = qv[j]
                for i in range(m):
                    out[i] += np.int32(_popcount(c0[i] ^ q0))
                j += 1


@_jit
def _chunk_min(x):  # pragma: no cover - compiled
    """Smallest value of a short int32 array; written as a select, which
    vectorizes (a branchy ``min`` does not)."""
    lo = np.int32(2147483647)
    for i in range(x.shape[0]):
        v = x[i]
        lo = v if v < lo else lo
    return lo


# -- ordering ----------------------------------------------------------------
# Hand-written loops rather than np.partition and np.argsort, which Numba
# compiles slowly (np.partition alone took over ten seconds).
@_jit
def _kth_smallest(a, kth):  # pragma: no cover - compiled
    """The ``kth`` smallest (0-based) value of ``a``, by quickselect; reorders ``a``."""
    lo = 0
    hi = a.shape[0] - 1
    while lo < hi:
        pivot = a[(lo + hi) >> 1]
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        # Now a[lo:j+1] <= pivot <= a[i:hi+1] and a[j+1:i] == pivot.
        if kth <= j:
            hi = j
        elif kth >= i:
            lo = i
        else:
            return a[kth]
    return a[kth]


@_jit
def _select(d, ids, cnt, k):  # pragma: no cover - compiled
    """Keep the ``k`` smallest ``(d, id)`` pairs of ``d[:cnt], ids[:cnt]``
    (``cnt > k``) in place, in their original order.

    Returns the k-th pair ``(tau, tau_id)``: a later candidate can enter the
    top k only if it is smaller. Distances are small integers, so a histogram
    over their range finds the k-th distance in linear time; only the ties at
    that distance are compared by id.
    """
    lo = d[0]
    hi = d[0]
    for i in range(1, cnt):
        lo = min(lo, d[i])
        hi = max(hi, d[i])
    hist = np.zeros(hi - lo + 1, np.int64)
    for i in range(cnt):
        hist[d[i] - lo] += 1
    below = 0
    b = 0
    while below + hist[b] < k:
        below += hist[b]
        b += 1
    tau = lo + b
    need = k - below  # how many of the ties at tau stay, >= 1
    ties = np.empty(hist[b], np.int64)
    t = 0
    for i in range(cnt):
        if d[i] == tau:
            ties[t] = ids[i]
            t += 1
    if need < t:
        tau_id = _kth_smallest(ties, need - 1)
    else:
        tau_id = ties[0]
        for i in range(1, t):
            tau_id = max(tau_id, ties[i])
    j = 0
    for i in range(cnt):
        if d[i] < tau or (d[i] == tau and ids[i] <= tau_id):
            d[j] = d[i]
            ids[j] = ids[i]
            j += 1
    return tau, tau_id


@_jit
def _sort_pairs(d, ids, ascending):  # pragma: no cover - compiled
    """Sort the pairs ``(d[i], ids[i])`` in place by distance, then id.

    An insertion sort for a few pairs; otherwise a least-significant-digit
    radix sort: byte passes over the ids (none when ``ascending`` says the
    pairs already come in ascending id order), then a counting pass over the
    distances. Every pass is stable, so ties stay in id order.
    """
    m = d.shape[0]
    if m <= 32:
        for i in range(1, m):
            dv = d[i]
            iv = ids[i]
            j = i - 1
            while j >= 0 and (d[j] > dv or (d[j] == dv and ids[j] > iv)):
                d[j + 1] = d[j]
                ids[j + 1] = ids[j]
                j -= 1
            d[j + 1] = dv
            ids[j + 1] = iv
        return
    # Explicit loops rather than array methods (copy, min, max), which add
    # seconds to the compile.
    src_d = np.empty(m, np.int32)
    src_i = np.empty(m, np.int64)
    lo = d[0]
    hi = d[0]
    top = ids[0]
    for i in range(m):
        src_d[i] = d[i]
        src_i[i] = ids[i]
        lo = min(lo, d[i])
        hi = max(hi, d[i])
        top = max(top, ids[i])
    if not ascending:
        dst_d = np.empty(m, np.int32)
        dst_i = np.empty(m, np.int64)
        count = np.empty(256, np.int64)
        shift = 0
        while shift < 64 and (top >> shift) > 0:
            for b in range(256):
                count[b] = 0
            for i in range(m):
                count[(src_i[i] >> shift) & 255] += 1
            start = 0
            for b in range(256):
                c = count[b]
                count[b] = start
                start += c
            for i in range(m):
                b = (src_i[i] >> shift) & 255
                p = count[b]
                count[b] = p + 1
                dst_d[p] = src_d[i]
                dst_i[p] = src_i[i]
            src_d, dst_d = dst_d, src_d
            src_i, dst_i = dst_i, src_i
            shift += 8
    pos = np.zeros(hi - lo + 1, np.int64)
    for i in range(m):
        pos[src_d[i] - lo] += 1
    start = 0
    for b in range(pos.shape[0]):
        c = pos[b]
        pos[b] = start
        start += c
    for i in range(m):
        b = src_d[i] - lo
        p = pos[b]
        pos[b] = p + 1
        d[p] = src_d[i]
        ids[p] = src_i[i]


# -- k nearest neighbours ----------------------------------------------------
@_jit
def _knn_scan(blocks, n, dbids, q, k, bd, bi, bcnt, btau, btid):  # pragma: no cover - compiled
    """Scan the first ``n`` rows of ``blocks`` (ids ``dbids``) for every query of ``q``.

    Query ``j``'s state: ``bcnt[j]`` candidates in ``bd[j], bi[j]``, in row
    order, and the admission bound ``(btau[j], btid[j])``: a row enters only
    if ``(d, id) < (tau, tau_id)``. A full buffer is compacted to the k best,
    which tightens the bound.
    """
    rows = blocks.shape[2]
    cap = bd.shape[1]
    dist = np.empty(rows, np.int32)
    for b in range(blocks.shape[0]):
        r0 = b * rows
        m = min(rows, n - r0)
        cols = blocks[b]
        for j in range(q.shape[0]):
            _distances(cols, m, q[j], dist)
            tau = btau[j]
            tid = btid[j]
            cnt = bcnt[j]
            sd = bd[j]
            si = bi[j]
            for c0 in range(0, m, _CHUNK):
                c1 = min(c0 + _CHUNK, m)
                # Once tau has settled most chunks hold no candidate: this
                # minimum vectorizes, the branchy admission loop does not.
                if _chunk_min(dist[c0:c1]) > tau:
                    continue
                for i in range(c0, c1):
                    dv = dist[i]
                    if dv <= tau:
                        iv = dbids[r0 + i]
                        if dv < tau or iv < tid:
                            sd[cnt] = dv
                            si[cnt] = iv
                            cnt += 1
                            if cnt == cap:
                                tau, tid = _select(sd, si, cnt, k)
                                cnt = k
            btau[j] = tau
            btid[j] = tid
            bcnt[j] = cnt


@_jit
def _knn_merge(q0, q1, k, bd, bi, bcnt, ascending, out_d, out_i):  # pragma: no cover - compiled
    """Merge the per-part states (``bd[part, query]``) of queries ``q0:q1``
    into sorted, padded top-k rows of ``out_d, out_i``."""
    nparts = bd.shape[0]
    for j in range(q0, q1):
        total = 0
        for p in range(nparts):
            total += bcnt[p, j]
        cd = np.empty(total, np.int32)
        ci = np.empty(total, np.int64)
        t = 0
        for p in range(nparts):  # parts in row order keep the pairs in row order
            for c in range(bcnt[p, j]):
                cd[t] = bd[p, j, c]
                ci[t] = bi[p, j, c]
                t += 1
        if total > k:
            _select(cd, ci, total, k)
            total = k
        _sort_pairs(cd[:total], ci[:total], ascending)
        for t in range(total):
            out_d[j, t] = cd[t]
            out_i[j, t] = ci[t]
        for t in range(total, k):
            out_d[j, t] = 2147483647
            out_i[j, t] = -1


# -- radius ------------------------------------------------------------------
@_jit
def _radius_count(blocks, n, q, r, counts):  # pragma: no cover - compiled
    """Add to ``counts[j]`` the rows (of the first ``n``) within distance ``r`` of ``q[j]``."""
    rows = blocks.shape[2]
    dist = np.empty(rows, np.int32)
    for b in range(blocks.shape[0]):
        m = min(rows, n - b * rows)
        cols = blocks[b]
        for j in range(q.shape[0]):
            _distances(cols, m, q[j], dist)
            c = 0
            for i in range(m):
                if dist[i] <= r:
                    c += 1
            counts[j] += c


@_jit
def _radius_fill(blocks, n, dbids, q, r, starts, out_d, out_i):  # pragma: no cover - compiled
    """Write the hits of ``q[j]`` in row order from ``out_d[starts[j]]`` on
    (``starts`` advances)."""
    rows = blocks.shape[2]
    dist = np.empty(rows, np.int32)
    for b in range(blocks.shape[0]):
        r0 = b * rows
        m = min(rows, n - r0)
        cols = blocks[b]
        for j in range(q.shape[0]):
            _distances(cols, m, q[j], dist)
            o = starts[j]
            for c0 in range(0, m, _CHUNK):
                c1 = min(c0 + _CHUNK, m)
                if _chunk_min(dist[c0:c1]) > r:
                    continue
                for i in range(c0, c1):
                    if dist[i] <= r:
                        out_d[o] = dist[i]
                        out_i[o] = dbids[r0 + i]
                        o += 1
            starts[j] = o


@_jit
def _radius_sort(q0, q1, lims, ascending, out_d, out_i):  # pragma: no cover - compiled
    """Sort the results of queries ``q0:q1`` by ``(distance, id)``."""
    for j in range(q0, q1):
        _sort_pairs(out_d[lims[j] : lims[j + 1]], out_i[lims[j] : lims[j + 1]], ascending)


# -- rank: a counting sort by distance that visits rows in id order -------------
@_jit
def _distance_range(blocks, n, qv, dist):  # pragma: no cover - compiled
    """Distances of the first ``n`` (>= 1) rows of ``blocks`` into ``dist``;
    returns the smallest and the largest."""
    rows = blocks.shape[2]
    for b in range(blocks.shape[0]):
        r0 = b * rows
        _distances(blocks[b], min(rows, n - r0), qv, dist[r0:])
    lo = dist[0]
    hi = dist[0]
    for i in range(1, n):
        v = dist[i]
        lo = v if v < lo else lo
        hi = v if v > hi else hi
    return lo, hi


@_jit
def _histogram(dist, rows, ascending, lo, hist):  # pragma: no cover - compiled
    """Count distances into ``hist[d - lo]``: of ``dist`` itself when
    ``ascending``, else of ``dist[rows]``."""
    if ascending:
        for j in range(dist.shape[0]):
            hist[dist[j] - lo] += 1
    else:
        for j in range(rows.shape[0]):
            hist[dist[rows[j]] - lo] += 1


@_jit
def _scatter(dist, dbids, rows, ascending, lo, slots, limit, out_d, out_i):  # pragma: no cover - compiled
    """Place each row at ``slots[d - lo]`` (which advances), visiting the rows
    in id order: ``dist`` and ``dbids`` in order when ``ascending``, else the
    rows ``rows``. Only slots below ``limit`` are written; ``out_d`` may be
    empty (ids only)."""
    want_d = out_d.shape[0] > 0
    count = dist.shape[0] if ascending else rows.shape[0]
    for j in range(count):
        row = j if ascending else rows[j]
        d = dist[row]
        p = slots[d - lo]
        slots[d - lo] = p + 1
        if p < limit:
            out_i[p] = dbids[row]
            if want_d:
                out_d[p] = d


@_jit
def _rank_queries(blocks, n, dbids, perm, ascending, q, limit, out_d, out_i):  # pragma: no cover - compiled
    """For each query of ``q``, the first ``limit`` of the ``n`` rows by
    ``(distance, id)``: ids into ``out_i[j]`` and, if ``out_d`` has columns,
    distances into ``out_d[j]``. ``perm`` lists the rows in id order (unused
    if ``ascending``)."""
    dist = np.empty(n, np.int32)
    for j in range(q.shape[0]):
        lo, hi = _distance_range(blocks, n, q[j], dist)
        slots = np.zeros(hi - lo + 1, np.int64)
        _histogram(dist, perm, ascending, lo, slots)
        start = 0
        for b in range(hi - lo + 1):
            c = slots[b]
            slots[b] = start
            start += c
        _scatter(dist, dbids, perm, ascending, lo, slots, limit, out_d[j], out_i[j])


# -- threads -------------------------------------------------------------------
_pool: Optional[ThreadPoolExecutor] = None
_pool_lock = threading.Lock()


def _reset_pool_after_fork() -> None:
    # A forked child inherits the pool object but none of its threads.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool_after_fork)


def _max_threads() -> int:
    """The most threads a search uses: ``NUMBA_NUM_THREADS`` (the usable
    cores unless the user set it)."""
    return max(1, int(numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]


def _run(kernel: Callable, arglist: Sequence[tuple]) -> None:
    """Run ``kernel(*args)`` for each entry of ``arglist``: the first in the
    calling thread, the rest on the shared pool. The kernels release the GIL,
    so they run in parallel. Returns once all have finished, raising the
    first error."""
    if len(arglist) == 1:
        kernel(*arglist[0])
        return
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_max_threads(), thread_name_prefix="hamsearch")
        pool = _pool
    futures = [pool.submit(kernel, *args) for args in arglist[1:]]
    try:
        kernel(*arglist[0])
    finally:
        # Never return while a task may still write into the outputs.
        wait(futures)
    for future in futures:
        future.result()


def _bounds(total: int, parts: int) -> List[int]:
    """``parts + 1`` cut points splitting ``range(total)`` evenly."""
    return [total * i // parts for i in range(parts + 1)]


def _usable(q: np.ndarray) -> np.ndarray:
    """``q`` as a writeable, aligned array. Numba compiles read-only and
    unaligned arrays as other types, so such a ``q`` would compile every
    kernel again; a query batch is small next to the database."""
    if q.flags.writeable and q.flags.aligned:
        return q
    return np.array(q, dtype=np.uint64, order="C")


class _Stale(Exception):
    """The store changed since the version a caller pinned."""


class _Snapshot:
    """The rows of a store at one moment, split into parts of whole blocks.

    ``add`` only appends (past these rows, or into new buffers), so a
    snapshot stays valid while other threads add.
    """

    def __init__(self, blocks: np.ndarray, n: int, ids: np.ndarray, ascending: bool, version: int) -> None:
        self.version = version  # the store's changes so far when taken
        self.blocks = blocks  # (ceil(n / B), W, B)
        self.n = n
        self.ids = ids  # (n,)
        self.ascending = ascending
        self.rows = blocks.shape[2]

    def parts(self, nparts: int) -> List[Tuple[np.ndarray, int, np.ndarray, int]]:
        """``nparts`` ranges of whole blocks: (blocks, rows, ids, first row) each."""
        cuts = _bounds(self.blocks.shape[0], nparts)
        out = []
        for b0, b1 in zip(cuts, cuts[1:]):
            r0 = min(b0 * self.rows, self.n)
            r1 = min(b1 * self.rows, self.n)
            out.append((self.blocks[b0:b1], r1 - r0, self.ids[r0:r1], r0))
        return out


# -- the store -------------------------------------------------------------------
def _save_arrays(path: bytes, kind: str, nbits: int, m: int, next_id: int, flat: "FlatStore") -> None:
    """One snapshot of ``flat``'s ids and codes written by the native core as
    an index file of ``kind`` (the caller holds the index's add lock)."""
    from ._files import file_core

    core = file_core("saving an index")
    ids = np.ascontiguousarray(flat.ids(), dtype=np.int64)
    codes = np.ascontiguousarray(flat.codes(), dtype=np.uint64).reshape(ids.shape[0], (nbits + 63) // 64)
    code = core.KIND_MIH if kind == "mih" else core.KIND_FLAT
    core.save_arrays(path, code, nbits, m, next_id, ids, codes)


class FlatStore:
    """Codes and ids of a flat index, searched by Numba kernels.

    The Numba twin of the native core's ``FlatIndex``; inputs are validated
    by :class:`hamsearch.FlatIndex` before they get here.

    Parameters
    ----------
    nbits : int
        Bits per code; codes are uint64 arrays of shape ``(n, ceil(nbits / 64))``.

    Notes
    -----
    Searches may run concurrently with each other and with ``add``. ``add``
    writes only past the rows present, or into new buffers, and publishes
    the new size under a lock, so a search sees the store before or after an
    ``add``, never half of one.
    """

    def __init__(self, nbits: int) -> None:
        self._nbits = int(nbits)
        self._words = (self._nbits + 63) // 64
        # Rows per block: a multiple of 8, at most _BLOCK_BYTES of codes.
        self._rows = max(8, min(_BLOCK_ROWS, _BLOCK_BYTES // (8 * self._words)) // 8 * 8)
        self._lock = threading.Lock()
        self._blocks = np.zeros((0, self._words, self._rows), dtype=np.uint64)
        self._ids = np.zeros(0, dtype=np.int64)
        self._n = 0
        self._ascending = True  # ids increase with the row: ties need no id sort
        self._perm = np.zeros(0, dtype=np.int64)  # rows in id order, cached
        self._perm_version = -1  # the version self._perm belongs to
        self._version = 0  # changes so far (add, remove)

    @property
    def mapped(self) -> bool:
        """Never: the Numba backend keeps its codes in its own blocks in memory."""
        return False

    # -- persistence (the store contract's; the format lives in the core) -----
    def save_file(self, path: bytes, next_id: int) -> None:
        """Saves a snapshot of the ids and codes through the native core."""
        _save_arrays(path, "flat", self._nbits, 0, next_id, self)

    def load_file(self, file: Any, mmap: bool, verify: bool) -> None:
        """Takes the ids and codes the core read from an open index file
        (``mmap`` cannot apply: the codes go into this store's blocks)."""
        ids, codes = file.read(verify)
        if ids.shape[0]:
            self.add(codes, ids)

    def size(self) -> int:
        """Number of codes."""
        return self._n

    def ids(self) -> np.ndarray:
        """The ids in insertion order: int64, shape ``(n,)``, a copy."""
        with self._lock:
            return self._ids[: self._n].copy()

    def codes(self) -> np.ndarray:
        """The codes in insertion order: uint64, shape ``(n, words)``, a copy."""
        with self._lock:
            return np.ascontiguousarray(self._rows_of(self._n))

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Append ``codes`` (uint64, ``(m, words)``) with ``ids`` (int64, ``(m,)``).

        The data are copied in (the inputs are only read); the buffers grow
        geometrically, so appends take amortized linear time.
        """
        m = codes.shape[0]
        if m == 0:
            return
        B = self._rows
        with self._lock:
            n = self._n
            need = -(-(n + m) // B)
            if need > self._blocks.shape[0]:
                cap = max(need, 2 * self._blocks.shape[0])
                used = -(-n // B)
                blocks = np.zeros((cap, self._words, B), dtype=np.uint64)
                blocks[:used] = self._blocks[:used]
                new_ids = np.empty(cap * B, dtype=np.int64)
                new_ids[:n] = self._ids[:n]
                # Searches running now keep the old buffers alive and intact.
                self._blocks, self._ids = blocks, new_ids
            row = n
            while row < n + m:  # block by block: each is a transposed copy
                b, o = divmod(row, B)
                take = min(B - o, n + m - row)
                self._blocks[b, :, o : o + take] = codes[row - n : row - n + take].T
                row += take
            self._ids[n : n + m] = ids
            ascending = self._ascending and bool(np.all(ids[1:] > ids[:-1]))
            if ascending and n:
                ascending = bool(ids[0] > self._ids[n - 1])
            self._ascending = ascending
            self._n = n + m
            self._version += 1

    def version(self) -> int:
        """Changes so far (add, remove): derived tables compare it."""
        with self._lock:
            return self._version

    def remove(self, ids: np.ndarray) -> int:
        """Removes the codes whose ids are in ``ids`` (int64, 1-D) and returns
        how many it removed; the others keep their ids and order. Builds new
        buffers, so searches running on the old ones are undisturbed."""
        with self._lock:
            n = self._n
            if n == 0 or ids.size == 0:
                return 0
            gone = np.isin(self._ids[:n], ids)
            removed = int(np.count_nonzero(gone))
            if removed == 0:
                return 0
            keep = ~gone
            codes = self._rows_of(n)[keep]
            kept_ids = self._ids[:n][keep]
            m = n - removed
            B = self._rows
            cap = max(1, -(-m // B))
            blocks = np.zeros((cap, self._words, B), dtype=np.uint64)
            full = np.zeros((cap * B, self._words), dtype=np.uint64)
            full[:m] = codes
            blocks[:] = full.reshape(cap, B, self._words).transpose(0, 2, 1)
            new_ids = np.empty(cap * B, dtype=np.int64)
            new_ids[:m] = kept_ids
            self._blocks, self._ids, self._n = blocks, new_ids, m
            if m == 0:
                self._ascending = True
            self._version += 1
            return removed

    def _rows_of(self, n: int) -> np.ndarray:
        """The first n codes as a row-major (n, words) view or copy; the
        caller holds the lock."""
        used = -(-n // self._rows)
        rows = self._blocks[:used].transpose(0, 2, 1).reshape(used * self._rows, self._words)
        return rows[:n]

    # -- search -------------------------------------------------------------
    def knn(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray, int]:
        """The store contract (``hamsearch._store.Store``): :meth:`scan_knn`'s
        results and the queries a scan answered instead (all of them: 0 extra)."""
        D, I = self.scan_knn(q, k, threads)
        return D, I, 0

    def radius(self, q: np.ndarray, r: int, threads: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The store contract: :meth:`scan_radius`'s results and 0 (see :meth:`knn`)."""
        lims, D, I = self.scan_radius(q, r, threads)
        return lims, D, I, 0

    def scan_knn(self, q: np.ndarray, k: int, threads: int,
                 version: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query.

        Parameters
        ----------
        q : ndarray of uint64, shape (nq, words)
        k : int, >= 1
        threads : int, >= 1
        version : int, optional
            Search only the store at this version (raise :class:`_Stale`
            otherwise): the MIH store's scan must see what its tables saw.

        Returns
        -------
        D : ndarray of int32, shape (nq, k)
            Distances in ``(distance, id)`` order; ``2**31 - 1`` past the last result.
        I : ndarray of int64, shape (nq, k)
            Ids; ``-1`` past the last result.
        """
        k = int(k)
        q = _usable(q)
        nq = q.shape[0]
        snap = self._snapshot(version)
        n = snap.n
        out_d = np.full((nq, k), _DISTANCE_PAD, dtype=np.int32)
        out_i = np.full((nq, k), _ID_PAD, dtype=np.int64)
        if nq == 0 or n == 0:
            return out_d, out_i
        nthreads = min(int(threads), _max_threads())
        cap = k + max(k, _SLACK)
        if cap >= n:
            # The buffer would hold every row: rank the database instead.
            self._rank_into(snap, q, nthreads, min(k, n), out_d, out_i)
            return out_d, out_i
        ngroups, nparts = self._plan(nq, snap, nthreads)
        parts = snap.parts(nparts)
        cap = min(cap, max(part[1] for part in parts) + 1)  # a part never fills more
        chunk = max(ngroups, _STATE_BYTES // (12 * cap * nparts))
        for c0 in range(0, nq, chunk):
            qc = q[c0 : c0 + chunk]
            m = qc.shape[0]
            bd = np.empty((nparts, m, cap), dtype=np.int32)
            bi = np.empty((nparts, m, cap), dtype=np.int64)
            bcnt = np.zeros((nparts, m), dtype=np.int64)
            btau = np.full((nparts, m), 64 * self._words + 1, dtype=np.int64)  # admits every row, pad bits or not
            btid = np.zeros((nparts, m), dtype=np.int64)
            groups = _bounds(m, min(ngroups, m))
            _run(_knn_scan, [
                (blocks, rows, ids, qc[a:b], k, bd[p, a:b], bi[p, a:b], bcnt[p, a:b], btau[p, a:b], btid[p, a:b])
                for p, (blocks, rows, ids, _) in enumerate(parts)
                for a, b in zip(groups, groups[1:])
            ])
            merge = _bounds(m, min(nthreads, m))
            od = out_d[c0 : c0 + m]
            oi = out_i[c0 : c0 + m]
            _run(_knn_merge, [(a, b, k, bd, bi, bcnt, snap.ascending, od, oi) for a, b in zip(merge, merge[1:])])
        return out_d, out_i

    def scan_radius(self, q: np.ndarray, r: int, threads: int,
               version: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within distance ``r`` of each query.

        Parameters
        ----------
        q : ndarray of uint64, shape (nq, words)
        r : int, >= 0
        threads : int, >= 1

        Returns
        -------
        lims : ndarray of int64, shape (nq + 1,)
        D : ndarray of int32, shape (lims[-1],)
        I : ndarray of int64, shape (lims[-1],)
            Query ``j``'s results are ``D[lims[j]:lims[j+1]]`` and
            ``I[lims[j]:lims[j+1]]``, sorted by ``(distance, id)``.
        """
        q = _usable(q)
        nq = q.shape[0]
        snap = self._snapshot(version)
        lims = np.zeros(nq + 1, dtype=np.int64)
        if nq == 0 or snap.n == 0:
            return lims, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        r = min(int(r), self._nbits)  # no distance exceeds nbits
        nthreads = min(int(threads), _max_threads())
        ngroups, nparts = self._plan(nq, snap, nthreads)
        parts = snap.parts(nparts)
        groups = _bounds(nq, ngroups)
        tasks = [(p, a, b) for p in range(nparts) for a, b in zip(groups, groups[1:])]
        counts = np.zeros((nparts, nq), dtype=np.int64)
        _run(_radius_count, [(parts[p][0], parts[p][1], q[a:b], r, counts[p, a:b]) for p, a, b in tasks])
        np.cumsum(counts.sum(axis=0), out=lims[1:])
        out_d = np.empty(int(lims[-1]), dtype=np.int32)
        out_i = np.empty(int(lims[-1]), dtype=np.int64)
        if lims[-1] == 0:
            return lims, out_d, out_i
        # Query j's hits: part 0's, then part 1's, ..., from lims[j] on.
        starts = lims[:-1] + np.cumsum(counts, axis=0) - counts
        _run(_radius_fill, [
            (parts[p][0], parts[p][1], parts[p][2], q[a:b], r, starts[p, a:b], out_d, out_i) for p, a, b in tasks
        ])
        sort = _bounds(nq, min(nthreads, nq))
        _run(_radius_sort, [(a, b, lims, snap.ascending, out_d, out_i) for a, b in zip(sort, sort[1:])])
        return lims, out_d, out_i

    def rank(self, q: np.ndarray, threads: int, with_distances: bool) -> Tuple[Optional[np.ndarray], np.ndarray]:
        """Every id, for each query, in ``(distance, id)`` order.

        Parameters
        ----------
        q : ndarray of uint64, shape (nq, words)
        threads : int, >= 1
        with_distances : bool

        Returns
        -------
        D : ndarray of int32, shape (nq, n), or None unless ``with_distances``
        I : ndarray of int64, shape (nq, n)
        """
        q = _usable(q)
        nq = q.shape[0]
        snap = self._snapshot()
        out_i = np.empty((nq, snap.n), dtype=np.int64)
        out_d = np.empty((nq, snap.n if with_distances else 0), dtype=np.int32)
        if nq and snap.n:
            nthreads = min(int(threads), _max_threads())
            self._rank_into(snap, q, nthreads, snap.n, out_d, out_i)
        return (out_d if with_distances else None), out_i

    # -- helpers -------------------------------------------------------------
    def _snapshot(self, version: Optional[int] = None) -> _Snapshot:
        """The rows present now (at ``version``, if given, else :class:`_Stale`)."""
        with self._lock:
            if version is not None and version != self._version:
                raise _Stale()
            n = self._n
            return _Snapshot(self._blocks[: -(-n // self._rows)], n, self._ids[:n], self._ascending, self._version)

    def _id_order(self, snap: _Snapshot) -> np.ndarray:
        """The rows of a snapshot in ascending id order (empty when the ids
        already ascend), cached until the next change."""
        if snap.ascending:
            return np.zeros(0, dtype=np.int64)
        with self._lock:
            if self._perm_version == snap.version:
                return self._perm
        perm = np.argsort(snap.ids).astype(np.int64, copy=False)
        with self._lock:
            if self._version == snap.version:  # still the whole store: keep it
                self._perm, self._perm_version = perm, snap.version
        return perm

    @staticmethod
    def _plan(nq: int, snap: _Snapshot, nthreads: int) -> Tuple[int, int]:
        """(query groups, database parts) for ``nthreads`` threads.

        A large database is split, one part per thread: each thread then
        reads its part from memory once for the whole batch, and a single
        query uses every thread. A small one is shared and the queries split.
        """
        if nthreads <= 1:
            return 1, 1
        if snap.blocks.shape[0] >= _MIN_PART_BLOCKS * nthreads:
            return 1, nthreads
        return min(nthreads, nq), 1

    def _rank_into(self, snap: _Snapshot, q: np.ndarray, nthreads: int, limit: int,
                   out_d: np.ndarray, out_i: np.ndarray) -> None:
        """The first ``limit`` rows of each query's ranking into ``out_i``
        (and ``out_d`` unless it has no columns)."""
        perm = self._id_order(snap)
        nq = q.shape[0]
        n = snap.n
        ascending = snap.ascending
        if nq >= nthreads or self._plan(nq, snap, nthreads)[1] == 1:
            groups = _bounds(nq, min(nthreads, nq))
            _run(_rank_queries, [
                (snap.blocks, n, snap.ids, perm, ascending, q[a:b], limit, out_d[a:b], out_i[a:b])
                for a, b in zip(groups, groups[1:])
            ])
            return
        # Few queries, many threads: a parallel counting sort per query. Part p
        # computes the distances of its blocks, then counts and places the
        # p-th slice of the id order.
        parts = [part for part in snap.parts(nthreads) if part[1] > 0]
        cuts = _bounds(n, len(parts))
        order = list(zip(cuts, cuts[1:]))
        dist = np.empty(n, dtype=np.int32)
        ranges = np.empty((len(parts), 2), dtype=np.int64)

        def distances(p: int, j: int) -> None:
            blocks, rows, _, r0 = parts[p]
            ranges[p] = _distance_range(blocks, rows, q[j], dist[r0 : r0 + rows])

        for j in range(nq):
            _run(distances, [(p, j) for p in range(len(parts))])
            lo = int(ranges[:, 0].min())
            slots = np.zeros((len(parts), int(ranges[:, 1].max()) - lo + 1), dtype=np.int64)
            if ascending:
                _run(_histogram, [(dist[a:b], perm, True, lo, slots[p]) for p, (a, b) in enumerate(order)])
            else:
                _run(_histogram, [(dist, perm[a:b], False, lo, slots[p]) for p, (a, b) in enumerate(order)])
            # Part p's first slot at distance lo + d: everything nearer, then
            # that distance in the parts before p (earlier in id order).
            by_distance = slots.T.ravel()
            first = np.ascontiguousarray((np.cumsum(by_distance) - by_distance).reshape(slots.T.shape).T)
            if ascending:
                _run(_scatter, [
                    (dist[a:b], snap.ids[a:b], perm, True, lo, first[p], limit, out_d[j], out_i[j])
                    for p, (a, b) in enumerate(order)
                ])
            else:
                _run(_scatter, [
                    (dist, snap.ids, perm[a:b], False, lo, first[p], limit, out_d[j], out_i[j])
                    for p, (a, b) in enumerate(order)
                ])


# -- multi-index hashing ----------------------------------------------------------
# Every choice of MIH's policy (m, the tables' layout, the costs of a probe
# and of a candidate, the budget, when a batch gives up) comes from the native
# core (csrc/mih_policy.h, through hamsearch._core), so that both backends
# choose the same tables and send the same queries to the scan. The Numba
# MIH store therefore needs the native extension built, as index files do.


def _policy() -> Any:
    """``hamsearch._core``, where MIH's policy lives; RuntimeError naming the
    build problem where the extension did not load."""
    from . import _backend

    try:
        return _backend.native_module()
    except ImportError as exc:
        raise RuntimeError(
            "MIHIndex: the Numba backend takes MIH's policy from the native core, which is not available "
            f"({_backend._native_error!r}); build it with `pip install .`, or use FlatIndex"
        ) from exc


@_jit
def _mih_chunk_cost(nk, nc, probe_cost, cand_cost):  # pragma: no cover - compiled
    """The work of ``nk`` probed keys and ``nc`` verified candidates, as the
    native core's prober adds it per chunk (csrc/mih_index.cpp, flush)."""
    return float(nk) * probe_cost + float(nc) * cand_cost


@_jit
def _mih_extract(qv, begin, length):  # pragma: no cover - compiled
    """Bits ``begin:begin+length`` (at most 64) of the code ``qv`` as an integer."""
    w = begin // 64
    off = begin % 64
    v = qv[w] >> np.uint64(off)
    if off != 0 and off + length > 64:
        v |= qv[w + 1] << np.uint64(64 - off)
    if length == 64:
        return v
    return v & ((np.uint64(1) << np.uint64(length)) - np.uint64(1))


@_jit
def _mih_first_mask(s):  # pragma: no cover - compiled
    """The smallest mask with ``s`` (0 to 64) bits set."""
    if s == 64:
        return ~np.uint64(0)
    return (np.uint64(1) << np.uint64(s)) - np.uint64(1)


@_jit
def _mih_next_mask(mask, length):  # pragma: no cover - compiled
    """Gosper's hack: the next mask of ``length`` bits with as many bits set
    as ``mask``, and False once there is none."""
    c = mask & (~mask + np.uint64(1))
    r = mask + c
    if r == np.uint64(0):
        return mask, False
    nxt = (((r ^ mask) >> np.uint64(2)) // c) | r
    if length < 64 and (nxt >> np.uint64(length)) != np.uint64(0):
        return nxt, False
    return nxt, True


@_jit
def _mih_run(key, t, tlen, tinfo, dirs, entries):  # pragma: no cover - compiled
    """Positions ``a:b`` in ``entries[t]`` of the rows whose substring may
    equal ``key`` in table ``t``: its directory bucket (the key's top
    ``tinfo[t, 0]`` bits), narrowed to the entries whose tag (the key's lowest
    ``tinfo[t, 2]`` bits, stored above the ``tinfo[t, 1]`` row bits) matches.
    """
    h = tinfo[t, 0]
    rb = np.uint64(tinfo[t, 1])
    tb = tinfo[t, 2]
    bucket = np.int64(key >> np.uint64(tlen[t] - h)) if h > 0 else np.int64(0)
    lo = dirs[tinfo[t, 3] + bucket]
    hi = dirs[tinfo[t, 3] + bucket + 1]
    if tb == 0:
        return lo, hi
    tag = key & ((np.uint64(1) << np.uint64(tb)) - np.uint64(1))
    low = tag << rb
    a = lo
    b = hi
    while a < b:
        mid = (a + b) >> 1
        if np.uint64(entries[t, mid]) < low:
            a = mid + 1
        else:
            b = mid
    end = a
    while end < hi and (np.uint64(entries[t, end]) >> rb) == tag:
        end += 1
    return a, end


@_jit
def _mih_distance(codes, row, qv):  # pragma: no cover - compiled
    """Hamming distance of row ``row`` of ``codes`` (row-major) to ``qv``."""
    d = np.uint64(0)
    for u in range(codes.shape[1]):
        d += _popcount(codes[row, u] ^ qv[u])
    return np.int32(d)


@_jit
def _mih_sample_near(codes, tbegin, tlen, tinfo, dirs, entries, sampled, bounds, cap):  # pragma: no cover - compiled
    """Over the ``sampled`` rows and the tables, the other rows sharing a
    sampled row's substring (the first ``cap`` of them, ascending) within
    ``bounds[t]`` of it: MIHIndex's sample_near (csrc/mih_index.cpp)."""
    rowmask = (np.uint64(1) << np.uint64(tinfo[0, 1])) - np.uint64(1) if tbegin.shape[0] else np.uint64(0)
    near = 0
    for i in range(sampled.shape[0]):
        row = sampled[i]
        qv = codes[row]
        for t in range(tbegin.shape[0]):
            key = _mih_extract(qv, tbegin[t], tlen[t])
            a, b = _mih_run(key, t, tlen, tinfo, dirs, entries)
            looked = 0
            for e in range(a, b):
                if looked >= cap:
                    break
                r = np.int64(np.uint64(entries[t, e]) & rowmask)
                if r == row or _mih_extract(codes[r], tbegin[t], tlen[t]) != key:
                    continue
                looked += 1
                if _mih_distance(codes, r, qv) <= bounds[t]:
                    near += 1
    return near


@_jit
def _mih_evidence(near_at, weight, s):  # pragma: no cover - compiled
    """The codes found within the plan's dc, weighed by how likely radius
    ``s`` was to find them (1 beyond the tabulated radii), summed by
    ascending distance as the native core does (csrc/mih_index.cpp)."""
    e = 0.0
    for d in range(near_at.shape[0]):
        wd = weight[s, d] if s < weight.shape[0] else 1.0
        e += float(near_at[d]) * wd
    return e


@_jit
def _mih_peek_may_reach(s, near, evidence, work, radius_cost, peek, kk, spread):  # pragma: no cover - compiled
    """Whether a peek that finished a radius goes on to the next:
    mih_peek_may_reach in csrc/mih_policy.h, the same arithmetic (``spread``:
    kMihEvidenceSpread)."""
    if near == 0:
        return True
    upper = evidence * (1.0 + spread / np.sqrt(float(near)))
    if s > 0 and upper < float(kk):
        return False
    if work + radius_cost <= peek:
        return True
    share = max(0.0, peek - work) / radius_cost if radius_cost > 0 else 1.0
    return float(near) + share * max(0.0, upper - float(near)) >= float(kk)


@_jit
def _mih_knn(codes, dbids, tbegin, tlen, tinfo, dirs, entries, q, j0, j1, kk, budget, peek, dc, deep_peek,
             predicted, weight, margin, spread, trials, probes, nbits, probe_cost, cand_cost, chunk, out_d, out_i,
             gave_up):  # pragma: no cover - compiled
    """k-NN of queries ``j0:j1`` by probing the tables, as the native core's
    MIHIndex::knn decides (csrc/mih_policy.h): a query whose ``predicted``
    k-th distance is within ``dc`` probes within ``budget``; any other peeks
    within ``peek`` (none where it is 0) and goes on within ``budget`` once
    it has found ``kk`` codes within ``dc``, or their ``weight`` after a whole
    radius reaches ``margin * kk``, and stops at the end of a radius where
    the rest cannot (_mih_peek_may_reach); it goes past radius 0 only if it found a
    code nearer than predicted or ``deep_peek`` (codes with local structure). A query that runs past its limit is marked
    in ``gave_up`` and left alone, and so is every query after at least
    ``trials`` were tried and half gave up (a peek that found no code nearer
    than predicted is a trial given up, one that found some is no trial). Work is counted, and the limit checked, per ``chunk`` keys of a
    table at a radius and at the radius's end, as the native prober does."""
    n = codes.shape[0]
    w = codes.shape[1]
    m = tbegin.shape[0]
    rowmask = (np.uint64(1) << np.uint64(tinfo[0, 1])) - np.uint64(1) if m else np.uint64(0)
    maxlen = 0
    for t in range(m):
        maxlen = max(maxlen, tlen[t])
    stamp = np.zeros(n, np.int32)  # query index + 1 of the last visit
    qsub = np.empty(m, np.uint64)
    cap = kk + max(kk, 256)
    bd = np.empty(cap, np.int32)
    bi = np.empty(cap, np.int64)
    near_at = np.zeros(max(dc, 0) + 1, np.int64)
    tried = 0
    given_up = 0
    for j in range(j0, j1):
        if tried >= trials and 2 * given_up >= tried:
            gave_up[j] = 1
            continue
        tables = predicted[j] <= dc
        if not tables and peek <= 0.0:
            gave_up[j] = 1  # predicted dearer, no peek: the scan, no trial
            continue
        qv = q[j]
        for t in range(m):
            qsub[t] = _mih_extract(qv, tbegin[t], tlen[t])
        mark = np.int32(j + 1)
        cnt = 0
        tau = np.int64(64 * w + 1)  # admits every row, pad bits or not
        found = 0
        near = 0
        closer = False
        near_at[:] = 0
        work = 0.0
        done = False
        over = False
        s = 0
        while not done and not over and s <= maxlen:
            if not tables and s > 0:
                evidence = _mih_evidence(near_at, weight, s - 1)
                if evidence >= margin * kk:
                    tables = True
                elif not closer and not deep_peek:
                    over = True  # the peek found nothing nearer than predicted
                    break
                elif not _mih_peek_may_reach(s - 1, near, evidence, work, probes[s] * probe_cost, peek, kk, spread):
                    over = True  # the rest of the peek cannot count kk codes
                    break
            if not tables and near >= kk:
                tables = True
            # With the budget no radius starts that cannot finish; a peek
            # takes what it can of one, a chunk at a time.
            keys = probes[s] if tables else min(probes[s], float(chunk))
            if work + keys * probe_cost > (budget if tables else peek):
                over = True
                break
            for t in range(m):
                length = tlen[t]
                if s <= length:
                    mask = _mih_first_mask(s)
                    qs = qsub[t]
                    nk = 0
                    nc = 0
                    while True:
                        nk += 1
                        a, b = _mih_run(qs ^ mask, t, tlen, tinfo, dirs, entries)
                        for p in range(a, b):
                            r = np.int64(np.uint64(entries[t, p]) & rowmask)
                            if stamp[r] == mark:
                                continue
                            stamp[r] = mark
                            found += 1
                            nc += 1
                            d = _mih_distance(codes, r, qv)
                            if not tables and d < predicted[j]:
                                closer = True
                                if d <= dc:
                                    near += 1
                                    near_at[d] += 1
                            if d <= tau:
                                if cnt == cap:
                                    tau0, _ = _select(bd, bi, cnt, kk)
                                    tau = np.int64(tau0)
                                    cnt = kk
                                    if d > tau:
                                        continue
                                bd[cnt] = d
                                bi[cnt] = dbids[r]
                                cnt += 1
                        if nk == chunk:
                            work += _mih_chunk_cost(nk, nc, probe_cost, cand_cost)
                            nk = 0
                            nc = 0
                            if not tables and near >= kk:
                                tables = True
                            if work > (budget if tables else peek):
                                over = True
                                break
                        mask, ok = _mih_next_mask(mask, length)
                        if not ok:
                            break
                    if not over and nk > 0:
                        work += _mih_chunk_cost(nk, nc, probe_cost, cand_cost)
                        if not tables and near >= kk:
                            tables = True
                        over = work > (budget if tables else peek)
                if over:
                    break
                # Every code not yet found is at least s+1 away in substrings
                # 0..t and s away in the others.
                if found == n:
                    done = True
                    break
                if cnt >= kk:
                    if cnt > kk:
                        tau0, _ = _select(bd, bi, cnt, kk)
                        tau = np.int64(tau0)
                        cnt = kk
                    else:
                        top = bd[0]
                        for i in range(1, cnt):
                            top = max(top, bd[i])
                        tau = np.int64(top)
                    if tau <= m * s + t:
                        done = True
                        break
            s += 1
        if over:
            gave_up[j] = 1
            if tables or not closer:  # a peek that found codes nearer than predicted is no trial
                tried += 1
                given_up += 1
            continue
        tried += 1
        if cnt > kk:
            _select(bd, bi, cnt, kk)
            cnt = kk
        _sort_pairs(bd[:cnt], bi[:cnt], False)
        for i in range(cnt):
            out_d[j, i] = bd[i]
            out_i[j, i] = bi[i]


@_jit
def _mih_radius(codes, dbids, tbegin, tlen, tinfo, dirs, entries, q, j0, j1, rr, budget, trials, probes,
                probe_cost, cand_cost, chunk, counts, gave_up):  # pragma: no cover - compiled
    """Radius search of queries ``j0:j1`` by probing the tables. Returns the
    hits, query after query, each sorted by ``(distance, id)``; ``counts[j]``
    says how many are query ``j``'s. ``probes[s]`` counts the keys of radius
    ``s`` in the tables that radius ``rr`` probes. A query whose work would
    pass ``budget`` is marked in ``gave_up`` and has none, and so is every
    query after at least ``trials`` were tried and half gave up; one marked
    in ``gave_up`` before the call (the prediction's scan) is skipped and is
    no trial."""
    n = codes.shape[0]
    m = tbegin.shape[0]
    rowmask = (np.uint64(1) << np.uint64(tinfo[0, 1])) - np.uint64(1) if m else np.uint64(0)
    stamp = np.zeros(n, np.int32)
    qsub = np.empty(m, np.uint64)
    cap = 1024
    hd = np.empty(cap, np.int32)
    hi_ = np.empty(cap, np.int64)
    total = 0
    tried = 0
    given_up = 0
    for j in range(j0, j1):
        if tried >= trials and 2 * given_up >= tried:
            gave_up[j] = 1
            continue
        if gave_up[j]:
            continue  # predicted dearer than the budget: the scan, no trial
        tried += 1
        qv = q[j]
        for t in range(m):
            qsub[t] = _mih_extract(qv, tbegin[t], tlen[t])
        mark = np.int32(j + 1)
        start = total
        work = 0.0
        over = False
        s = 0
        while s <= rr // m and not over:
            if work + probes[s] * probe_cost > budget:
                over = True
                break
            for t in range(m):
                if m * s + t > rr:
                    break
                length = tlen[t]
                if s > length:
                    continue
                mask = _mih_first_mask(s)
                qs = qsub[t]
                nk = 0
                nc = 0
                while True:
                    nk += 1
                    a, b = _mih_run(qs ^ mask, t, tlen, tinfo, dirs, entries)
                    for p in range(a, b):
                        r = np.int64(np.uint64(entries[t, p]) & rowmask)
                        if stamp[r] == mark:
                            continue
                        stamp[r] = mark
                        nc += 1
                        d = _mih_distance(codes, r, qv)
                        if d <= rr:
                            if total == cap:
                                cap *= 2
                                nd = np.empty(cap, np.int32)
                                ni = np.empty(cap, np.int64)
                                for i in range(total):
                                    nd[i] = hd[i]
                                    ni[i] = hi_[i]
                                hd = nd
                                hi_ = ni
                            hd[total] = d
                            hi_[total] = dbids[r]
                            total += 1
                    if nk == chunk:
                        work += _mih_chunk_cost(nk, nc, probe_cost, cand_cost)
                        nk = 0
                        nc = 0
                        if work > budget:
                            over = True
                            break
                    mask, ok = _mih_next_mask(mask, length)
                    if not ok:
                        break
                if not over and nk > 0:
                    work += _mih_chunk_cost(nk, nc, probe_cost, cand_cost)
                    over = work > budget
                if over:
                    break
            s += 1
        if over:
            gave_up[j] = 1
            given_up += 1
            total = start
            counts[j] = 0
            continue
        counts[j] = total - start
        _sort_pairs(hd[start:total], hi_[start:total], False)
    return hd[:total], hi_[:total]


class _Tables:
    """The substring tables of the first ``n`` rows, in the native core's
    compact layout: per table a directory over the key's top bits and one
    32-bit entry per code, ``(tag << row_bits) | row``, sorted within each
    directory bucket (see ``hamsearch/include/hamsearch/mih_index.h``)."""

    def __init__(self, codes: np.ndarray, ids: np.ndarray, shapes: List[Tuple[int, int, int, int, int]]) -> None:
        n = codes.shape[0]
        m = len(shapes)
        self.n = n
        self.version = -1  # the store's version these tables cover, set by the store
        self.codes = codes  # (n, W), row-major
        self.ids = ids
        self.tbegin = np.array([shape[0] for shape in shapes], dtype=np.int64)
        self.tlen = np.array([shape[1] for shape in shapes], dtype=np.int64)
        # per table: directory bits, row bits, tag bits, directory start in dirs
        self.tinfo = np.zeros((m, 4), dtype=np.int64)
        self.entries = np.empty((m, n), dtype=np.uint32)
        rows = np.arange(n, dtype=np.uint64)
        dirs: List[np.ndarray] = []
        at = 0
        for t, (begin, length, h, row_bits, tag_bits) in enumerate(shapes):
            key = self._extract(codes, begin, length)
            bucket = (key >> np.uint64(length - h)).astype(np.int64) if h else np.zeros(n, np.int64)
            tag = key & np.uint64((1 << tag_bits) - 1)
            entry = (tag << np.uint64(row_bits)) | rows
            order = np.lexsort((entry, bucket))
            self.entries[t] = entry[order].astype(np.uint32)
            d = np.zeros((1 << h) + 1, dtype=np.int64)
            np.cumsum(np.bincount(bucket, minlength=1 << h), out=d[1:])
            self.tinfo[t] = (h, row_bits, tag_bits, at)
            dirs.append(d)
            at += d.shape[0]
        self.dirs = np.concatenate(dirs) if dirs else np.zeros(1, dtype=np.int64)
        # The sampled codes of the per-query prediction (csrc/mih_policy.h),
        # and how many near codes share their substrings, over the tables:
        # of the first MIH_SAMPLE_RUN other rows sharing one (ascending),
        # those within mih_near_bound.
        core = _policy()
        sampled = np.asarray(core.mih_sample_rows(n), dtype=np.int64)
        # Word-major (W, S), the block layout the scan's _distances kernel reads.
        self.sample = np.ascontiguousarray(codes[sampled].T)
        nbits = int(self.tlen.sum())
        bounds = np.array([core.mih_near_bound(nbits, int(v)) for v in self.tlen], dtype=np.int64)
        self.sample_near = int(_mih_sample_near(self.codes, self.tbegin, self.tlen, self.tinfo, self.dirs,
                                                self.entries, sampled, bounds, int(core.MIH_SAMPLE_RUN)))
        self._models: Dict[str, tuple] = {}

    def knn_model(self, nbits: int) -> tuple:
        """(cost, found_weight, probes, uniform_near) of these tables at the
        active kernel level (the native core's MihKnnModel), once per level."""
        from . import _backend

        level = _backend.isa()
        got = self._models.get(level)
        if got is None:
            got = tuple(_policy().mih_knn_model(nbits, [int(v) for v in self.tlen], self.n))
            self._models[level] = got
        return got

    def sample_distances(self, q: np.ndarray) -> np.ndarray:
        """(nq, S) int32: each query's distances to the sampled codes, by the
        scan's own kernel (as the native core uses its scan's)."""
        S = self.sample.shape[1]
        d = np.zeros((q.shape[0], S), dtype=np.int32)
        if S:
            for j in range(q.shape[0]):
                _distances(self.sample, S, q[j], d[j])
        return d

    @staticmethod
    def _extract(codes: np.ndarray, begin: int, length: int) -> np.ndarray:
        w, off = divmod(begin, 64)
        v = codes[:, w] >> np.uint64(off)
        if off != 0 and off + length > 64:
            v |= codes[:, w + 1] << np.uint64(64 - off)
        if length < 64:
            v &= np.uint64((1 << length) - 1)
        return np.ascontiguousarray(v)

    def args(self) -> tuple:
        return (self.codes, self.ids, self.tbegin, self.tlen, self.tinfo, self.dirs, self.entries)

    def radius_probes(self, rr: int) -> np.ndarray:
        """``probes[s]``, s = 0..rr // m: the keys at distance ``s`` that a
        search of radius ``rr`` probes, whatever the data. By the pigeonhole
        bound a code within ``rr`` has a substring ``t`` within ``s`` of the
        query's with ``m * s + t <= rr``; only those tables are probed."""
        m = len(self.tlen)
        return np.array([float(sum(math.comb(int(self.tlen[t]), s) for t in range(m) if m * s + t <= rr))
                         for s in range(rr // m + 1)])


class MIHStore:
    """Multi-index hashing over Numba kernels: the twin of the native core's
    ``MIHIndex``, with the same results. Storage, ``rank`` and the scan that
    answers the queries that give up on the tables are a :class:`FlatStore`'s.

    Parameters
    ----------
    nbits : int
        Bits per code.
    m : int
        Substrings; 0 chooses ``round(nbits / log2(n))`` for the current size.
    """

    def __init__(self, nbits: int, m: int = 0) -> None:
        self._nbits = int(nbits)
        self._m = int(m)
        self._flat = FlatStore(nbits)
        self._lock = threading.RLock()  # re-entered by _consistent's last try
        self._tables: Optional[_Tables] = None
        self._scan_fraction = float(_policy().MIH_SCAN_FRACTION)

    @property
    def scan_fraction(self) -> float:
        """The fraction of a full scan a query may spend probing before the
        scan answers it; infinity never falls back (as the native core)."""
        return self._scan_fraction

    @scan_fraction.setter
    def scan_fraction(self, f: float) -> None:
        f = float(f)
        if not f > 0:
            raise ValueError("scan fraction: expected a positive number")
        self._scan_fraction = f

    # -- storage ---------------------------------------------------------------
    @property
    def mapped(self) -> bool:
        """Never: the Numba backend keeps its codes in its own blocks in memory."""
        return False

    # -- persistence (the store contract's; the format lives in the core) -----
    def save_file(self, path: bytes, next_id: int) -> None:
        """Saves a snapshot of the ids and codes, and the m asked for, through the native core."""
        _save_arrays(path, "mih", self._nbits, self._m, next_id, self._flat)

    def load_file(self, file: Any, mmap: bool, verify: bool) -> None:
        """As :meth:`FlatStore.load_file`; the tables are built on the first search."""
        self._flat.load_file(file, mmap, verify)

    def size(self) -> int:
        return self._flat.size()

    def ids(self) -> np.ndarray:
        return self._flat.ids()

    def codes(self) -> np.ndarray:
        return self._flat.codes()

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        with self._lock:
            if self._flat.size() + codes.shape[0] > 2**32 - 1:
                raise ValueError(f"add: this index holds at most {2**32 - 1} codes")
            self._flat.add(codes, ids)

    def remove(self, ids: np.ndarray) -> int:
        with self._lock:
            return self._flat.remove(ids)

    def version(self) -> int:
        return self._flat.version()

    # -- layout ------------------------------------------------------------------
    def _shapes(self, n: int) -> List[Tuple[int, int, int, int, int]]:
        """(begin, len, dir_bits, row_bits, tag_bits) of each table for n codes."""
        return [tuple(int(v) for v in shape) for shape in _policy().mih_table_shapes(self._nbits, self._m, n)]

    def effective_m(self) -> int:
        return len(self._shapes(self.size()))

    def substrings(self) -> List[Tuple[int, int]]:
        return [(shape[0], shape[1]) for shape in self._shapes(self.size())]

    def _current(self) -> _Tables:
        """The tables of every row present, (re)built after an ``add``."""
        with self._lock:
            tabs = self._tables
            n = self._flat.size()
            version = self._flat.version()
            if tabs is None or tabs.version != version:
                tabs = _Tables(self._flat.codes(), self._flat.ids(), self._shapes(n))
                tabs.version = version
                self._tables = tabs
            return tabs

    def _budget(self, n: int) -> float:
        return float(_policy().mih_budget(self._scan_fraction, n, (self._nbits + 63) // 64))

    def _costs(self) -> Tuple[float, float, int]:
        """(probe cost, candidate cost, keys per budget check)."""
        core = _policy()
        probe, candidate = core.mih_costs((self._nbits + 63) // 64)
        return float(probe), float(candidate), int(core.MIH_PROBE_CHUNK)

    # -- search ------------------------------------------------------------------
    def knn(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray, int]:
        return self._consistent(self._knn, q, k, threads)

    def _consistent(self, search: Callable, *args: Any) -> Any:
        """``search`` on one state of the store: the tables and the scan that
        answers the queries that give up must see the same rows. A change in
        between makes it start again; after a few tries it runs holding the
        lock (changes then wait for it)."""
        for _ in range(4):
            try:
                return search(*args)
            except _Stale:
                continue
        with self._lock:
            return search(*args)

    def _knn(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray, int]:
        k = int(k)
        if k < 1:
            raise ValueError(f"k: expected k >= 1, got {k}")
        q = _usable(q)
        nq = q.shape[0]
        out_d = np.full((nq, k), _DISTANCE_PAD, dtype=np.int32)
        out_i = np.full((nq, k), _ID_PAD, dtype=np.int64)
        if nq == 0 or self.size() == 0:
            return out_d, out_i, 0
        tabs = self._current()
        n = tabs.n
        kk = min(k, n)
        core = _policy()
        # The prediction (csrc/mih_policy.h): the tables' model, the batch's
        # plan, each query's predicted k-th distance from its sample distances.
        cost, weight, probes, uniform_near = tabs.knn_model(self._nbits)
        dc, budget, peek, deep_peek = core.mih_knn_plan(cost, uniform_near, len(tabs.tlen), n,
                                                        self._scan_fraction, tabs.sample.shape[1], tabs.sample_near)
        predicted = core.mih_predict_kth(tabs.sample_distances(q), self._nbits, n, kk)
        gave_up = np.zeros(nq, dtype=np.uint8)
        T = max(1, min(int(_policy().mih_probe_threads(nq, int(threads))), MAX_THREADS, _max_threads()))
        cuts = _bounds(nq, T)
        args = tabs.args()
        trials = int(core.mih_batch_trials(nq))
        costs = self._costs()
        _run(_mih_knn, [
            args + (q, a, b, kk, float(budget), float(peek), int(dc), bool(deep_peek), predicted, weight,
                    float(core.MIH_EVIDENCE_MARGIN), float(core.MIH_EVIDENCE_SPREAD), trials, probes, self._nbits)
            + costs + (out_d, out_i, gave_up)
            for a, b in zip(cuts, cuts[1:])
        ])
        rest = np.flatnonzero(gave_up)
        if rest.size:
            d, i = self._flat.scan_knn(np.ascontiguousarray(q[rest]), k, threads, version=tabs.version)
            out_d[rest] = d
            out_i[rest] = i
        return out_d, out_i, int(rest.size)

    def radius(self, q: np.ndarray, r: int, threads: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """``(lims, D, I, fallbacks)``: as :meth:`FlatStore.radius`, and how
        many queries the scan answered."""
        return self._consistent(self._radius, q, r, threads)

    def _radius(self, q: np.ndarray, r: int, threads: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        r = int(r)
        if r < 0:
            raise ValueError(f"r: expected r >= 0, got {r}")
        q = _usable(q)
        nq = q.shape[0]
        lims = np.zeros(nq + 1, dtype=np.int64)
        if nq == 0 or self.size() == 0:
            return lims, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64), 0
        tabs = self._current()
        rr = min(r, self._nbits)
        budget = self._budget(tabs.n)
        probes = tabs.radius_probes(rr)
        counts = np.zeros(nq, dtype=np.int64)
        T = max(1, min(int(_policy().mih_probe_threads(nq, int(threads))), MAX_THREADS, _max_threads()))
        cuts = _bounds(nq, T)
        results: List[Any] = [(np.zeros(0, np.int32), np.zeros(0, np.int64))] * T
        # Probing alone past the budget: every query would give up after
        # spending it, so the whole batch goes to the scan at once.
        costs = self._costs()
        gave_up = np.full(nq, 1 if float(probes.sum()) * costs[0] > budget else 0, dtype=np.uint8)
        if not gave_up[0]:
            # The prediction: a query whose sampled codes within r predict
            # more work than the budget goes to the scan before any probe.
            hits = np.ascontiguousarray(np.count_nonzero(tabs.sample_distances(q) <= rr, axis=1).astype(np.int64))
            predicted = _policy().mih_radius_costs(self._nbits, [int(v) for v in tabs.tlen], rr, tabs.n,
                                                   tabs.sample.shape[1], hits)
            gave_up[predicted > budget] = 1
        if not gave_up.all():
            args = tabs.args()
            trials = int(_policy().mih_batch_trials(nq))

            def task(t: int, a: int, b: int) -> None:
                results[t] = _mih_radius(*args, q, a, b, rr, budget, trials, probes, *costs, counts, gave_up)

            _run(task, [(t, a, b) for t, (a, b) in enumerate(zip(cuts, cuts[1:]))])
        rest = np.flatnonzero(gave_up)
        if rest.size:
            slims, sd, si = self._flat.scan_radius(np.ascontiguousarray(q[rest]), r, threads, version=tabs.version)
            counts[rest] = np.diff(slims)
        np.cumsum(counts, out=lims[1:])
        out_d = np.empty(int(lims[-1]), dtype=np.int32)
        out_i = np.empty(int(lims[-1]), dtype=np.int64)
        for t, (a, b) in enumerate(zip(cuts, cuts[1:])):
            hd, hi = results[t]
            # The table hits of queries a:b, in query order, skipping those that gave up.
            if not gave_up[a:b].any():
                out_d[lims[a] : lims[b]] = hd
                out_i[lims[a] : lims[b]] = hi
                continue
            at = 0
            for j in range(a, b):
                if not gave_up[j]:
                    c = int(counts[j])
                    out_d[lims[j] : lims[j + 1]] = hd[at : at + c]
                    out_i[lims[j] : lims[j + 1]] = hi[at : at + c]
                    at += c
        for x, row in enumerate(rest.tolist()):
            out_d[lims[row] : lims[row + 1]] = sd[slims[x] : slims[x + 1]]
            out_i[lims[row] : lims[row + 1]] = si[slims[x] : slims[x + 1]]
        return lims, out_d, out_i, int(rest.size)

    def rank(self, q: np.ndarray, threads: int, with_distances: bool) -> Tuple[Optional[np.ndarray], np.ndarray]:
        return self._flat.rank(q, threads, with_distances)


# -- metrics ------------------------------------------------------------------------
# The twin of csrc/metrics.cpp, operation for operation where floating point is
# involved, so that both backends give the same numbers: a histogram of each
# query's distances split by relevance, then a pass in row order that knows
# each bucket's offset (see hamsearch.metrics). Where the native core folds
# the two passes into one, it scores the same items block by block in the
# same order, so the sums agree to the bit.
_METRICS_BLOCK = 2048  # rows per block, as the native core
_HARMONIC_DIRECT = 32  # ranges (and tied groups) up to this length summed term by term
_EULER_GAMMA = 0.57721566490153286060651209
_RELEVANCE_LABELS, _RELEVANCE_MATRIX, _RELEVANCE_LISTS = 0, 1, 2


@_jit
def _harmonic_range(a, b):  # pragma: no cover - compiled
    """``sum_{u=a+1}^{b} 1/u`` for ``0 <= a <= b``, as ``hamsearch::harmonic_range``."""
    s = 0.0
    if b - a <= _HARMONIC_DIRECT:
        for u in range(a + 1, b + 1):
            s += 1.0 / u
        return s
    if a <= _HARMONIC_DIRECT:
        for u in range(1, a + 1):
            s += 1.0 / u
        x = float(b)
        r = 1.0 / (x * x)
        h = (
            math.log(x)
            + _EULER_GAMMA
            + 0.5 / x
            - r * (1.0 / 12.0 - r * (1.0 / 120.0 - r * (1.0 / 252.0 - r / 240.0)))
        )
        return h - s
    fa = float(a)
    fb = float(b)
    ra = 1.0 / (fa * fa)
    rb = 1.0 / (fb * fb)
    s = math.log1p((fb - fa) / fa)
    s += 0.5 / fb - 0.5 / fa
    s -= (rb - ra) / 12.0
    s += (rb * rb - ra * ra) / 120.0
    s -= (rb * rb * rb - ra * ra * ra) / 252.0
    s += (rb * rb * rb * rb - ra * ra * ra * ra) / 240.0
    return s


@_jit
def _tie_aware_ap(count, count_rel, before, before_rel, total_rel):  # pragma: no cover - compiled
    """Tie-aware AP from one query's histogram (METHODS section 6)."""
    if total_rel == 0:
        return 0.0
    total = 0.0
    for d in range(count.shape[0]):
        pd = count_rel[d]
        if pd == 0:
            continue
        nd = count[d]
        big = before[d]
        a = float(before_rel[d]) + 1.0
        if nd == 1:
            total += a / (float(big) + 1.0)
            continue
        slope = (float(pd) - 1.0) / (float(nd) - 1.0)
        inner = 0.0
        if nd <= _HARMONIC_DIRECT:
            for t in range(1, nd + 1):
                inner += (a + float(t - 1) * slope) / float(big + t)
        else:
            inner = float(nd) * slope + (a - (float(big) + 1.0) * slope) * _harmonic_range(big, big + nd)
        total += float(pd) / float(nd) * inner
    return total / float(total_rel)


@_jit
def _metrics_block(q, db, b0, m, kind, j, ql, dl, matrix, bits, dist, rel):  # pragma: no cover - compiled
    """Distances (int32) and relevance (uint8, 0/1) of rows ``b0:b0+m`` to query ``j``."""
    w = db.shape[1]
    for i in range(m):
        d = 0
        for t in range(w):
            d += _popcount(db[b0 + i, t] ^ q[t])
        dist[i] = d
    if kind == _RELEVANCE_LABELS:
        lw = dl.shape[1]
        for i in range(m):
            any_ = np.uint64(0)
            for t in range(lw):
                any_ |= dl[b0 + i, t] & ql[j, t]
            rel[i] = 1 if any_ != 0 else 0
    elif kind == _RELEVANCE_MATRIX:
        for i in range(m):
            rel[i] = 1 if matrix[j, b0 + i] != 0 else 0
    else:
        for i in range(m):
            r = b0 + i
            rel[i] = np.uint8((bits[r >> 6] >> np.uint64(r & 63)) & np.uint64(1))


@_jit
def _metrics_queries(q, db, nbits, kind, ql, dl, matrix, lims, ids, map_all, tie_aware, ks, depth, inverse,
                     q0, q1, ap_all, ap_tie, ap_k, hits, pairs, relevant):  # pragma: no cover - compiled
    """Queries ``q0:q1``: per-query AP values into ``ap_all``, ``ap_tie`` and
    ``ap_k`` (rows ``q0:q1``), totals over them added to ``hits`` (depth + 1
    slots, the last collecting deeper ranks), ``pairs`` and ``relevant``."""
    n = db.shape[0]
    nb = nbits + 1
    nk = ks.shape[0]
    deepest = depth
    for u in range(nk):
        deepest = max(deepest, ks[u])
    dist = np.empty(_METRICS_BLOCK, dtype=np.int32)
    rel = np.empty(_METRICS_BLOCK, dtype=np.uint8)
    prec = np.empty(_METRICS_BLOCK, dtype=np.float64)
    count = np.zeros(nb, dtype=np.int64)
    count_rel = np.zeros(nb, dtype=np.int64)
    before = np.zeros(nb, dtype=np.int64)
    before_rel = np.zeros(nb, dtype=np.int64)
    cur_rank = np.zeros(nb, dtype=np.int64)
    cur_nth = np.zeros(nb, dtype=np.int64)
    sum_k = np.zeros(nk, dtype=np.float64)
    n_k = np.zeros(nk, dtype=np.int64)
    bits = np.zeros((n + 63) // 64 if kind == _RELEVANCE_LISTS else 0, dtype=np.uint64)
    for j in range(q0, q1):
        qv = q[j]
        if kind == _RELEVANCE_LISTS:
            for t in range(lims[j], lims[j + 1]):
                r = ids[t]
                bits[r >> 6] |= np.uint64(1) << np.uint64(r & 63)
        # Pass one: the histogram.
        count[:] = 0
        count_rel[:] = 0
        for b0 in range(0, n, _METRICS_BLOCK):
            m = min(_METRICS_BLOCK, n - b0)
            _metrics_block(qv, db, b0, m, kind, j, ql, dl, matrix, bits, dist, rel)
            for i in range(m):
                count[dist[i]] += 1
                count_rel[dist[i]] += rel[i]
        acc = 0
        acc_rel = 0
        for d in range(nb):
            before[d] = acc
            before_rel[d] = acc_rel
            acc += count[d]
            acc_rel += count_rel[d]
        total_rel = acc_rel
        for d in range(pairs.shape[0]):
            pairs[d] += count[d]
            relevant[d] += count_rel[d]
        if tie_aware:
            ap_tie[j] = _tie_aware_ap(count, count_rel, before, before_rel, total_rel)
        # Pass two, in row order: each relevant item's rank and its place
        # among the relevant items.
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        sum_k[:] = 0.0
        n_k[:] = 0
        if total_rel > 0 and (map_all or deepest > 0):
            last = nb - 1
            if not map_all:
                last = 0
                while before[last] + count[last] < deepest:
                    last += 1
            for d in range(last + 1):
                cur_rank[d] = before[d]
                cur_nth[d] = before_rel[d]
            placed = 0
            for b0 in range(0, n, _METRICS_BLOCK):
                if not map_all and placed >= deepest:
                    break
                m = min(_METRICS_BLOCK, n - b0)
                _metrics_block(qv, db, b0, m, kind, j, ql, dl, matrix, bits, dist, rel)
                c = 0
                for i in range(m):
                    d = dist[i]
                    if d > last:
                        continue
                    rank = cur_rank[d] + 1
                    cur_rank[d] = rank
                    if rank <= deepest:
                        placed += 1
                    if rel[i] == 0:
                        continue
                    nth = cur_nth[d] + 1
                    cur_nth[d] = nth
                    p = float(nth) * inverse[rank]
                    prec[c] = p
                    c += 1
                    if rank <= deepest:
                        if depth > 0:
                            hits[min(rank, depth + 1) - 1] += 1
                        for u in range(nk):
                            if rank <= ks[u]:
                                sum_k[u] += p
                                n_k[u] += 1
                # The block's precisions in four partial sums, as the native
                # core's sum_precisions: entry t to sum t % 4, a tail past the
                # last multiple of four to the first.
                c4 = c - c % 4
                for t in range(0, c4, 4):
                    s0 += prec[t]
                    s1 += prec[t + 1]
                    s2 += prec[t + 2]
                    s3 += prec[t + 3]
                for t in range(c4, c):
                    s0 += prec[t]
        if map_all:
            ap_all[j] = ((s0 + s1) + (s2 + s3)) / float(total_rel) if total_rel > 0 else 0.0
        for u in range(nk):
            ap_k[j, u] = sum_k[u] / float(n_k[u]) if n_k[u] > 0 else 0.0
        if kind == _RELEVANCE_LISTS:
            for t in range(lims[j], lims[j + 1]):
                bits[ids[t] >> 6] = 0


def _writable(a: np.ndarray) -> np.ndarray:
    """``a`` itself when writeable and aligned, else a C-contiguous copy: Numba
    compiles read-only arrays as another type (every kernel again)."""
    return a if a.flags.writeable and a.flags.aligned else np.array(a, order="C")


def evaluate_metrics(q: np.ndarray, db: np.ndarray, nbits: int, query_labels: Optional[np.ndarray],
                     db_labels: Optional[np.ndarray], matrix: Optional[np.ndarray], lims: Optional[np.ndarray],
                     ids: Optional[np.ndarray], map_all: bool, tie_aware: bool, map_ks: Sequence[int], depth: int,
                     pr: bool, threads: int) -> Tuple[np.ndarray, ...]:
    """The Numba twin of ``hamsearch._core.evaluate_metrics``: the same
    arguments (checked by :mod:`hamsearch.metrics`) and the same results,
    ``(ap_all, ap_tie, ap_k, hits, pairs, relevant)``, length 0 where not
    requested."""
    nq, n = q.shape[0], db.shape[0]
    if query_labels is not None:
        kind = _RELEVANCE_LABELS
    elif matrix is not None:
        kind = _RELEVANCE_MATRIX
    else:
        kind = _RELEVANCE_LISTS
    none_u64 = np.zeros((0, 1), dtype=np.uint64)
    ql = none_u64 if query_labels is None else query_labels
    dl = none_u64 if db_labels is None else db_labels
    mat = np.zeros((0, 0), dtype=np.uint8) if matrix is None else matrix
    lims_ = np.zeros(1, dtype=np.int64) if lims is None else lims
    ids_ = np.zeros(0, dtype=np.int64) if ids is None else ids
    ks = np.asarray(map_ks, dtype=np.int64).reshape(-1)
    inverse = np.zeros(n + 1, dtype=np.float64)
    inverse[1:] = 1.0 / np.arange(1, n + 1, dtype=np.float64)
    ap_all = np.zeros(nq if map_all else 0, dtype=np.float64)
    ap_tie = np.zeros(nq if tie_aware else 0, dtype=np.float64)
    ap_k = np.zeros((nq, ks.shape[0]), dtype=np.float64)
    nthreads = max(1, min(int(threads), _max_threads(), nq))
    cuts = _bounds(nq, nthreads)
    parts = [(np.zeros(depth + 1, dtype=np.int64), np.zeros(nbits + 1 if pr else 0, dtype=np.int64),
              np.zeros(nbits + 1 if pr else 0, dtype=np.int64)) for _ in range(nthreads)]
    q, db, ql, dl, mat = (_writable(a) for a in (q, db, ql, dl, mat))
    _run(_metrics_queries, [
        (q, db, nbits, kind, ql, dl, mat, lims_, ids_, bool(map_all), bool(tie_aware), ks, int(depth), inverse,
         a, b, ap_all, ap_tie, ap_k, *parts[t])
        for t, (a, b) in enumerate(zip(cuts, cuts[1:]))
    ])
    hits = np.sum([p[0][:depth] for p in parts], axis=0, dtype=np.int64).reshape(depth)
    pairs = np.sum([p[1] for p in parts], axis=0, dtype=np.int64).reshape(-1)
    relevant = np.sum([p[2] for p in parts], axis=0, dtype=np.int64).reshape(-1)
    return ap_all, ap_tie, ap_k, hits, pairs, relevant
