#include "hamsearch/flat_index.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "parallel.h"
#include "topk.h"

namespace hamsearch {

namespace {

// Below this many word comparisons per thread a thread costs more than it saves.
constexpr size_t kMinWorkPerThread = size_t{1} << 17;
// Queries whose candidate buffers share a database block: bounds the memory
// of the k-NN states (about 32 MiB per thread) when k is large.
constexpr size_t kStateBytesPerThread = size_t{32} << 20;
// The shortest first run of rows whose distances set a k-NN threshold (priming).
constexpr size_t kMinPrimeRows = 256;

// Below this many queries sharing a block, slicing the block costs more than
// the sliced kernel saves (slicing costs about 4 queries' scan of the block;
// the sliced kernel saves about 30% of each query's).
constexpr size_t kMinSlicedQueries = 32;

// The filter of one block of codes for a batch of queries, a few at a time:
// through the level's sliced kernel (the block sliced once for the whole
// batch) where it has one for this width and the batch is large enough, and
// through its multi-query kernel otherwise.
class BlockFilter {
   public:
    BlockFilter(const Kernels& K, size_t w, size_t block, size_t nq) : K_(K), w_(w) {
        if (K.sliced_bytes != nullptr && nq >= kMinSlicedQueries && K.sliced_bytes(block, w) > 0) {
            sliced_.resize(K.sliced_bytes(block, w));
        }
    }

    /// Makes codes[0, len) the block that filter() scans.
    void load(const uint64_t* codes, size_t len) {
        codes_ = codes;
        len_ = len;
        if (!sliced_.empty()) K_.slice_codes(codes, len, w_, sliced_.data());
    }

    /// FilterBatchFn over the loaded block.
    void filter(const uint64_t* q, size_t nq, const int32_t* tau, uint32_t* rows, int32_t* dists, size_t stride,
                size_t* counts) const {
        if (!sliced_.empty()) {
            K_.filter_sliced(q, nq, sliced_.data(), codes_, len_, w_, tau, rows, dists, stride, counts);
        } else {
            K_.filter_batch(q, nq, codes_, len_, w_, tau, rows, dists, stride, counts);
        }
    }

   private:
    const Kernels& K_;
    size_t w_;
    const uint64_t* codes_ = nullptr;
    size_t len_ = 0;
    UninitVector<uint8_t> sliced_;
};

}  // namespace

FlatIndex::FlatIndex(int64_t nbits, size_t max_codes) : nbits_(nbits), w_(0), max_codes_(max_codes) {
    if (nbits < 1 || nbits > kMaxBits) {
        throw std::invalid_argument("nbits: expected 1 <= nbits <= " + std::to_string(kMaxBits) + ", got " +
                                    std::to_string(nbits));
    }
    w_ = static_cast<size_t>((nbits + 63) / 64);
}

size_t FlatIndex::size() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return n_;
}

uint64_t FlatIndex::version() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return version_;
}

bool FlatIndex::mapped() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return map_ != nullptr;
}

std::vector<int64_t> FlatIndex::ids() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return std::vector<int64_t>(ip_, ip_ + n_);
}

std::vector<uint64_t> FlatIndex::codes() const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    return std::vector<uint64_t>(cp_, cp_ + n_ * w_);
}

void FlatIndex::publish() {
    if (!map_) {
        cp_ = codes_.data();
        ip_ = ids_.data();
        n_ = ids_.size();
    }
    ++version_;
    std::lock_guard<std::mutex> order_lock(order_mu_);
    order_valid_ = false;
    order_.clear();
}

void FlatIndex::own() {
    if (!map_) return;
    PodBuffer<uint64_t> codes;
    PodBuffer<int64_t> ids;
    codes.append(cp_, n_ * w_);
    ids.append(ip_, n_);
    codes_.swap(codes);
    ids_.swap(ids);
    map_.reset();
    publish();
}

void check_pad_bits(const uint64_t* codes, size_t n, size_t w, int64_t nbits, const char* what) {
    const int rem = static_cast<int>(nbits % 64);
    if (rem == 0) return;
    const uint64_t pad = ~((uint64_t{1} << rem) - 1);
    for (size_t i = 0; i < n; ++i) {
        if (codes[i * w + w - 1] & pad) {
            throw std::invalid_argument(std::string(what) + ": expected the pad bits above nbits=" +
                                        std::to_string(nbits) + " to be zero, got set pad bits in row " +
                                        std::to_string(i));
        }
    }
}

