// Exact multi-index hashing (Norouzi, Punjani and Fleet, CVPR 2012): m hash
// tables over disjoint substrings of the codes; a query probes the buckets
// within a growing substring radius and verifies candidates by full popcount.
#pragma once

#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "common.h"
#include "flat_index.h"

namespace hamsearch {

/// One substring's table: the sorted distinct keys and, per key, the rows
/// holding it (compressed rows), plus a directory over the keys' top bits so
/// a lookup is one short search.
struct SubstringTable {
    int64_t begin = 0;  ///< first bit of the substring
    int64_t len = 0;    ///< bits, 1..64
    std::vector<uint64_t> keys;
    std::vector<uint64_t> offsets;  ///< keys.size() + 1
    std::vector<uint32_t> rows;
    int dir_bits = 0;
    std::vector<uint64_t> dir;  ///< 2^dir_bits + 1 offsets into keys
    /// Direct addressing where the key space is small (2^len <= 2n): the
    /// rows of key v are rows[direct[v], direct[v+1]), and keys, offsets and
    /// dir stay empty. Two memory accesses per probe instead of four.
    std::vector<uint32_t> direct;

    /// The rows whose substring equals key, as [first, last) into rows.
    std::pair<const uint32_t*, const uint32_t*> find(uint64_t key) const;
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

    void add(const uint64_t* codes, const int64_t* ids, size_t n);

    /// The fraction of a full scan a query may spend probing before the scan
    /// answers it (default 0.5); infinity never falls back (tests use it to
    /// exercise the tables on small indexes).
    void set_scan_fraction(double f);
    double scan_fraction() const { return scan_fraction_; }

    /// As FlatIndex::knn; stats (optional) receives per batch the number of
    /// queries answered by the scan fallback.
    void knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I,
             size_t* fallbacks = nullptr) const;
    RadiusResult radius(const uint64_t* q, size_t nq, int64_t r, size_t threads) const;

   private:
    void build_tables(size_t n) const;  // caller holds tables_mu_ and the store's lock
    const std::vector<SubstringTable>& tables() const;

    FlatIndex flat_;
    int64_t m_;
    double scan_fraction_;
    mutable std::mutex tables_mu_;
    mutable std::vector<SubstringTable> tables_;
    mutable size_t tables_n_ = 0;  // rows the tables cover
};

}  // namespace hamsearch
