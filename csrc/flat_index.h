// The exact flat index: codes and ids in row order, scanned in blocks by the
// kernels of the active ISA level, with exact (distance, id) top-k selection.
#pragma once

#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "common.h"

namespace hamsearch {

/// Results of a radius search in compressed-row form.
struct RadiusResult {
    std::vector<int64_t> lims;  ///< nq + 1 offsets
    std::vector<int32_t> D;     ///< distances, per query ascending
    std::vector<int64_t> I;     ///< ids, ties ascending
};

/// Exact Hamming search by a linear scan. Thread-safe: searches take a shared
/// lock and may run concurrently; add takes an exclusive lock.
class FlatIndex {
   public:
    /// Throws std::invalid_argument unless 1 <= nbits <= kMaxBits.
    explicit FlatIndex(int64_t nbits);

    static constexpr int64_t kMaxBits = int64_t{1} << 20;

    int64_t nbits() const { return nbits_; }
    size_t words() const { return w_; }
    /// The store itself (MIHIndex::flat() returns its store): lets the
    /// bindings treat every index alike.
    const FlatIndex& flat() const { return *this; }
    size_t size() const;
    std::vector<int64_t> ids() const;
    std::vector<uint64_t> codes() const;

    /// Appends n codes (n x words, row-major) with their ids. Checks the pad
    /// bits and the ids' signs before changing anything; id uniqueness is the
    /// caller's contract.
    void add(const uint64_t* codes, const int64_t* ids, size_t n);

    /// k nearest per query into D, I (nq x k, row-major), sorted by
    /// (distance, id), padded with (INT32_MAX, -1).
    void knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) const;

    /// Every code within distance r of each query, sorted by (distance, id).
    RadiusResult radius(const uint64_t* q, size_t nq, int64_t r, size_t threads) const;

    /// The ids of the whole index per query in (distance, id) order: fills
    /// out with nq x n ids (row-major) and returns n, the size it ranked
    /// (read under the lock, so a concurrent add cannot change it midway).
    size_t rank(const uint64_t* q, size_t nq, size_t threads, std::vector<int64_t>& out) const;

    /// Checks that the pad bits above nbits are zero in each of n codes;
    /// throws std::invalid_argument naming the first bad row.
    void check_codes(const uint64_t* codes, size_t n, const char* what) const;

   private:
    friend class MIHIndex;  // searches the same store under the same lock

    // The searches without taking the lock (the caller holds it shared).
    void knn_impl(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) const;
    RadiusResult radius_impl(const uint64_t* q, size_t nq, int64_t r, size_t threads) const;

    size_t block_rows() const;
    size_t plan_threads(size_t requested, size_t nq) const;
    void scan_knn(const Kernels& K, const uint64_t* q, size_t nq, size_t row_begin, size_t row_end,
                  class TopK* states) const;
    const std::vector<size_t>& id_order() const;

    int64_t nbits_;
    size_t w_;
    std::vector<uint64_t> codes_;
    std::vector<int64_t> ids_;
    bool ids_ascending_ = true;  // ids increase with row number: row order is id order
    mutable std::shared_mutex mu_;
    mutable std::mutex order_mu_;
    mutable std::vector<size_t> order_;  // rows by ascending id, when !ids_ascending_
    mutable bool order_valid_ = false;
};

/// Reads every word of data with `threads` threads and returns their sum: a
/// memory-bandwidth probe for the benchmarks.
uint64_t read_bandwidth(const uint64_t* data, size_t n, size_t threads);

}  // namespace hamsearch
