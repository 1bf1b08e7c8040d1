"""The Numba backend: the flat scan as JIT-compiled kernels.

``FlatStore`` mirrors the native core's ``FlatIndex`` (same methods, same
results, bit for bit); :class:`hamsearch.FlatIndex` validates every input
before calling it. Results are sorted by ``(distance, id)``, so they do not
depend on the row order, the thread count or the kernel.

Work is split into tasks, each a range of queries against a range of database
rows, with one top-k state per (query, row range) that a second kernel merges.
A task walks its rows in cache-sized blocks and runs all its queries over a
block before the next, so a batch reads the database from memory once.

Every kernel has a serial driver and a ``prange`` driver. Numba's default
``workqueue`` threading layer aborts the process when two threads launch
parallel kernels at once, so parallel launches hold a module lock; a search
with ``threads=1`` runs the serial driver and never waits for it.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Tuple

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["FlatStore"]

_DISTANCE_PAD = np.iinfo(np.int32).max  # faiss's convention, as in hamsearch.flat
_ID_PAD = -1

# Rows per block: about 128 KiB of codes, so that a block stays in L2 while
# every query of the task runs over it.
_BLOCK_BYTES = 1 << 17
# The k-NN candidate buffer holds k + max(k, _SLACK) entries: compaction (a
# histogram pass over the buffer) then runs at most once per _SLACK accepted
# candidates.
_SLACK = 256
# Rows below which splitting the database between threads does not pay.
_MIN_PART = 4096
# Bytes of k-NN state (candidate buffers) allowed per launch; larger query
# batches are cut into chunks.
_STATE_BYTES = 64 << 20

# Numba's workqueue layer is not thread-safe: one parallel launch at a time.
_LAUNCH_LOCK = threading.Lock()


def _jit(func: Callable) -> Any:
    """``njit(nogil=True)``, cached on disk where Numba finds a writable
    cache directory (next to this file, else the user's cache directory).

    Numba raises at decoration when no cache directory is writable (a
    read-only install with no writable home); compile in memory then.
    """
    try:
        return numba.njit(nogil=True, cache=True)(func)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(nogil=True, cache=False)(func)


def _jit_parallel(func: Callable) -> Any:
    """As :func:`_jit`, with ``parallel=True`` for the ``prange`` drivers."""
    try:
        return numba.njit(nogil=True, parallel=True, cache=True)(func)
    except RuntimeError:
        return numba.njit(nogil=True, parallel=True, cache=False)(func)


@intrinsic
def _popcount(typingctx: Any, x: Any) -> Any:
    """Population count of a 64-bit integer through ``llvm.ctpop.i64``.

    Numba cannot compile ``np.bitwise_count``; the LLVM intrinsic becomes
    ``popcnt`` or, in a vectorized loop, an AVX2 nibble-table sequence.
    """
    if not isinstance(x, types.Integer) or x.bitwidth != 64:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.ctpop.i64")
        return builder.call(fn, args)

    return types.uint64(x), codegen


# -- distances ---------------------------------------------------------------
@_jit
def _distances(db, r0, r1, q, qi, out):  # pragma: no cover - compiled
    """Hamming distances of rows ``r0:r1`` of ``db`` to query row ``qi`` of
    ``q``, into ``out[: r1 - r0]`` (int32). Loops specialised for 1, 2 and 4
    words vectorize across rows."""
    w = db.shape[1]
    if w == 1:
        q0 = q[qi, 0]
        for i in range(r0, r1):
            out[i - r0] = np.int32(_popcount(db[i, 0] ^ q0))
    elif w == 2:
        q0 = q[qi, 0]
        q1 = q[qi, 1]
        for i in range(r0, r1):
            out[i - r0] = np.int32(_popcount(db[i, 0] ^ q0) + _popcount(db[i, 1] ^ q1))
    elif w == 4:
        q0 = q[qi, 0]
        q1 = q[qi, 1]
        q2 = q[qi, 2]
        q3 = q[qi, 3]
        for i in range(r0, r1):
            out[i - r0] = np.int32(
                _popcount(db[i, 0] ^ q0)
                + _popcount(db[i, 1] ^ q1)
                + _popcount(db[i, 2] ^ q2)
                + _popcount(db[i, 3] ^ q3)
            )
    else:
        for i in range(r0, r1):
            s = np.uint64(0)
            for j in range(w):
                s += _popcount(db[i, j] ^ q[qi, j])
            out[i - r0] = np.int32(s)


# -- ordering ----------------------------------------------------------------
@_jit
def _select(d, ids, cnt, k):  # pragma: no cover - compiled
    """Keep the ``k`` smallest ``(d, id)`` pairs of ``d[:cnt], ids[:cnt]``
    (``cnt > k``) in place, in their original order.

    Returns the k-th pair ``(tau, tau_id)``: a later candidate can enter the
    top k only if it is smaller. Distances are small integers, so a
    histogram over their range finds the k-th distance in linear time; only
    the ties at that distance are sorted by id.
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
    need = k - below  # how many of the ties at tau survive, >= 1
    ties = np.empty(hist[b], np.int64)
    t = 0
    for i in range(cnt):
        if d[i] == tau:
            ties[t] = ids[i]
            t += 1
    if need < t:
        tau_id = np.partition(ties, need - 1)[need - 1]
    else:
        tau_id = ties.max()
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

    A counting sort by distance, stable, so visiting the pairs in ascending
    id order breaks ties by id. ``ascending`` says the pairs already come in
    ascending id order (rows in order and ids increasing with the row), which
    saves the argsort.
    """
    m = d.shape[0]
    if m < 2:
        return
    if ascending:
        sd = d.copy()
        si = ids.copy()
    else:
        order = np.argsort(ids)
        sd = d[order]
        si = ids[order]
    lo = sd[0]
    hi = sd[0]
    for i in range(1, m):
        lo = min(lo, sd[i])
        hi = max(hi, sd[i])
    pos = np.zeros(hi - lo + 2, np.int64)
    for i in range(m):
        pos[sd[i] - lo + 1] += 1
    for b in range(1, hi - lo + 2):
        pos[b] += pos[b - 1]
    for i in range(m):
        b = sd[i] - lo
        p = pos[b]
        pos[b] = p + 1
        d[p] = sd[i]
        ids[p] = si[i]


# -- tasks -------------------------------------------------------------------
@_jit
def _task_ranges(t, nparts, nq, n, ngroups):  # pragma: no cover - compiled
    """Task ``t`` of ``ngroups * nparts``: its query range and row range."""
    g = t // nparts
    p = t - g * nparts
    q0 = nq * g // ngroups
    q1 = nq * (g + 1) // ngroups
    r0 = n * p // nparts
    r1 = n * (p + 1) // nparts
    return p, q0, q1, r0, r1


@_jit
def _knn_task(t, ngroups, nparts, db, dbids, q, k, block, bd, bi, bcnt, btau, btid):  # pragma: no cover
    """Scan one task's rows for its queries, updating the candidate buffers.

    State ``s = query * nparts + part`` holds ``bcnt[s]`` candidates in
    ``bd[s], bi[s]``, in row order, and the admission bound ``(btau[s],
    btid[s])``: a row enters if ``(d, id) < (tau, tau_id)``.
    """
    nq = q.shape[0]
    p, q0, q1, r0, r1 = _task_ranges(t, nparts, nq, db.shape[0], ngroups)
    cap = bd.shape[1]
    dist = np.empty(block, np.int32)
    for b0 in range(r0, r1, block):
        b1 = min(b0 + block, r1)
        for qi in range(q0, q1):
            s = qi * nparts + p
            _distances(db, b0, b1, q, qi, dist)
            tau = btau[s]
            tid = btid[s]
            cnt = bcnt[s]
            sd = bd[s]
            si = bi[s]
            for i in range(b1 - b0):
                dv = dist[i]
                if dv <= tau:
                    iv = dbids[b0 + i]
                    if dv < tau or iv < tid:
                        sd[cnt] = dv
                        si[cnt] = iv
                        cnt += 1
                        if cnt == cap:
                            tau, tid = _select(sd, si, cnt, k)
                            cnt = k
            btau[s] = tau
            btid[s] = tid
            bcnt[s] = cnt


@_jit
def _knn_merge(qi, nparts, k, bd, bi, bcnt, ascending, out_d, out_i):  # pragma: no cover
    """Merge query ``qi``'s per-part candidates into its sorted top-k row."""
    total = 0
    for p in range(nparts):
        total += bcnt[qi * nparts + p]
    cd = np.empty(total, np.int32)
    ci = np.empty(total, np.int64)
    j = 0
    for p in range(nparts):  # parts in row order keep the pairs in row order
        s = qi * nparts + p
        for c in range(bcnt[s]):
            cd[j] = bd[s, c]
            ci[j] = bi[s, c]
            j += 1
    if total > k:
        _select(cd, ci, total, k)
        total = k
    _sort_pairs(cd[:total], ci[:total], ascending)
    for j in range(total):
        out_d[qi, j] = cd[j]
        out_i[qi, j] = ci[j]
    for j in range(total, k):
        out_d[qi, j] = 2147483647
        out_i[qi, j] = -1


@_jit
def _knn_serial(ngroups, nparts, db, dbids, q, k, block, bd, bi, bcnt, btau, btid, ascending, out_d, out_i):  # pragma: no cover
    for t in range(ngroups * nparts):
        _knn_task(t, ngroups, nparts, db, dbids, q, k, block, bd, bi, bcnt, btau, btid)
    for qi in range(q.shape[0]):
        _knn_merge(qi, nparts, k, bd, bi, bcnt, ascending, out_d, out_i)


@_jit_parallel
def _knn_parallel(ngroups, nparts, db, dbids, q, k, block, bd, bi, bcnt, btau, btid, ascending, out_d, out_i):  # pragma: no cover
    for t in prange(ngroups * nparts):
        _knn_task(t, ngroups, nparts, db, dbids, q, k, block, bd, bi, bcnt, btau, btid)
    for qi in prange(q.shape[0]):
        _knn_merge(qi, nparts, k, bd, bi, bcnt, ascending, out_d, out_i)


# -- radius ------------------------------------------------------------------
@_jit
def _radius_count_task(t, ngroups, nparts, db, q, r, block, counts):  # pragma: no cover
    """Count each (query, part) state's rows within distance ``r``."""
    p, q0, q1, r0, r1 = _task_ranges(t, nparts, q.shape[0], db.shape[0], ngroups)
    dist = np.empty(block, np.int32)
    for b0 in range(r0, r1, block):
        b1 = min(b0 + block, r1)
        for qi in range(q0, q1):
            _distances(db, b0, b1, q, qi, dist)
            c = 0
            for i in range(b1 - b0):
                c += dist[i] <= r
            counts[qi * nparts + p] += c


@_jit
def _radius_fill_task(t, ngroups, nparts, db, dbids, q, r, block, offsets, out_d, out_i):  # pragma: no cover
    """Write each state's hits, in row order, from ``offsets[state]`` on."""
    p, q0, q1, r0, r1 = _task_ranges(t, nparts, q.shape[0], db.shape[0], ngroups)
    dist = np.empty(block, np.int32)
    for b0 in range(r0, r1, block):
        b1 = min(b0 + block, r1)
        for qi in range(q0, q1):
            s = qi * nparts + p
            _distances(db, b0, b1, q, qi, dist)
            o = offsets[s]
            for i in range(b1 - b0):
                if dist[i] <= r:
                    out_d[o] = dist[i]
                    out_i[o] = dbids[b0 + i]
                    o += 1
            offsets[s] = o


@_jit
def _radius_count_serial(ngroups, nparts, db, q, r, block, counts):  # pragma: no cover
    for t in range(ngroups * nparts):
        _radius_count_task(t, ngroups, nparts, db, q, r, block, counts)


@_jit_parallel
def _radius_count_parallel(ngroups, nparts, db, q, r, block, counts):  # pragma: no cover
    for t in prange(ngroups * nparts):
        _radius_count_task(t, ngroups, nparts, db, q, r, block, counts)


@_jit
def _radius_fill_serial(ngroups, nparts, db, dbids, q, r, block, offsets, lims, ascending, out_d, out_i):  # pragma: no cover
    for t in range(ngroups * nparts):
        _radius_fill_task(t, ngroups, nparts, db, dbids, q, r, block, offsets, out_d, out_i)
    for qi in range(q.shape[0]):
        _sort_pairs(out_d[lims[qi]:lims[qi + 1]], out_i[lims[qi]:lims[qi + 1]], ascending)


@_jit_parallel
def _radius_fill_parallel(ngroups, nparts, db, dbids, q, r, block, offsets, lims, ascending, out_d, out_i):  # pragma: no cover
    for t in prange(ngroups * nparts):
        _radius_fill_task(t, ngroups, nparts, db, dbids, q, r, block, offsets, out_d, out_i)
    for qi in prange(q.shape[0]):
        _sort_pairs(out_d[lims[qi]:lims[qi + 1]], out_i[lims[qi]:lims[qi + 1]], ascending)


# -- rank --------------------------------------------------------------------
@_jit
def _rank_query(db, dbids, perm, q, qi, dist, limit, out_d, out_i):  # pragma: no cover
    """Order the whole database for query ``qi`` by ``(distance, id)`` and
    write the first ``limit`` ids (and distances, if ``out_d`` has columns).

    A counting sort by distance that visits rows in ascending id order
    (``perm``, or row order when ``perm`` is empty because the ids already
    ascend), so ties come out by id with no comparison sort.
    """
    n = db.shape[0]
    _distances(db, 0, n, q, qi, dist)
    lo = dist[0]
    hi = dist[0]
    for i in range(1, n):
        lo = min(lo, dist[i])
        hi = max(hi, dist[i])
    pos = np.zeros(hi - lo + 2, np.int64)
    for i in range(n):
        pos[dist[i] - lo + 1] += 1
    for b in range(1, hi - lo + 2):
        pos[b] += pos[b - 1]
    want_d = out_d.shape[1] > 0
    if perm.shape[0] == 0:
        for row in range(n):
            b = dist[row] - lo
            p = pos[b]
            pos[b] = p + 1
            if p < limit:
                out_i[qi, p] = dbids[row]
                if want_d:
                    out_d[qi, p] = dist[row]
    else:
        for j in range(n):
            row = perm[j]
            b = dist[row] - lo
            p = pos[b]
            pos[b] = p + 1
            if p < limit:
                out_i[qi, p] = dbids[row]
                if want_d:
                    out_d[qi, p] = dist[row]


@_jit
def _rank_serial(db, dbids, perm, q, limit, out_d, out_i):  # pragma: no cover
    dist = np.empty(db.shape[0], np.int32)
    for qi in range(q.shape[0]):
        _rank_query(db, dbids, perm, q, qi, dist, limit, out_d, out_i)


@_jit_parallel
def _rank_parallel(ntasks, db, dbids, perm, q, limit, out_d, out_i):  # pragma: no cover
    nq = q.shape[0]
    for t in prange(ntasks):
        dist = np.empty(db.shape[0], np.int32)
        for qi in range(nq * t // ntasks, nq * (t + 1) // ntasks):
            _rank_query(db, dbids, perm, q, qi, dist, limit, out_d, out_i)


@_jit_parallel
def _rank_parts_parallel(nparts, db, dbids, perm, q, limit, out_d, out_i):  # pragma: no cover
    """:func:`_rank_query` for few queries: each query's distances, histogram
    and scatter are split between ``nparts`` threads (a parallel counting
    sort: part ``p`` scatters the ``p``-th slice of the id order, starting at
    the positions left free by the parts before it)."""
    n = db.shape[0]
    dist = np.empty(n, np.int32)
    lows = np.empty(nparts, np.int32)
    highs = np.empty(nparts, np.int32)
    want_d = out_d.shape[1] > 0
    for qi in range(q.shape[0]):
        for p in prange(nparts):
            r0 = n * p // nparts
            r1 = n * (p + 1) // nparts
            _distances(db, r0, r1, q, qi, dist[r0:r1])
            lo = np.int32(2147483647)
            hi = np.int32(0)
            for i in range(r0, r1):
                lo = min(lo, dist[i])
                hi = max(hi, dist[i])
            lows[p] = lo
            highs[p] = hi
        lo = lows.min()
        nb = highs.max() - lo + 1
        hist = np.zeros((nparts, nb), np.int64)
        for p in prange(nparts):
            j0 = n * p // nparts
            j1 = n * (p + 1) // nparts
            if perm.shape[0] == 0:
                for j in range(j0, j1):
                    hist[p, dist[j] - lo] += 1
            else:
                for j in range(j0, j1):
                    hist[p, dist[perm[j]] - lo] += 1
        start = 0
        for b in range(nb):  # hist[p, b] becomes part p's first slot at distance lo + b
            for p in range(nparts):
                c = hist[p, b]
                hist[p, b] = start
                start += c
        for p in prange(nparts):
            j0 = n * p // nparts
            j1 = n * (p + 1) // nparts
            for j in range(j0, j1):
                row = j if perm.shape[0] == 0 else perm[j]
                b = dist[row] - lo
                pos = hist[p, b]
                hist[p, b] = pos + 1
                if pos < limit:
                    out_i[qi, pos] = dbids[row]
                    if want_d:
                        out_d[qi, pos] = dist[row]


# -- the store ---------------------------------------------------------------
def _effective_threads(threads: int) -> int:
    return max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS))


