// The index file format of docs/format.md: the 128-byte header, CRC-32,
// parsing with every check, verification of the data, atomic writes, and
// loading into memory or as a read-only memory map. A C++ program saves and
// loads an index with these functions alone:
//
//     hamsearch::save_index(index, "codes.hsi", next_id);
//     hamsearch::IndexFile file("codes.hsi");            // checks the header
//     hamsearch::FlatIndex loaded(file.header().nbits);   // or MIHIndex for kind 2
//     file.load_into(loaded, /*mmap=*/true, /*verify=*/true);
//
// Errors: FormatError (not a valid index file), FileError (the operating
// system refused: errno and the path), std::invalid_argument (bad arguments),
// std::bad_alloc. Nothing here writes into its inputs or into a file it reads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "constants.h"
#include "flat_index.h"
#include "mih_index.h"
#include "storage.h"

namespace hamsearch {

/// Bytes of the header (format version 1).
constexpr size_t kHeaderSize = 128;
/// The header's `kind` field.
constexpr uint32_t kKindFlat = 1;
constexpr uint32_t kKindMIH = 2;

/// A file that is not a valid index file. what() reads "PATH: problem" in the
/// wording of docs/format.md; Python sees a ValueError.
class FormatError : public std::invalid_argument {
   public:
    using std::invalid_argument::invalid_argument;
};

/// An operating-system failure on a file: errno and the path it concerns.
/// Python sees the OSError subclass that errno selects (FileNotFoundError,
/// PermissionError, IsADirectoryError, ...), as `open` raises it.
class FileError : public std::runtime_error {
   public:
    FileError(int error, const std::string& path);
    int error() const { return error_; }
    const std::string& path() const { return path_; }

   private:
    int error_;
    std::string path_;
};

/// CRC-32 of n bytes with zlib's polynomial (ISO-HDLC, reflected 0xEDB88320),
/// continuing from `crc` (0 to start): crc32(b, n2, crc32(a, n1)) is the CRC
/// of a followed by b, as zlib.crc32 chains.
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

/// The fields of a header (the magic, version, header size, flags, reserved
/// bytes and header CRC are implied).
struct FileHeader {
    uint32_t kind = kKindFlat;   ///< kKindFlat or kKindMIH
    int64_t nbits = 0;           ///< bits per code, 1 to kMaxBits
    uint64_t count = 0;          ///< codes in the file
    uint64_t next_id = 0;        ///< the first default id of the next add, at most kIdLimit
    uint64_t m = 0;              ///< MIH substrings asked for (0: automatic); 0 for kind 1
    uint64_t ids_offset = 0;     ///< kHeaderSize
    uint64_t codes_offset = 0;   ///< the ids' end rounded up to 64 bytes
    uint64_t end = 0;            ///< the file size
    uint32_t data_crc = 0;       ///< CRC-32 of bytes [ids_offset, end)

    uint64_t words() const { return static_cast<uint64_t>((nbits + 63) / 64); }
};

/// Where the ids and codes of `count` codes of `nbits` bits lie. Throws
/// std::overflow_error if the sizes do not fit in 64 bits.
struct FileLayout {
    uint64_t ids_offset;
    uint64_t codes_offset;
    uint64_t end;
};
FileLayout file_layout(uint64_t count, int64_t nbits);

/// The 128 header bytes of h, both CRC fields included (h.data_crc as given).
std::array<unsigned char, kHeaderSize> pack_header(const FileHeader& h);

/// Checks the first `len` bytes of a file of `file_size` bytes (len =
/// min(kHeaderSize, file_size)) as a header, in the order of docs/format.md:
/// magic, version, header size, header CRC, every field, the reserved bytes,
/// then the offsets, end and count against the file's size. Throws
/// FormatError naming `path` and the problem.
FileHeader parse_header(const unsigned char* raw, size_t len, uint64_t file_size, const std::string& path);

/// Checks the data of a file with header h: the CRC of the bytes from the
/// ids offset to the end (ids, padding, codes), then the padding (zero), the
/// ids (non-negative, unique, below the next id) and the codes' pad bits
/// (zero). `gap` holds the codes_offset - ids_offset - 8 * count padding
/// bytes. Throws FormatError naming the first problem.
void verify_data(const FileHeader& h, const int64_t* ids, const unsigned char* gap, const uint64_t* codes,
                 const std::string& path);

/// An index file open for reading, its header checked. Opening never blocks
/// (a FIFO is opened non-blocking) and refuses anything but a regular file.
/// Every read goes through the descriptor that was checked, so what is
/// loaded is that file even if another is renamed over the path meanwhile.
class IndexFile {
   public:
    /// Opens `path` and checks its header. Throws FileError (cannot open,
    /// a directory), FormatError (not a regular file, a bad header).
    explicit IndexFile(const std::string& path);
    IndexFile(const IndexFile&) = delete;
    IndexFile& operator=(const IndexFile&) = delete;
    ~IndexFile();

    const FileHeader& header() const { return header_; }
    const std::string& path() const { return path_; }
    /// Closes the descriptor (idempotent); later reads throw std::invalid_argument.
    void close();

    /// Reads the ids and codes into `ids` and `codes` (replacing what they
    /// hold) and, with verify, checks them (verify_data) before returning.
    void read(PodBuffer<int64_t>& ids, PodBuffer<uint64_t>& codes, bool verify) const;

    /// Maps the file read-only and, with verify, checks the mapped data.
    std::shared_ptr<const FileMap> map(bool verify) const;

    /// Loads the file into an empty index of the file's nbits: read into its
    /// own memory (mmap = false), or mapped and searched in place. With
    /// verify, the data are checked first and a bad file leaves the index
    /// empty. The MIH overload takes kind 1 or 2 files alike.
    void load_into(FlatIndex& index, bool mmap, bool verify) const;
    void load_into(MIHIndex& index, bool mmap, bool verify) const;

   private:
    int fd() const;

    std::string path_;
    int fd_ = -1;
    FileHeader header_;
};

/// Writes `path` atomically: `write(fd)` fills a new file in the same
/// directory (mode 0666 less the umask), which is flushed to disk, renamed
/// over `path` and the directory flushed. An error or a crash leaves the old
/// file or the new one, never a part of one, and no temporary file.
void write_atomic(const std::string& path, const std::function<void(int fd)>& write);
/// write_atomic of n bytes.
void write_atomic(const std::string& path, const void* data, size_t n);

/// Writes n bytes at `offset` of fd, all of them (short writes retried).
/// Throws FileError naming `path`.
void write_at(int fd, uint64_t offset, const void* data, size_t n, const std::string& path);

/// Saves an index atomically as one consistent snapshot (the store's lock is
/// held while its ids and codes are written; searches go on). next_id is
/// the index's next default id: above every id, at most kIdLimit.
void save_index(const FlatIndex& index, const std::string& path, uint64_t next_id);
/// As above, as kind 2 with the index's m.
void save_index(const MIHIndex& index, const std::string& path, uint64_t next_id);

/// Saves n ids and codes (n x ceil(nbits / 64) words, row-major) held
/// elsewhere (the Numba stores' copies) as an index file of `kind` and `m`.
void save_arrays(const std::string& path, uint32_t kind, int64_t nbits, uint64_t m, uint64_t next_id,
                 const int64_t* ids, const uint64_t* codes, size_t n);

}  // namespace hamsearch
