// Level `avx512_vpopcntdq`: eight 64-bit popcounts per instruction (VPOPCNTQ),
// eight codes per step for widths of 1, 2 and 4 words, masked loads for any
// other width; at 2 and 4 words, four queries per load of the codes.
// Relies on: AVX512F (VPERMT2Q, VPCMPQ into mask registers, VPMOVQD,
// VPUNPCKLQDQ, VSHUFI32X4), AVX512BW (target set of the compilers' AVX-512
// intrinsics), AVX512_VPOPCNTDQ, POPCNT for the tails and the exact path.
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

// ---- Several queries per load of the codes (FilterBatchFn) ----------------
//
// A step of 8 codes is loaded once and transposed so that vector j holds word
// j of the 8 codes; a query then costs W XORs, W VPOPCNTQ, W - 1 adds and a
// compare, with no permutes of its own. Only "does any query pass in this
// step" is kept; the rare step where one does goes through the exact scalar
// path (portable::emit_rows), so lane order never matters.

template <size_t W>
struct Slices {
    __m512i u[W];
};

HS_AVX512 HS_INLINE void slice(const uint64_t* c, Slices<2>& s) {
    const __m512i v0 = load(c), v1 = load(c + 8);
    s.u[0] = _mm512_unpacklo_epi64(v0, v1);  // word 0 of codes 0 4 1 5 2 6 3 7
    s.u[1] = _mm512_unpackhi_epi64(v0, v1);  // word 1, same order
}

HS_AVX512 HS_INLINE void slice(const uint64_t* c, Slices<4>& s) {
    const __m512i v0 = load(c), v1 = load(c + 8), v2 = load(c + 16), v3 = load(c + 24);
    const __m512i t0 = _mm512_unpacklo_epi64(v0, v1);  // c0w0 c2w0 c0w2 c2w2 c1w0 c3w0 c1w2 c3w2
    const __m512i t1 = _mm512_unpackhi_epi64(v0, v1);  // the same for words 1 and 3
    const __m512i t2 = _mm512_unpacklo_epi64(v2, v3);  // codes 4..7
    const __m512i t3 = _mm512_unpackhi_epi64(v2, v3);
    // 128-bit lanes 0 and 2 of each: word 0 of the 8 codes; lanes 1 and 3:
    // word 2. (VSHUFI32X4 moves whole 128-bit lanes like VSHUFI64X2, and
    // SIMDe, which the emulated test uses, has only the former.)
    s.u[0] = _mm512_shuffle_i32x4(t0, t2, 0x88);
    s.u[2] = _mm512_shuffle_i32x4(t0, t2, 0xDD);
    s.u[1] = _mm512_shuffle_i32x4(t1, t3, 0x88);
    s.u[3] = _mm512_shuffle_i32x4(t1, t3, 0xDD);
}

// Distances of one query (word t broadcast in qb[t]) to the 8 codes of a step.
template <size_t W>
HS_AVX512 HS_INLINE __m512i dist_sliced(const Slices<W>& s, const __m512i* qb) {
    __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(s.u[0], qb[0]));
    for (size_t t = 1; t < W; ++t) d = _mm512_add_epi64(d, _mm512_popcnt_epi64(_mm512_xor_si512(s.u[t], qb[t])));
    return d;
}

// slice() leaves a step's codes in its lanes out of order; code_order<W>()
// is the VPERMQ index that puts them back: lane c of the result takes the
// lane that holds code c.
template <size_t W>
HS_AVX512 HS_INLINE __m512i code_order();
template <>
HS_AVX512 HS_INLINE __m512i code_order<2>() {  // lanes: codes 0 4 1 5 2 6 3 7
    return _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
}
template <>
HS_AVX512 HS_INLINE __m512i code_order<4>() {  // lanes: codes 0 2 1 3 4 6 5 7
    return _mm512_setr_epi64(0, 2, 1, 3, 4, 6, 5, 7);
}

// A step: 8 codes, each load serving 8 queries (Zen 4, 128 KiB of codes,
// against one query a load: 4 queries 1.64x at 128 bits and 1.23x at 256,
// 6 queries 1.61x and 1.55x, 8 queries 1.77x and 1.61x). Codes through scalar
// POPCNT beside them, as the avx2 kernels do, cost here: with 4 queries, 2 a
// step 0.98x and 0.91x, 4 a step 0.65x and 0.59x; none are taken.
// A step where some query passes recounts each query's 8 distances in
// vectors and appends its passing rows from their lanes: where the
// threshold stays loose (k = 10 of 2,173 codes, a pass in most steps) the
// scalar recount of the step's 64 pairs took 6 times the vector scan.
constexpr size_t kBatchQueries = 8;

