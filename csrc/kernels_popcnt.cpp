// Level `popcnt`: the scalar kernels with the POPCNT instruction (SSE4.2 era,
// every x86-64 CPU since about 2008). Relies on: POPCNT.
#include "hamsearch/common.h"

#if HS_X86
#include "kernels_portable.h"

namespace hamsearch {
namespace {

using portable::HardwarePop;

HS_TARGET("popcnt")
void distances_popcnt(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t* out) {
    portable::distances_any<HardwarePop>(q, codes, n, w, out);
}

HS_TARGET("popcnt")
size_t filter_popcnt(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t tau, uint32_t* rows,
                     int32_t* dists) {
    return portable::filter_any<HardwarePop>(q, codes, n, w, tau, rows, dists);
}

HS_TARGET("popcnt")
void filter_batch_popcnt(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, size_t w, const int32_t* tau,
                         uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    portable::filter_each<filter_popcnt>(q, nq, codes, n, w, tau, rows, dists, stride, counts);
}

}  // namespace

const Kernels kKernelsPopcnt = {Isa::popcnt, distances_popcnt, filter_popcnt, filter_batch_popcnt,
                                nullptr, nullptr, nullptr};

}  // namespace hamsearch
#endif  // HS_X86
