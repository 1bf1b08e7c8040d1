// Level `avx2`: popcount by nibble lookup (VPSHUFB) and byte sums (VPSADBW),
// four codes per 256-bit step for widths of 1, 2 and 4 words.
// Relies on: AVX2 (VPSHUFB, VPSADBW, VPCMPGTQ, VPERMD), POPCNT for the tails.
#include "hamsearch/common.h"

#if HS_X86
#include <immintrin.h>

#include "kernels_portable.h"

#define HS_AVX2 HS_TARGET("avx2,popcnt")

namespace hamsearch {
namespace {

using portable::HardwarePop;

HS_AVX2 HS_INLINE __m256i popcount_bytes(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(v, low);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

HS_AVX2 HS_INLINE __m256i popcount_lanes(__m256i v) {
    return _mm256_sad_epu8(popcount_bytes(v), _mm256_setzero_si256());
}

HS_AVX2 HS_INLINE __m256i load(const uint64_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// Four codes of W words -> four 64-bit distances. Lane order: codes 0,1,2,3,
// except W == 2, where the unpack leaves codes 0,2,1,3.
template <size_t W>
struct Group;

template <>
struct Group<1> {
    static constexpr int order[4] = {0, 1, 2, 3};
    static HS_AVX2 HS_INLINE __m256i query(const uint64_t* q) { return _mm256_set1_epi64x(static_cast<long long>(q[0])); }
    static HS_AVX2 HS_INLINE __m256i dist(const uint64_t* c, __m256i q) {
        return popcount_lanes(_mm256_xor_si256(load(c), q));
    }
};

template <>
struct Group<2> {
    static constexpr int order[4] = {0, 2, 1, 3};
    static HS_AVX2 HS_INLINE __m256i query(const uint64_t* q) {
        return _mm256_setr_epi64x(static_cast<long long>(q[0]), static_cast<long long>(q[1]),
                                  static_cast<long long>(q[0]), static_cast<long long>(q[1]));
    }
    static HS_AVX2 HS_INLINE __m256i dist(const uint64_t* c, __m256i q) {
        // Byte counts of word 0 and word 1 of each code added before one
        // VPSADBW (at most 16 per byte): lanes c0 c2 c1 c3.
        const __m256i b0 = popcount_bytes(_mm256_xor_si256(load(c), q));      // c0w0 c0w1 c1w0 c1w1
        const __m256i b1 = popcount_bytes(_mm256_xor_si256(load(c + 4), q));  // c2w0 c2w1 c3w0 c3w1
        const __m256i s = _mm256_add_epi8(_mm256_unpacklo_epi64(b0, b1), _mm256_unpackhi_epi64(b0, b1));
        return _mm256_sad_epu8(s, _mm256_setzero_si256());
    }
};

template <>
struct Group<4> {
    static constexpr int order[4] = {0, 1, 2, 3};
    static HS_AVX2 HS_INLINE __m256i query(const uint64_t* q) { return load(q); }
    static HS_AVX2 HS_INLINE __m256i dist(const uint64_t* c, __m256i q) {
        // Byte counts summed across the four words of each code (at most 32
        // per byte), then one VPSADBW for all four codes: lanes c0 c1 c2 c3.
        const __m256i b0 = popcount_bytes(_mm256_xor_si256(load(c), q));
        const __m256i b1 = popcount_bytes(_mm256_xor_si256(load(c + 4), q));
        const __m256i b2 = popcount_bytes(_mm256_xor_si256(load(c + 8), q));
        const __m256i b3 = popcount_bytes(_mm256_xor_si256(load(c + 12), q));
        // t01 = [c0 w01, c1 w01 | c0 w23, c1 w23] as bytes, t23 likewise.
        const __m256i t01 = _mm256_add_epi8(_mm256_unpacklo_epi64(b0, b1), _mm256_unpackhi_epi64(b0, b1));
        const __m256i t23 = _mm256_add_epi8(_mm256_unpacklo_epi64(b2, b3), _mm256_unpackhi_epi64(b2, b3));
        const __m256i sum = _mm256_add_epi8(_mm256_permute2x128_si256(t01, t23, 0x20),
                                            _mm256_permute2x128_si256(t01, t23, 0x31));
        return _mm256_sad_epu8(sum, _mm256_setzero_si256());
    }
};

constexpr int Group<1>::order[4];
constexpr int Group<2>::order[4];
constexpr int Group<4>::order[4];

// Any width: byte counts accumulate over up to 31 vectors (31 * 8 < 256)
// before one VPSADBW; the last words go through POPCNT.
HS_AVX2 HS_INLINE int32_t dist_any(const uint64_t* q, const uint64_t* c, size_t w) {
    __m256i total = _mm256_setzero_si256();
    size_t j = 0;
    while (j + 4 <= w) {
        __m256i acc = _mm256_setzero_si256();
        for (int r = 0; r < 31 && j + 4 <= w; ++r, j += 4) {
            acc = _mm256_add_epi8(acc, popcount_bytes(_mm256_xor_si256(load(c + j), load(q + j))));
        }
        total = _mm256_add_epi64(total, _mm256_sad_epu8(acc, _mm256_setzero_si256()));
    }
    const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
    int64_t d = _mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1);
    for (; j < w; ++j) d += HardwarePop::count(q[j] ^ c[j]);
    return static_cast<int32_t>(d);
}

template <size_t W>
HS_AVX2 void distances_fixed(const uint64_t* q, const uint64_t* codes, size_t n, int32_t* out) {
    using G = Group<W>;
    const __m256i qv = G::query(q);
    // Picks the low dword of each lane in code order.
    const __m256i pick = _mm256_setr_epi32(2 * G::order[0], 2 * G::order[1], 2 * G::order[2], 2 * G::order[3], 0, 0, 0, 0);
    // G::order is its own inverse for every W, so it serves both directions.
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256i d = _mm256_permutevar8x32_epi32(G::dist(codes + i * W, qv), pick);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(d));
    }
    for (; i < n; ++i) out[i] = portable::distance<HardwarePop, W>(q, codes + i * W, W);
}

// Codes per step that go through scalar POPCNT beside the eight AVX2 codes:
// the integer pipes run them in parallel with the vector pipes (measured on
// Zen 3: +20% at 2 words, +30% at 4 words; no gain at 1 word).
template <size_t W>
constexpr size_t kScalarSide = W == 1 ? 0 : (W == 2 ? 2 : 4);

template <size_t W>
HS_AVX2 size_t filter_fixed(const uint64_t* q, const uint64_t* codes, size_t n, int32_t tau, uint32_t* rows,
                            int32_t* dists) {
    using G = Group<W>;
    constexpr size_t S = kScalarSide<W>;
    const __m256i qv = G::query(q);
    const __m256i thr = _mm256_set1_epi64x(tau);
    uint64_t ql[W];
    for (size_t j = 0; j < W; ++j) ql[j] = q[j];
    size_t cnt = 0;
    size_t i = 0;
    for (; i + 8 + S <= n; i += 8 + S) {
        const __m256i d0 = G::dist(codes + i * W, qv);
        const __m256i d1 = G::dist(codes + (i + 4) * W, qv);
        int32_t side[S ? S : 1];
        bool side_hit = false;
        for (size_t s = 0; s < S; ++s) {
            side[s] = portable::distance<HardwarePop, W>(ql, codes + (i + 8 + s) * W, W);
            side_hit |= side[s] <= tau;
        }
        const int above = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(d0, thr))) |
                          (_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(d1, thr))) << 4);
        if (HS_UNLIKELY(above != 0xFF || side_hit)) {
            alignas(32) int64_t lane[8];
            _mm256_store_si256(reinterpret_cast<__m256i*>(lane), d0);
            _mm256_store_si256(reinterpret_cast<__m256i*>(lane + 4), d1);
            // Branch-free: write every slot, advance past the ones that pass
            // (rows[] and dists[] have room for n entries, so this never overruns).
            for (int t = 0; t < 8; ++t) {  // ascending row order
                const int64_t d = lane[(t & 4) | G::order[t & 3]];
                rows[cnt] = static_cast<uint32_t>(i + t);
                dists[cnt] = static_cast<int32_t>(d);
                cnt += d <= tau;
            }
            for (size_t s = 0; s < S; ++s) {
                rows[cnt] = static_cast<uint32_t>(i + 8 + s);
                dists[cnt] = side[s];
                cnt += side[s] <= tau;
            }
        }
    }
    for (; i < n; ++i) {
        const int32_t d = portable::distance<HardwarePop, W>(ql, codes + i * W, W);
        if (d <= tau) {
            rows[cnt] = static_cast<uint32_t>(i);
            dists[cnt++] = d;
        }
    }
    return cnt;
}

