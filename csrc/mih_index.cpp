#include "hamsearch/mih_index.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

#include "kernels_portable.h"
#include "mih_policy.h"
#include "parallel.h"
#include "topk.h"

namespace hamsearch {

namespace {

struct ScalarPop {
    static HS_INLINE int32_t count(uint64_t x) {
        x = x - ((x >> 1) & 0x5555555555555555ULL);
        x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
        x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
        return static_cast<int32_t>((x * 0x0101010101010101ULL) >> 56);
    }
};

uint64_t extract(const uint64_t* code, int64_t begin, int64_t len) {
    const size_t w = static_cast<size_t>(begin / 64);
    const unsigned off = static_cast<unsigned>(begin % 64);
    uint64_t v = code[w] >> off;
    if (off != 0 && off + len > 64) v |= code[w + 1] << (64 - off);
    return len == 64 ? v : v & ((uint64_t{1} << len) - 1);
}

// Calls fn(mask) for every mask of `len` bits with exactly s bits set
// (Gosper's hack), until fn returns false.
template <class Fn>
void for_each_mask(int64_t len, int64_t s, Fn&& fn) {
    if (s == 0) {
        fn(uint64_t{0});
        return;
    }
    if (s > len) return;
    if (s == 64) {
        fn(~uint64_t{0});
        return;
    }
    uint64_t mask = (uint64_t{1} << s) - 1;
    for (;;) {
        if (!fn(mask)) return;
        const uint64_t c = mask & (~mask + 1);
        const uint64_t r = mask + c;
        if (r == 0) return;  // carried out of 64 bits: done
        mask = (((r ^ mask) >> 2) / c) | r;
        if (len < 64 && (mask >> len) != 0) return;
    }
}

// Distance by whatever POPCNT the build target offers; verification touches
// few codes, so the portable count is fine here.
int32_t distance_any(const uint64_t* a, const uint64_t* b, size_t w) {
    int32_t d = 0;
    for (size_t j = 0; j < w; ++j) d += ScalarPop::count(a[j] ^ b[j]);
    return d;
}

inline void prefetch(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p);
#else
    (void)p;
#endif
}

}  // namespace

std::pair<uint32_t, uint32_t> SubstringTable::match(uint64_t key, uint32_t first, uint32_t last) const {
    if (tag_bits == 0) return {first, last};
    const uint32_t tag = static_cast<uint32_t>(key & ((uint64_t{1} << tag_bits) - 1));
    const uint32_t lo = tag << row_bits;  // tag_bits + row_bits <= 32, so no overflow
    const uint32_t* e = entries.data();
    if (last - first <= 16) {  // the usual bucket: a few entries in one or two cache lines
        while (first < last && e[first] < lo) ++first;
        uint32_t end = first;
        while (end < last && (e[end] >> row_bits) == tag) ++end;
        return {first, end};
    }
    const uint32_t* f = std::lower_bound(e + first, e + last, lo);
    const uint32_t* l = f;
    while (l != e + last && (*l >> row_bits) == tag) ++l;
    return {static_cast<uint32_t>(f - e), static_cast<uint32_t>(l - e)};
}

// Table entries hold 32-bit row numbers.
MIHIndex::MIHIndex(int64_t nbits, int64_t m)
    : flat_(nbits, std::numeric_limits<uint32_t>::max()), m_(m), scan_fraction_(kMihScanFraction) {
    const int64_t min_m = (nbits + 63) / 64;
    if (m != 0 && (m < min_m || m > nbits)) {
        throw std::invalid_argument("m: expected 0 (automatic) or " + std::to_string(min_m) + " <= m <= " +
                                    std::to_string(nbits) + " (substrings of at most 64 bits), got " +
                                    std::to_string(m));
    }
}

int64_t MIHIndex::effective_m(size_t n) const { return mih_choose_m(nbits(), m_, n); }

