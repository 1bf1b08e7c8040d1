// Retrieval metrics in one or two streaming passes per query (see metrics.h).
// The distances come from the active level's kernel; the counting and the
// floating point here are plain C++ compiled for the baseline target, in the
// same order of operations as hamsearch/_numba.py's twin, so that both
// backends and every kernel level give the same numbers.
#include "hamsearch/metrics.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include "hamsearch/common.h"
#include "hamsearch/flat_index.h"
#include "hamsearch/constants.h"
#include "parallel.h"

namespace hamsearch {

namespace {

// Rows per block: distances and relevance of a block stay in L1.
constexpr size_t kBlockRows = 2048;
// Copies of the pass-one histogram, cycled by row: consecutive rows at the
// same distance then increment different counters, not one chain of
// store-to-load dependencies.
constexpr size_t kCopies = 4;
static_assert((kCopies & (kCopies - 1)) == 0, "kCopies: a power of two (rows pick a copy by i & (kCopies - 1))");
// A bucket's cursor holds two counts in one word, items in the low field
// and relevant items in the next (one add per row), 32 bits each; in one
// pass, kField bits each, with the distance above them.
constexpr unsigned kField = 22;
constexpr uint64_t kFieldMask = (uint64_t{1} << kField) - 1;
constexpr unsigned kDistShift = 2 * kField;
// Up to this many database rows (and distances below 2**(64 - kDistShift)),
// MAP@all takes one pass over the database that keeps the relevant rows'
// places in their buckets (8 bytes a row at most, per thread); the ranks
// follow from the bucket offsets once the pass is over. Above it, a second
// pass recomputes the places, and memory stays a few counters per bucket.
constexpr size_t kOnePassRows = kFieldMask;
// Harmonic ranges up to this length, and tied groups up to this size, are
// summed term by term.
constexpr int64_t kDirect = 32;
// Below this many word operations per thread a thread costs more than it saves.
constexpr size_t kMinWorkPerThread = size_t{1} << 17;
constexpr double kEulerGamma = 0.57721566490153286060651209;

// H_x for x > kDirect: log x + gamma + 1/(2x) - 1/(12x^2) + 1/(120x^4)
// - 1/(252x^6) + 1/(240x^8); the next term is below 1e-17 there.
double harmonic_asymptotic(double x) {
    const double r = 1.0 / (x * x);
    return std::log(x) + kEulerGamma + 0.5 / x - r * (1.0 / 12.0 - r * (1.0 / 120.0 - r * (1.0 / 252.0 - r / 240.0)));
}

void check_arguments(const uint64_t* q, size_t nq, const uint64_t* db, size_t n, int64_t nbits,
                     const Relevance& rel, const MetricsRequest& req) {
    if (nbits < 1 || nbits > kMaxBits) {
        throw std::invalid_argument("nbits: expected 1 <= nbits <= 2**20, got " + std::to_string(nbits));
    }
    if (n < 1) throw std::invalid_argument("db: expected at least one database code");
    // Ranks and counts share a 64-bit word in ranks(): 32 bits each.
    if (n >= (size_t{1} << 32)) {
        throw std::invalid_argument("db: expected fewer than 2**32 database codes, got " + std::to_string(n));
    }
    const size_t w = static_cast<size_t>((nbits + 63) / 64);
    check_pad_bits(q, nq, w, nbits, "q");
    check_pad_bits(db, n, w, nbits, "db");
    for (const int64_t k : req.map_ks) {
        if (k < 1 || static_cast<uint64_t>(k) > n) {
            throw std::invalid_argument("map_ks: expected 1 <= k <= " + std::to_string(n) + ", got " +
                                        std::to_string(k));
        }
    }
    if (req.depth < 0 || static_cast<uint64_t>(req.depth) > n) {
        throw std::invalid_argument("depth: expected 0 <= depth <= " + std::to_string(n) + ", got " +
                                    std::to_string(req.depth));
    }
    if ((req.map_all && !req.ap_all) || (req.tie_aware && !req.ap_tie) || (!req.map_ks.empty() && !req.ap_k) ||
        (req.depth > 0 && !req.hits) || (req.pr && (!req.pairs || !req.relevant))) {
        throw std::invalid_argument("evaluate_metrics: an output requested without its buffer");
    }
    switch (rel.kind) {
        case Relevance::Kind::labels:
            if (rel.label_words < 1 || (nq && !rel.query_labels) || !rel.db_labels) {
                throw std::invalid_argument("labels: expected query and database label words, at least one per row");
            }
            break;
        case Relevance::Kind::matrix:
            if (nq && !rel.matrix) throw std::invalid_argument("relevance: expected a matrix");
            break;
        case Relevance::Kind::lists: {
            if (!rel.lims || rel.lims[0] != 0) throw std::invalid_argument("relevance: expected offsets from 0");
            for (size_t j = 0; j < nq; ++j) {
                if (rel.lims[j + 1] < rel.lims[j]) {
                    throw std::invalid_argument("relevance: expected non-decreasing offsets, got a decrease at " +
                                                std::to_string(j + 1));
                }
            }
            for (int64_t t = 0; t < rel.lims[nq]; ++t) {
                if (rel.ids[t] < 0 || static_cast<uint64_t>(rel.ids[t]) >= n) {
                    throw std::invalid_argument("relevance: expected database rows in [0, " + std::to_string(n) +
                                                "), got " + std::to_string(rel.ids[t]));
                }
            }
            break;
        }
    }
}

// Relevance of the rows of one block to one query, one functor per form;
// the passes are instantiated for each, so the test inlines into their loops.
struct LabelWord {  // one label word: a single AND
    const uint64_t* db;
    uint64_t query;
    HS_INLINE uint32_t operator()(size_t i) const { return (db[i] & query) != 0; }
};
struct LabelWords {
    const uint64_t* db;
    const uint64_t* query;
    size_t words;
    HS_INLINE uint32_t operator()(size_t i) const {
        uint64_t any = 0;
        for (size_t t = 0; t < words; ++t) any |= db[i * words + t] & query[t];
        return any != 0;
    }
};
struct MatrixRow {
    const uint8_t* row;
    HS_INLINE uint32_t operator()(size_t i) const { return row[i] != 0; }
};
struct BitRow {  // the bit set of the query's relevant rows, from the block's first row
    const uint64_t* bits;
    size_t begin;
    HS_INLINE uint32_t operator()(size_t i) const {
        const size_t r = begin + i;
        return static_cast<uint32_t>((bits[r >> 6] >> (r & 63)) & 1);
    }
};

#if defined(_MSC_VER) && !defined(__clang__)
#define HS_NOINLINE __declspec(noinline)
#else
#define HS_NOINLINE __attribute__((noinline))
#endif

// The hot loops, each its own function: inlined into the passes they ran
// short of registers (every pointer reloaded from the stack per row).

// Histogram of one block: h[copy * stride + 2 d + relevant] += 1, the copy
// cycling by row.
template <class Rel>
HS_NOINLINE void count_block(const int32_t* dist, size_t len, Rel rel, int64_t* h, size_t stride) {
    size_t i = 0;
    for (; i + kCopies <= len; i += kCopies) {
        for (size_t c = 0; c < kCopies; ++c) ++h[c * stride + 2 * static_cast<size_t>(dist[i + c]) + rel(i + c)];
    }
    for (; i < len; ++i) ++h[2 * static_cast<size_t>(dist[i]) + rel(i)];
}

// Places every row of a block: cursor[d] += 1 (rank, low field) and the
// relevance (count of relevant items, the field from bit Shift); the cursors
// of the relevant rows packed into out. Returns how many.
template <unsigned Shift, class Rel>
HS_NOINLINE size_t place_block(const int32_t* dist, size_t len, Rel rel, uint64_t* cursor, uint64_t* out) {
    size_t c = 0;
    for (size_t i = 0; i < len; ++i) {
        const uint64_t r = rel(i);
        const uint64_t v = cursor[dist[i]] + (1 + (r << Shift));
        cursor[dist[i]] = v;
        out[c] = v;
        c += r;
    }
    return c;
}

// As place_block over the rows rows[0..m) of the block only; adds to
// *placed the rows placed at ranks <= deepest.
template <class Rel>
HS_NOINLINE size_t place_rows(const int32_t* dist, const uint32_t* rows, size_t m, Rel rel, uint64_t* cursor,
                              uint64_t* out, int64_t deepest, int64_t* placed) {
    size_t c = 0;
    int64_t count = 0;
    for (size_t t = 0; t < m; ++t) {
        const size_t i = rows[t];
        const uint64_t r = rel(i);
        const uint64_t v = cursor[dist[i]] + (1 + (r << 32));
        cursor[dist[i]] = v;
        count += static_cast<int64_t>(v & 0xffffffffu) <= deepest;
        out[c] = v;
        c += r;
    }
    *placed += count;
    return c;
}

// The precision (relevant count / rank) of each placed cursor (global(t):
// rank in the low half, count in the high half), summed into four partial
// sums (entry t to sum t % 4, a tail past the last multiple of four to the
// first): the Numba twin sums in exactly this order.
template <class Global>
HS_NOINLINE void sum_precisions(size_t c, Global global, const double* inverse, double* sum) {
    double s0 = sum[0], s1 = sum[1], s2 = sum[2], s3 = sum[3];
    const auto p = [&](size_t t) {
        const uint64_t v = global(t);
        return static_cast<double>(static_cast<int64_t>(v >> 32)) * inverse[v & 0xffffffffu];
    };
    size_t t = 0;
    for (; t + 4 <= c; t += 4) {
        s0 += p(t);
        s1 += p(t + 1);
        s2 += p(t + 2);
        s3 += p(t + 3);
    }
    for (; t < c; ++t) s0 += p(t);
    sum[0] = s0;
    sum[1] = s1;
    sum[2] = s2;
    sum[3] = s3;
}

/// One thread's buffers and the passes over the database for one query.
class Scorer {
   public:
    Scorer(const uint64_t* db, size_t n, int64_t nbits, const Relevance& rel, const MetricsRequest& req,
           const double* inverse)
        : db_(db), n_(n), w_(static_cast<size_t>((nbits + 63) / 64)), nb_(static_cast<size_t>(nbits) + 1),
          rel_(rel), req_(req), inverse_(inverse), dist_(kBlockRows), row_(kBlockRows), top_(kBlockRows),
          hist_(kCopies * 2 * nb_), count_(nb_), count_rel_(nb_), before_(nb_), before_rel_(nb_), cursor_(nb_),
          placed_(kBlockRows), ap_k_(req.map_ks.size()), n_k_(req.map_ks.size()) {
        if (rel.kind == Relevance::Kind::lists) bits_.assign((n + 63) / 64, 0);
        // One slot past the depth collects every deeper rank, branch-free.
        if (req.depth > 0) hits.assign(static_cast<size_t>(req.depth) + 1, 0);
        if (req.pr) {
            pairs.assign(nb_, 0);
            relevant.assign(nb_, 0);
        }
        for (const int64_t k : req.map_ks) deepest_ = std::max(deepest_, k);
        deepest_ = std::max(deepest_, req.depth);
        one_pass_ = req.map_all && n <= kOnePassRows && (static_cast<uint64_t>(nbits) >> (64 - kDistShift)) == 0;
        if (one_pass_) {
            kept_.resize(n);
            kept_end_.resize((n + kBlockRows - 1) / kBlockRows);
        }
    }