// ---- Several queries per load of the codes (FilterBatchFn) ----------------
//
// A step of 4 codes is loaded once, transposed so that vector j holds word j
// of the 4 codes, and split into low and high nibbles once for all the
// queries: a query then costs two XORs and two VPSHUFB per word (its own
// nibbles XOR the codes' nibbles, since the XOR commutes with the split),
// byte sums, one VPSADBW and one compare. Only "does any query pass in this
// step" is kept; the rare step where one does goes through the exact scalar
// path (portable::emit_rows), so lane order never matters and the output
// logic lives in one place.

// The nibbles of 4 codes of W words, transposed: lo[j] and hi[j] hold the low
// and high nibbles of word j of each code, one code a 64-bit lane.
template <size_t W>
struct Slices {
    __m256i lo[W], hi[W];
};

HS_AVX2 HS_INLINE void split(__m256i u, __m256i& lo, __m256i& hi) {
    const __m256i low = _mm256_set1_epi8(0x0f);
    lo = _mm256_and_si256(u, low);
    hi = _mm256_and_si256(_mm256_srli_epi16(u, 4), low);
}

HS_AVX2 HS_INLINE void slice(const uint64_t* c, Slices<2>& s) {
    const __m256i v0 = load(c), v1 = load(c + 4);  // c0w0 c0w1 c1w0 c1w1 | c2w0 c2w1 c3w0 c3w1
    split(_mm256_unpacklo_epi64(v0, v1), s.lo[0], s.hi[0]);  // word 0 of codes 0 2 1 3
    split(_mm256_unpackhi_epi64(v0, v1), s.lo[1], s.hi[1]);  // word 1, same order
}

