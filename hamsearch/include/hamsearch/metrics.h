// Retrieval metrics of Hamming ranking without sorting: Hamming distances lie
// in [0, nbits], so a histogram of each query's distances, split by
// relevance, gives every metric that does not depend on the order inside a
// tie (tie-aware AP, PR by radius). Each relevant item's rank under the
// (distance, row) order (MAP@all, MAP@k, precision at a depth) is the count
// of closer items plus its place in its bucket: kept during the same pass
// for MAP@all up to 2**22 - 1 database rows, else found by a second pass in
// row order that knows each bucket's offset. Memory: a few counters per
// bucket per thread, 8 bytes per relevant item for the one pass; never a
// distance matrix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace hamsearch {

/// How relevance is given. Exactly one form is used, by `kind`.
struct Relevance {
    enum class Kind { labels, matrix, lists };
    Kind kind = Kind::labels;
    /// labels: item j is relevant to query q when their label bit sets
    /// (label_words uint64 words per row) intersect.
    const uint64_t* query_labels = nullptr;  ///< nq x label_words
    const uint64_t* db_labels = nullptr;     ///< n x label_words
    size_t label_words = 0;
    /// matrix: nq x n bytes, row-major, nonzero = relevant.
    const uint8_t* matrix = nullptr;
    /// lists: the relevant rows of query q are ids[lims[q] .. lims[q+1]),
    /// each in [0, n); repeats count once.
    const int64_t* lims = nullptr;  ///< nq + 1
    const int64_t* ids = nullptr;
};

/// What to compute and where to put it. The caller allocates the outputs.
struct MetricsRequest {
    bool map_all = false;         ///< ap_all[q]: AP over the whole ranking
    bool tie_aware = false;       ///< ap_tie[q]: expected AP over tie orderings
    std::vector<int64_t> map_ks;  ///< ap_k[q * size + j]: AP@map_ks[j], each in [1, n]
    int64_t depth = 0;            ///< hits[r - 1] += relevant items at rank r <= depth, over queries
    bool pr = false;              ///< pairs[d], relevant[d] += items (relevant items) at distance d
    double* ap_all = nullptr;     ///< nq
    double* ap_tie = nullptr;     ///< nq
    double* ap_k = nullptr;       ///< nq x map_ks.size()
    int64_t* hits = nullptr;      ///< depth, zeroed by the caller
    int64_t* pairs = nullptr;     ///< nbits + 1, zeroed by the caller
    int64_t* relevant = nullptr;  ///< nbits + 1, zeroed by the caller
};

/// Scores nq queries (q: nq x words, row-major) against n database codes in
/// row order, ranked by (Hamming distance, row). words = ceil(nbits / 64);
/// pad bits must be zero. Queries are split over up to `threads` threads;
/// the results do not depend on the thread count or the kernel level.
/// Throws std::invalid_argument on inconsistent arguments (a second line of
/// defence behind the Python checks); never writes into its inputs.
void evaluate_metrics(const uint64_t* q, size_t nq, const uint64_t* db, size_t n, int64_t nbits,
                      const Relevance& rel, const MetricsRequest& req, size_t threads);

/// sum_{u=a+1}^{b} 1/u for 0 <= a <= b, to a few ulps: directly for short
/// ranges, else through log1p and the asymptotic series of the harmonic
/// numbers (no cancellation between two large harmonic numbers).
double harmonic_range(int64_t a, int64_t b);

}  // namespace hamsearch
