// The exact flat index: codes and ids in row order, scanned in blocks by the
// kernels of the active ISA level, with exact (distance, id) top-k selection.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "common.h"
#include "constants.h"
#include "storage.h"

namespace hamsearch {

/// Results of a radius search in compressed-row form.
struct RadiusResult {
    std::vector<int64_t> lims;  ///< nq + 1 offsets
    std::vector<int32_t> D;     ///< distances, per query ascending
    std::vector<int64_t> I;     ///< ids, ties ascending
};

/// Exact Hamming search by a linear scan. Thread-safe: searches take a shared
/// lock and may run concurrently; add, remove and map take an exclusive lock.
/// The codes and ids live in buffers the index owns or in a read-only file
/// map; a change to a mapped index copies it into owned buffers first.
class FlatIndex {
   public:
    /// Throws std::invalid_argument unless 1 <= nbits <= kMaxBits. An index
    /// holds at most max_codes codes (add, assign and assign_map refuse more):
    /// MIHIndex passes 2^32 - 1, what its 32-bit table rows address.
    explicit FlatIndex(int64_t nbits, size_t max_codes = ~size_t{0});

    int64_t nbits() const { return nbits_; }
    size_t words() const { return w_; }
    /// The store itself (MIHIndex::flat() returns its store): lets the
    /// bindings treat every index alike.
    const FlatIndex& flat() const { return *this; }
    size_t size() const;
    /// Changes so far (add, remove, map): lets derived tables notice any.
    uint64_t version() const;
    bool mapped() const;
    std::vector<int64_t> ids() const;
    std::vector<uint64_t> codes() const;

    /// Appends n codes (n x words, row-major) with their ids. Checks the pad
    /// bits and the ids' signs before changing anything; id uniqueness is the
    /// caller's contract.
    void add(const uint64_t* codes, const int64_t* ids, size_t n);

    /// Removes the codes whose ids are among ids[0..count) and returns how
    /// many it removed (ids not present count as not removed; repeats once).
    /// The other codes keep their ids and order.
    size_t remove(const int64_t* ids, size_t count);

    /// Replaces the contents of the (empty) index by `codes` (n x words,
    /// row-major) and `ids` (n), taking their memory (they are left empty).
    /// The caller has checked the contents (pad bits, ids). Throws
    /// std::invalid_argument if the index is not empty or cannot hold n codes.
    void assign(PodBuffer<uint64_t>& codes, PodBuffer<int64_t>& ids);

    /// Replaces the contents of the (empty) index by n codes of a mapped
    /// file, searched in place: ids at ids_offset, codes at codes_offset, as
    /// an index file holds them. Checks that the ranges lie inside the map
    /// and are aligned; the caller has checked the contents.
    void assign_map(std::shared_ptr<const FileMap> map, uint64_t ids_offset, uint64_t codes_offset, uint64_t n);

    /// A consistent read-only view of the contents, for code that reads or
    /// searches them by its own means (MIHIndex's tables, saving, an embedding
    /// program's own pass). It holds the index's shared lock while it lives:
    /// no add, remove or map changes the contents meanwhile, searches go on.
    /// Movable (a moved-from view is not used again), not copyable; it must
    /// not outlive the index. The thread holding one searches through it
    /// (view.knn, view.radius), not through the index's own calls, and does
    /// not change the same index: either would lock the index a second time
    /// from that thread, which can wait for itself behind a pending change.
    class Reader {
       public:
        size_t size() const { return index_->n_; }
        size_t words() const { return index_->w_; }
        int64_t nbits() const { return index_->nbits_; }
        /// size() x words() code words, row-major.
        const uint64_t* codes() const { return index_->cp_; }
        /// size() ids, row i's id at ids()[i].
        const int64_t* ids() const { return index_->ip_; }
        /// The index's version() when the view was taken (it cannot change while the view lives).
        uint64_t version() const { return index_->version_; }
        /// FlatIndex::knn and FlatIndex::radius over this view (no second lock).
        void knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) const;
        RadiusResult radius(const uint64_t* q, size_t nq, int64_t r, size_t threads) const;