void FlatIndex::check_codes(const uint64_t* codes, size_t n, const char* what) const {
    check_pad_bits(codes, n, w_, nbits_, what);
}

void FlatIndex::add(const uint64_t* codes, const int64_t* ids, size_t n) {
    if (n == 0) return;
    check_codes(codes, n, "codes");
    bool ascending = true;
    for (size_t i = 0; i < n; ++i) {
        if (ids[i] < 0) {
            throw std::invalid_argument("ids: expected non-negative ids, got " + std::to_string(ids[i]));
        }
        if (i && ids[i] <= ids[i - 1]) ascending = false;
    }
    std::unique_lock<std::shared_mutex> lock(mu_);
    if (n > max_codes_ - n_) {
        throw std::invalid_argument("add: this index holds at most " + std::to_string(max_codes_) + " codes");
    }
    own();
    // Reserve both first: if memory runs out, nothing has changed.
    codes_.reserve_for(codes_.size() + n * w_);
    ids_.reserve_for(ids_.size() + n);
    if (ids_.size() && ids[0] <= ids_.data()[ids_.size() - 1]) ascending = false;
    codes_.append(codes, n * w_);
    ids_.append(ids, n);
    ids_ascending_ = ids_ascending_ && ascending;
    publish();
}

size_t FlatIndex::remove(const int64_t* ids, size_t count) {
    std::vector<int64_t> gone(ids, ids + count);
    std::sort(gone.begin(), gone.end());
    gone.erase(std::unique(gone.begin(), gone.end()), gone.end());
    std::unique_lock<std::shared_mutex> lock(mu_);
    if (gone.empty() || n_ == 0) return 0;
    // Find the rows first: a remove that removes nothing changes nothing.
    size_t first = n_;
    for (size_t i = 0; i < n_; ++i) {
        if (std::binary_search(gone.begin(), gone.end(), ip_[i])) {
            first = i;
            break;
        }
    }
    if (first == n_) return 0;
    own();
    uint64_t* c = codes_.data();
    int64_t* d = ids_.data();
    size_t out = first;
    for (size_t i = first; i < n_; ++i) {
        if (std::binary_search(gone.begin(), gone.end(), d[i])) continue;
        if (out != i) {
            std::copy(c + i * w_, c + (i + 1) * w_, c + out * w_);
            d[out] = d[i];
        }
        ++out;
    }
    const size_t removed = n_ - out;
    codes_.truncate(out * w_);
    ids_.truncate(out);
    if (out == 0) ids_ascending_ = true;
    publish();
    return removed;
}

void FlatIndex::assign(PodBuffer<uint64_t>& codes, PodBuffer<int64_t>& ids) {
    const size_t n = ids.size();
    if (codes.size() != n * w_) {
        throw std::invalid_argument("assign: expected " + std::to_string(n * w_) + " code words for " +
                                    std::to_string(n) + " ids, got " + std::to_string(codes.size()));
    }
    bool ascending = true;
    for (size_t i = 1; i < n && ascending; ++i) ascending = ids.data()[i] > ids.data()[i - 1];
    std::unique_lock<std::shared_mutex> lock(mu_);
    if (n_ != 0) throw std::invalid_argument("assign: expected an empty index");
    if (n > max_codes_) {
        throw std::invalid_argument("assign: " + std::to_string(n) + " codes, more than this index holds (" +
                                    std::to_string(max_codes_) + ")");
    }
    map_.reset();
    codes_.swap(codes);
    ids_.swap(ids);
    codes.release();
    ids.release();
    ids_ascending_ = ascending;
    publish();
}

void FlatIndex::assign_map(std::shared_ptr<const FileMap> map, uint64_t ids_offset, uint64_t codes_offset,
                           uint64_t n) {
    if (!map) throw std::invalid_argument("assign_map: expected a map");
    const uint64_t size = map->size();
    const uint64_t code_bytes = static_cast<uint64_t>(w_) * 8;
    if (ids_offset % 8 != 0 || codes_offset % 8 != 0) {
        throw std::invalid_argument("assign_map: expected 8-byte aligned ids and codes offsets");
    }
    if (n > size / 8 || ids_offset > size || n * 8 > size - ids_offset || (n && code_bytes > size / n) ||
        codes_offset > size || n * code_bytes > size - codes_offset) {
        throw std::invalid_argument("assign_map: expected " + std::to_string(n) +
                                    " ids and codes inside the map's " + std::to_string(size) + " bytes");
    }
    const int64_t* ip = reinterpret_cast<const int64_t*>(map->data() + ids_offset);
    const uint64_t* cp = reinterpret_cast<const uint64_t*>(map->data() + codes_offset);
    bool ascending = true;
    for (uint64_t i = 1; i < n && ascending; ++i) ascending = ip[i] > ip[i - 1];
    std::unique_lock<std::shared_mutex> lock(mu_);
    if (n_ != 0) throw std::invalid_argument("assign_map: expected an empty index");
    if (n > max_codes_) {
        throw std::invalid_argument("assign_map: " + std::to_string(n) + " codes, more than this index holds (" +
                                    std::to_string(max_codes_) + ")");
    }
    codes_.release();
    ids_.release();
    if (n == 0) {
        map_.reset();
    } else {
        map_ = std::move(map);
        cp_ = cp;
        ip_ = ip;
        n_ = static_cast<size_t>(n);
    }
    ids_ascending_ = ascending;
    publish();
}