HS_AVX2 HS_INLINE void slice(const uint64_t* c, Slices<4>& s) {
    const __m256i v0 = load(c), v1 = load(c + 4), v2 = load(c + 8), v3 = load(c + 12);
    const __m256i t0 = _mm256_unpacklo_epi64(v0, v1);  // c0w0 c1w0 c0w2 c1w2
    const __m256i t1 = _mm256_unpackhi_epi64(v0, v1);  // c0w1 c1w1 c0w3 c1w3
    const __m256i t2 = _mm256_unpacklo_epi64(v2, v3);
    const __m256i t3 = _mm256_unpackhi_epi64(v2, v3);
    split(_mm256_permute2x128_si256(t0, t2, 0x20), s.lo[0], s.hi[0]);  // word 0 of codes 0 1 2 3
    split(_mm256_permute2x128_si256(t1, t3, 0x20), s.lo[1], s.hi[1]);
    split(_mm256_permute2x128_si256(t0, t2, 0x31), s.lo[2], s.hi[2]);
    split(_mm256_permute2x128_si256(t1, t3, 0x31), s.lo[3], s.hi[3]);
}

// One query's nibbles, each word broadcast to the four lanes.
template <size_t W>
struct QueryNibbles {
    __m256i lo[W], hi[W];
};

// Distances of one query to the 4 codes of a step, one per 64-bit lane.
template <size_t W>
HS_AVX2 HS_INLINE __m256i dist_sliced(const Slices<W>& s, const QueryNibbles<W>& q) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    // Byte sums stay <= 8 * W <= 32.
    __m256i acc = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_xor_si256(s.lo[0], q.lo[0])),
                                  _mm256_shuffle_epi8(lut, _mm256_xor_si256(s.hi[0], q.hi[0])));
    for (size_t j = 1; j < W; ++j) {
        acc = _mm256_add_epi8(acc, _mm256_shuffle_epi8(lut, _mm256_xor_si256(s.lo[j], q.lo[j])));
        acc = _mm256_add_epi8(acc, _mm256_shuffle_epi8(lut, _mm256_xor_si256(s.hi[j], q.hi[j])));
    }
    return _mm256_sad_epu8(acc, _mm256_setzero_si256());
}