       private:
        friend class FlatIndex;
        explicit Reader(const FlatIndex& index) : index_(&index), lock_(index.mu_) {}
        const FlatIndex* index_;
        std::shared_lock<std::shared_mutex> lock_;
    };

    /// Takes a Reader (waits while an add, remove or map holds the index).
    Reader read() const { return Reader(*this); }

    /// k nearest per query into D, I (nq x k, row-major), sorted by
    /// (distance, id), padded with (INT32_MAX, -1).
    void knn(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) const;

    /// Every code within distance r of each query, sorted by (distance, id).
    RadiusResult radius(const uint64_t* q, size_t nq, int64_t r, size_t threads) const;

    /// The ids of the whole index per query in (distance, id) order: fills
    /// out with nq x n ids (row-major) and, when dists is given, dists with
    /// their distances; returns n, the size it ranked (read under the lock,
    /// so a concurrent add cannot change it midway).
    size_t rank(const uint64_t* q, size_t nq, size_t threads, UninitVector<int64_t>& out,
                UninitVector<int32_t>* dists = nullptr) const;

    /// Checks that the pad bits above nbits are zero in each of n codes;
    /// throws std::invalid_argument naming the first bad row.
    void check_codes(const uint64_t* codes, size_t n, const char* what) const;

   private:
    // The searches without taking the lock (the caller holds it shared).
    void knn_impl(const uint64_t* q, size_t nq, size_t k, size_t threads, int32_t* D, int64_t* I) const;
    RadiusResult radius_impl(const uint64_t* q, size_t nq, int64_t r, size_t threads) const;

    size_t block_rows() const;
    size_t plan_threads(size_t requested, size_t nq) const;
    void scan_knn(const Kernels& K, const uint64_t* q, size_t nq, size_t row_begin, size_t row_end,
                  class TopK* states) const;
    const std::vector<size_t>& id_order() const;

    void own();        // caller holds mu_ exclusively: copy a mapped index into owned buffers
    void publish();    // caller holds mu_ exclusively: point cp_, ip_, n_ at the storage

    int64_t nbits_;
    size_t w_;
    PodBuffer<uint64_t> codes_;  // owned storage (empty while mapped)
    PodBuffer<int64_t> ids_;
    std::shared_ptr<const FileMap> map_;  // set while the index is a file map
    const uint64_t* cp_ = nullptr;        // the codes searched: owned or mapped
    const int64_t* ip_ = nullptr;
    size_t n_ = 0;
    uint64_t version_ = 0;
    size_t max_codes_;
    bool ids_ascending_ = true;  // ids increase with row number: row order is id order
    mutable std::shared_mutex mu_;
    mutable std::mutex order_mu_;
    mutable std::vector<size_t> order_;  // rows by ascending id, when !ids_ascending_
    mutable bool order_valid_ = false;
};

/// Checks that the pad bits above nbits are zero in each of n codes of w
/// words; throws std::invalid_argument naming `what` and the first bad row.
void check_pad_bits(const uint64_t* codes, size_t n, size_t w, int64_t nbits, const char* what);

/// Reads every word of data with `threads` threads and returns their sum: a
/// memory-bandwidth probe for the benchmarks.
uint64_t read_bandwidth(const uint64_t* data, size_t n, size_t threads);

/// The popcount compute probe: the scan's filter kernel over each of nq
/// queries against all n codes (w words each) at threshold 0, queries split
/// over `threads` threads, no selection. Returns the number of (query, code)
/// pairs at distance 0, so that the work cannot be optimised away. Over codes
/// that fit in the cache, its rate is the machine's comparison ceiling for
/// that width.
uint64_t popcount_probe(const uint64_t* q, size_t nq, const uint64_t* codes, size_t n, size_t w, size_t threads);

}  // namespace hamsearch