std::vector<std::pair<int64_t, int64_t>> MIHIndex::substrings(size_t n) const {
    return mih_substrings(nbits(), effective_m(n));
}

void MIHIndex::set_scan_fraction(double f) {
    if (!(f > 0)) throw std::invalid_argument("scan fraction: expected a positive number");
    scan_fraction_ = f;
}


void MIHIndex::build_tables(const FlatIndex::Reader& store) const {
    const size_t n = store.size();
    const uint64_t* codes = store.codes();
    const size_t w = store.words();
    std::vector<SubstringTable> tables;
    std::vector<uint32_t> bucket_of(n);
    for (const MihTableShape& shape : mih_table_shapes(nbits(), m_, n)) {
        SubstringTable t;
        t.begin = shape.begin;
        t.len = shape.len;
        t.dir_bits = shape.dir_bits;
        t.row_bits = shape.row_bits;
        t.tag_bits = shape.tag_bits;
        const int row_bits = shape.row_bits;
        const size_t nbuckets = size_t{1} << t.dir_bits;
        const uint64_t tag_mask = t.tag_bits ? (uint64_t{1} << t.tag_bits) - 1 : 0;
        // Counting sort by bucket, rows ascending within a bucket.
        t.dir.assign(nbuckets + 1, 0);
        t.entries.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const uint64_t key = extract(codes + i * w, t.begin, t.len);
            bucket_of[i] = static_cast<uint32_t>(t.bucket(key));
            t.entries[i] = static_cast<uint32_t>((key & tag_mask) << row_bits);  // tag only, for now
            ++t.dir[bucket_of[i] + 1];
        }
        for (size_t v = 0; v < nbuckets; ++v) t.dir[v + 1] += t.dir[v];
        std::vector<uint32_t> sorted(n), fill(t.dir.begin(), t.dir.end() - 1);
        for (size_t i = 0; i < n; ++i) sorted[fill[bucket_of[i]]++] = t.entries[i] | static_cast<uint32_t>(i);
        t.entries.swap(sorted);
        if (t.tag_bits > 0) {
            for (size_t v = 0; v < nbuckets; ++v) {
                if (t.dir[v + 1] - t.dir[v] > 1) std::sort(t.entries.begin() + t.dir[v], t.entries.begin() + t.dir[v + 1]);
            }
        }
        tables.push_back(std::move(t));
    }
    std::vector<uint64_t> sample;
    size_t near = 0;  // the near codes sharing a sampled code's substring, over the tables
    for (size_t row : mih_sample_rows(n)) {
        const uint64_t* code = codes + row * w;
        sample.insert(sample.end(), code, code + w);
        for (const SubstringTable& t : tables) {
            const uint64_t key = extract(code, t.begin, t.len);
            const int64_t bound = mih_near_bound(nbits(), t.len);
            const size_t b = t.bucket(key);
            const auto run = t.match(key, t.dir[b], t.dir[b + 1]);
            size_t looked = 0;  // the first kMihSampleRun sharing rows, ascending
            for (uint32_t e = run.first; e < run.second && looked < kMihSampleRun; ++e) {
                const uint64_t* other = codes + size_t{t.row(t.entries[e])} * w;
                if (other == code || extract(other, t.begin, t.len) != key) continue;
                ++looked;
                near += distance_any(code, other, w) <= bound;
            }
        }
    }
    tables_ = std::move(tables);
    sample_ = std::move(sample);
    sample_near_ = near;
    knn_model_.reset();
    tables_version_ = store.version();
}

size_t MIHIndex::table_bytes() const {
    std::lock_guard<std::mutex> lock(tables_mu_);
    size_t bytes = 0;
    for (const auto& t : tables_) bytes += t.memory_bytes();
    return bytes;
}

const std::vector<SubstringTable>& MIHIndex::tables(const FlatIndex::Reader& store) const {
    std::lock_guard<std::mutex> lock(tables_mu_);
    if (tables_version_ != store.version() || tables_.empty()) build_tables(store);
    return tables_;
}