    void score(const Kernels& K, const uint64_t* q, size_t j) {
        switch (rel_.kind) {
            case Relevance::Kind::labels: {
                const size_t lw = rel_.label_words;
                const uint64_t* ql = rel_.query_labels + j * lw;
                if (lw == 1) {
                    score_with(K, q, [&](size_t b0) { return LabelWord{rel_.db_labels + b0, ql[0]}; });
                } else {
                    score_with(K, q, [&](size_t b0) { return LabelWords{rel_.db_labels + b0 * lw, ql, lw}; });
                }
                break;
            }
            case Relevance::Kind::matrix: {
                const uint8_t* row = rel_.matrix + j * n_;
                score_with(K, q, [&](size_t b0) { return MatrixRow{row + b0}; });
                break;
            }
            case Relevance::Kind::lists:
                mark(j, true);
                score_with(K, q, [&](size_t b0) { return BitRow{bits_.data(), b0}; });
                mark(j, false);
                break;
        }
        if (req_.pr) {
            for (size_t d = 0; d < nb_; ++d) {
                pairs[d] += count_[d];
                relevant[d] += count_rel_[d];
            }
        }
        if (req_.tie_aware) req_.ap_tie[j] = tie_aware_ap();
        if (req_.map_all) req_.ap_all[j] = total_rel_ > 0 ? ap_ / static_cast<double>(total_rel_) : 0.0;
        const size_t nk = req_.map_ks.size();
        for (size_t t = 0; t < nk; ++t) {
            req_.ap_k[j * nk + t] = n_k_[t] > 0 ? ap_k_[t] / static_cast<double>(n_k_[t]) : 0.0;
        }
    }

