# distutils: language = c++
# cython: language_level=3, boundscheck=False, wraparound=False
"""An extension that embeds hamsearch's C++ core through its Cython
declarations (hamsearch/libhamsearch.pxd) and searches with the GIL released,
so that Python threads search in parallel.

- FileSearcher opens an index file that hamsearch.save (or a C++ program)
  wrote and answers k-nearest-neighbour queries from it;
- knn builds an index from arrays and queries it, all of it without the GIL.

Built by setup.py beside it against the installed package (README.md here).
"""
import os

import numpy as np

from cython.operator cimport dereference as deref
from libc.stdint cimport int32_t, int64_t, uint64_t
from libcpp.memory cimport unique_ptr
from libcpp.string cimport string

from hamsearch.libhamsearch cimport (HAMSEARCH_VERSION_STRING, FlatIndex, IndexFile, MIHIndex, kKindMIH,
                                     kMaxBits)

#: The version of the headers this module was compiled against.
version = HAMSEARCH_VERSION_STRING.decode()


cdef tuple _results(size_t nq, size_t k):
    return np.empty((nq, k), dtype=np.int32), np.empty((nq, k), dtype=np.int64)


cdef const uint64_t[:, ::1] _codes(x, size_t words, str what):
    a = np.ascontiguousarray(x)
    if a.dtype != np.uint64 or a.ndim != 2 or <size_t>a.shape[1] != words:
        raise ValueError(f"{what}: expected a uint64 array of shape (n, {words}) (hamsearch.pack's codes), "
                         f"got {a.dtype} of shape {a.shape}")
    return a


cdef class FileSearcher:
    """k-NN over an index file, searched without the GIL (mapped by default)."""
    cdef unique_ptr[FlatIndex] flat
    cdef unique_ptr[MIHIndex] mih
    cdef readonly int64_t nbits
    cdef readonly size_t words

    def __init__(self, path, *, bint mmap=True, bint verify=True):
        cdef string p = os.fsencode(path)
        cdef unique_ptr[IndexFile] f
        with nogil:
            f.reset(new IndexFile(p))  # a bad file raises ValueError, an OS refusal RuntimeError
            self.nbits = deref(f).header().nbits
            if deref(f).header().kind == kKindMIH:
                self.mih.reset(new MIHIndex(self.nbits, <int64_t>deref(f).header().m))
                deref(f).load_into(deref(self.mih), mmap, verify)
            else:
                self.flat.reset(new FlatIndex(self.nbits))
                deref(f).load_into(deref(self.flat), mmap, verify)
        self.words = <size_t>((self.nbits + 63) // 64)

    def __len__(self):
        return self.mih.get().size() if self.mih else self.flat.get().size()

    def knn(self, queries, size_t k, size_t threads=1):
        """(D, I) of shape (nq, k), sorted by (distance, id), as Index.query returns them."""
        if k < 1:
            raise ValueError(f"k: expected k >= 1, got {k}")
        cdef const uint64_t[:, ::1] q = _codes(queries, self.words, "queries")
        cdef size_t nq = q.shape[0]
        D, I = _results(nq, k)
        if nq == 0:
            return D, I
        cdef int32_t[:, ::1] d = D
        cdef int64_t[:, ::1] i = I
        with nogil:
            if self.mih:
                self.mih.get().knn(&q[0, 0], nq, k, threads, &d[0, 0], &i[0, 0])
            else:
                self.flat.get().knn(&q[0, 0], nq, k, threads, &d[0, 0], &i[0, 0])
        return D, I


def knn(codes, ids, queries, int64_t nbits, size_t k, size_t threads=1):
    """Builds a FlatIndex of codes (n x words uint64) with ids (n int64) and
    returns the (D, I) of its k nearest per query, all without the GIL."""
    if nbits < 1 or nbits > kMaxBits:
        raise ValueError(f"nbits: expected 1 <= nbits <= {kMaxBits}, got {nbits}")
    if k < 1:
        raise ValueError(f"k: expected k >= 1, got {k}")
    cdef size_t words = <size_t>((nbits + 63) // 64)
    cdef const uint64_t[:, ::1] c = _codes(codes, words, "codes")
    cdef const uint64_t[:, ::1] q = _codes(queries, words, "queries")
    cdef const int64_t[::1] idv = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    cdef size_t n = c.shape[0], nq = q.shape[0]
    if <size_t>idv.shape[0] != n:
        raise ValueError(f"ids: expected {n} ids, one per code, got {idv.shape[0]}")
    D, I = _results(nq, k)
    if nq == 0:
        return D, I
    cdef int32_t[:, ::1] d = D
    cdef int64_t[:, ::1] i = I
    cdef unique_ptr[FlatIndex] index
    with nogil:
        index.reset(new FlatIndex(nbits))
        if n:
            index.get().add(&c[0, 0], &idv[0], n)  # bad pad bits or negative ids raise ValueError
        index.get().knn(&q[0, 0], nq, k, threads, &d[0, 0], &i[0, 0])
    return D, I
