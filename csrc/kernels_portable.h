// Width-specialised popcount kernels written in plain C++, shared by the
// scalar and popcnt levels. `Pop::count` is the only part that differs; the
// entry points of each level carry that level's target attribute, and these
// templates are force-inlined into them so they compile for that target.
#pragma once

#include "hamsearch/common.h"

namespace hamsearch {
namespace portable {

#if HS_X86
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#endif
/// Popcount by the POPCNT instruction; only inline it into functions compiled
/// for a target that has it.
struct HardwarePop {
    static HS_INLINE int32_t count(uint64_t x) {
#if defined(_MSC_VER) && !defined(__clang__)
        return static_cast<int32_t>(__popcnt64(x));
#else
        return __builtin_popcountll(x);
#endif
    }
};
#endif

template <class Pop, size_t W>
HS_INLINE int32_t distance(const uint64_t* q, const uint64_t* c, size_t w) {
    const size_t nw = W ? W : w;
    int32_t d = 0;
    for (size_t j = 0; j < nw; ++j) d += Pop::count(q[j] ^ c[j]);
    return d;
}

template <class Pop, size_t W>
HS_INLINE void distances(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t* out) {
    const size_t stride = W ? W : w;
    uint64_t qw[W ? W : 1];
    const uint64_t* qp = q;
    if (W) {  // a local copy lets the compiler keep the query in registers
        for (size_t j = 0; j < W; ++j) qw[j] = q[j];
        qp = qw;
    }
    for (size_t i = 0; i < n; ++i) out[i] = distance<Pop, W>(qp, codes + i * stride, w);
}

template <class Pop, size_t W>
HS_INLINE size_t filter(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t tau,
                        uint32_t* rows, int32_t* dists) {
    const size_t stride = W ? W : w;
    uint64_t qw[W ? W : 1];
    const uint64_t* qp = q;
    if (W) {
        for (size_t j = 0; j < W; ++j) qw[j] = q[j];
        qp = qw;
    }
    size_t cnt = 0;
    size_t i = 0;
    // Four codes per step and one well-predicted branch: in a k-NN scan almost
    // every code is above the threshold.
    for (; i + 4 <= n; i += 4) {
        const uint64_t* c = codes + i * stride;
        const int32_t d0 = distance<Pop, W>(qp, c, w);
        const int32_t d1 = distance<Pop, W>(qp, c + stride, w);
        const int32_t d2 = distance<Pop, W>(qp, c + 2 * stride, w);
        const int32_t d3 = distance<Pop, W>(qp, c + 3 * stride, w);
        if (HS_UNLIKELY((d0 <= tau) | (d1 <= tau) | (d2 <= tau) | (d3 <= tau))) {
            const int32_t d[4] = {d0, d1, d2, d3};
            for (int t = 0; t < 4; ++t) {
                if (d[t] <= tau) {
                    rows[cnt] = static_cast<uint32_t>(i + t);
                    dists[cnt++] = d[t];
                }
            }
        }
    }
    for (; i < n; ++i) {
        const int32_t d = distance<Pop, W>(qp, codes + i * stride, w);
        if (d <= tau) {
            rows[cnt] = static_cast<uint32_t>(i);
            dists[cnt++] = d;
        }
    }
    return cnt;
}

/// Rows [i0, i1) against queries j < nq, exactly: each row within tau[j] of
/// query j is appended to that query's output (rows/dists + j * stride,
/// counts[j] so far), in ascending order. The multi-query kernels' path for
/// the rare steps where some query passes and for the rows after their last
/// full step: one definition of what passes, shared by every level.
template <class Pop, size_t W>
HS_INLINE void emit_rows(const uint64_t* q, size_t nq, const uint64_t* codes, size_t w, size_t i0, size_t i1,
                         const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    const size_t nw = W ? W : w;
    for (size_t j = 0; j < nq; ++j) {
        uint32_t* r = rows + j * stride;
        int32_t* dd = dists + j * stride;
        size_t c = counts[j];
        for (size_t i = i0; i < i1; ++i) {
            // Branch-free: write the slot, keep it if the row passes (c <= i < stride).
            const int32_t d = distance<Pop, W>(q + j * nw, codes + i * nw, nw);
            r[c] = static_cast<uint32_t>(i);
            dd[c] = d;
            c += d <= tau[j];
        }
        counts[j] = c;
    }
}

/// Rows row0 + t for the set bits t of `mask`, in ascending order, against
/// one query: each row within tau is appended to out_rows/out_dists at
/// *count. The sliced kernels' exact path for a tile where the query passes.
template <class Pop, size_t W>
HS_INLINE void emit_mask(const uint64_t* q, const uint64_t* codes, size_t row0, uint32_t mask, int32_t tau,
                         uint32_t* out_rows, int32_t* out_dists, size_t* count) {
    size_t c = *count;
    while (mask) {
        const size_t i = row0 + static_cast<size_t>(__builtin_ctz(mask));
        mask &= mask - 1;
        const int32_t d = distance<Pop, W>(q, codes + i * W, W);
        out_rows[c] = static_cast<uint32_t>(i);
        out_dists[c] = d;
        c += d <= tau;
    }
    *count = c;
}

/// FilterBatchFn by one FilterFn call a query: for levels and widths with no
/// multi-query kernel.
template <size_t (*Filter)(const uint64_t*, const uint64_t*, size_t, size_t, int32_t, uint32_t*, int32_t*)>
HS_INLINE void filter_each(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, size_t w, const int32_t* tau,
                           uint32_t* rows, int32_t* dists, size_t stride, size_t* counts) {
    for (size_t j = 0; j < nq; ++j) {
        counts[j] = Filter(q + j * w, codes, n, w, tau[j], rows + j * stride, dists + j * stride);
    }
}

template <class Pop>
HS_INLINE void distances_any(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t* out) {
    switch (w) {
        case 1:
            return distances<Pop, 1>(q, codes, n, w, out);
        case 2:
            return distances<Pop, 2>(q, codes, n, w, out);
        case 4:
            return distances<Pop, 4>(q, codes, n, w, out);
        default:
            return distances<Pop, 0>(q, codes, n, w, out);
    }
}

template <class Pop>
HS_INLINE size_t filter_any(const uint64_t* q, const uint64_t* codes, size_t n, size_t w, int32_t tau,
                            uint32_t* rows, int32_t* dists) {
    switch (w) {
        case 1:
            return filter<Pop, 1>(q, codes, n, w, tau, rows, dists);
        case 2:
            return filter<Pop, 2>(q, codes, n, w, tau, rows, dists);
        case 4:
            return filter<Pop, 4>(q, codes, n, w, tau, rows, dists);
        default:
            return filter<Pop, 0>(q, codes, n, w, tau, rows, dists);
    }
}

}  // namespace portable
}  // namespace hamsearch