    // Per-thread totals over the queries scored, merged by the caller.
    std::vector<int64_t> hits, pairs, relevant;

   private:
    // Sets (or clears) the bits of query j's relevant rows.
    void mark(size_t j, bool on) {
        for (int64_t t = rel_.lims[j]; t < rel_.lims[j + 1]; ++t) {
            const uint64_t row = static_cast<uint64_t>(rel_.ids[t]);
            if (on) {
                bits_[row >> 6] |= uint64_t{1} << (row & 63);
            } else {
                bits_[row >> 6] = 0;  // only this query's bits were set
            }
        }
    }

    template <class Make>
    void score_with(const Kernels& K, const uint64_t* q, Make&& make) {
        ap_ = 0.0;
        std::fill(ap_k_.begin(), ap_k_.end(), 0.0);
        std::fill(n_k_.begin(), n_k_.end(), 0);
        if (one_pass_) {
            one_pass(K, q, make);
            return;
        }
        histogram(K, q, make);
        if (total_rel_ > 0 && (req_.map_all || deepest_ > 0)) ranks(K, q, make);
    }

    // The prefix sums of the bucket counts and the total of relevant items.
    void prefix_sums() {
        int64_t before = 0, before_rel = 0;
        for (size_t d = 0; d < nb_; ++d) {
            before_[d] = before;
            before_rel_[d] = before_rel;
            before += count_[d];
            before_rel += count_rel_[d];
        }
        total_rel_ = before_rel;
    }