std::shared_ptr<const MihKnnModel> MIHIndex::knn_model(Isa isa) const {
    std::lock_guard<std::mutex> lock(tables_mu_);
    if (!knn_model_ || knn_model_isa_ != isa) {
        std::vector<int64_t> lens;
        for (const auto& t : tables_) lens.push_back(t.len);
        const size_t n = tables_.empty() ? 0 : tables_[0].entries.size();
        knn_model_ = std::make_shared<const MihKnnModel>(mih_knn_model(lens, nbits(), n, words(), isa));
        knn_model_isa_ = isa;
    }
    return knn_model_;
}

namespace {

// Per-thread scratch: which rows this query has verified already. A bitmap
// (n/8 bytes) and the list of rows set, cleared row by row between queries,
// so a query costs what it touches, not a clear of n entries.
// The bitmap is allocated at the first visit: a batch whose queries all go
// to the scan before any probe does not pay for it. The calling thread keeps
// its Seen from call to call (cleared row by row as ever), so that a query
// at a time does not zero n / 8 bytes per query.
struct Seen {
    std::vector<uint64_t> bits;
    std::vector<uint32_t> touched;
    size_t words = 0;
    /// Ready for n rows: a fresh bitmap where the size changed.
    void reset(size_t n) {
        next();
        if (words != (n + 63) / 64) {
            words = (n + 63) / 64;
            std::vector<uint64_t>().swap(bits);
        }
    }
    void next() {
        for (uint32_t r : touched) bits[r >> 6] &= ~(uint64_t{1} << (r & 63));
        touched.clear();
    }
    bool first_visit(uint32_t r) {
        if (bits.empty()) bits.assign(words, 0);
        uint64_t& word = bits[r >> 6];
        const uint64_t bit = uint64_t{1} << (r & 63);
        if (word & bit) return false;
        word |= bit;
        touched.push_back(r);
        return true;
    }
};

// Probes every key of table tb at substring distance exactly s from qs and
// calls visit(row) once for each row this query has not seen before. Keys go
// in chunks through three stages (directory, entries, codes), each
// prefetched a stage ahead, so the random loads of a chunk overlap instead
// of waiting one after another. Adds the work done to `work` and returns
// false once it passes `budget` (checked per chunk).
class Prober {
   public:
    Prober(const uint64_t* codes, size_t w, Seen& seen)
        : codes_(codes),
          w_(w),
          costs_(mih_costs(w, active_kernels().isa)),
          seen_(seen) {}

    /// limit() gives the work allowed at each check; it may change as the
    /// visits find codes (the prediction's bound on the k-th distance).
    template <class Limit, class Visit>
    bool probe(const SubstringTable& tb, uint64_t qs, int64_t s, double& work, Limit&& limit, Visit&& visit) {
        size_t nk = 0;
        bool ok = true;
        for_each_mask(tb.len, s, [&](uint64_t mask) {
            keys_[nk++] = qs ^ mask;
            if (nk == kMihProbeChunk) {
                ok = flush(tb, nk, work, visit) <= limit();
                nk = 0;
            }
            return ok;
        });
        if (ok && nk > 0) ok = flush(tb, nk, work, visit) <= limit();
        return ok;
    }

   private:
    static constexpr size_t kAhead = 12;  // candidates' codes in flight at once

