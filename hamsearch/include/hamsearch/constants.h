// The core's limits and padding values, in one place (Python's are in
// hamsearch/_limits.py; tests/test_limits.py checks that the two agree).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

namespace hamsearch {

/// Bits per code: 1 to kMaxBits.
constexpr int64_t kMaxBits = int64_t{1} << 20;
/// The most worker threads one call starts; larger requests mean this.
constexpr size_t kMaxThreads = 1024;
/// The distance and the id of a missing result (faiss's convention).
constexpr int32_t kDistancePad = std::numeric_limits<int32_t>::max();
constexpr int64_t kIdPad = -1;
/// Ids are below kIdLimit (2^63); a next default id may equal it (no default
/// id left), so an index file's next id is at most kIdLimit.
constexpr uint64_t kIdLimit = uint64_t{1} << 63;
/// The index file format version this core reads and writes (docs/format.md).
constexpr uint32_t kFormatVersion = 1;

}  // namespace hamsearch