    // Pass one: items and relevant items per distance, and their prefix sums.
    template <class Make>
    void histogram(const Kernels& K, const uint64_t* q, Make& make) {
        int64_t* h = hist_.data();
        std::fill(hist_.begin(), hist_.end(), 0);
        const size_t stride = 2 * nb_;
        int32_t* dist = dist_.data();
        for (size_t b0 = 0; b0 < n_; b0 += kBlockRows) {
            const size_t len = std::min(kBlockRows, n_ - b0);
            K.distances(q, db_ + b0 * w_, len, w_, dist);
            count_block(dist, len, make(b0), h, stride);
        }
        for (size_t d = 0; d < nb_; ++d) {
            int64_t all = 0, rel = 0;
            for (size_t c = 0; c < kCopies; ++c) {
                all += h[c * stride + 2 * d] + h[c * stride + 2 * d + 1];
                rel += h[c * stride + 2 * d + 1];
            }
            count_[d] = all;
            count_rel_[d] = rel;
        }
        prefix_sums();
    }

    // MAP@all in one pass over the database: every row placed by a cursor
    // relative to its bucket, which starts at d << kDistShift, so that each
    // relevant row's kept cursor names its bucket. The final cursors are the
    // histogram; a kept cursor plus its bucket's offsets is the item's rank
    // and its count of relevant items, exactly as the second pass of ranks()
    // would place it, and they are scored block by block in the same order.
    template <class Make>
    void one_pass(const Kernels& K, const uint64_t* q, Make& make) {
        uint64_t* cursor = cursor_.data();
        for (size_t d = 0; d < nb_; ++d) cursor[d] = static_cast<uint64_t>(d) << kDistShift;
        uint64_t* kept = kept_.data();
        size_t c = 0;
        for (size_t b0 = 0, b = 0; b0 < n_; b0 += kBlockRows, ++b) {
            const size_t len = std::min(kBlockRows, n_ - b0);
            K.distances(q, db_ + b0 * w_, len, w_, dist_.data());
            c += place_block<kField>(dist_.data(), len, make(b0), cursor, kept + c);
            kept_end_[b] = c;
        }
        for (size_t d = 0; d < nb_; ++d) {
            count_[d] = static_cast<int64_t>(cursor[d] & kFieldMask);
            count_rel_[d] = static_cast<int64_t>((cursor[d] >> kField) & kFieldMask);
        }
        prefix_sums();
        if (total_rel_ == 0) return;
        for (size_t d = 0; d < nb_; ++d) {
            cursor[d] = static_cast<uint64_t>(before_[d]) | (static_cast<uint64_t>(before_rel_[d]) << 32);
        }
        double sum[4] = {0.0, 0.0, 0.0, 0.0};  // see sum_precisions
        size_t start = 0;
        for (const size_t end : kept_end_) {
            // Each kept cursor becomes its global value, base (cursor) plus
            // its fields, written back for add_placed.
            uint64_t* block = kept + start;
            sum_precisions(
                end - start,
                [block, cursor](size_t t) {
                    const uint64_t v = block[t];
                    block[t] = cursor[v >> kDistShift] + (v & kFieldMask) + (((v >> kField) & kFieldMask) << 32);
                    return block[t];
                },
                inverse_, sum);
            add_placed(kept + start, end - start, false, sum);
            start = end;
        }
        ap_ = (sum[0] + sum[1]) + (sum[2] + sum[3]);
    }