void FlatIndex::Reader::knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) const {
    if (k == 0) throw std::invalid_argument("k: expected k >= 1, got 0");
    index_->knn_impl(q, nq, k, threads, D, I);
}

RadiusResult FlatIndex::Reader::radius(const uint64_t* q, size_t nq, int64_t r, size_t threads) const {
    if (r < 0) throw std::invalid_argument("r: expected r >= 0, got " + std::to_string(r));
    return index_->radius_impl(q, nq, r, threads);
}

size_t FlatIndex::block_rows() const {
    // About 128 KiB of codes per block: stays in L2 while every query of a
    // batch scans it. A multiple of 16 rows, the widest kernel step.
    const size_t rows = (size_t{128} << 10) / (8 * w_);
    return std::max<size_t>(256, rows / 16 * 16);
}

size_t FlatIndex::plan_threads(size_t requested, size_t nq) const {
    const size_t work = nq * n_ * w_;
    const size_t by_work = std::max<size_t>(1, work / kMinWorkPerThread);
    return std::max<size_t>(1, std::min({requested, by_work, kMaxThreads}));
}

const std::vector<size_t>& FlatIndex::id_order() const {
    std::lock_guard<std::mutex> lock(order_mu_);
    if (!order_valid_) {
        order_.resize(n_);
        std::iota(order_.begin(), order_.end(), size_t{0});
        const int64_t* ip = ip_;
        std::sort(order_.begin(), order_.end(), [ip](size_t a, size_t b) { return ip[a] < ip[b]; });
        order_valid_ = true;
    }
    return order_;
}

void FlatIndex::scan_knn(const Kernels& K, const uint64_t* q, size_t nq, size_t row_begin, size_t row_end,
                         TopK* states) const {
    if (row_begin >= row_end) return;
    const size_t block = block_rows();
    const size_t k = states[0].k();
    // Priming: all distances of a first run of rows set each query's
    // threshold to the k-th distance in it, instead of admitting every code.
    // A run of 16k rows puts that threshold near the 1/16 quantile, so large
    // k does not spend the early blocks pushing candidates. The run is kept
    // short otherwise (kMinPrimeRows): priming costs several passes a row
    // where the filter kernel costs one, which small indexes would feel.
    const size_t prime = std::min(row_end - row_begin, std::max(kMinPrimeRows, std::min<size_t>(64 * k, size_t{1} << 20)));
    // Room for kFilterBatch queries' survivors of one block (and the priming
    // run), no larger than the rows scanned: uninitialized, so that a call
    // over a small index does not clear (and fault in) a whole block's room.
    const size_t stride = std::max(std::min(block, row_end - row_begin), prime);
    const size_t batch = std::min(nq, kFilterBatch);
    UninitVector<uint32_t> rows(stride * batch);
    UninitVector<int32_t> dists(stride * batch);
    size_t counts[kFilterBatch];
    int32_t taus[kFilterBatch];
    {
        const uint64_t* base = cp_ + row_begin * w_;
        const int64_t* ids = ip_ + row_begin;
        UninitVector<int32_t> d(prime);
        int32_t* pd = dists.data();
        uint32_t* pr = rows.data();
        std::vector<uint32_t> hist;
        for (size_t j = 0; j < nq; ++j) {
            TopK& s = states[j];
            const uint64_t* qj = q + j * w_;
            if (prime >= k) {
                K.distances(qj, base, prime, w_, d.data());
                s.prime(kth_distance(d.data(), prime, k, static_cast<int32_t>(64 * w_), hist));
            }
            // The rows within the threshold by the filter kernel (vector
            // compares; a scalar pass over the distances cost more than the
            // kernel's second count): about k of them, with ties.
            const size_t c = K.filter(qj, base, prime, w_, s.threshold(), pr, pd);
            for (size_t t = 0; t < c; ++t) s.push(pd[t], ids[pr[t]]);
        }
    }
    BlockFilter filter(K, w_, block, nq);
    for (size_t b0 = row_begin + prime; b0 < row_end; b0 += block) {
        const size_t len = std::min(block, row_end - b0);
        const int64_t* ids = ip_ + b0;
        filter.load(cp_ + b0 * w_, len);
        // Where ids ascend with rows, every id of this block exceeds those kept.
        const int64_t min_id = ids_ascending_ ? ids[0] : -1;
        // A few queries per pass over the block: each load of a code serves
        // all of them (the kernels keep their distances in registers).
        for (size_t j0 = 0; j0 < nq; j0 += batch) {
            const size_t m = std::min(batch, nq - j0);
            for (size_t j = 0; j < m; ++j) taus[j] = states[j0 + j].threshold_above(min_id);
            filter.filter(q + j0 * w_, m, taus, rows.data(), dists.data(), stride, counts);
            for (size_t j = 0; j < m; ++j) {
                TopK& s = states[j0 + j];
                const uint32_t* r = rows.data() + j * stride;
                const int32_t* d = dists.data() + j * stride;
                for (size_t t = 0; t < counts[j]; ++t) s.push(d[t], ids[r[t]]);
            }
        }
    }
}

