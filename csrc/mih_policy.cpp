// Multi-index hashing's policy (see mih_policy.h).
#include "mih_policy.h"

#include <algorithm>
#include <cmath>

namespace hamsearch {

namespace {

// Cost units are 64-bit words compared by the blocked AVX2 scan (about
// 0.2 ns each). A probe (directory lookup and search of its run, in chunks
// of prefetched keys) costs about 256 of them on every kernel level. A
// candidate's verification (a random load of its code, the seen bitmap, the
// top-k push) costs about 192 AVX2 words, and more words of a faster kernel.
// Measured on a 2-core AMD EPYC (Zen 4) as the probing a far query (uniform
// codes, 10^7) does before it gives up, against the batched scan: with 64
// words a candidate, 64-bit queries (about 5 candidates a probe) spent 0.9
// AVX-512 scans, not the half scan the budget allows; with these costs 0.3
// to 0.5 at 64, 128 and 256 bits on AVX2 and AVX-512.
constexpr double kProbeCost = 256.0;
constexpr double kCandidateCost = 192.0;

// Words the kernel level scans in the time the AVX2 kernel scans one,
// measured with the popcount probe on cache-resident codes (Zen 4): 0.14,
// 0.6, 1 and 1.8 to 2.4.
double scan_speed(Isa isa) {
    switch (isa) {
        case Isa::scalar:
            return 0.15;
        case Isa::popcnt:
            return 0.6;
        case Isa::avx2:
            return 1.0;
        case Isa::avx512_vpopcntdq:
            return 2.5;
    }
    return 1.0;
}

// Once half the queries tried on the tables have given up, the rest of the
// batch goes straight to the scan; the evidence asked for first is nq / 16
// queries between 4 and 16, so that a batch of far queries wastes at most
// about 3% of its scan time on probing (a batch of 100 switches after 6
// queries, one of 1000 after 16).
constexpr size_t kMinTrials = 4;
constexpr size_t kMaxTrials = 16;

// Bytes a table costs per code: a 4-byte entry, a directory of one 4-byte
// offset per 4 to 32 codes, and about 0.4 bytes more measured in the
// resident set at 10^7 codes (allocator slack of the build). The default m
// keeps the tables within what the flat store costs (8 * W + 8 bytes a
// code), so that an MIHIndex takes at most about twice a FlatIndex's memory:
// 3 tables at 64 bits, 5 at 128, 8 at 256.
constexpr double kTableOverhead = 0.4;
constexpr double kTableBytesPerCode = 4.0 + 0.25 + kTableOverhead;

}  // namespace

int64_t mih_choose_m(int64_t nbits, int64_t m, size_t n) {
    if (m != 0) return m;
    const int64_t w = (nbits + 63) / 64;
    const double lg = std::max(1.0, std::log2(std::max<double>(2.0, static_cast<double>(n))));
    int64_t chosen = static_cast<int64_t>(std::llround(static_cast<double>(nbits) / lg));
    chosen = std::min<int64_t>(chosen, static_cast<int64_t>((8.0 * static_cast<double>(w) + 8.0) / kTableBytesPerCode));
    return std::min<int64_t>(nbits, std::max<int64_t>({chosen, w, 1}));
}

std::vector<std::pair<int64_t, int64_t>> mih_substrings(int64_t nbits, int64_t m) {
    std::vector<std::pair<int64_t, int64_t>> out;
    int64_t begin = 0;
    for (int64_t j = 0; j < m; ++j) {
        const int64_t len = nbits / m + (j < nbits % m ? 1 : 0);
        out.emplace_back(begin, len);
        begin += len;
    }
    return out;
}

std::vector<MihTableShape> mih_table_shapes(int64_t nbits, int64_t m, size_t n) {
    // Rows need bit_width(n - 1) bits. The directory gets between n/(2s)
    // and n/s buckets (at most 4/s bytes a code), or one per key where the
    // substring is that short; s is the smallest of 4, 8 and 16 whose
    // directories, with the 4-byte entries, keep the m tables within the flat
    // store's 8 * W + 8 bytes a code (a longer directory means shorter runs
    // to search a probe; 16 where nothing fits, as for a large explicit m).
    // The key bits below the directory's go into the entries' tags as far as
    // the rows leave room.
    const auto subs = mih_substrings(nbits, mih_choose_m(nbits, m, n));
    const int64_t w = (nbits + 63) / 64;
    int row_bits = 1;
    while (row_bits < 32 && (uint64_t{1} << row_bits) < n) ++row_bits;
    const double dir_budget =
        (8.0 * static_cast<double>(w) + 8.0) / static_cast<double>(subs.size()) - 4.0 - kTableOverhead;
    uint64_t shift = 16;
    for (uint64_t s : {uint64_t{4}, uint64_t{8}}) {
        if (4.0 / static_cast<double>(s) <= dir_budget) {
            shift = s;
            break;
        }
    }
    int max_dir = 0;
    while (max_dir < 30 && (shift << max_dir) <= n) ++max_dir;
    std::vector<MihTableShape> out;
    for (const auto& sub : subs) {
        MihTableShape t;
        t.begin = sub.first;
        t.len = sub.second;
        t.dir_bits = static_cast<int>(std::min<int64_t>(t.len, max_dir));
        t.row_bits = row_bits;
        t.tag_bits = static_cast<int>(std::min<int64_t>(t.len - t.dir_bits, 32 - row_bits));
        out.push_back(t);
    }
    return out;
}

MihCosts mih_costs(size_t w, Isa isa) {
    return MihCosts{kProbeCost, kCandidateCost * scan_speed(isa) + static_cast<double>(w)};
}

double mih_budget(double scan_fraction, size_t n, size_t w) {
    return scan_fraction * static_cast<double>(n) * static_cast<double>(w);
}

size_t mih_batch_trials(size_t nq) { return std::min(kMaxTrials, std::max(kMinTrials, nq / 16)); }

}  // namespace hamsearch
