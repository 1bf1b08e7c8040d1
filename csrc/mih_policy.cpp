// Multi-index hashing's policy (see mih_policy.h).
#include "mih_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>

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

// Radius-0 weights are computed up to this distance (mih_knn_model).
constexpr size_t kMaxWeighed = 256;

// The sample: one code per kSampleSpacing at most, so that its popcounts
// (by the portable count, a few times a scan word's cost) stay within about
// 1% of the scan the prediction may save.
constexpr size_t kSampleSpacing = 1024;

double binom(int64_t n, int64_t k) {
    if (k < 0 || k > n) return 0.0;
    return std::exp(std::lgamma(double(n) + 1) - std::lgamma(double(k) + 1) - std::lgamma(double(n - k) + 1));
}

// The work of probing table j at substring radius s: its keys, and their
// candidates at uniform occupancy (n / 2^len a key).
struct StepWork {
    double probes = 0;
    double candidates = 0;
    void add(int64_t len, int64_t s, size_t n) {
        const double keys = binom(len, s);
        probes += keys;
        candidates += keys * std::ldexp(static_cast<double>(n), -static_cast<int>(len));
    }
    double cost(const MihCosts& c, size_t n) const {
        return probes * c.probe + std::min(static_cast<double>(n), candidates) * c.candidate;
    }
};

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

std::vector<double> mih_probe_counts(const std::vector<int64_t>& lens, int64_t smax, int64_t rr) {
    const int64_t m = static_cast<int64_t>(lens.size());
    std::vector<double> probes(static_cast<size_t>(smax + 1), 0.0);
    for (int64_t s = 0; s <= smax; ++s)
        for (int64_t j = 0; j < m && m * s + j <= rr; ++j)
            probes[static_cast<size_t>(s)] += binom(lens[static_cast<size_t>(j)], s);
    return probes;
}

int64_t mih_near_bound(int64_t nbits, int64_t len) {
    const double rest = static_cast<double>(nbits - len);
    return std::max<int64_t>(-1, static_cast<int64_t>(std::floor(rest / 2 - 2 * std::sqrt(rest))));
}

MihCosts mih_costs(size_t w, Isa isa) {
    return MihCosts{kProbeCost, kCandidateCost * scan_speed(isa) + static_cast<double>(w)};
}

double mih_budget(double scan_fraction, size_t n, size_t w) {
    return scan_fraction * static_cast<double>(n) * static_cast<double>(w);
}

size_t mih_batch_trials(size_t nq) { return std::min(kMaxTrials, std::max(kMinTrials, nq / 16)); }

size_t mih_probe_threads(size_t nq, size_t threads) {
    return std::max<size_t>(1, std::min(threads, (nq + kMihQueriesPerThread - 1) / kMihQueriesPerThread));
}

std::vector<size_t> mih_sample_rows(size_t n) {
    const size_t S = std::min(kMihSampleSize, n / kSampleSpacing);
    std::vector<size_t> rows(S);
    for (size_t i = 0; i < S; ++i) rows[i] = static_cast<size_t>(static_cast<uint64_t>(i) * n / S);
    return rows;
}

