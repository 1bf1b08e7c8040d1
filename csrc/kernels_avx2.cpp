// Level `avx2`: popcount by nibble lookup (VPSHUFB) and byte sums (VPSADBW),
// four codes per 256-bit step for widths of 1, 2 and 4 words; at 2 and 4
// words, four queries per load of the codes, and for large batches a
// byte-sliced layout with per-query lookup tables.
// Relies on: AVX2 (VPSHUFB, VPSADBW, VPCMPGTQ, VPERMD, VPERM2I128, VPSUBUSB,
// VPMINUB), POPCNT for the tails and the exact path.
#include "hamsearch/common.h"

#if HS_X86
#include <immintrin.h>

#include <algorithm>

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
#if defined(__GNUC__)
    // Opaque to the optimiser: otherwise GCC folds (c & 15) ^ (q & 15) back
    // into (c ^ q) & 15, one AND per query instead of one per load.
    __asm__("" : "+x"(lo), "+x"(hi));
#endif
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

// A step: 4 codes through the vector pipes and one through scalar POPCNT on
// the integer pipes, for each of 4 queries (measured on Zen 4 over 128 KiB of
// codes: the scalar code +20% at 128 bits, +10% at 256; 8 vector codes a step
// no better; 2 scalar codes slower).
constexpr size_t kBatchVectorGroups = 1;
constexpr size_t kBatchScalarSide = 1;
constexpr size_t kBatchQueries = 4;

// Q queries against all n codes (see FilterBatchFn).
template <size_t W, size_t Q>
HS_AVX2 void filter_batch_fixed(const uint64_t* q, const uint64_t* codes, size_t n, const int32_t* tau, uint32_t* rows,
                                int32_t* dists, size_t stride, size_t* counts) {
    constexpr size_t G = kBatchVectorGroups;
    constexpr size_t S = kBatchScalarSide;
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
            for (size_t j = 0; j < Q; ++j) {
                above = _mm256_and_si256(above, _mm256_cmpgt_epi64(dist_sliced(s, qn[j]), thr[j]));
            }
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

// The batch's last nq < Q queries, by the kernel for exactly nq.
template <size_t W, size_t Q>
HS_AVX2 HS_INLINE void filter_batch_tail(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n,
                                         const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride,
                                         size_t* counts) {
    if constexpr (Q > 1) {
        if (nq == Q - 1) return filter_batch_fixed<W, Q - 1>(q, codes, n, tau, rows, dists, stride, counts);
        return filter_batch_tail<W, Q - 1>(q, nq, codes, n, tau, rows, dists, stride, counts);
    }
}

template <size_t W>
HS_AVX2 void filter_batch_width(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, const int32_t* tau,
                                uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    constexpr size_t Q = kBatchQueries;
    size_t j = 0;
    for (; j + Q <= nq; j += Q) {
        filter_batch_fixed<W, Q>(q + j * W, codes, n, tau + j, rows + j * stride, dists + j * stride, stride,
                                 counts + j);
    }
    filter_batch_tail<W, Q>(q + j * W, nq - j, codes, n, tau + j, rows + j * stride, dists + j * stride, stride,
                            counts + j);
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

// ---- Byte-sliced scan (SliceCodesFn, FilterSlicedFn) -----------------------
//
// A tile holds 32 codes with their bytes sliced: for each byte position p of
// a code, one vector of the low nibbles of byte p of the 32 codes and one of
// the high nibbles. A query turns into two 16-entry tables per byte position,
// table[v] = popcount(v ^ its own nibble there), so a byte of 32 codes costs
// two VPSHUFB and two byte adds: no XOR, no VPSADBW, each code's distance in
// one byte. Slicing a block once serves every query of the batch, and each
// load of a tile's nibbles serves four queries.
//
// A code passes where its byte minus the threshold (saturating) is zero. The
// bytes can only over-report: a distance of 256 wraps to 0, and a threshold
// outside 0..255 is clamped into it. Every code flagged goes through the
// exact scalar path (portable::emit_mask), which settles it.

constexpr size_t kTile = 32;

HS_AVX2 size_t sliced_bytes_avx2(size_t n, size_t w) {
    return (w == 2 || w == 4) ? n / kTile * kTile * 16 * w : 0;
}

// Transposes a 16 x 16 byte matrix in each 128-bit lane: r[i] holds row i on
// entry and column i on return. Each of the four rounds interleaves rows i and
// i + 8 (row index and column, as one 8-bit number, rotate left by one bit a
// round: four rounds swap the halves).
HS_AVX2 HS_INLINE void transpose_16x16(__m256i* r) {
    for (int round = 0; round < 4; ++round) {
        __m256i t[16];
        for (int i = 0; i < 8; ++i) {
            t[2 * i] = _mm256_unpacklo_epi8(r[i], r[i + 8]);
            t[2 * i + 1] = _mm256_unpackhi_epi8(r[i], r[i + 8]);
        }
        for (int i = 0; i < 16; ++i) r[i] = t[i];
    }
}

HS_AVX2 void slice_codes_avx2(const uint64_t* codes, size_t n, size_t w, uint8_t* out) {
    const size_t B = 8 * w;  // bytes a code
    const uint8_t* src = reinterpret_cast<const uint8_t*>(codes);
    const __m256i low = _mm256_set1_epi8(0x0f);
    for (size_t t = 0; t + kTile <= n; t += kTile) {
        uint8_t* dst = out + t * 2 * B;
        const uint8_t* c = src + t * B;
        // 16 bytes of each code at a time: codes 0..15 in the low lanes,
        // 16..31 in the high lanes; after the transpose r[j] holds byte
        // h + j of the 32 codes, in code order.
        for (size_t h = 0; h < B; h += 16) {
            __m256i r[16];
            for (size_t i = 0; i < 16; ++i) {
                r[i] = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i * B + h))),
                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + (i + 16) * B + h)), 1);
            }
            transpose_16x16(r);
            for (size_t j = 0; j < 16; ++j) {
                __m256i* o = reinterpret_cast<__m256i*>(dst + 2 * (h + j) * kTile);
                _mm256_storeu_si256(o, _mm256_and_si256(r[j], low));
                _mm256_storeu_si256(o + 1, _mm256_and_si256(_mm256_srli_epi16(r[j], 4), low));
            }
        }
    }
}