void FlatIndex::knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) const {
    read().knn(q, nq, k, threads, D, I);
}

void FlatIndex::knn_impl(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) const {
    const size_t n = n_;
    if (nq == 0) return;
    if (n == 0) {
        std::fill(D, D + nq * k, kDistancePad);
        std::fill(I, I + nq * k, kIdPad);
        return;
    }
    const Kernels& K = active_kernels();
    const size_t T = plan_threads(std::max<size_t>(threads, 1), nq);
    const size_t kk = std::min(k, n);
    if (T == 1 || nq >= 4 * T) {
        // Split the queries; each thread streams the database once per group.
        const size_t state_bytes = TopK::capacity(kk) * sizeof(Candidate);
        const size_t group = std::max<size_t>(1, kStateBytesPerThread / state_bytes);
        parallel_tasks(T, [&](size_t t) {
            const auto range = split_range(nq, T, t);
            for (size_t g0 = range.first; g0 < range.second; g0 += group) {
                const size_t g1 = std::min(range.second, g0 + group);
                std::vector<TopK> states(g1 - g0, TopK(kk));
                scan_knn(K, q + g0 * w_, g1 - g0, 0, n, states.data());
                for (size_t j = g0; j < g1; ++j) states[j - g0].finish(D + j * k, I + j * k, k);
            }
        });
    } else {
        // Few queries: split the database so that one query uses every core,
        // then merge the per-part candidates exactly.
        std::vector<std::vector<TopK>> parts(T);
        parallel_tasks(T, [&](size_t t) {
            const auto range = split_range(n, T, t);
            parts[t].assign(nq, TopK(kk));
            scan_knn(K, q, nq, range.first, range.second, parts[t].data());
        });
        for (size_t j = 0; j < nq; ++j) {
            TopK merged(kk);
            for (size_t t = 0; t < T; ++t) {
                for (const Candidate& c : parts[t][j].compacted()) merged.push(c.d, c.id);
            }
            merged.finish(D + j * k, I + j * k, k);
        }
    }
}

RadiusResult FlatIndex::radius(const uint64_t* q, size_t nq, int64_t r, size_t threads) const {
    return read().radius(q, nq, r, threads);
}

