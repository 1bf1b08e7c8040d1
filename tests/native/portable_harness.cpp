// Brute-force check of the native FlatIndex through its public headers: run by
// tests/test_portable_build.py built for a non-x86 target, where only the
// portable (scalar) kernels exist, under qemu-user; and by ctest on the build
// machine at its own ISA level.
#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>
#include "hamsearch/common.h"
#include "hamsearch/flat_index.h"
using namespace hamsearch;
int main() {
    std::mt19937_64 g(3);
    long bad = 0;
    printf("isa: %s\n", isa_name(active_kernels().isa));
    for (int64_t nbits : {13, 64, 100, 128, 256, 300}) {
        const size_t w = (nbits + 63) / 64, n = 3000, nq = 5, k = 17;
        const uint64_t last = nbits % 64 ? (uint64_t{1} << (nbits % 64)) - 1 : ~uint64_t{0};
        std::vector<uint64_t> c(n * w), q(nq * w);
        for (size_t i = 0; i < c.size(); ++i) c[i] = g() & ((i % w == w - 1) ? last : ~uint64_t{0});
        for (size_t i = 0; i < q.size(); ++i) q[i] = g() & ((i % w == w - 1) ? last : ~uint64_t{0});
        for (size_t i = 0; i < n; i += 7) std::copy(c.begin(), c.begin() + w, c.begin() + i * w);  // ties
        std::vector<int64_t> ids(n);
        for (size_t i = 0; i < n; ++i) ids[i] = int64_t((i * 7919) % 100003);  // not ascending
        FlatIndex idx(nbits);
        idx.add(c.data(), ids.data(), n);
        for (size_t threads : {1, 2}) {
            std::vector<int32_t> D(nq * k);
            std::vector<int64_t> I(nq * k);
            idx.knn(q.data(), nq, k, threads, D.data(), I.data());
            for (size_t j = 0; j < nq; ++j) {
                std::vector<std::pair<int32_t, int64_t>> all;
                for (size_t i = 0; i < n; ++i) {
                    int d = 0;
                    for (size_t x = 0; x < w; ++x) d += __builtin_popcountll(q[j * w + x] ^ c[i * w + x]);
                    all.push_back({d, ids[i]});
                }
                std::sort(all.begin(), all.end());
                for (size_t t = 0; t < k; ++t) bad += all[t].first != D[j * k + t] || all[t].second != I[j * k + t];
            }
        }
    }
    printf("flat index vs brute force: %ld mismatches\n", bad);
    return bad != 0;
}
