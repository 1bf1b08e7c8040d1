// Level `scalar`: no instruction beyond the baseline of the build target.
// On x86 the baseline has no POPCNT instruction (the compiler would call a
// slow library routine), so the count is the classic SWAR bit trick; other
// architectures use the compiler builtin, which maps to their own instruction.
#include "kernels_portable.h"

namespace hamsearch {
namespace {

struct ScalarPop {
    static HS_INLINE int32_t count(uint64_t x) {
#if HS_X86 || (defined(_MSC_VER) && !defined(__clang__))
        x = x - ((x >> 1) & 0x5555555555555555ULL);
        x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
        x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
        return static_cast<int32_t>((x * 0x0101010101010101ULL) >> 56);
#else
        return __builtin_popcountll(x);
#endif
    }
};

void distances_scalar(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t* out) {
    portable::distances_any<ScalarPop>(q, codes, n, w, out);
}

size_t filter_scalar(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t tau, uint32_t* rows,
                     int32_t* dists) {
    return portable::filter_any<ScalarPop>(q, codes, n, w, tau, rows, dists);
}

void filter_batch_scalar(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, size_t w, const int32_t* tau,
                         uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    portable::filter_each<filter_scalar>(q, nq, codes, n, w, tau, rows, dists, stride, counts);
}

}  // namespace

const Kernels kKernelsScalar = {Isa::scalar, distances_scalar, filter_scalar, filter_batch_scalar,
                                nullptr, nullptr, nullptr};

}  // namespace hamsearch