RadiusResult FlatIndex::radius_impl(const uint64_t* q, size_t nq, int64_t r, size_t threads) const {
    const size_t n = n_;
    const int32_t tau = static_cast<int32_t>(std::min<int64_t>(r, nbits_));
    const Kernels& K = active_kernels();
    const size_t T = plan_threads(std::max<size_t>(threads, 1), nq);
    const size_t block = block_rows();
    const bool split_queries = T == 1 || nq >= 4 * T;
    const size_t nparts = split_queries ? 1 : T;
    // hits[part][query]: candidates in ascending row order.
    std::vector<std::vector<std::vector<Candidate>>> hits(nparts, std::vector<std::vector<Candidate>>(nq));
    auto scan = [&](size_t part, size_t q0, size_t q1, size_t row_begin, size_t row_end) {
        const size_t batch = std::max<size_t>(1, std::min(q1 - q0, kFilterBatch));
        const size_t stride = std::max<size_t>(1, std::min(block, row_end - row_begin));
        UninitVector<uint32_t> rows(stride * batch);
        UninitVector<int32_t> dists(stride * batch);
        size_t counts[kFilterBatch];
        int32_t taus[kFilterBatch];
        std::fill(taus, taus + kFilterBatch, tau);
        BlockFilter filter(K, w_, block, q1 - q0);
        for (size_t b0 = row_begin; b0 < row_end; b0 += block) {
            const size_t len = std::min(block, row_end - b0);
            filter.load(cp_ + b0 * w_, len);
            for (size_t j0 = q0; j0 < q1; j0 += batch) {
                const size_t m = std::min(batch, q1 - j0);
                filter.filter(q + j0 * w_, m, taus, rows.data(), dists.data(), stride, counts);
                for (size_t j = 0; j < m; ++j) {
                    auto& out = hits[part][j0 + j];
                    const uint32_t* r = rows.data() + j * stride;
                    const int32_t* d = dists.data() + j * stride;
                    for (size_t t = 0; t < counts[j]; ++t) out.push_back({d[t], ip_[b0 + r[t]]});
                }
            }
        }
    };
    if (split_queries) {
        parallel_tasks(T, [&](size_t t) {
            const auto range = split_range(nq, T, t);
            scan(0, range.first, range.second, 0, n);
        });
    } else {
        parallel_tasks(T, [&](size_t t) {
            const auto range = split_range(n, T, t);
            scan(t, 0, nq, range.first, range.second);
        });
    }
    RadiusResult res;
    res.lims.assign(nq + 1, 0);
    for (size_t j = 0; j < nq; ++j) {
        size_t m = 0;
        for (size_t p = 0; p < nparts; ++p) m += hits[p][j].size();
        res.lims[j + 1] = res.lims[j] + static_cast<int64_t>(m);
    }
    const size_t total = static_cast<size_t>(res.lims[nq]);
    res.D.resize(total);
    res.I.resize(total);
    // Counting sort by distance, stable in row order; ties then by id where
    // row order is not id order.
    std::vector<size_t> offset(static_cast<size_t>(tau) + 2);
    for (size_t j = 0; j < nq; ++j) {
        std::fill(offset.begin(), offset.end(), 0);
        for (size_t p = 0; p < nparts; ++p)
            for (const Candidate& c : hits[p][j]) ++offset[static_cast<size_t>(c.d) + 1];
        for (size_t b = 1; b < offset.size(); ++b) offset[b] += offset[b - 1];
        const size_t base = static_cast<size_t>(res.lims[j]);
        for (size_t p = 0; p < nparts; ++p) {
            for (const Candidate& c : hits[p][j]) {
                const size_t at = base + offset[static_cast<size_t>(c.d)]++;
                res.D[at] = c.d;
                res.I[at] = c.id;
            }
            std::vector<Candidate>().swap(hits[p][j]);
        }
        if (!ids_ascending_) {
            size_t a = base;
            const size_t end = static_cast<size_t>(res.lims[j + 1]);
            while (a < end) {
                size_t b = a;
                while (b < end && res.D[b] == res.D[a]) ++b;
                std::sort(res.I.begin() + static_cast<std::ptrdiff_t>(a), res.I.begin() + static_cast<std::ptrdiff_t>(b));
                a = b;
            }
        }
    }
    return res;
}