// The two tables per byte position of one query.
template <size_t W>
HS_AVX2 HS_INLINE void query_tables(const uint64_t* q, __m256i* tables) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    const __m256i iota = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7,
                                          8, 9, 10, 11, 12, 13, 14, 15);
    const uint8_t* qb = reinterpret_cast<const uint8_t*>(q);
    for (size_t p = 0; p < 8 * W; ++p) {
        const __m256i lo = _mm256_set1_epi8(static_cast<char>(qb[p] & 15));
        const __m256i hi = _mm256_set1_epi8(static_cast<char>(qb[p] >> 4));
        tables[2 * p] = _mm256_shuffle_epi8(lut, _mm256_xor_si256(iota, lo));
        tables[2 * p + 1] = _mm256_shuffle_epi8(lut, _mm256_xor_si256(iota, hi));
    }
}

// Keeps a loaded vector in a register: GCC otherwise folds the load into each
// instruction that uses it, loading it again for every query or tile, and the
// loads, not the shuffles, become the limit.
HS_AVX2 HS_INLINE void pin(__m256i& v) {
#if defined(__GNUC__)
    __asm__("" : "+x"(v));
#endif
}

// M tiles from `tile` against Q queries (tables[j] the tables of query j):
// each code's distance in its byte, acc[j][m] for tile m (modulo 256: only a
// distance of exactly 256 wraps, to 0, which the exact path then rejects).
// Each load of a tile's nibbles serves the Q queries.
template <size_t W, size_t M, size_t Q>
HS_AVX2 HS_INLINE void sliced_step(const __m256i* const* tables, const uint8_t* tile, __m256i (*acc)[M]) {
    constexpr size_t B = 8 * W;
    for (size_t j = 0; j < Q; ++j)
        for (size_t m = 0; m < M; ++m) acc[j][m] = _mm256_setzero_si256();
    for (size_t p = 0; p < B; ++p) {
        __m256i lo[Q], hi[Q];
        for (size_t j = 0; j < Q; ++j) {
            lo[j] = _mm256_load_si256(tables[j] + 2 * p);
            hi[j] = _mm256_load_si256(tables[j] + 2 * p + 1);
            pin(lo[j]);
            pin(hi[j]);
        }
        for (size_t m = 0; m < M; ++m) {
            const __m256i* s = reinterpret_cast<const __m256i*>(tile + m * 2 * B * kTile) + 2 * p;
            __m256i cl = _mm256_loadu_si256(s), ch = _mm256_loadu_si256(s + 1);
            pin(cl);
            pin(ch);
            for (size_t j = 0; j < Q; ++j) {
                acc[j][m] = _mm256_add_epi8(acc[j][m], _mm256_add_epi8(_mm256_shuffle_epi8(lo[j], cl),
                                                                       _mm256_shuffle_epi8(hi[j], ch)));
            }
        }
    }
}

// Queries each load of a tile's nibbles serves, and tiles per step. 4 x 2
// takes 8 accumulators, 8 tables and 2 code vectors, more than the 16
// registers (GCC keeps some accumulators on the stack), and still measured
// fastest on Zen 4 (128 KiB of codes, cpu time): 1.35x to 1.45x one query a
// load over 6 tiles, at 128 and 256 bits; 3 x 2, 2 x 2 to 2 x 5, 4 x 1 and
// 3 x 1 between. Codes through scalar POPCNT beside the tiles (2 to 16 a
// step) only cost here (0.97x to 0.78x): the kernel seems bound by issue
// rather than by the vector pipes.
constexpr size_t kSlicedQueries = 4;
constexpr size_t kSlicedTiles = 2;