    // Probes nk keys, visits their new rows; returns the work done so far.
    template <class Visit>
    double flush(const SubstringTable& tb, size_t nk, double& work, Visit& visit) {
        const uint32_t* dir = tb.dir.data();
        for (size_t i = 0; i < nk; ++i) prefetch(dir + tb.bucket(keys_[i]));
        for (size_t i = 0; i < nk; ++i) {
            const size_t b = tb.bucket(keys_[i]);
            first_[i] = dir[b];
            last_[i] = dir[b + 1];
            prefetch(tb.entries.data() + first_[i]);
        }
        cand_.clear();
        for (size_t i = 0; i < nk; ++i) {
            const auto run = tb.match(keys_[i], first_[i], last_[i]);
            for (uint32_t e = run.first; e < run.second; ++e) {
                const uint32_t r = tb.row(tb.entries[e]);
                if (seen_.first_visit(r)) cand_.push_back(r);
            }
        }
        const size_t nc = cand_.size();
        for (size_t i = 0; i < std::min(nc, kAhead); ++i) prefetch(codes_ + size_t{cand_[i]} * w_);
        for (size_t i = 0; i < nc; ++i) {
            if (i + kAhead < nc) prefetch(codes_ + size_t{cand_[i + kAhead]} * w_);
            visit(cand_[i]);
        }
        work += static_cast<double>(nk) * costs_.probe + static_cast<double>(nc) * costs_.candidate;
        return work;
    }

    const uint64_t* codes_;
    size_t w_;
    MihCosts costs_;
    Seen& seen_;
    uint64_t keys_[kMihProbeChunk];
    uint32_t first_[kMihProbeChunk], last_[kMihProbeChunk];
    std::vector<uint32_t> cand_;
};

// The query's distances to the sampled codes (mih_policy.h) by the scan's
// own kernel (a few hundred codes, contiguous), into per-thread scratch.
int32_t* sample_distances(const uint64_t* q, const std::vector<uint64_t>& sample, size_t w) {
    thread_local std::vector<int32_t> dist;
    const size_t S = sample.size() / w;
    dist.resize(S);
    if (S) active_kernels().distances(q, sample.data(), S, w, dist.data());
    return dist.data();
}

// What search() did with a query: answered it; gave up on it (past the
// budget); sent it to the scan after a peek that found some codes nearer
// than predicted (peeked) or none (peeked_far), or before any probe.
enum class Outcome { answered, gave_up, peeked, peeked_far, predicted_scan };

// Runs search(j, qj, qsub, prober) for the queries of a batch on up to
// mih_probe_threads(nq, threads) threads; gave_up[j] is set for any outcome
// but answered. Queries go to the threads one at a time as each finishes
// its last: near and far queries differ in cost by orders of magnitude, and
// a static split left one thread idle while the other finished its half.
// A query answered is a trial, one that gave up or whose peek found no code
// nearer than predicted a trial given up; once batch_trials(nq) queries were tried
// and half gave up (far neighbours, as for uniform codes), the rest of the
// batch is marked without a search: it goes straight to the scan. (Against
// the batch's blocked scan, cheaper a query than a scan of one, even peeks
// are worth saving.) A peek that found some near codes, too few, says
// little of the next query's (a cluster's size varies) and is no trial;
// nor is a query the prediction sent to the scan before any probe.
template <class Search>
void search_batch(const uint64_t* q, size_t nq, size_t threads, const std::vector<SubstringTable>& tabs,
                  const uint64_t* codes, size_t n, size_t w, std::vector<char>& gave_up, Search&& search) {
    std::atomic<size_t> tried{0}, given_up{0}, next{0};
    const size_t trials = mih_batch_trials(nq);
    const size_t T = std::max<size_t>(1, std::min(mih_probe_threads(nq, threads), kMaxThreads));
    parallel_tasks(T, [&](size_t t) {
        // Task 0 runs on the calling thread: its Seen outlives the call.
        thread_local Seen kept;
        Seen own;
        Seen& seen = t == 0 ? kept : own;
        seen.reset(n);
        Prober prober(codes, w, seen);
        std::vector<uint64_t> qsub(tabs.size());
        for (size_t j; (j = next.fetch_add(1, std::memory_order_relaxed)) < nq;) {
            if (tried.load(std::memory_order_relaxed) >= trials &&
                2 * given_up.load(std::memory_order_relaxed) >= tried.load(std::memory_order_relaxed)) {
                gave_up[j] = 1;
                continue;
            }
            const uint64_t* qj = q + j * w;
            for (size_t u = 0; u < tabs.size(); ++u) qsub[u] = extract(qj, tabs[u].begin, tabs[u].len);
            seen.next();
            const Outcome got = search(j, qj, qsub, prober);
            if (got != Outcome::answered) gave_up[j] = 1;
            if (got == Outcome::answered || got == Outcome::gave_up || got == Outcome::peeked_far) {
                if (got != Outcome::answered) given_up.fetch_add(1, std::memory_order_relaxed);
                tried.fetch_add(1, std::memory_order_relaxed);
            }
        }
    });
}

}  // namespace

