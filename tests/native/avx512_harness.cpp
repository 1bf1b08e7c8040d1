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
        }
    }
    printf("avx512 kernels under SIMDe: %ld cases, %ld mismatches\n", cases, bad);
    return bad != 0;
}