def _launch(threads: int, serial: Callable, parallel: Callable, serial_args: tuple, parallel_args: tuple) -> Any:
    """Run ``serial`` with one thread (no lock: concurrent callers run side
    by side), else ``parallel`` on ``threads`` Numba threads, one launch at a
    time, restoring the caller's Numba thread count."""
    if threads <= 1:
        return serial(*serial_args)
    with _LAUNCH_LOCK:
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            return parallel(*parallel_args)
        finally:
            numba.set_num_threads(previous)


def _usable(q: np.ndarray) -> np.ndarray:
    """``q`` as a writeable, aligned array: Numba compiles read-only and
    unaligned arrays as distinct types, so passing one would compile every
    kernel again. Query batches are small next to the database."""
    if q.flags.writeable and q.flags.aligned:
        return q
    return np.array(q, dtype=np.uint64, order="C")


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
    Searches may run concurrently with each other and with ``add``: ``add``
    writes only past the rows a running search reads, or into a new buffer,
    and publishes the new size under a lock, so a search sees the store
    before or after an ``add``.
    """

    def __init__(self, nbits: int) -> None:
        self._nbits = int(nbits)
        self._words = (self._nbits + 63) // 64
        self._lock = threading.Lock()
        self._codes = np.zeros((0, self._words), dtype=np.uint64)
        self._ids = np.zeros(0, dtype=np.int64)
        self._n = 0
        self._ascending = True  # ids increase with the row
        self._perm: np.ndarray | None = None  # argsort of the ids, when not ascending

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
            return self._codes[: self._n].copy()

    def add(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Append ``codes`` (uint64, ``(m, words)``) with ``ids`` (int64, ``(m,)``).

        The data are copied in; the internal buffers grow geometrically.
        """
        m = codes.shape[0]
        if m == 0:
            return
        with self._lock:
            n = self._n
            if n + m > self._codes.shape[0]:
                cap = max(n + m, 2 * self._codes.shape[0], 1024)
                new_codes = np.empty((cap, self._words), dtype=np.uint64)
                new_ids = np.empty(cap, dtype=np.int64)
                new_codes[:n] = self._codes[:n]
                new_ids[:n] = self._ids[:n]
                self._codes, self._ids = new_codes, new_ids
            self._codes[n : n + m] = codes
            self._ids[n : n + m] = ids
            ascending = self._ascending and bool(np.all(ids[1:] > ids[:-1]))
            if ascending and n:
                ascending = bool(ids[0] > self._ids[n - 1])
            self._ascending = ascending
            self._perm = None
            self._n = n + m

    def _snapshot(self, need_perm: bool) -> Tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """The rows present now: codes, ids, the id order (empty when the ids
        ascend) and whether the ids ascend."""
        with self._lock:
            n = self._n
            db = self._codes[:n]
            dbids = self._ids[:n]
            ascending = self._ascending
            if ascending or not need_perm:
                perm = np.zeros(0, dtype=np.int64)
            else:
                if self._perm is None:
                    self._perm = np.argsort(dbids, kind="stable").astype(np.int64, copy=False)
                perm = self._perm
        return db, dbids, perm, ascending

    # -- search -------------------------------------------------------------
    def knn(self, q: np.ndarray, k: int, threads: int) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query.

        Returns
        -------
        D : ndarray of int32, shape (nq, k)
            Distances by ``(distance, id)``; ``2**31 - 1`` past the last result.
        I : ndarray of int64, shape (nq, k)
            Ids; ``-1`` past the last result.
        """
        k = int(k)
        q = _usable(q)
        nq = q.shape[0]
        nthreads = _effective_threads(threads)
        cap = k + max(k, _SLACK)
        db, dbids, perm, ascending = self._snapshot(need_perm=cap >= self._n)
        n = db.shape[0]
        out_d = np.full((nq, k), _DISTANCE_PAD, dtype=np.int32)
        out_i = np.full((nq, k), _ID_PAD, dtype=np.int64)
        if nq == 0 or n == 0:
            return out_d, out_i
        if cap >= n:
            # The buffer would hold every row: rank the whole database instead.
            self._rank_into(db, dbids, perm, q, nthreads, min(k, n), out_d, out_i)
            return out_d, out_i
        ngroups, nparts = self._split(nq, n, nthreads)
        block = self._block()
        cap = min(cap, -(-n // nparts) + 1)  # a part never holds more than its rows
        chunk = max(ngroups, _STATE_BYTES // (12 * cap * nparts))
        for c0 in range(0, nq, chunk):
            qc = q[c0 : c0 + chunk]
            m = qc.shape[0]
            g = min(ngroups, m)
            states = m * nparts
            bd = np.empty((states, cap), dtype=np.int32)
            bi = np.empty((states, cap), dtype=np.int64)
            bcnt = np.zeros(states, dtype=np.int64)
            btau = np.full(states, self._nbits + 1, dtype=np.int64)
            btid = np.zeros(states, dtype=np.int64)
            args = (g, nparts, db, dbids, qc, k, block, bd, bi, bcnt, btau, btid, ascending,
                    out_d[c0 : c0 + m], out_i[c0 : c0 + m])
            _launch(g * nparts, _knn_serial, _knn_parallel, args, args)
        return out_d, out_i

    def radius(self, q: np.ndarray, r: int, threads: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within distance ``r`` of each query.

        Returns
        -------
        lims : ndarray of int64, shape (nq + 1,)
        D : ndarray of int32, shape (lims[-1],)
        I : ndarray of int64, shape (lims[-1],)
            Query ``j``'s results are ``D[lims[j]:lims[j+1]]``, ``I[...]``,
            sorted by ``(distance, id)``.
        """
        q = _usable(q)
        nq = q.shape[0]
        nthreads = _effective_threads(threads)
        db, dbids, _, ascending = self._snapshot(need_perm=False)
        n = db.shape[0]
        lims = np.zeros(nq + 1, dtype=np.int64)
        if nq == 0 or n == 0:
            return lims, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        r = min(int(r), self._nbits)  # every distance is <= nbits
        ngroups, nparts = self._split(nq, n, nthreads)
        ngroups = min(ngroups, nq)
        block = self._block()
        counts = np.zeros(nq * nparts, dtype=np.int64)
        _launch(ngroups * nparts, _radius_count_serial, _radius_count_parallel,
                (ngroups, nparts, db, q, r, block, counts), (ngroups, nparts, db, q, r, block, counts))
        offsets = np.zeros(nq * nparts + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        lims[:] = offsets[::nparts]
        out_d = np.empty(int(lims[-1]), dtype=np.int32)
        out_i = np.empty(int(lims[-1]), dtype=np.int64)
        starts = offsets[:-1].copy()
        args = (ngroups, nparts, db, dbids, q, r, block, starts, lims, ascending, out_d, out_i)
        _launch(ngroups * nparts, _radius_fill_serial, _radius_fill_parallel, args, args)
        return lims, out_d, out_i

    def rank(self, q: np.ndarray, threads: int) -> np.ndarray:
        """Every id, for each query, in ``(distance, id)`` order.

        Returns
        -------
        I : ndarray of int64, shape (nq, n)
        """
        q = _usable(q)
        nq = q.shape[0]
        db, dbids, perm, _ = self._snapshot(need_perm=True)
        n = db.shape[0]
        out_i = np.empty((nq, n), dtype=np.int64)
        if nq == 0 or n == 0:
            return out_i
        self._rank_into(db, dbids, perm, q, _effective_threads(threads), n, np.empty((nq, 0), np.int32), out_i)
        return out_i

    # -- helpers -------------------------------------------------------------
    def _block(self) -> int:
        return max(64, _BLOCK_BYTES // (8 * self._words))

    @staticmethod
    def _split(nq: int, n: int, nthreads: int) -> Tuple[int, int]:
        """(query groups, database parts) for ``nthreads``: split the database
        when it is large (a batch then reads it from memory once, and a
        single query uses every thread), else the queries."""
        if nthreads <= 1:
            return 1, 1
        if n >= _MIN_PART * nthreads:
            return 1, nthreads
        return min(nthreads, nq), 1

    def _rank_into(self, db: np.ndarray, dbids: np.ndarray, perm: np.ndarray, q: np.ndarray,
                   nthreads: int, limit: int, out_d: np.ndarray, out_i: np.ndarray) -> None:
        nq = q.shape[0]
        n = db.shape[0]
        if nthreads <= 1:
            _rank_serial(db, dbids, perm, q, limit, out_d, out_i)
        elif nq < nthreads and n >= _MIN_PART * nthreads:
            _launch(nthreads, _rank_serial, _rank_parts_parallel,
                    (db, dbids, perm, q, limit, out_d, out_i), (nthreads, db, dbids, perm, q, limit, out_d, out_i))
        else:
            t = min(nthreads, nq)
            _launch(t, _rank_serial, _rank_parallel,
                    (db, dbids, perm, q, limit, out_d, out_i), (t, db, dbids, perm, q, limit, out_d, out_i))
