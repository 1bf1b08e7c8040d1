// CPU feature detection and the choice of kernels. The CPU is asked once at
// start-up (CPUID, and XGETBV for the register state the OS saves, so an OS
// that disables AVX or AVX-512 is respected).
#include <atomic>
#include <stdexcept>

#include "hamsearch/common.h"

#if HS_X86
#if defined(_MSC_VER) && !defined(__clang__)
#include <immintrin.h>
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace hamsearch {

namespace {

#if HS_X86
void cpuid(unsigned leaf, unsigned sub, unsigned regs[4]) {
#if defined(_MSC_VER) && !defined(__clang__)
    int r[4];
    __cpuidex(r, static_cast<int>(leaf), static_cast<int>(sub));
    for (int i = 0; i < 4; ++i) regs[i] = static_cast<unsigned>(r[i]);
#else
    regs[0] = regs[1] = regs[2] = regs[3] = 0;
    __cpuid_count(leaf, sub, regs[0], regs[1], regs[2], regs[3]);
#endif
}

uint64_t xgetbv0() {
#if defined(_MSC_VER) && !defined(__clang__)
    return _xgetbv(0);
#else
    unsigned eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<uint64_t>(edx) << 32) | eax;
#endif
}
#endif

Isa detect_uncached() {
#if HS_X86
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    cpuid(1, 0, r);
    const bool popcnt = (r[2] >> 23) & 1u;
    const bool osxsave = (r[2] >> 27) & 1u;
    const bool avx = (r[2] >> 28) & 1u;
    if (!popcnt) return Isa::scalar;
    if (!(osxsave && avx) || max_leaf < 7) return Isa::popcnt;
    const uint64_t xcr0 = xgetbv0();
    const bool os_avx = (xcr0 & 0x6) == 0x6;       // XMM and YMM state
    const bool os_avx512 = (xcr0 & 0xE6) == 0xE6;  // plus opmask, ZMM_Hi256, Hi16_ZMM
    cpuid(7, 0, r);
    const bool avx2 = (r[1] >> 5) & 1u;
    const bool avx512f = (r[1] >> 16) & 1u;
    const bool avx512bw = (r[1] >> 30) & 1u;
    const bool vpopcntdq = (r[2] >> 14) & 1u;
    if (!(os_avx && avx2)) return Isa::popcnt;
    if (os_avx512 && avx512f && avx512bw && vpopcntdq) return Isa::avx512_vpopcntdq;
    return Isa::avx2;
#else
    return Isa::scalar;
#endif
}

const Kernels* kernels_of(Isa isa) {
    switch (isa) {
        case Isa::scalar:
            return &kKernelsScalar;
#if HS_X86
        case Isa::popcnt:
            return &kKernelsPopcnt;
        case Isa::avx2:
            return &kKernelsAvx2;
        case Isa::avx512_vpopcntdq:
            return &kKernelsAvx512;
#endif
        default:
            return nullptr;
    }
}

std::atomic<const Kernels*>& active_slot() {
    static std::atomic<const Kernels*> slot{kernels_of(detect_isa())};
    return slot;
}

}  // namespace

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::scalar:
            return "scalar";
        case Isa::popcnt:
            return "popcnt";
        case Isa::avx2:
            return "avx2";
        case Isa::avx512_vpopcntdq:
            return "avx512_vpopcntdq";
    }
    return "unknown";
}

Isa isa_from_name(const std::string& name) {
    for (int i = 0; i < kNumIsa; ++i) {
        if (name == isa_name(static_cast<Isa>(i))) return static_cast<Isa>(i);
    }
    throw std::invalid_argument("unknown ISA level '" + name +
                                "'; expected scalar, popcnt, avx2 or avx512_vpopcntdq");
}

Isa detect_isa() {
    static const Isa detected = detect_uncached();
    return detected;
}

std::vector<Isa> available_isas() {
    std::vector<Isa> out;
    const int best = static_cast<int>(detect_isa());
    for (int i = 0; i <= best; ++i) {
        if (kernels_of(static_cast<Isa>(i)) != nullptr) out.push_back(static_cast<Isa>(i));
    }
    return out;
}

const Kernels& active_kernels() { return *active_slot().load(std::memory_order_acquire); }

void set_isa(Isa isa) {
    const Kernels* k = kernels_of(isa);
    if (k == nullptr || static_cast<int>(isa) > static_cast<int>(detect_isa())) {
        throw std::invalid_argument(std::string("ISA level '") + isa_name(isa) +
                                    "' is not supported by this CPU or build");
    }
    active_slot().store(k, std::memory_order_release);
}

}  // namespace hamsearch
