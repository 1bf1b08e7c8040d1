// Level `avx512_vpopcntdq`: eight 64-bit popcounts per instruction (VPOPCNTQ),
// eight codes per step for widths of 1, 2 and 4 words, masked loads for any
// other width. Relies on: AVX512F (VPERMT2Q, VPCMPQ into mask registers,
// VPMOVQD), AVX512BW (target set of the compilers' AVX-512 intrinsics),
// AVX512_VPOPCNTDQ, POPCNT for the tails.
#include "hamsearch/common.h"

#if HS_X86
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's own avx512fintrin.h trips -Wmaybe-uninitialized (_mm512_undefined).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernels_portable.h"

#define HS_AVX512 HS_TARGET("avx512f,avx512bw,avx512vpopcntdq,avx2,popcnt")

namespace hamsearch {
namespace {

using portable::HardwarePop;

HS_AVX512 HS_INLINE __m512i load(const uint64_t* p) { return _mm512_loadu_si512(reinterpret_cast<const void*>(p)); }

HS_AVX512 HS_INLINE __m512i pop_xor(const uint64_t* c, __m512i q) {
    return _mm512_popcnt_epi64(_mm512_xor_si512(load(c), q));
}

// Eight codes of W words -> eight 64-bit distances, lanes in code order.
template <size_t W>
struct Group;

template <>
struct Group<1> {
    static HS_AVX512 HS_INLINE __m512i query(const uint64_t* q) { return _mm512_set1_epi64(static_cast<long long>(q[0])); }
    static HS_AVX512 HS_INLINE __m512i dist(const uint64_t* c, __m512i q) { return pop_xor(c, q); }
};

template <>
struct Group<2> {
    static HS_AVX512 HS_INLINE __m512i query(const uint64_t* q) {
        const long long a = static_cast<long long>(q[0]), b = static_cast<long long>(q[1]);
        return _mm512_setr_epi64(a, b, a, b, a, b, a, b);
    }
    static HS_AVX512 HS_INLINE __m512i dist(const uint64_t* c, __m512i q) {
        const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        const __m512i odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
        const __m512i p0 = pop_xor(c, q);      // codes 0..3, two lanes each
        const __m512i p1 = pop_xor(c + 8, q);  // codes 4..7
        return _mm512_add_epi64(_mm512_permutex2var_epi64(p0, even, p1), _mm512_permutex2var_epi64(p0, odd, p1));
    }
};

template <>
struct Group<4> {
    static HS_AVX512 HS_INLINE __m512i query(const uint64_t* q) {
        const long long a = static_cast<long long>(q[0]), b = static_cast<long long>(q[1]);
        const long long c = static_cast<long long>(q[2]), d = static_cast<long long>(q[3]);
        return _mm512_setr_epi64(a, b, c, d, a, b, c, d);
    }
    static HS_AVX512 HS_INLINE __m512i dist(const uint64_t* c, __m512i q) {
        const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        const __m512i odd = _mm512_setr_epi64(1, 3, 5, 7, 9, 11, 13, 15);
        // Pair sums: s01 = [c0 w01, c0 w23, c1 w01, c1 w23, ..., c3 w23].
        const __m512i p0 = pop_xor(c, q), p1 = pop_xor(c + 8, q);
        const __m512i p2 = pop_xor(c + 16, q), p3 = pop_xor(c + 24, q);
        const __m512i s01 = _mm512_add_epi64(_mm512_permutex2var_epi64(p0, even, p1), _mm512_permutex2var_epi64(p0, odd, p1));
        const __m512i s23 = _mm512_add_epi64(_mm512_permutex2var_epi64(p2, even, p3), _mm512_permutex2var_epi64(p2, odd, p3));
        return _mm512_add_epi64(_mm512_permutex2var_epi64(s01, even, s23), _mm512_permutex2var_epi64(s01, odd, s23));
    }
};

HS_AVX512 HS_INLINE int32_t dist_any(const uint64_t* q, const uint64_t* c, size_t w) {
    __m512i acc = _mm512_setzero_si512();
    size_t j = 0;
    for (; j + 8 <= w; j += 8) acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(load(c + j), load(q + j))));
    if (j < w) {
        const __mmask8 m = static_cast<__mmask8>((1u << (w - j)) - 1u);
        const __m512i x = _mm512_xor_si512(_mm512_maskz_loadu_epi64(m, c + j), _mm512_maskz_loadu_epi64(m, q + j));
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
    }
    return static_cast<int32_t>(_mm512_reduce_add_epi64(acc));
}