template <size_t W, size_t Q>
HS_AVX512 void filter_batch_fixed(const uint64_t* q, const uint64_t* codes, size_t n, const int32_t* tau,
                                  uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    __m512i qb[Q][W];
    __m512i thr[Q];
    for (size_t j = 0; j < Q; ++j) {
        for (size_t t = 0; t < W; ++t) qb[j][t] = _mm512_set1_epi64(static_cast<long long>(q[j * W + t]));
        thr[j] = _mm512_set1_epi64(tau[j]);
    }
    const __m512i order = code_order<W>();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        Slices<W> s;
        slice(codes + i * W, s);
        __mmask8 pass = 0;
        for (size_t j = 0; j < Q; ++j) pass |= _mm512_cmple_epi64_mask(dist_sliced(s, qb[j]), thr[j]);
        if (HS_UNLIKELY(pass != 0)) {
            alignas(64) int64_t lane[8];
            for (size_t j = 0; j < Q; ++j) {
                const __m512i d = _mm512_permutexvar_epi64(order, dist_sliced(s, qb[j]));
                unsigned m = _mm512_cmple_epi64_mask(d, thr[j]);
                if (m == 0) continue;
                _mm512_store_si512(reinterpret_cast<void*>(lane), d);
                uint32_t* r = rows + j * stride;
                int32_t* dd = dists + j * stride;
                size_t c = counts[j];
                for (; m != 0; m &= m - 1) {  // lowest bit first: ascending row order
                    const unsigned t = static_cast<unsigned>(__builtin_ctz(m));
                    r[c] = static_cast<uint32_t>(i + t);
                    dd[c++] = static_cast<int32_t>(lane[t]);
                }
                counts[j] = c;
            }
        }
    }
    portable::emit_rows<HardwarePop, W>(q, Q, codes, W, i, n, tau, rows, dists, stride, counts);
}

// The batch's last nq < Q queries, by the kernel for exactly nq.
template <size_t W, size_t Q>
HS_AVX512 HS_INLINE void filter_batch_tail(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n,
                                           const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride,
                                           size_t* counts) {
    if constexpr (Q > 1) {
        if (nq == Q - 1) return filter_batch_fixed<W, Q - 1>(q, codes, n, tau, rows, dists, stride, counts);
        return filter_batch_tail<W, Q - 1>(q, nq, codes, n, tau, rows, dists, stride, counts);
    }
}

template <size_t W>
HS_AVX512 void filter_batch_width(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, const int32_t* tau,
                                  uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    constexpr size_t Q = kBatchQueries;
    size_t j = 0;
    for (; j + Q <= nq; j += Q) {
        filter_batch_fixed<W, Q>(q + j * W, codes, n, tau + j, rows + j * stride, dists + j * stride, stride, counts + j);
    }
    filter_batch_tail<W, Q>(q + j * W, nq - j, codes, n, tau + j, rows + j * stride, dists + j * stride, stride,
                              counts + j);
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

HS_AVX512 void filter_batch_avx512(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, size_t w,
                                   const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    for (size_t j = 0; j < nq; ++j) counts[j] = 0;
    switch (w) {
        case 2:
            return filter_batch_width<2>(q, nq, codes, n, tau, rows, dists, stride, counts);
        case 4:
            return filter_batch_width<4>(q, nq, codes, n, tau, rows, dists, stride, counts);
        default:
            return portable::filter_each<filter_avx512>(q, nq, codes, n, w, tau, rows, dists, stride, counts);
    }
}

}  // namespace

// No sliced kernels: by count, VPSHUFB tables on 64-byte vectors take no
// fewer operations a comparison than VPOPCNTQ with eight queries a load (not
// measured).
const Kernels kKernelsAvx512 = {Isa::avx512_vpopcntdq, distances_avx512, filter_avx512, filter_batch_avx512,
                                nullptr,                nullptr,          nullptr};

}  // namespace hamsearch
#endif  // HS_X86
