// Checks the avx512_vpopcntdq kernels against a scalar oracle on any x86-64
// CPU: tests/test_avx512_emulated.py compiles csrc/kernels_avx512.cpp with
// SIMDe's portable implementations of the AVX-512 intrinsics in place of the
// hardware ones, so the lane logic (permutes, masks, lane order, tails) is
// exercised even where the CPU lacks AVX-512.
#include <cstdio>
#include <random>
#include <vector>
#include "hamsearch/common.h"
using namespace hamsearch;
int main() {
    std::mt19937_64 g(7);
    long bad = 0, cases = 0;
    for (size_t w : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17}) {
        for (size_t n : {0, 1, 7, 8, 15, 16, 17, 31, 33, 100, 1000}) {
            std::vector<uint64_t> c(n * w + 1), q(w);
            for (auto& x : c) x = g();
            for (auto& x : q) x = g();
            // plant near and equal codes so the filter passes something
            for (size_t i = 0; i < n; i += 5) for (size_t j = 0; j < w; ++j) c[i * w + j] = q[j] ^ (g() & g() & g());
            std::vector<int32_t> ref(n), got(n + 1, -7);
            for (size_t i = 0; i < n; ++i) { int d = 0; for (size_t j = 0; j < w; ++j) d += __builtin_popcountll(q[j] ^ c[i * w + j]); ref[i] = d; }
            kKernelsAvx512.distances(q.data(), c.data(), n, w, got.data());
            for (size_t i = 0; i < n; ++i) bad += got[i] != ref[i];
            cases++;
            for (int tau : {-1, 0, 3, int(w * 16), int(w * 32), int(w * 64)}) {
                std::vector<uint32_t> rows(n + 1); std::vector<int32_t> ds(n + 1);
                size_t cnt = kKernelsAvx512.filter(q.data(), c.data(), n, w, tau, rows.data(), ds.data());
                size_t e = 0;
                for (size_t i = 0; i < n; ++i) if (ref[i] <= tau) { if (e >= cnt || rows[e] != i || ds[e] != ref[i]) bad++; e++; }
                bad += e != cnt;
                cases++;
            }
            // Several queries at once: each query's own threshold, batches
            // that are not multiples of the kernel's block of queries.
            for (size_t nq : {1, 2, 3, 4, 5, 7, 8, 9}) {
                std::vector<uint64_t> qs(nq * w);
                std::vector<int32_t> taus(nq), refs(nq * n);
                const int choices[] = {-1, 0, 3, int(w * 16), int(w * 32), int(w * 64)};
                for (size_t j = 0; j < nq; ++j) {
                    for (size_t t = 0; t < w; ++t) qs[j * w + t] = j % 3 == 2 ? q[t] : g();
                    taus[j] = choices[(j + n) % 6];
                    for (size_t i = 0; i < n; ++i) {
                        int d = 0;
                        for (size_t t = 0; t < w; ++t) d += __builtin_popcountll(qs[j * w + t] ^ c[i * w + t]);
                        refs[j * n + i] = d;
                    }
                }
                const size_t stride = n + 3;
                std::vector<uint32_t> rows(nq * stride);
                std::vector<int32_t> ds(nq * stride);
                std::vector<size_t> counts(nq, 12345);
                kKernelsAvx512.filter_batch(qs.data(), nq, c.data(), n, w, taus.data(), rows.data(), ds.data(), stride,
                                            counts.data());
                for (size_t j = 0; j < nq; ++j) {
                    size_t e = 0;
                    for (size_t i = 0; i < n; ++i) {
                        if (refs[j * n + i] <= taus[j]) {
                            const size_t at = j * stride + e;
                            if (e >= counts[j] || rows[at] != i || ds[at] != refs[j * n + i]) bad++;
                            e++;
                        }
                    }
                    bad += e != counts[j];
                }
                cases++;
            }
        }
    }
    printf("avx512 kernels under SIMDe: %ld cases, %ld mismatches\n", cases, bad);
    return bad != 0;
}