template <size_t W>
HS_AVX512 void distances_fixed(const uint64_t* q, const uint64_t* codes, size_t n, int32_t* out) {
    using G = Group<W>;
    const __m512i qv = G::query(q);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi64_epi32(G::dist(codes + i * W, qv)));
    }
    for (; i < n; ++i) out[i] = portable::distance<HardwarePop, W>(q, codes + i * W, W);
}

template <size_t W>
HS_AVX512 size_t filter_fixed(const uint64_t* q, const uint64_t* codes, size_t n, int32_t tau, uint32_t* rows,
                              int32_t* dists) {
    using G = Group<W>;
    const __m512i qv = G::query(q);
    const __m512i thr = _mm512_set1_epi64(tau);
    size_t cnt = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512i d0 = G::dist(codes + i * W, qv);
        const __m512i d1 = G::dist(codes + (i + 8) * W, qv);
        unsigned pass = static_cast<unsigned>(_mm512_cmple_epi64_mask(d0, thr)) |
                        (static_cast<unsigned>(_mm512_cmple_epi64_mask(d1, thr)) << 8);
        if (HS_UNLIKELY(pass != 0)) {
            alignas(64) int32_t lane[16];
            _mm256_store_si256(reinterpret_cast<__m256i*>(lane), _mm512_cvtepi64_epi32(d0));
            _mm256_store_si256(reinterpret_cast<__m256i*>(lane + 8), _mm512_cvtepi64_epi32(d1));
            while (pass) {  // lowest bit first: ascending row order
                const unsigned t = static_cast<unsigned>(__builtin_ctz(pass));
                rows[cnt] = static_cast<uint32_t>(i + t);
                dists[cnt++] = lane[t];
                pass &= pass - 1;
            }
        }
    }
    for (; i < n; ++i) {
        const int32_t d = portable::distance<HardwarePop, W>(q, codes + i * W, W);
        if (d <= tau) {
            rows[cnt] = static_cast<uint32_t>(i);
            dists[cnt++] = d;
        }
    }
    return cnt;
}

HS_AVX512 void distances_avx512(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t* out) {
    switch (w) {
        case 1:
            return distances_fixed<1>(q, codes, n, out);
        case 2:
            return distances_fixed<2>(q, codes, n, out);
        case 4:
            return distances_fixed<4>(q, codes, n, out);
        default:
            for (size_t i = 0; i < n; ++i) out[i] = dist_any(q, codes + i * w, w);
    }
}

HS_AVX512 size_t filter_avx512(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t tau,
                               uint32_t* rows, int32_t* dists) {
    switch (w) {
        case 1:
            return filter_fixed<1>(q, codes, n, tau, rows, dists);
        case 2:
            return filter_fixed<2>(q, codes, n, tau, rows, dists);
        case 4:
            return filter_fixed<4>(q, codes, n, tau, rows, dists);
        default: {
            size_t cnt = 0;
            for (size_t i = 0; i < n; ++i) {
                const int32_t d = dist_any(q, codes + i * w, w);
                if (d <= tau) {
                    rows[cnt] = static_cast<uint32_t>(i);
                    dists[cnt++] = d;
                }
            }
            return cnt;
        }
    }
}

}  // namespace

const Kernels kKernelsAvx512 = {Isa::avx512_vpopcntdq, distances_avx512, filter_avx512};

}  // namespace hamsearch
#endif  // HS_X86
