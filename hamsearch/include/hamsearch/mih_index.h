// Exact multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012): m hash
// tables over disjoint substrings of the codes; a query probes the buckets
// within a growing substring radius and verifies candidates by full popcount.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "common.h"
#include "flat_index.h"

namespace hamsearch {

struct MihKnnModel;  // csrc/mih_policy.h

/// One substring's table, stored compactly: a directory over the top
/// `dir_bits` bits of the key (one offset per 4 to 32 codes) and one
/// 32-bit entry per code, grouped by
/// directory bucket. An entry holds the row in its low `row_bits` bits and,
/// above them, the lowest `tag_bits` of the key's remaining `len - dir_bits`
/// bits; within a bucket the entries are sorted, so the rows of one key are
/// a contiguous run. When the rows leave too few bits for the whole rest of
/// the key (only for substrings much longer than log2(n)), a run can also
/// hold rows of keys that differ in the bits not kept: extra candidates,
/// verified like the others, so the search stays exact.
struct SubstringTable {
    int64_t begin = 0;  ///< first bit of the substring
    int64_t len = 0;    ///< bits, 1..64
    int dir_bits = 0;
    int row_bits = 0;
    int tag_bits = 0;
    std::vector<uint32_t> dir;      ///< 2^dir_bits + 1 offsets into entries
    std::vector<uint32_t> entries;  ///< (tag << row_bits) | row

    size_t bucket(uint64_t key) const { return dir_bits ? static_cast<size_t>(key >> (len - dir_bits)) : 0; }
    uint32_t row(uint32_t entry) const {
        return row_bits == 32 ? entry : entry & ((uint32_t{1} << row_bits) - 1);
    }
    /// The entries of key within its bucket's [first, last), as [first, last).
    std::pair<uint32_t, uint32_t> match(uint64_t key, uint32_t first, uint32_t last) const;
    /// Bytes held (directory and entries).
    size_t memory_bytes() const { return (dir.capacity() + entries.capacity()) * sizeof(uint32_t); }
};

/// Exact k-NN and radius search by multi-index hashing over a flat store,
/// which also serves ranking and the scan fallback. Thread-safe like
/// FlatIndex; the tables are rebuilt on the first search after an add.
class MIHIndex {
   public:
    /// m substrings (ceil(nbits/64) <= m <= nbits, so that a substring has
    /// at most 64 bits), or m = 0: chosen from the size at each table build,
    /// round(nbits / log2(n)), the paper's substrings of about log2(n) bits.
    MIHIndex(int64_t nbits, int64_t m);

    int64_t nbits() const { return flat_.nbits(); }
    int64_t m() const { return m_; }
    /// The number of substrings used for n codes.
    int64_t effective_m(size_t n) const;
    size_t words() const { return flat_.words(); }
    size_t size() const { return flat_.size(); }
    const FlatIndex& flat() const { return flat_; }
    FlatIndex& flat() { return flat_; }

    /// Substring (first bit, length) for n codes: effective_m(n) nearly equal
    /// parts, the longer ones first.
    std::vector<std::pair<int64_t, int64_t>> substrings(size_t n) const;

    /// At most 2^32 - 1 codes (the tables hold 32-bit rows).
    void add(const uint64_t* codes, const int64_t* ids, size_t n) { flat_.add(codes, ids, n); }
    size_t remove(const int64_t* ids, size_t count) { return flat_.remove(ids, count); }
    bool mapped() const { return flat_.mapped(); }

    /// The fraction of a full scan a query may spend probing before the scan
    /// answers it (default 0.5); infinity never falls back (tests use it to
    /// exercise the tables on small indexes).
    void set_scan_fraction(double f);
    double scan_fraction() const { return scan_fraction_; }

    /// As FlatIndex::knn; fallbacks (optional) receives per batch the number of
    /// queries answered by the scan fallback.
    void knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I,
             size_t* fallbacks = nullptr) const;
    /// As FlatIndex::radius; fallbacks (optional) as for knn.
    RadiusResult radius(const uint64_t* q, size_t nq, int64_t r, size_t threads,
                        size_t* fallbacks = nullptr) const;

    /// Bytes the tables hold (0 before the first search builds them).
    size_t table_bytes() const;

   private:
    void build_tables(const FlatIndex::Reader& store) const;  // caller holds tables_mu_
    const std::vector<SubstringTable>& tables(const FlatIndex::Reader& store) const;
    // The k-NN model of the current tables (call tables() first).
    std::shared_ptr<const MihKnnModel> knn_model(Isa isa) const;

    FlatIndex flat_;
    int64_t m_;
    double scan_fraction_;
    mutable std::mutex tables_mu_;
    mutable std::vector<SubstringTable> tables_;
    // Kept with the tables for the per-query prediction (csrc/mih_policy.h):
    // copies of the sampled codes, and how many near codes share their
    // substrings (over the tables; mih_knn_plan's sample_near).
    mutable std::vector<uint64_t> sample_;
    mutable size_t sample_near_ = 0;
    // The k-NN prediction's model of these tables at a kernel level (its
    // costs depend on it), built on first use.
    mutable std::shared_ptr<const MihKnnModel> knn_model_;
    mutable Isa knn_model_isa_ = Isa::scalar;
    mutable uint64_t tables_version_ = ~uint64_t{0};  // the store's version the tables cover
};

}  // namespace hamsearch