template <size_t W, size_t M, size_t Q>
HS_AVX2 HS_INLINE void sliced_tiles(const uint64_t* q, const __m256i* const* tables, const __m256i* thr,
                                    const uint8_t* sliced, const uint64_t* codes, size_t t0, const int32_t* tau,
                                    uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    constexpr size_t B = 8 * W;
    const __m256i zero = _mm256_setzero_si256();
    __m256i acc[Q][M];
    sliced_step<W, M, Q>(tables, sliced + t0 * 2 * B, acc);
    // Bytes of max(d - tau, 0): zero where the code passes.
    __m256i low = _mm256_subs_epu8(acc[0][0], thr[0]);
    for (size_t j = 0; j < Q; ++j)
        for (size_t m = 0; m < M; ++m) low = _mm256_min_epu8(low, _mm256_subs_epu8(acc[j][m], thr[j]));
    if (HS_UNLIKELY(_mm256_movemask_epi8(_mm256_cmpeq_epi8(low, zero)) != 0)) {
        for (size_t j = 0; j < Q; ++j) {
            for (size_t m = 0; m < M; ++m) {
                const __m256i over = _mm256_subs_epu8(acc[j][m], thr[j]);
                const uint32_t pass = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(over, zero)));
                portable::emit_mask<HardwarePop, W>(q + j * W, codes, t0 + m * kTile, pass, tau[j], rows + j * stride,
                                                    dists + j * stride, counts + j);
            }
        }
    }
}

// Q queries against all n codes, the full tiles through their slices.
template <size_t W, size_t M, size_t Q>
HS_AVX2 void filter_sliced_fixed(const uint64_t* q, const uint8_t* sliced, const uint64_t* codes, size_t n,
                                 const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    constexpr size_t B = 8 * W;
    alignas(32) __m256i tables[Q][2 * B];
    const __m256i* tp[Q];
    __m256i thr[Q];
    for (size_t j = 0; j < Q; ++j) {
        query_tables<W>(q + j * W, tables[j]);
        tp[j] = tables[j];
        // Outside 0..255 the bytes can only over-report (below 0: a distance
        // of 0; above: every code), and the exact path settles it.
        thr[j] = _mm256_set1_epi8(static_cast<char>(std::min(std::max(tau[j], 0), 255)));
    }
    const size_t full = n / kTile * kTile;
    size_t t0 = 0;
    for (; t0 + M * kTile <= full; t0 += M * kTile) {
        sliced_tiles<W, M, Q>(q, tp, thr, sliced, codes, t0, tau, rows, dists, stride, counts);
    }
    for (; t0 < full; t0 += kTile) {
        sliced_tiles<W, 1, Q>(q, tp, thr, sliced, codes, t0, tau, rows, dists, stride, counts);
    }
    portable::emit_rows<HardwarePop, W>(q, Q, codes, W, full, n, tau, rows, dists, stride, counts);
}

template <size_t W, size_t Q>
HS_AVX2 HS_INLINE void filter_sliced_tail(const uint64_t* q, size_t nq, const uint8_t* sliced, const uint64_t* codes,
                                          size_t n, const int32_t* tau, uint32_t* rows, int32_t* dists,
                                          size_t stride, size_t* counts) {
    if constexpr (Q > 1) {
        if (nq == Q - 1) {
            return filter_sliced_fixed<W, kSlicedTiles, Q - 1>(q, sliced, codes, n, tau, rows, dists, stride, counts);
        }
        return filter_sliced_tail<W, Q - 1>(q, nq, sliced, codes, n, tau, rows, dists, stride, counts);
    }
}

template <size_t W>
HS_AVX2 void filter_sliced_width(const uint64_t* q, size_t nq, const uint8_t* sliced, const uint64_t* codes, size_t n,
                                 const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    constexpr size_t Q = kSlicedQueries;
    size_t j = 0;
    for (; j + Q <= nq; j += Q) {
        filter_sliced_fixed<W, kSlicedTiles, Q>(q + j * W, sliced, codes, n, tau + j, rows + j * stride,
                                                dists + j * stride, stride, counts + j);
    }
    filter_sliced_tail<W, Q>(q + j * W, nq - j, sliced, codes, n, tau + j, rows + j * stride, dists + j * stride,
                             stride, counts + j);
}

HS_AVX2 void filter_sliced_avx2(const uint64_t* q, size_t nq, const uint8_t* sliced, const uint64_t* codes, size_t n,
                                size_t w, const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride,
                                size_t* counts) {
    for (size_t j = 0; j < nq; ++j) counts[j] = 0;
    switch (w) {
        case 2:
            return filter_sliced_width<2>(q, nq, sliced, codes, n, tau, rows, dists, stride, counts);
        case 4:
            return filter_sliced_width<4>(q, nq, sliced, codes, n, tau, rows, dists, stride, counts);
        default:
            return portable::filter_each<filter_avx2>(q, nq, codes, n, w, tau, rows, dists, stride, counts);
    }
}

}  // namespace

const Kernels kKernelsAvx2 = {Isa::avx2,           distances_avx2,   filter_avx2,       filter_batch_avx2,
                              sliced_bytes_avx2,   slice_codes_avx2, filter_sliced_avx2};

}  // namespace hamsearch
#endif  // HS_X86
