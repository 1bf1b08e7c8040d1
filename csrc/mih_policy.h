// Multi-index hashing's policy: how many substrings, how each table is laid
// out, what probing costs against a scan, and when a query or a batch gives
// up on the tables. The native MIHIndex and the Numba backend (through
// hamsearch._core) both take every decision from here, so they choose the
// same m, the same tables and the same fallbacks on the same data.
#pragma once

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

/// The tables for n codes (m as asked, 0: automatic).
std::vector<MihTableShape> mih_table_shapes(int64_t nbits, int64_t m, size_t n);

/// The costs at a kernel level for codes of w words.
MihCosts mih_costs(size_t w, Isa isa);

/// Work a query may spend on the tables: scan_fraction of a scan of n codes.
double mih_budget(double scan_fraction, size_t n, size_t w);

/// Queries of a batch tried on the tables before half of them giving up
/// sends the rest straight to the scan.
size_t mih_batch_trials(size_t nq);

}  // namespace hamsearch