void MIHIndex::knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I,
                   size_t* fallbacks) const {
    if (k == 0) throw std::invalid_argument("k: expected k >= 1, got 0");
    const FlatIndex::Reader store = flat_.read();
    const size_t n = store.size();
    if (fallbacks) *fallbacks = 0;
    if (nq == 0) return;
    if (n == 0) {
        std::fill(D, D + nq * k, kDistancePad);
        std::fill(I, I + nq * k, kIdPad);
        return;
    }
    const auto& tabs = tables(store);
    const size_t w = store.words();
    const uint64_t* codes = store.codes();
    const int64_t* ids = store.ids();
    const size_t kk = std::min(k, n);
    const int64_t m = static_cast<int64_t>(tabs.size());
    const Isa isa = active_kernels().isa;
    const double probe_cost = mih_costs(w, isa).probe;
    std::vector<char> gave_up(nq, 0);
    // The prediction (mih_policy.h): the model of these tables, the batch's
    // plan, and the normal tail's quantile for the sample's estimate.
    const auto model = knn_model(isa);
    const std::vector<double>& probes = model->probes;
    const MihKnnPlan plan =
        mih_knn_plan(*model, tabs.size(), n, w, isa, scan_fraction_, sample_.size() / w, sample_near_);
    const size_t S = sample_.size() / w;
    const double z = mih_tail_z(kk, n);
    auto search = [&](size_t j, const uint64_t* qj, const std::vector<uint64_t>& qsub, Prober& prober) {
        const int64_t predicted = mih_predict_kth(sample_distances(qj, sample_, w), S, nbits(), n, kk, z);
        bool tables = predicted <= plan.dc;
        if (!tables && plan.peek <= 0) return Outcome::predicted_scan;
        // Predicted dearer: the peek, within plan.peek, counting the codes
        // it finds within plan.dc (near) by distance, and whether it found
        // any nearer than predicted (closer: past radius 0 only then).
        std::vector<uint32_t> near_at(tables ? 0 : static_cast<size_t>(plan.dc) + 1, 0);
        size_t near = 0;
        bool closer = false;
        const auto limit = [&] {
            if (!tables && near >= kk) tables = true;
            return tables ? plan.budget : plan.peek;
        };
        TopK top(kk);
        size_t found = 0;
        double work = 0;
        bool done = false;
        int64_t s = 0;
        for (; !done; ++s) {
            // Probing radius s costs sum_j C(len_j, s) probes: give up
            // before starting a radius that would overrun the limit.
            const double keys = probes[static_cast<size_t>(s)];
            if (!tables && s > 0) {
                // Radius s - 1 done: the near codes, weighed by how likely
                // it was to find them, estimate those within plan.dc.
                double evidence = 0;
                for (size_t d = 0; d < near_at.size(); ++d) evidence += near_at[d] * model->weight(static_cast<size_t>(s - 1), d);
                if (evidence >= kMihEvidenceMargin * static_cast<double>(kk)) tables = true;
                else if (!closer && !plan.deep_peek) return Outcome::peeked_far;
                else if (!mih_peek_may_reach(s - 1, near, evidence, work, keys * probe_cost, plan.peek, kk))
                    return closer ? Outcome::peeked : Outcome::peeked_far;
            }
            // A search with the budget starts no radius it cannot finish; a
            // peek takes what it can of one, a chunk at a time.
            const double allowed = limit();
            if (work + (tables ? keys : std::min(keys, static_cast<double>(kMihProbeChunk))) * probe_cost > allowed)
                return tables ? Outcome::gave_up : closer ? Outcome::peeked : Outcome::peeked_far;
            for (int64_t sj = 0; sj < m && !done; ++sj) {
                const SubstringTable& tb = tabs[static_cast<size_t>(sj)];
                const bool within = prober.probe(tb, qsub[static_cast<size_t>(sj)], s, work, limit, [&](uint32_t r) {
                    ++found;
                    const int32_t d = distance_any(qj, codes + size_t{r} * w, w);
                    if (!tables && d < predicted) {
                        closer = true;
                        if (d <= plan.dc) ++near, ++near_at[static_cast<size_t>(d)];
                    }
                    // The id (another random load) only for a code that can enter.
                    if (d <= top.threshold()) top.push(d, ids[r]);
                });
                if (!within) return tables ? Outcome::gave_up : closer ? Outcome::peeked : Outcome::peeked_far;
                // Every code not yet found is at least s+1 away in
                // substrings 0..sj and s away in the others.
                const int64_t bound = m * s + sj;
                if (found == n || top.kth() <= bound) done = true;
            }
        }
        top.finish(D + j * k, I + j * k, k);
        return Outcome::answered;
    };
    search_batch(q, nq, threads, tabs, codes, n, w, gave_up, search);
    // The queries that gave up: one blocked, threaded scan for all of them.
    std::vector<size_t> rest;
    for (size_t j = 0; j < nq; ++j)
        if (gave_up[j]) rest.push_back(j);
    if (fallbacks) *fallbacks = rest.size();
    if (!rest.empty()) {
        std::vector<uint64_t> qs(rest.size() * w);
        for (size_t i = 0; i < rest.size(); ++i) std::copy(q + rest[i] * w, q + rest[i] * w + w, qs.begin() + i * w);
        std::vector<int32_t> d(rest.size() * k);
        std::vector<int64_t> id(rest.size() * k);
        store.knn(qs.data(), rest.size(), k, threads, d.data(), id.data());
        for (size_t i = 0; i < rest.size(); ++i) {
            std::copy(d.begin() + i * k, d.begin() + (i + 1) * k, D + rest[i] * k);
            std::copy(id.begin() + i * k, id.begin() + (i + 1) * k, I + rest[i] * k);
        }
    }
}

