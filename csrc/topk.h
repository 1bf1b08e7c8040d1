// Exact top-k selection over (distance, id) pairs that exploits the small
// integer range of Hamming distances.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "hamsearch/common.h"
#include "hamsearch/constants.h"

namespace hamsearch {

struct Candidate {
    int32_t d;
    int64_t id;
};

inline bool operator<(const Candidate& a, const Candidate& b) { return a.d < b.d || (a.d == b.d && a.id < b.id); }

/// Keeps the k smallest (distance, id) pairs seen so far. Candidates collect
/// in a buffer of k + max(k/4, 128) (tau tightens every k/4 admissions, which
/// keeps the scan's pass rate near its floor for large k); when it fills, a histogram of its distances finds
/// the k-th distance tau, everything below tau stays, and of the candidates
/// at tau the smallest ids stay. From then on a candidate is admitted only if
/// it beats (tau, tau_id), so a scan needs the exact pair only for the rare
/// codes with distance <= tau (threshold()).
/// Counts d[0, len) (each d < bins) into h[0, 4 * bins), zeroed by the
/// caller: four counts per distance, a run of four rows at a time into each,
/// so that rows of one distance do not chain their increments through
/// memory. Distance b's count is counted(h, bins, b).
template <class Count>
inline void count_distances(const int32_t* d, size_t len, size_t bins, Count* h) {
    size_t i = 0;
    for (; i + 4 <= len; i += 4) {
        ++h[static_cast<size_t>(d[i])];
        ++h[bins + static_cast<size_t>(d[i + 1])];
        ++h[2 * bins + static_cast<size_t>(d[i + 2])];
        ++h[3 * bins + static_cast<size_t>(d[i + 3])];
    }
    for (; i < len; ++i) ++h[static_cast<size_t>(d[i])];
}

/// Distance b's count in count_distances' four histograms.
template <class Count>
inline size_t counted(const Count* h, size_t bins, size_t b) {
    return static_cast<size_t>(h[b]) + h[bins + b] + h[2 * bins + b] + h[3 * bins + b];
}

/// The k-th smallest of d[0, len) (1 <= k <= len), every d in [0, max_d],
/// by count_distances into hist (room made there).
inline int32_t kth_distance(const int32_t* d, size_t len, size_t k, int32_t max_d, std::vector<uint32_t>& hist) {
    const size_t bins = static_cast<size_t>(max_d) + 1;
    hist.assign(4 * bins, 0);
    const uint32_t* h = hist.data();
    count_distances(d, len, bins, hist.data());
    size_t seen = 0;
    for (size_t b = 0; b < bins; ++b) {
        seen += counted(h, bins, b);
        if (seen >= k) return static_cast<int32_t>(b);
    }
    return max_d;
}

class TopK {
   public:
    explicit TopK(size_t k) : k_(k), cap_(capacity(k)) { buf_.reserve(std::min<size_t>(cap_, 4096)); }

    /// Candidates held at most for a given k.
    static size_t capacity(size_t k) { return k + std::max<size_t>(k / 4, 128); }

    size_t k() const { return k_; }

    /// Codes farther than this cannot enter; codes at it may (ties by id).
    int32_t threshold() const { return tau_; }

    /// The bound for a run of codes whose ids all exceed min_id: at tau only
    /// an id below tau_id enters, so such a run needs a distance below tau.
    /// Saves pushing the (often many) codes tied at tau that would be refused.
    int32_t threshold_above(int64_t min_id) const { return min_id > tau_id_ ? tau_ - 1 : tau_; }

    void push(int32_t d, int64_t id) {
        if (d > tau_ || (d == tau_ && id > tau_id_)) return;
        buf_.push_back({d, id});
        if (buf_.size() >= cap_) compact();
    }

    /// Starts a fresh selection from a first run of codes whose k-th
    /// smallest distance is tau (kth_distance): the codes of that run worth
    /// pushing are then only those with d <= threshold().
    void prime(int32_t tau) {
        if (buf_.empty()) tau_ = tau;
    }

    /// The k-th smallest distance pushed so far, or INT32_MAX before k pushes.
    int32_t kth() {
        compact();
        return buf_.size() < k_ ? std::numeric_limits<int32_t>::max() : tau_;
    }

    /// Writes the kept results in (distance, id) order into D[0, width),
    /// I[0, width), padded with (kDistancePad, kIdPad) past the last one.
    void finish(int32_t* D, int64_t* I, size_t width) {
        compact();
        std::sort(buf_.begin(), buf_.end());
        size_t j = 0;
        for (; j < buf_.size(); ++j) {
            D[j] = buf_[j].d;
            I[j] = buf_[j].id;
        }
        for (; j < width; ++j) {
            D[j] = kDistancePad;
            I[j] = kIdPad;
        }
    }

    /// The kept candidates, unordered (after compaction at most k).
    const std::vector<Candidate>& compacted() {
        compact();
        return buf_;
    }

   private:
    void compact() {
        // Exactly k candidates and no bound yet: derive it (kth() needs it).
        if (buf_.size() < k_ || (buf_.size() == k_ && tau_ != std::numeric_limits<int32_t>::max())) return;
        int32_t lo = buf_[0].d, hi = buf_[0].d;
        for (const Candidate& c : buf_) {
            lo = std::min(lo, c.d);
            hi = std::max(hi, c.d);
        }
        hist_.assign(static_cast<size_t>(hi - lo) + 1, 0);
        for (const Candidate& c : buf_) ++hist_[static_cast<size_t>(c.d - lo)];
        size_t below = 0;  // candidates strictly closer than tau
        int32_t tau = lo;
        for (size_t b = 0;; ++b) {
            if (below + hist_[b] >= k_) {
                tau = lo + static_cast<int32_t>(b);
                break;
            }
            below += hist_[b];
        }
        // Order: [d < tau] [d == tau] [dropped].
        auto mid = std::partition(buf_.begin(), buf_.end(), [tau](const Candidate& c) { return c.d < tau; });
        auto end = std::partition(mid, buf_.end(), [tau](const Candidate& c) { return c.d == tau; });
        const size_t need = k_ - below;
        auto by_id = [](const Candidate& a, const Candidate& b) { return a.id < b.id; };
        if (static_cast<size_t>(end - mid) > need) std::nth_element(mid, mid + need, end, by_id);
        buf_.resize(k_);
        tau_ = tau;
        tau_id_ = std::max_element(mid, mid + need, by_id)->id;
    }

    size_t k_;
    size_t cap_;
    int32_t tau_ = std::numeric_limits<int32_t>::max();
    int64_t tau_id_ = std::numeric_limits<int64_t>::max();
    std::vector<Candidate> buf_;
    std::vector<uint32_t> hist_;
};

}  // namespace hamsearch
