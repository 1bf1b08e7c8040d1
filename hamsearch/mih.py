"""Exact multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012).

The codes are split into ``m`` disjoint substrings, one hash table each. By
the pigeonhole principle a code within distance ``r`` of a query is within
``floor(r / m)`` of it in at least one substring, so probing the buckets
within a growing substring radius and verifying every candidate with the full
popcount finds exactly the codes a flat scan finds.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple


from . import _backend
from ._index import _Index
from ._validate import check_m, check_nbits

__all__ = ["MIHIndex"]


class MIHIndex(_Index):
    """Exact Hamming search by multi-index hashing; the same answers as
    :class:`FlatIndex`, far faster where neighbours are near.

    Parameters
    ----------
    nbits : int
        Bits per code, 1 to 2**20.
    m : int or None, optional
        Substrings (hash tables), ``ceil(nbits / 64) <= m <= nbits``. None
        chooses ``round(nbits / log2(n))`` from the index size each time the
        tables are built, as the paper does (substrings of about ``log2(n)``
        bits, so that a bucket holds about one code), but at most
        ``floor((8 * W + 8) / 4.65)`` tables (3 at 64 bits, 5 at 128, 8 at
        256; ``W = ceil(nbits / 64)``), so that the tables cost no more than
        the codes and ids: memory at most about twice a :class:`FlatIndex`'s.
    backend : {"auto", "native", "numba"}, optional
        As for :class:`FlatIndex`: ``"auto"`` follows
        ``HAMSEARCH_IMPLEMENTATION``; the native core and the Numba kernels
        give the same results.
    threads : int or None, optional
        Default worker threads; None uses every usable core.

    Notes
    -----
    k-NN grows the substring radius ``s`` one table at a time; after table
    ``j`` at radius ``s`` every code within ``m*s + j`` has been verified, and
    the search stops as soon as the k-th verified distance is within that
    bound, so ties are complete and break by id as in the flat scan.
    ``radius(q, r)`` probes substring radius ``s`` in table ``j`` for every
    ``m*s + j <= r`` (the pigeonhole bound). ``rank`` uses the flat scan.

    Each query is priced before it probes: its distances to a fixed sample
    of the codes (one in 1024, at most 256, taken when the tables are built)
    predict how far its k-th neighbour lies, hence what probing would cost.
    A query predicted to cost more than half a scan (far neighbours: uniform
    random codes, or k beyond its cluster) is answered by the flat scan, in
    one blocked batch with the others, after a peek of at most 1/16 of a
    scan: it probes as the search would, and goes on with the tables if the
    codes it finds that near, weighed by how likely the peek was to find
    them, reach k (clustered codes' few near neighbours are invisible to a
    sample). Where the codes have no local structure (the codes sharing a
    substring with a sampled code are no nearer to it than uniform codes
    would be), a peek that found no code nearer than predicted stops after
    radius 0. A peek stops at the end of a radius, from radius 1 on, once
    even the upper bound of what its near codes estimate is a cluster of
    fewer than k, or where the next radius is beyond it and what it could
    count there falls short of k. A query predicted cheaper probes within
    half a scan and gives up to the scan past it. Once half of the first
    ``nq // 16`` queries of a batch that probed (at least 4, at most 16)
    have given up, a peek that found no code near enough included, the rest
    go straight to the scan. Batches under 16 queries probe on one thread.
    A radius query whose sampled codes within ``r`` predict more than half a
    scan of probes and candidates goes to the scan before any probe. So a wrong prediction costs at most 1/16 of a scan (the
    peek) or 1/2 (the budget), and the answers are the same either way.
    ``last_fallbacks`` counts the queries of the calling thread's last
    ``query`` or ``radius`` call that the scan answered. Tables are (re)built
    on the first search after an ``add``. Thread safety as for
    :class:`FlatIndex`.

    Memory: the codes and ids as in :class:`FlatIndex` (``8 * W + 8`` bytes
    a code), plus per table one 4-byte entry a code (its row, and the low key
    bits the row leaves room for) and a directory of one 4-byte offset per
    4 to 32 codes, the longest that keeps ``m`` tables within ``8 * W + 8``
    bytes a code: about ``8 * W + 8 + 4.65 * m`` bytes a code at most, under
    twice a :class:`FlatIndex` with the default ``m`` (measured at 10^7 codes:
    31.4, 46 and 77 bytes at 64, 128 and 256 bits against 16, 24 and 40).
    """

    def __init__(
        self,
        nbits: int,
        m: Optional[int] = None,
        *,
        backend: Optional[str] = "auto",
        threads: Optional[int] = None,
    ) -> None:
        self._m = check_m(m, check_nbits(nbits))
        super().__init__(nbits, backend=backend, threads=threads)

    _kind = "mih"

    def _new_store(self) -> Any:
        if self._backend == "numba":
            from . import _numba

            return _numba.MIHStore(self._nbits, self._m or 0)
        return _backend.native_module().MIHIndex(self._nbits, self._m or 0)

    @property
    def m(self) -> int:
        """Substrings in use for the current size (the ``m`` given, or the automatic choice)."""
        return int(self._store.effective_m())

    @property
    def substrings(self) -> List[Tuple[int, int]]:
        """(first bit, length) of each substring for the current size."""
        return [(int(b), int(n)) for b, n in self._store.substrings()]

    @property
    def last_fallbacks(self) -> int:
        """Queries of the calling thread's last ``query`` or ``radius`` call
        answered by the flat scan (each thread sees its own calls' counts)."""
        return self._last_fallbacks()