// Codes per step through scalar POPCNT beside the 4 * kVectorGroups<W>
// vector codes, for every query of the step.
template <size_t W>
constexpr size_t kBatchVectorGroups = W == 2 ? 2 : 1;
template <size_t W>
constexpr size_t kBatchScalarSide = W == 2 ? 2 : 1;
// Queries per load of the codes.
constexpr size_t kBatchQueries = 4;

// Q queries against all n codes (see FilterBatchFn).
template <size_t W, size_t Q>
HS_AVX2 void filter_batch_fixed(const uint64_t* q, const uint64_t* codes, size_t n, const int32_t* tau, uint32_t* rows,
                                int32_t* dists, size_t stride, size_t* counts) {
    constexpr size_t G = kBatchVectorGroups<W>;
    constexpr size_t S = kBatchScalarSide<W>;
    constexpr size_t step = 4 * G + S;
    QueryNibbles<W> qn[Q];
    __m256i thr[Q];
    for (size_t j = 0; j < Q; ++j) {
        for (size_t t = 0; t < W; ++t) {
            split(_mm256_set1_epi64x(static_cast<long long>(q[j * W + t])), qn[j].lo[t], qn[j].hi[t]);
        }
        thr[j] = _mm256_set1_epi64x(tau[j]);
    }
    size_t i = 0;
    for (; i + step <= n; i += step) {
        const uint64_t* c = codes + i * W;
        // All-ones lanes where a (query, code) pair is above its threshold.
        __m256i above = _mm256_set1_epi64x(-1);
        for (size_t g = 0; g < G; ++g) {
            Slices<W> s;
            slice(c + 4 * g * W, s);
            for (size_t j = 0; j < Q; ++j) above = _mm256_and_si256(above, _mm256_cmpgt_epi64(dist_sliced(s, qn[j]), thr[j]));
        }
        bool side_hit = false;
        for (size_t t = 0; t < S; ++t) {
            const uint64_t* cs = c + (4 * G + t) * W;
            for (size_t j = 0; j < Q; ++j) side_hit |= portable::distance<HardwarePop, W>(q + j * W, cs, W) <= tau[j];
        }
        if (HS_UNLIKELY(_mm256_movemask_pd(_mm256_castsi256_pd(above)) != 0xF || side_hit)) {
            portable::emit_rows<HardwarePop, W>(q, Q, codes, W, i, i + step, tau, rows, dists, stride, counts);
        }
    }
    portable::emit_rows<HardwarePop, W>(q, Q, codes, W, i, n, tau, rows, dists, stride, counts);
}

template <size_t W>
HS_AVX2 void filter_batch_width(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, const int32_t* tau,
                                uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    constexpr size_t Q = kBatchQueries;
    size_t j = 0;
    for (; j + Q <= nq; j += Q) {
        filter_batch_fixed<W, Q>(q + j * W, codes, n, tau + j, rows + j * stride, dists + j * stride, stride, counts + j);
    }
    uint32_t* r = rows + j * stride;
    int32_t* d = dists + j * stride;
    switch (nq - j) {  // the batch's last queries, fewer than Q
        case 3:
            return filter_batch_fixed<W, 3>(q + j * W, codes, n, tau + j, r, d, stride, counts + j);
        case 2:
            return filter_batch_fixed<W, 2>(q + j * W, codes, n, tau + j, r, d, stride, counts + j);
        case 1:
            return filter_batch_fixed<W, 1>(q + j * W, codes, n, tau + j, r, d, stride, counts + j);
        default:
            return;
    }
}

HS_AVX2 void distances_avx2(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t* out) {
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

HS_AVX2 size_t filter_avx2(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t tau, uint32_t* rows,
                           int32_t* dists) {
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

HS_AVX2 void filter_batch_avx2(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, size_t w,
                               const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    for (size_t j = 0; j < nq; ++j) counts[j] = 0;
    switch (w) {
        case 2:
            return filter_batch_width<2>(q, nq, codes, n, tau, rows, dists, stride, counts);
        case 4:
            return filter_batch_width<4>(q, nq, codes, n, tau, rows, dists, stride, counts);
        default:
            return portable::filter_each<filter_avx2>(q, nq, codes, n, w, tau, rows, dists, stride, counts);
    }
}

}  // namespace

const Kernels kKernelsAvx2 = {Isa::avx2, distances_avx2, filter_avx2, filter_batch_avx2};

}  // namespace hamsearch
#endif  // HS_X86