double mih_tail_z(size_t k, size_t n) {
    if (k == 0) return -std::numeric_limits<double>::infinity();
    if (k >= n) return std::numeric_limits<double>::infinity();
    // Phi(z) = p by Acklam's rational approximation (relative error under
    // 1.2e-9), then one Halley step on erfc: a few hundred nanoseconds a
    // batch, where a bisection on erfc cost microseconds (a single query's).
    const double p = static_cast<double>(k) / static_cast<double>(n);
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                               1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                               -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    double z;
    if (p < 0.02425) {
        const double q = std::sqrt(-2 * std::log(p));
        z = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    } else if (p <= 1 - 0.02425) {
        const double q = p - 0.5, r = q * q;
        z = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    } else {
        const double q = std::sqrt(-2 * std::log1p(-p));
        z = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    const double e = 0.5 * std::erfc(-z / std::sqrt(2.0)) - p;
    const double u = e * std::sqrt(2 * 3.14159265358979323846) * std::exp(z * z / 2);
    return z - u / (1 + z * u / 2);
}

int64_t mih_predict_kth(int32_t* dist, size_t S, int64_t nbits, size_t n, size_t k, double z) {
    if (S == 0 || n == 0) return nbits + 1;
    // Empirical: the sample's ceil(k S / n)-th smallest distance has about
    // k codes of the database within it.
    const double share = static_cast<double>(k) * static_cast<double>(S) / static_cast<double>(n);
    const size_t need = std::min(S, std::max<size_t>(1, static_cast<size_t>(std::ceil(share))));
    double sum = 0, sum2 = 0;
    int32_t lowest = dist[0];
    for (size_t i = 0; i < S; ++i) {
        const double d = dist[i];
        sum += d;
        sum2 += d * d;
        lowest = std::min(lowest, dist[i]);
    }
    int64_t est = lowest;
    if (need > 1) {
        std::nth_element(dist, dist + (need - 1), dist + S);
        est = dist[need - 1];
    }
    // Below the sample's resolution (k / n under 1 / S), a normal tail with
    // the sample's mean and variance: the smallest r whose continuity-
    // corrected normal count n * Phi((r + 0.5 - mean) / sd) reaches k.
    if (share < 1.0 && std::isfinite(z)) {
        const double mean = sum / static_cast<double>(S);
        const double var = std::max(0.0, sum2 / static_cast<double>(S) - mean * mean);
        const double r = std::ceil(mean + std::sqrt(var) * z - 0.5);
        est = std::min<int64_t>(est, static_cast<int64_t>(std::max(0.0, r)));
    }
    return std::min<int64_t>(std::max<int64_t>(est, 0), nbits);
}

MihKnnModel mih_knn_model(const std::vector<int64_t>& lens, int64_t nbits, size_t n, size_t w, Isa isa) {
    const MihCosts c = mih_costs(w, isa);
    const int64_t m = static_cast<int64_t>(lens.size());
    const size_t nb = static_cast<size_t>(nbits);
    MihKnnModel model;
    model.cost.assign(nb + 2, std::numeric_limits<double>::infinity());
    // The search stops after the step (radius s, table j) with m*s + j >= D:
    // cost[D] is every step up to and including (D / m, D % m).
    for (int64_t len : lens) {
        double near = 0;  // P(Binomial(nbits - len, 1/2) <= the bound)
        for (int64_t x = 0; x <= mih_near_bound(nbits, len); ++x) near += binom(nbits - len, x);
        model.uniform_near += std::ldexp((static_cast<double>(n) - 1.0) * near, -static_cast<int>(nbits));
    }
    model.probes = mih_probe_counts(lens, 64, std::numeric_limits<int64_t>::max());
    StepWork work;
    for (int64_t D = 0; D <= nbits && m > 0; ++D) {
        work.add(lens[static_cast<size_t>(D % m)], D / m, n);
        model.cost[static_cast<size_t>(D)] = work.cost(c, n);
    }
    // P(no substring within s) for d differing bits: placements with more
    // than s in every table over all C(nbits, d), counted table by table
    // (positive terms only, so no cancellation for any m), for d up to
    // kMaxWeighed (beyond, weight 0: such codes are not counted).
    const size_t dmax = std::min<size_t>(nb, kMaxWeighed);
    model.found_weight.assign(kMihWeighedRadii * (nb + 1), 0.0);
    std::vector<double> ways(dmax + 1), next(dmax + 1), choose;
    for (size_t s = 0; s < kMihWeighedRadii; ++s) {
        std::fill(ways.begin(), ways.end(), 0.0);
        ways[0] = 1.0;
        for (int64_t len : lens) {
            choose.resize(static_cast<size_t>(len) + 1);
            for (int64_t x = 0; x <= len; ++x) choose[static_cast<size_t>(x)] = binom(len, x);
            std::fill(next.begin(), next.end(), 0.0);
            for (size_t b = 0; b <= dmax; ++b) {
                if (ways[b] == 0) continue;
                for (size_t x = s + 1; x <= static_cast<size_t>(len) && b + x <= dmax; ++x) next[b + x] += ways[b] * choose[x];
            }
            ways.swap(next);
        }
        for (size_t d = 0; d <= dmax; ++d) {
            const double found = 1.0 - ways[d] / binom(nbits, static_cast<int64_t>(d));
            model.found_weight[s * (nb + 1) + d] = found > 1e-12 ? 1.0 / found : 0.0;
        }
    }
    return model;
}

MihKnnPlan mih_knn_plan(const MihKnnModel& model, size_t m, size_t n, size_t w, Isa isa, double scan_fraction,
                        size_t S, size_t sample_near) {
    MihKnnPlan plan;
    plan.deep_peek = S == 0 || static_cast<double>(sample_near) >
                                   (kMihStructure * model.uniform_near + 1.0) * static_cast<double>(S);
    plan.budget = mih_budget(scan_fraction, n, w);
    const int64_t nbits = static_cast<int64_t>(model.cost.size()) - 2;
    if (std::isinf(plan.budget)) {
        plan.dc = nbits + 1;
        plan.peek = plan.budget;
        return plan;
    }
    for (int64_t D = 0; D <= nbits && model.cost[static_cast<size_t>(D)] <= plan.budget; ++D) plan.dc = D;
    const double peek = kMihPeekShare * plan.budget;
    if (static_cast<double>(m) * mih_costs(w, isa).probe <= peek) plan.peek = peek;
    return plan;
}

MihRadiusModel mih_radius_model(const std::vector<int64_t>& lens, int64_t r, size_t n, size_t w, Isa isa, size_t S) {
    const int64_t m = static_cast<int64_t>(lens.size());
    StepWork work;
    for (int64_t s = 0; m > 0 && m * s <= r; ++s)
        for (int64_t j = 0; j < m && m * s + j <= r; ++j) work.add(lens[static_cast<size_t>(j)], s, n);
    const MihCosts c = mih_costs(w, isa);
    MihRadiusModel model;
    model.probe_work = work.probes * c.probe;
    model.uniform_candidates = work.candidates;
    model.candidate_cost = c.candidate;
    model.n = static_cast<double>(n);
    model.S = static_cast<double>(S);
    return model;
}

}  // namespace hamsearch
