# Cython declarations of hamsearch's C++ API (<hamsearch/hamsearch.h>), for
# extensions that search without the GIL:
#
#     from hamsearch.libhamsearch cimport FlatIndex
#
# found by cythonize(..., include_path=[hamsearch.get_include()]), compiled
# with include_dirs=[hamsearch.get_include()], linked with
# library_dirs=[hamsearch.get_library_dir()], libraries=["hamsearch"],
# language="c++" and C++17 (examples/cython/ is a complete module). Every
# function here is nogil; those that can fail are `except +`, so a C++
# std::invalid_argument (a bad argument, a bad file: FormatError) reaches
# Python as ValueError and std::runtime_error (FileError: the operating system
# refused) as RuntimeError. Codes are n x words() uint64 words, row-major, bit
# i in word i // 64 at position i % 64, the pad bits above nbits zero: the
# arrays hamsearch.pack returns. Thread safety as in the C++ headers: searches
# run concurrently; add, remove and load wait for them and exclude each other.
# FlatIndex and MIHIndex own a mutex: hold them by pointer (new / unique_ptr).
# The methods that can throw are declared without their C++ const (Cython
# reads `except + const` as a handler named const): call them through a
# non-const pointer or reference.
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libcpp cimport bool
from libcpp.string cimport string
from libcpp.utility cimport pair
from libcpp.vector cimport vector


cdef extern from "hamsearch/hamsearch.h" nogil:
    # <hamsearch/version.h>
    const int HAMSEARCH_VERSION_MAJOR
    const int HAMSEARCH_VERSION_MINOR
    const int HAMSEARCH_VERSION_PATCH
    const int HAMSEARCH_VERSION_NUMBER
    const char* HAMSEARCH_VERSION_STRING


cdef extern from "hamsearch/hamsearch.h" namespace "hamsearch" nogil:
    # <hamsearch/constants.h>
    const int64_t kMaxBits
    const size_t kMaxThreads
    const int32_t kDistancePad
    const int64_t kIdPad
    const uint64_t kIdLimit

    # <hamsearch/common.h>: the kernel levels, lowest first.
    enum class Isa(int):
        scalar
        popcnt
        avx2
        avx512_vpopcntdq

    const char* isa_name(Isa isa)
    Isa isa_from_name(const string& name) except +
    Isa detect_isa()
    vector[Isa] available_isas()
    # Process-wide, like hamsearch.isa(): every index in this extension's copy
    # of the core (not the Python module's, which has its own).
    void set_isa(Isa isa) except +

    # <hamsearch/flat_index.h>
    cppclass RadiusResult:
        vector[int64_t] lims  # nq + 1 offsets
        vector[int32_t] D     # distances, per query ascending
        vector[int64_t] I     # ids, ties ascending

    cppclass FlatIndex:
        FlatIndex(int64_t nbits) except +
        int64_t nbits() const
        size_t words() const
        size_t size() const
        bool mapped() const
        vector[int64_t] ids() except +
        vector[uint64_t] codes() except +
        # n codes (n x words()) with their non-negative, unique ids.
        void add(const uint64_t* codes, const int64_t* ids, size_t n) except +
        size_t remove(const int64_t* ids, size_t count) except +
        # D, I: nq x k, sorted by (distance, id), padded with (kDistancePad, kIdPad).
        void knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) except +
        RadiusResult radius(const uint64_t* q, size_t nq, int64_t r, size_t threads) except +

    # <hamsearch/mih_index.h>
    cppclass MIHIndex:
        MIHIndex(int64_t nbits, int64_t m) except +  # m = 0: automatic
        int64_t nbits() const
        int64_t m() const
        size_t words() const
        size_t size() const
        bool mapped() const
        FlatIndex& flat()
        void add(const uint64_t* codes, const int64_t* ids, size_t n) except +
        size_t remove(const int64_t* ids, size_t count) except +
        void set_scan_fraction(double f) except +
        # As FlatIndex's; fallbacks (if given): how many queries the scan answered.
        void knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) except +
        void knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I,
                 size_t* fallbacks) except +
        RadiusResult radius(const uint64_t* q, size_t nq, int64_t r, size_t threads) except +
        RadiusResult radius(const uint64_t* q, size_t nq, int64_t r, size_t threads, size_t* fallbacks) except +
        size_t table_bytes() const

    # <hamsearch/format.h>: the index files hamsearch.save and hamsearch.load use.
    const uint32_t kKindFlat
    const uint32_t kKindMIH

    cppclass FileHeader:
        uint32_t kind
        int64_t nbits
        uint64_t count
        uint64_t next_id
        uint64_t m

    cppclass IndexFile:
        IndexFile(const string& path) except +  # opens and checks the header
        const FileHeader& header() const
        void close()
        # Into an empty index of the file's nbits (the MIHIndex overload takes
        # either kind); mmap: searched in place; verify: the data checked first.
        void load_into(FlatIndex& index, bool mmap, bool verify) except +
        void load_into(MIHIndex& index, bool mmap, bool verify) except +

    # Atomic: a reader sees the old file or the new one, never a mixture.
    void save_index(const FlatIndex& index, const string& path, uint64_t next_id) except +
    void save_index(const MIHIndex& index, const string& path, uint64_t next_id) except +