    // The relevant items placed in one block (rank in the low half, count of
    // relevant items in the high half, in row order): their precisions
    // summed into sum when every (see sum_precisions), and those at ranks <=
    // deepest_ counted in the hits and added to AP@k, in row order.
    void add_placed(const uint64_t* placed_at, size_t c, bool every, double* sum) {
        if (every) sum_precisions(c, [placed_at](size_t t) { return placed_at[t]; }, inverse_, sum);
        if (deepest_ == 0) return;
        const double* inverse = inverse_;
        const int64_t deepest = deepest_, depth = req_.depth;
        const int64_t* ks = req_.map_ks.data();
        const size_t nk = req_.map_ks.size();
        uint64_t* top = top_.data();
        size_t s = 0;  // those at ranks <= deepest, packed in front
        for (size_t t = 0; t < c; ++t) {
            top[s] = placed_at[t];
            s += static_cast<int64_t>(placed_at[t] & 0xffffffffu) <= deepest;
        }
        for (size_t u = 0; u < s; ++u) {
            const int64_t rank = static_cast<int64_t>(top[u] & 0xffffffffu);
            const double prec = static_cast<double>(static_cast<int64_t>(top[u] >> 32)) * inverse[rank];
            if (depth > 0) ++hits[static_cast<size_t>(std::min(rank, depth + 1) - 1)];
            for (size_t j = 0; j < nk; ++j) {
                const bool in = rank <= ks[j];
                ap_k_[j] += in ? prec : 0.0;
                n_k_[j] += in;
            }
        }
    }