RadiusResult MIHIndex::radius(const uint64_t* q, size_t nq, int64_t r, size_t threads, size_t* fallbacks) const {
    if (r < 0) throw std::invalid_argument("r: expected r >= 0, got " + std::to_string(r));
    const FlatIndex::Reader store = flat_.read();
    const size_t n = store.size();
    if (fallbacks) *fallbacks = 0;
    RadiusResult res;
    res.lims.assign(nq + 1, 0);
    if (n == 0 || nq == 0) return res;
    const auto& tabs = tables(store);
    const size_t w = store.words();
    const uint64_t* codes = store.codes();
    const int64_t* ids = store.ids();
    const int64_t m = static_cast<int64_t>(tabs.size());
    const int64_t rr = std::min<int64_t>(r, nbits());
    const double budget = mih_budget(scan_fraction_, n, w);
    const double probe_cost = mih_costs(w, active_kernels().isa).probe;
    // Pigeonhole: a code within rr has some substring sj within s of the
    // query's with m*s + sj <= rr; those (s, sj) are every probe a query
    // makes, whatever the data. Probes of radius s, tables within that bound:
    const int64_t smax = rr / m;
    std::vector<int64_t> lens;
    for (const auto& t : tabs) lens.push_back(t.len);
    const std::vector<double> probes = mih_probe_counts(lens, smax, rr);
    double all_probes = 0;
    for (double p : probes) all_probes += p;
    std::vector<std::vector<Candidate>> hits(nq);
    // Probing alone past the budget: every query would give up after
    // spending it, so the whole batch goes to the scan at once.
    std::vector<char> gave_up(nq, all_probes * probe_cost > budget ? 1 : 0);
    // Per query, the prediction (mih_policy.h): the hits its sample
    // distances predict priced with the probes against the budget.
    const size_t S = sample_.size() / w;
    const MihRadiusModel model = mih_radius_model(lens, rr, n, w, active_kernels().isa, S);
    auto search = [&](size_t j, const uint64_t* qj, const std::vector<uint64_t>& qsub, Prober& prober) {
        auto& out = hits[j];
        const auto give_up = [&] {
            std::vector<Candidate>().swap(out);
            return Outcome::gave_up;
        };
        const int32_t* sample_d = sample_distances(qj, sample_, w);
        size_t sample_hits = 0;
        for (size_t i = 0; i < S; ++i) sample_hits += sample_d[i] <= rr;
        if (model.cost(sample_hits) > budget) return Outcome::predicted_scan;
        const auto limit = [&] { return budget; };
        double work = 0;
        // After radius s of substring sj, every code within m*s + sj is found.
        for (int64_t s = 0; s <= smax; ++s) {
            if (work + probes[static_cast<size_t>(s)] * probe_cost > budget) return give_up();
            for (int64_t sj = 0; sj < m && m * s + sj <= rr; ++sj) {
                const SubstringTable& tb = tabs[static_cast<size_t>(sj)];
                const bool within = prober.probe(tb, qsub[static_cast<size_t>(sj)], s, work, limit, [&](uint32_t row) {
                    const int32_t d = distance_any(qj, codes + size_t{row} * w, w);
                    if (d <= rr) out.push_back({d, ids[row]});
                });
                if (!within) return give_up();
            }
        }
        std::sort(out.begin(), out.end());
        return Outcome::answered;
    };
    if (!gave_up[0]) search_batch(q, nq, threads, tabs, codes, n, w, gave_up, search);
    std::vector<size_t> rest;
    for (size_t j = 0; j < nq; ++j)
        if (gave_up[j]) rest.push_back(j);
    if (fallbacks) *fallbacks = rest.size();
    RadiusResult scanned;
    if (!rest.empty()) {
        std::vector<uint64_t> qs(rest.size() * w);
        for (size_t i = 0; i < rest.size(); ++i) std::copy(q + rest[i] * w, q + rest[i] * w + w, qs.begin() + i * w);
        scanned = store.radius(qs.data(), rest.size(), r, threads);
    }
    size_t next_rest = 0;
    for (size_t j = 0; j < nq; ++j) {
        size_t len = hits[j].size();
        if (gave_up[j]) len = static_cast<size_t>(scanned.lims[next_rest + 1] - scanned.lims[next_rest]), ++next_rest;
        res.lims[j + 1] = res.lims[j] + static_cast<int64_t>(len);
    }
    res.D.resize(static_cast<size_t>(res.lims[nq]));
    res.I.resize(res.D.size());
    next_rest = 0;
    for (size_t j = 0; j < nq; ++j) {
        size_t at = static_cast<size_t>(res.lims[j]);
        if (gave_up[j]) {
            const size_t a = static_cast<size_t>(scanned.lims[next_rest]), b = static_cast<size_t>(scanned.lims[next_rest + 1]);
            std::copy(scanned.D.begin() + a, scanned.D.begin() + b, res.D.begin() + at);
            std::copy(scanned.I.begin() + a, scanned.I.begin() + b, res.I.begin() + at);
            ++next_rest;
        } else {
            for (const Candidate& c : hits[j]) {
                res.D[at] = c.d;
                res.I[at++] = c.id;
            }
        }
    }
    return res;
}

}  // namespace hamsearch
