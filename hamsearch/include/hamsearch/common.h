// Shared definitions of the native core: ISA levels, the kernel table, and the
// compiler attributes that compile one function for a given instruction set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define HS_X86 1
#else
#define HS_X86 0
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define HS_TARGET(x)
#define HS_INLINE __forceinline
#define HS_LIKELY(x) (x)
#define HS_UNLIKELY(x) (x)
#else
#define HS_TARGET(x) __attribute__((target(x)))
#define HS_INLINE inline __attribute__((always_inline))
#define HS_LIKELY(x) __builtin_expect(!!(x), 1)
#define HS_UNLIKELY(x) __builtin_expect(!!(x), 0)
#endif

namespace hamsearch {

/// Asks the kernel to back [p, p + bytes) with huge pages where it can
/// (Linux: madvise MADV_HUGEPAGE on the whole pages inside the range, for
/// ranges of 4 MiB and more; a no-op elsewhere and on failure). Pages
/// touched after it come in huge. With collapse, pages touched before
/// (memory the allocator reuses) are collapsed into huge ones at once where
/// the kernel can (MADV_COLLAPSE, Linux 6.1 on); otherwise they keep their
/// size. A scan over 4 KiB pages stalls at every page boundary (the
/// hardware prefetcher stops there) and misses the TLB: one query over 10^6
/// codes of 256 bits measured up to 1.2x faster on huge pages (Zen 4). A
/// large result written once faults a page at a time: 20 rankings of 10^6
/// ids (160 MB) took 40,000 faults, half the call's time, on 4 KiB pages.
void advise_huge_pages(void* p, size_t bytes, bool collapse) noexcept;

/// An allocator that leaves elements default-initialised (no zeroing of
/// integers): for outputs every element of which is written before it is read,
/// so that a large result is touched once, by the threads that fill it,
/// instead of first by a serial zeroing pass. A large block is advised for
/// huge pages (advise_huge_pages) before anything touches it.
template <class T, class A = std::allocator<T>>
struct DefaultInitAllocator : A {
    template <class U>
    struct rebind {
        using other = DefaultInitAllocator<U, typename std::allocator_traits<A>::template rebind_alloc<U>>;
    };
    using A::A;
    typename std::allocator_traits<A>::pointer allocate(size_t n) {
        auto p = A::allocate(n);
        advise_huge_pages(static_cast<void*>(p), n * sizeof(T), false);
        return p;
    }
    template <class U>
    void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        std::allocator_traits<A>::construct(static_cast<A&>(*this), p, std::forward<Args>(args)...);
    }
};

/// A vector whose resize() does not zero its new elements (see DefaultInitAllocator).
template <class T>
using UninitVector = std::vector<T, DefaultInitAllocator<T>>;

/// Kernel levels, lowest first. Each level implies the ones below it.
enum class Isa : int { scalar = 0, popcnt = 1, avx2 = 2, avx512_vpopcntdq = 3 };

constexpr int kNumIsa = 4;

/// Distances of one query to `n` codes of `w` words each:
/// out[i] = popcount(q ^ codes[i]) summed over the words.
using DistancesFn = void (*)(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t* out);

/// Rows i < n whose distance to `q` is <= tau, in ascending order. Writes the
/// row numbers to rows[] and their distances to dists[] (each with room for n
/// entries) and returns how many there are.
using FilterFn = size_t (*)(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t tau,
                            uint32_t* rows, int32_t* dists);

/// The filter of several queries against the same codes, so that one load of
/// a code serves every query of the batch: for each query j < nq, the rows
/// i < n whose distance to q[j * w ...] is <= tau[j], in ascending order, go
/// to rows[j * stride ...] and dists[j * stride ...] (stride >= n), and
/// counts[j] is how many. The same rows as nq calls of FilterFn.
using FilterBatchFn = void (*)(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, size_t w,
                               const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride, size_t* counts);

/// The most queries a scan hands FilterBatchFn at once: bounds its output
/// buffers (kFilterBatch times a block of rows); the kernels take any nq.
constexpr size_t kFilterBatch = 8;

/// Byte-sliced codes: a copy of a run of codes laid out for FilterSlicedFn.
/// Returns the bytes of scratch that slice_codes needs for n codes of w words,
/// or 0 where the level has no sliced kernel for w.
using SlicedBytesFn = size_t (*)(size_t n, size_t w);
/// Writes the sliced form of codes[0, n) to out (sliced_bytes(n, w) bytes).
using SliceCodesFn = void (*)(const uint64_t* codes, size_t n, size_t w, uint8_t* out);
/// FilterBatchFn over codes that slice_codes has also laid out in `sliced`:
/// the same rows, for a cost that pays where many queries share one slicing.
using FilterSlicedFn = void (*)(const uint64_t* q, size_t nq, const uint8_t* sliced, const uint64_t* codes, size_t n,
                                size_t w, const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride,
                                size_t* counts);

/// One ISA level's kernels.
struct Kernels {
    Isa isa;
    DistancesFn distances;
    FilterFn filter;
    FilterBatchFn filter_batch;
    /// Null where the level has no sliced kernels at all.
    SlicedBytesFn sliced_bytes;
    SliceCodesFn slice_codes;
    FilterSlicedFn filter_sliced;
};

extern const Kernels kKernelsScalar;
#if HS_X86
extern const Kernels kKernelsPopcnt;
extern const Kernels kKernelsAvx2;
extern const Kernels kKernelsAvx512;
#endif

const char* isa_name(Isa isa);
/// Parses a level name; throws std::invalid_argument for an unknown name.
Isa isa_from_name(const std::string& name);
/// The highest level this CPU and operating system support.
Isa detect_isa();
/// Every level this CPU supports, lowest first.
std::vector<Isa> available_isas();
/// The kernels in use (chosen once at start-up; see set_isa).
const Kernels& active_kernels();
/// Selects the kernels of `isa`; throws std::invalid_argument if the CPU lacks it.
void set_isa(Isa isa);

}  // namespace hamsearch