    // He, Cakir, Bargal and Sclaroff (CVPR 2018), METHODS section 6: each
    // tied group at distance d contributes (n_d^+ / n_d) sum_t [a + (t-1) b]
    // / (N + t), with a = N^+ + 1, b = (n_d^+ - 1)/(n_d - 1); for a large
    // group the sum is n_d b + (a - (N + 1) b) (H[N + n_d] - H[N]).
    double tie_aware_ap() const {
        if (total_rel_ == 0) return 0.0;
        double sum = 0.0;
        for (size_t d = 0; d < nb_; ++d) {
            const int64_t pd = count_rel_[d];
            if (pd == 0) continue;
            const int64_t nd = count_[d], N = before_[d];
            const double a = static_cast<double>(before_rel_[d]) + 1.0;
            if (nd == 1) {
                sum += a / (static_cast<double>(N) + 1.0);
                continue;
            }
            const double slope = (static_cast<double>(pd) - 1.0) / (static_cast<double>(nd) - 1.0);
            double inner = 0.0;
            if (nd <= kDirect) {
                for (int64_t t = 1; t <= nd; ++t) {
                    inner += (a + static_cast<double>(t - 1) * slope) / static_cast<double>(N + t);
                }
            } else {
                inner = static_cast<double>(nd) * slope +
                        (a - (static_cast<double>(N) + 1.0) * slope) * harmonic_range(N, N + nd);
            }
            sum += static_cast<double>(pd) / static_cast<double>(nd) * inner;
        }
        return sum / static_cast<double>(total_rel_);
    }

    // Pass two, after histogram() (MAP@all above kOnePassRows, or the
    // cut-offs without it), in row order: an item at distance d is the
    // (seen + 1)-th of its bucket, so its rank is N_{d-1} + seen + 1; a
    // relevant one is the (N^+_{d-1} + seen relevant + 1)-th relevant item and
    // adds its precision (that count / its rank). A cursor per bucket holds
    // both running values in one word (rank in the low half, count in the
    // high half: one add per item). Without MAP@all only the buckets up to
    // the one holding rank deepest_ matter: the rows of a block in them are
    // picked first, and the pass ends once every rank up to deepest_ is
    // placed. Each step packs what the next needs in front of a buffer,
    // without branches.
    template <class Make>
    void ranks(const Kernels& K, const uint64_t* q, Make& make) {
        size_t last = nb_ - 1;
        if (!req_.map_all) {
            last = 0;
            while (before_[last] + count_[last] < deepest_) ++last;
        }
        uint64_t* cursor = cursor_.data();
        for (size_t d = 0; d <= last; ++d) {
            cursor[d] = static_cast<uint64_t>(before_[d]) | (static_cast<uint64_t>(before_rel_[d]) << 32);
        }
        const bool every = last == nb_ - 1;
        const int32_t clamp = static_cast<int32_t>(last);
        const int64_t deepest = deepest_;
        const int32_t* dist = dist_.data();
        uint32_t* row = row_.data();
        uint64_t* placed_at = placed_.data();
        double sum[4] = {0.0, 0.0, 0.0, 0.0};  // see sum_precisions
        int64_t placed = 0;  // items at ranks <= deepest
        // The rows of a block in buckets 0..last, into row; returns how many.
        const auto pick = [&](size_t len) {
            size_t m = 0;
            for (size_t i = 0; i < len; ++i) {
                row[m] = static_cast<uint32_t>(i);
                m += dist[i] <= clamp;
            }
            return m;
        };
        for (size_t b0 = 0; b0 < n_ && (req_.map_all || placed < deepest); b0 += kBlockRows) {
            const size_t len = std::min(kBlockRows, n_ - b0);
            K.distances(q, db_ + b0 * w_, len, w_, dist_.data());
            const auto rel = make(b0);
            const size_t c = every ? place_block<32>(dist, len, rel, cursor, placed_at)
                                   : place_rows(dist, row, pick(len), rel, cursor, placed_at, deepest, &placed);
            add_placed(placed_at, c, every, sum);
        }
        ap_ = (sum[0] + sum[1]) + (sum[2] + sum[3]);
    }

