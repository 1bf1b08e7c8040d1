// Multi-index hashing's policy: how many substrings, how each table is laid
// out, what probing costs against a scan, and when a query or a batch gives
// up on the tables. The native MIHIndex and the Numba backend (through
// hamsearch._core) both take every decision from here, so they choose the
// same m, the same tables and the same fallbacks on the same data.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "hamsearch/common.h"

namespace hamsearch {

/// The shape of one substring's table: bits [begin, begin + len) of the
/// code; a directory of 2^dir_bits buckets over the key's top bits; entries
/// (tag << row_bits) | row, the tag holding the next tag_bits key bits.
struct MihTableShape {
    int64_t begin = 0;
    int64_t len = 0;
    int dir_bits = 0;
    int row_bits = 0;
    int tag_bits = 0;
};

/// What probing costs, in 64-bit words compared by the active kernel's scan.
struct MihCosts {
    double probe = 0;      ///< one key looked up in a table
    double candidate = 0;  ///< one row verified with the full popcount
};

/// The default fraction of a full scan a query may spend on the tables
/// before it gives up and the scan answers it.
constexpr double kMihScanFraction = 0.5;
/// Probes are counted, and the budget checked, per chunk of this many keys
/// of one table at one substring radius (and at the end of that radius).
constexpr size_t kMihProbeChunk = 32;

/// m = 0: round(nbits / log2(n)) (substrings of about log2(n) bits, the
/// paper's choice), at most as many tables as the flat store's bytes a code
/// pay for, at least ceil(nbits / 64); otherwise m itself.
int64_t mih_choose_m(int64_t nbits, int64_t m, size_t n);

/// (first bit, length) of m nearly equal substrings, the longer ones first.
std::vector<std::pair<int64_t, int64_t>> mih_substrings(int64_t nbits, int64_t m);

/// probes[s], s = 0..smax: the keys at substring distance s that a search
/// probes over tables of lengths lens, summed over the tables it probes at
/// that distance: table j where m*s + j <= rr (the pigeonhole bound of a
/// radius search; every table for k-NN, rr = the largest int64_t).
std::vector<double> mih_probe_counts(const std::vector<int64_t>& lens, int64_t smax, int64_t rr);

/// The tables for n codes (m as asked, 0: automatic).
std::vector<MihTableShape> mih_table_shapes(int64_t nbits, int64_t m, size_t n);

/// The costs at a kernel level for codes of w words.
MihCosts mih_costs(size_t w, Isa isa);

/// Work a query may spend on the tables: scan_fraction of a scan of n codes.
double mih_budget(double scan_fraction, size_t n, size_t w);

/// Queries of a batch tried on the tables before half of them giving up
/// sends the rest straight to the scan. Only queries that probed count: one
/// the prediction sent to the scan before any probe is not a trial.
size_t mih_batch_trials(size_t nq);

/// Threads that probe a batch of nq queries: at most threads, and one per
/// kMihQueriesPerThread queries, so that a small batch (a query at a time)
/// does not start a thread for probes that cost less than starting it.
size_t mih_probe_threads(size_t nq, size_t threads);
constexpr size_t kMihQueriesPerThread = 8;

// -- the per-query prediction ---------------------------------------------
//
// Before a k-NN query probes, its distances to a small fixed sample of the
// database (mih_sample_rows: at most kMihSampleSize codes, one per 1024)
// predict the distance D of its k-th neighbour (mih_predict_kth), and the
// model of the tables (MihKnnModel::cost) prices a search that stops at D.
// Where that is within the budget (scan_fraction of a scan) the query
// probes with that budget, as before. Where not, the scan answers it, after
// a peek: the near neighbours of clustered codes are too few for a sample
// of a few hundred codes to see, so a query predicted dearer first probes
// as the search would, within a small budget (the peek, kMihPeekShare of
// the budget; unlike the search with the budget, a peek starts a radius it
// cannot finish, a chunk of keys at a time). Each code it finds at distance
// d <= dc (the largest D the budget affords) counts, once radius s is done,
// as 1 / P(a code at distance d has some substring within s of the query's)
// codes of the database within dc (MihKnnModel::found_weight); once the
// codes found within dc reach k, or their weights after a whole radius
// reach kMihEvidenceMargin * k (an estimate, so with a margin: a cluster of
// about k codes has its k-th at the edge of what the budget affords), the
// tables are predicted cheaper after all and the query goes on with the
// whole budget; where they cannot get there (mih_peek_may_reach: even the
// estimate's upper bound is under k), the peek stops at the end of a
// radius. Where the database has no local structure (uniform-like: the
// codes sharing a substring with a sampled code are no nearer to it than
// uniform codes sharing that substring would be, MihKnnModel::uniform_near),
// a peek goes past radius 0 only if it found a code nearer than the
// predicted D, so a far query spends about m probes; in clustered codes a
// query often shares no substring with its cluster (a flipped bit in each),
// and its peek goes on to radius 1 and beyond. A peek that found no code
// nearer than predicted is a batch trial given up; one that found some is
// no trial.
// So a wrong "scan" costs at most the peek, kMihPeekShare * scan_fraction
// of a scan (1/16 by default), a wrong "tables" at most scan_fraction (1/2),
// and the prediction itself under 1/1024 of a scan's popcounts.

/// Codes sampled per table build for the prediction, at most.
constexpr size_t kMihSampleSize = 256;
/// The peek's budget, as a share of the query's budget (scan_fraction of a scan).
constexpr double kMihPeekShare = 0.125;
/// Radii the found codes' weights are tabulated for (later radii weigh 1).
constexpr size_t kMihWeighedRadii = 4;
/// The weighed estimate of the codes within dc must reach this times k.
constexpr double kMihEvidenceMargin = 4.0;
/// Local structure: the codes sharing a substring with a sampled code
/// include this many times the near ones (mih_near_bound) uniform codes
/// would give, plus one a sampled code.
constexpr double kMihStructure = 4.0;
/// The estimate's upper bound: this many standard deviations of the near
/// count (Poisson) above it.
constexpr double kMihEvidenceSpread = 2.0;

/// Codes sharing a sampled code's substring that are looked at, a table:
/// the first so many rows, so that duplicated codes (a run of n rows) do
/// not make a build look at n rows a sampled code.
constexpr size_t kMihSampleRun = 4096;

/// The largest distance at which a code sharing a len-bit substring with a
/// sampled code counts as near to it: four standard deviations below what
/// the other nbits - len bits give uniform codes, floor((nbits - len) / 2 -
/// 2 sqrt(nbits - len)), -1 for none. Uniform codes are that near with a
/// probability under 1e-4; clustered ones (a cluster's codes within 0.1
/// nbits of each other) mostly are, where they also share a substring.
int64_t mih_near_bound(int64_t nbits, int64_t len);

/// Whether a peek that has finished radius s (near codes counted within
/// dc, evidence their weighed estimate) should go on to the next, which
/// costs radius_cost more work (peek - work left). The tables need kk codes
/// within dc; the peek gets there by its evidence after a whole radius
/// reaching kMihEvidenceMargin * kk, or by counting kk directly.
/// - Where it found some codes within dc and the estimate is under kk (a
///   cluster of fewer than k codes near the query), neither will happen: it
///   stops. Not after radius 0: the weights take each code's differing bits
///   as placed at random, but a cluster's codes share the query's own
///   distance from the cluster's centre, and where that puts a bit in every
///   substring radius 0 finds almost none of the cluster, however large.
/// - Where it cannot afford the whole next radius only the direct count can
///   get there: of the codes within dc not found yet (estimate - near) the
///   part of the radius it affords finds at most that share.
/// Both take the estimate's upper bound, evidence * (1 + kMihEvidenceSpread
/// / sqrt(near)): the near count's Poisson bound at the same average weight.
/// A peek that found none within dc knows nothing yet of a cluster the next
/// radius may find: it goes on.
inline bool mih_peek_may_reach(int64_t s, double near, double evidence, double work, double radius_cost, double peek,
                               size_t kk) {
    if (near == 0) return true;
    const double upper = evidence * (1.0 + kMihEvidenceSpread / std::sqrt(near));
    if (s > 0 && upper < static_cast<double>(kk)) return false;
    if (work + radius_cost <= peek) return true;
    const double share = radius_cost > 0 ? std::max(0.0, peek - work) / radius_cost : 1.0;
    return near + share * std::max(0.0, upper - near) >= static_cast<double>(kk);
}

/// The sampled rows for n codes: S = min(kMihSampleSize, n / 1024) rows
/// evenly spaced, i * n / S (none below 1024 codes, where a scan costs too
/// little for a sample to pay).
std::vector<size_t> mih_sample_rows(size_t n);

/// The standard normal quantile of k / n (the prediction's tail), computed
/// once per batch; -infinity for k = 0 and +infinity once k >= n.
double mih_tail_z(size_t k, size_t n);

/// The predicted distance of the k-th neighbour, 0..nbits, from the query's
/// distances to the S sampled codes (dist is reordered): the smaller of the
/// empirical estimate (the ceil(k * S / n)-th smallest sample distance, at
/// least the first) and, where k / n is below the sample's resolution, a
/// normal tail fitted to the sample's mean and variance at quantile k / n
/// (z = mih_tail_z(k, n)). nbits + 1 where S = 0 (no estimate).
int64_t mih_predict_kth(int32_t* dist, size_t S, int64_t nbits, size_t n, size_t k, double z);

/// What the prediction knows of one set of tables (substring lengths lens,
/// n codes of w words) at a kernel level; built once per table build.
struct MihKnnModel {
    /// cost[D], D = 0..nbits + 1: the predicted work of a k-NN search whose
    /// k-th neighbour lies at distance D: every probe up to the step (radius
    /// D / m, table D % m) after which it stops, and their candidates at
    /// uniform occupancy (n / 2^len a key, at most n); infinite at nbits + 1.
    std::vector<double> cost;
    /// found_weight[s * (nbits + 1) + d], s < kMihWeighedRadii, d = 0..nbits:
    /// 1 / P(some substring of a code at distance d, its differing bits
    /// placed at random, is within s of the query's); 0 beyond distance 256.
    std::vector<double> found_weight;
    /// probes[s], s = 0..64: the keys of substring radius s over all tables
    /// (substrings are at most 64 bits: by radius 64 every code is found).
    std::vector<double> probes;
    /// The near codes (mih_near_bound) that share a substring with a code,
    /// summed over the tables, were the n codes uniform: sum over the tables
    /// of (n - 1) / 2^len * P(Binomial(nbits - len, 1/2) <= the bound).
    double uniform_near = 0;
    double weight(size_t s, size_t d) const {
        const size_t row = found_weight.size() / kMihWeighedRadii;
        return s < kMihWeighedRadii ? found_weight[s * row + d] : 1.0;
    }
};
MihKnnModel mih_knn_model(const std::vector<int64_t>& lens, int64_t nbits, size_t n, size_t w, Isa isa);

/// A batch's k-NN plan: a query whose predicted D is at most dc probes
/// within budget; any other peeks within peek (0: none, it goes to the scan
/// before any probe) and goes on within budget once the evidence reaches k.
/// An infinite budget (scan_fraction infinite) never gives up: dc = nbits + 1.
struct MihKnnPlan {
    int64_t dc = -1;  ///< the largest D with cost[D] <= budget, -1 for none
    double budget = 0;
    double peek = 0;
    bool deep_peek = true;  ///< a peek may go past radius 0 with no code nearer than predicted
};
/// The peek needs its m radius-0 probes within its budget. sample_near:
/// over the S sampled codes and the tables, the other codes whose substring
/// equals theirs (the first kMihSampleRun rows) and which lie within
/// mih_near_bound of them; deep_peek
/// where that is more than kMihStructure times the uniform expectation,
/// plus one, a sampled code (and where S = 0).
MihKnnPlan mih_knn_plan(const MihKnnModel& model, size_t m, size_t n, size_t w, Isa isa, double scan_fraction,
                        size_t S, size_t sample_near);

/// The predicted work of a radius-r search over tables of lengths lens:
/// every probe its pigeonhole steps make, and as candidates the larger of
/// their uniform occupancy and the hits the query's sample predicts
/// (sample_hits of the S sampled codes within r: sample_hits * n / S), at
/// most n. A query predicted dearer than its budget goes to the scan before
/// any probe. Built once per batch; cost() per query.
struct MihRadiusModel {
    double probe_work = 0;          ///< the probes' cost
    double uniform_candidates = 0;  ///< their candidates at uniform occupancy
    double candidate_cost = 0;
    double n = 0;
    double S = 0;
    double cost(size_t sample_hits) const {
        const double hits = S > 0 ? static_cast<double>(sample_hits) * n / S : 0.0;
        return probe_work + std::min(n, std::max(uniform_candidates, hits)) * candidate_cost;
    }
};
MihRadiusModel mih_radius_model(const std::vector<int64_t>& lens, int64_t r, size_t n, size_t w, Isa isa, size_t S);

}  // namespace hamsearch