size_t FlatIndex::rank(const uint64_t* q, size_t nq, size_t threads, UninitVector<int64_t>& ranked,
                       UninitVector<int32_t>* dists) const {
    std::shared_lock<std::shared_mutex> lock(mu_);
    const size_t n = n_;
    ranked.resize(nq * n);
    if (dists) dists->resize(nq * n);
    if (n == 0 || nq == 0) return n;
    int64_t* out = ranked.data();
    int32_t* dout = dists ? dists->data() : nullptr;
    const Kernels& K = active_kernels();
    const size_t T = plan_threads(std::max<size_t>(threads, 1), nq);
    const std::vector<size_t>* order = ids_ascending_ ? nullptr : &id_order();
    // Every distance a code can have: pad bits are zero in valid data, but a
    // file loaded with verify=False may break that, and must not break this.
    const size_t nbins = 64 * w_ + 1;
    // Counting sort by distance, visiting rows in id order so ties come out
    // by id; bucket b's slots [offset[b], offset[b + 1]) hold distance b.
    auto place = [&](const int32_t* dist, int64_t* row_out, int32_t* d_out, std::vector<size_t>& offset) {
        // Locals, not the captures: the loops' stores could alias a captured
        // n, nbins or ip_, which the compiler would then reload at every row.
        const size_t rows = n, bins = nbins;
        const int64_t* ids = ip_;
        size_t* off = offset.data();
        std::fill(offset.begin(), offset.end(), 0);
        const size_t* h = off + 1;
        count_distances(dist, rows, bins, off + 1);
        for (size_t b = 0; b < bins; ++b) off[b + 1] = off[b] + counted(h, bins, b);
        if (d_out) {
            for (size_t b = 0; b < bins; ++b) std::fill(d_out + off[b], d_out + off[b + 1], static_cast<int32_t>(b));
        }
        if (order) {
            for (size_t r : *order) row_out[off[static_cast<size_t>(dist[r])]++] = ids[r];
        } else {
            for (size_t r = 0; r < rows; ++r) row_out[off[static_cast<size_t>(dist[r])]++] = ids[r];
        }
    };
    if (T == 1 || nq >= T) {
        parallel_tasks(T, [&](size_t t) {
            const auto range = split_range(nq, T, t);
            std::vector<int32_t> dist(n);
            std::vector<size_t> offset(4 * nbins + 1);
            for (size_t j = range.first; j < range.second; ++j) {
                K.distances(q + j * w_, cp_, n, w_, dist.data());
                place(dist.data(), out + j * n, dout ? dout + j * n : nullptr, offset);
            }
        });
    } else {
        std::vector<int32_t> dist(n);
        std::vector<size_t> offset(4 * nbins + 1);
        for (size_t j = 0; j < nq; ++j) {
            parallel_tasks(T, [&](size_t t) {
                const auto range = split_range(n, T, t);
                K.distances(q + j * w_, cp_ + range.first * w_, range.second - range.first, w_,
                            dist.data() + range.first);
            });
            place(dist.data(), out + j * n, dout ? dout + j * n : nullptr, offset);
        }
    }
    return n;
}

uint64_t popcount_probe(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, size_t w, size_t threads) {
    threads = std::max<size_t>(1, std::min<size_t>(threads, kMaxThreads));
    if (n == 0 || nq == 0 || w == 0) return 0;
    const Kernels& K = active_kernels();
    std::vector<uint64_t> sums(threads, 0);
    parallel_tasks(threads, [&](size_t t) {
        const auto range = split_range(nq, threads, t);
        // The scan's own inner loop: the multi-query filter kernel compares
        // every distance with a threshold and keeps the rows within it; at
        // threshold 0 it keeps only exact duplicates, so the time is the
        // comparisons alone.
        // As in the scan, the codes are sliced once for all the queries where
        // the kernel works on sliced codes.
        UninitVector<uint32_t> rows(n * kFilterBatch);
        UninitVector<int32_t> dists(n * kFilterBatch);
        size_t counts[kFilterBatch];
        const int32_t taus[kFilterBatch] = {};
        uint64_t s = 0;
        BlockFilter filter(K, w, n, range.second - range.first);
        filter.load(codes, n);
        for (size_t j = range.first; j < range.second; j += kFilterBatch) {
            const size_t m = std::min(kFilterBatch, range.second - j);
            filter.filter(q + j * w, m, taus, rows.data(), dists.data(), n, counts);
            for (size_t i = 0; i < m; ++i) s += counts[i];
        }
        sums[t] = s;
    });
    uint64_t s = 0;
    for (uint64_t v : sums) s += v;
    return s;
}

uint64_t read_bandwidth(const uint64_t* data, size_t n, size_t threads) {
    threads = std::max<size_t>(1, std::min<size_t>(threads, kMaxThreads));
    std::vector<uint64_t> sums(threads, 0);
    parallel_tasks(threads, [&](size_t t) {
        const auto range = split_range(n, threads, t);
        uint64_t a = 0, b = 0, c = 0, d = 0;
        size_t i = range.first;
        for (; i + 4 <= range.second; i += 4) {
            a += data[i];
            b += data[i + 1];
            c += data[i + 2];
            d += data[i + 3];
        }
        for (; i < range.second; ++i) a += data[i];
        sums[t] = a + b + c + d;
    });
    uint64_t s = 0;
    for (uint64_t v : sums) s += v;
    return s;
}

}  // namespace hamsearch