    const uint64_t* db_;
    size_t n_, w_, nb_;
    const Relevance& rel_;
    const MetricsRequest& req_;
    const double* inverse_;  // inverse_[r] = 1 / r for r = 1..n
    std::vector<int32_t> dist_;
    std::vector<uint32_t> row_;
    std::vector<uint64_t> top_;
    std::vector<int64_t> hist_, count_, count_rel_, before_, before_rel_;
    std::vector<uint64_t> cursor_, placed_;
    // One pass: the relevant rows' cursors, and where each block's end.
    bool one_pass_ = false;
    std::vector<uint64_t> kept_;
    std::vector<size_t> kept_end_;
    std::vector<double> ap_k_;
    std::vector<int64_t> n_k_;
    std::vector<uint64_t> bits_;
    int64_t total_rel_ = 0;
    int64_t deepest_ = 0;
    double ap_ = 0.0;
};

}  // namespace

double harmonic_range(int64_t a, int64_t b) {
    if (a < 0 || b < a) throw std::invalid_argument("harmonic_range: expected 0 <= a <= b");
    double s = 0.0;
    if (b - a <= kDirect) {
        for (int64_t u = a + 1; u <= b; ++u) s += 1.0 / static_cast<double>(u);
        return s;
    }
    if (a <= kDirect) {  // H[b] is not close to H[a]: no cancellation
        for (int64_t u = 1; u <= a; ++u) s += 1.0 / static_cast<double>(u);
        return harmonic_asymptotic(static_cast<double>(b)) - s;
    }
    // Both large: the series term by term, the logarithms as one log1p.
    const double fa = static_cast<double>(a), fb = static_cast<double>(b);
    const double ra = 1.0 / (fa * fa), rb = 1.0 / (fb * fb);
    s = std::log1p((fb - fa) / fa);
    s += 0.5 / fb - 0.5 / fa;
    s -= (rb - ra) / 12.0;
    s += (rb * rb - ra * ra) / 120.0;
    s -= (rb * rb * rb - ra * ra * ra) / 252.0;
    s += (rb * rb * rb * rb - ra * ra * ra * ra) / 240.0;
    return s;
}

void evaluate_metrics(const uint64_t* q, size_t nq, const uint64_t* db, size_t n, int64_t nbits,
                      const Relevance& rel, const MetricsRequest& req, size_t threads) {
    check_arguments(q, nq, db, n, nbits, rel, req);
    if (nq == 0) return;
    const size_t w = static_cast<size_t>((nbits + 63) / 64);
    const Kernels& K = active_kernels();
    const size_t work = nq * n * (w + 1);
    const size_t T = std::max<size_t>(1, std::min({threads, nq, std::max<size_t>(1, work / kMinWorkPerThread)}));
    // 1 / rank for r = 1..n: a multiplication per relevant item instead of a division.
    std::vector<double> inverse(n + 1, 0.0);
    for (size_t r = 1; r < inverse.size(); ++r) inverse[r] = 1.0 / static_cast<double>(r);
    std::vector<std::unique_ptr<Scorer>> scorers(T);
    parallel_tasks(T, [&](size_t t) {
        scorers[t].reset(new Scorer(db, n, nbits, rel, req, inverse.data()));
        const auto range = split_range(nq, T, t);
        for (size_t j = range.first; j < range.second; ++j) scorers[t]->score(K, q + j * w, j);
    });
    // Integer totals: the same whatever the split.
    for (const auto& s : scorers) {
        for (size_t r = 0; r < static_cast<size_t>(req.depth); ++r) req.hits[r] += s->hits[r];
        for (size_t d = 0; d < s->pairs.size(); ++d) {
            req.pairs[d] += s->pairs[d];
            req.relevant[d] += s->relevant[d];
        }
    }
}

}  // namespace hamsearch
