#include "hamsearch/format.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <system_error>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#define HS_HAVE_POSIX_FILES 1
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#else
#define HS_HAVE_POSIX_FILES 0
#endif

namespace hamsearch {

namespace {

constexpr unsigned char kMagic[8] = {0x89, 'H', 'S', 'I', 'N', 'D', 'E', 'X'};
constexpr size_t kHeaderCrcAt = 124;
constexpr size_t kReservedBegin = 92;  // zeros up to kHeaderCrcAt

// -- CRC-32 (zlib's): slicing by 8, tables built at compile time ------------
struct CrcTables {
    uint32_t t[8][256];
};

constexpr CrcTables make_crc_tables() {
    CrcTables c{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t v = i;
        for (int b = 0; b < 8; ++b) v = (v & 1) ? (v >> 1) ^ 0xEDB88320u : v >> 1;
        c.t[0][i] = v;
    }
    for (int k = 1; k < 8; ++k) {
        for (uint32_t i = 0; i < 256; ++i) c.t[k][i] = (c.t[k - 1][i] >> 8) ^ c.t[0][c.t[k - 1][i] & 0xFF];
    }
    return c;
}

constexpr CrcTables kCrc = make_crc_tables();

// -- little-endian fields ------------------------------------------------------
uint32_t get_u32(const unsigned char* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

uint64_t get_u64(const unsigned char* p) { return uint64_t{get_u32(p)} | uint64_t{get_u32(p + 4)} << 32; }

void put_u32(unsigned char* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

void put_u64(unsigned char* p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

// The payload is written and mapped as it lies in memory, which is the
// file's byte order only on little-endian hosts.
void require_little_endian() {
    const uint16_t one = 1;
    unsigned char first;
    std::memcpy(&first, &one, 1);
    if (first != 1) throw std::runtime_error("index files: big-endian hosts are not supported");
}

uint64_t words_of(int64_t nbits) { return static_cast<uint64_t>((nbits + 63) / 64); }

// Python's repr of a bytes object, so that messages read as they did when
// the format was parsed in Python.
std::string bytes_repr(const unsigned char* p, size_t n) {
    const bool single = std::find(p, p + n, '\'') != p + n;
    const bool dbl = std::find(p, p + n, '"') != p + n;
    const char quote = single && !dbl ? '"' : '\'';
    std::string out = "b";
    out += quote;
    for (size_t i = 0; i < n; ++i) {
        const unsigned char c = p[i];
        if (c == quote || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c < 0x20 || c >= 0x7F) {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", c);
            out += hex;
        } else {
            out += static_cast<char>(c);
        }
    }
    out += quote;
    return out;
}

std::string hex_of(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
    return v == 0 ? "0x0" : buf;
}

std::string str(uint64_t v) { return std::to_string(v); }

FormatError bad(const std::string& path, const std::string& what) { return FormatError(path + ": " + what); }

std::string triple(uint64_t a, uint64_t b, uint64_t c) {
    return "(" + str(a) + ", " + str(b) + ", " + str(c) + ")";
}

void check_path(const std::string& path) {
    if (path.find('\0') != std::string::npos) throw std::invalid_argument("path: embedded null byte");
}

}  // namespace

FileError::FileError(int error, const std::string& path)
    : std::runtime_error(path + ": " + std::strerror(error)), error_(error), path_(path) {}

uint32_t crc32(const void* data, size_t n, uint32_t crc) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    crc = ~crc;
    while (n >= 8) {
        // Read as little-endian whatever the host (one load where it is).
        const uint64_t v = get_u64(p) ^ crc;
        crc = kCrc.t[7][v & 0xFF] ^ kCrc.t[6][(v >> 8) & 0xFF] ^ kCrc.t[5][(v >> 16) & 0xFF] ^
              kCrc.t[4][(v >> 24) & 0xFF] ^ kCrc.t[3][(v >> 32) & 0xFF] ^ kCrc.t[2][(v >> 40) & 0xFF] ^
              kCrc.t[1][(v >> 48) & 0xFF] ^ kCrc.t[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = kCrc.t[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

FileLayout file_layout(uint64_t count, int64_t nbits) {
    uint64_t ids_bytes = 0, code_bytes = 0, end = 0;
    if (__builtin_mul_overflow(count, uint64_t{8}, &ids_bytes) || ids_bytes > ~uint64_t{0} - kHeaderSize - 63 ||
        __builtin_mul_overflow(ids_bytes, words_of(nbits), &code_bytes)) {
        throw std::overflow_error("index file: " + str(count) + " codes do not fit in 64-bit offsets");
    }
    const uint64_t codes_offset = (kHeaderSize + ids_bytes + 63) / 64 * 64;
    if (__builtin_add_overflow(codes_offset, code_bytes, &end)) {
        throw std::overflow_error("index file: " + str(count) + " codes do not fit in 64-bit offsets");
    }
    return FileLayout{kHeaderSize, codes_offset, end};
}

std::array<unsigned char, kHeaderSize> pack_header(const FileHeader& h) {
    std::array<unsigned char, kHeaderSize> b{};
    unsigned char* p = b.data();
    std::memcpy(p, kMagic, 8);
    put_u32(p + 8, kFormatVersion);
    put_u32(p + 12, static_cast<uint32_t>(kHeaderSize));
    put_u32(p + 16, h.kind);
    put_u32(p + 20, 0);  // flags
    put_u64(p + 24, static_cast<uint64_t>(h.nbits));
    put_u64(p + 32, h.words());
    put_u64(p + 40, h.count);
    put_u64(p + 48, h.next_id);
    put_u64(p + 56, h.m);
    put_u64(p + 64, h.ids_offset);
    put_u64(p + 72, h.codes_offset);
    put_u64(p + 80, h.end);
    put_u32(p + 88, h.data_crc);
    put_u32(p + kHeaderCrcAt, crc32(p, kHeaderCrcAt));
    return b;
}

FileHeader parse_header(const unsigned char* raw, size_t len, uint64_t file_size, const std::string& path) {
    const std::string magic = bytes_repr(kMagic, 8);
    if (len < kHeaderSize) {
        if (std::memcmp(raw, kMagic, std::min<size_t>(len, 8)) != 0) {
            throw bad(path, "not a hamsearch index file (expected the magic bytes " + magic + ")");
        }
        throw bad(path, "truncated: expected a " + str(kHeaderSize) + "-byte header, got a " + str(file_size) +
                            "-byte file");
    }
    if (std::memcmp(raw, kMagic, 8) != 0) {
        throw bad(path, "not a hamsearch index file (expected the magic bytes " + magic + ", got " +
                            bytes_repr(raw, 8) + ")");
    }
    const uint32_t version = get_u32(raw + 8), header_size = get_u32(raw + 12);
    if (version > kFormatVersion) {
        throw bad(path, "format version " + str(version) + " is newer than this hamsearch reads (" +
                            str(kFormatVersion) + "); upgrade hamsearch to load it");
    }
    if (version < 1) {
        throw bad(path, "expected format version 1 to " + str(kFormatVersion) + ", got " + str(version));
    }
    if (header_size != kHeaderSize) {
        throw bad(path, "expected a header of " + str(kHeaderSize) + " bytes for format version " + str(version) +
                            ", got " + str(header_size));
    }
    if (crc32(raw, kHeaderCrcAt) != get_u32(raw + kHeaderCrcAt)) {
        throw bad(path, "header checksum mismatch: the header is corrupt");
    }
    const uint32_t kind = get_u32(raw + 16), flags = get_u32(raw + 20);
    const uint64_t nbits = get_u64(raw + 24), nwords = get_u64(raw + 32), count = get_u64(raw + 40);
    const uint64_t next_id = get_u64(raw + 48), m = get_u64(raw + 56);
    const uint64_t ids_offset = get_u64(raw + 64), codes_offset = get_u64(raw + 72), end = get_u64(raw + 80);
    if (kind != kKindFlat && kind != kKindMIH) {
        throw bad(path, "expected index kind [1, 2] (flat, mih), got " + str(kind));
    }
    if (flags != 0) {
        throw bad(path, "expected flags 0 in format version " + str(version) + ", got " + hex_of(flags));
    }
    if (nbits < 1 || nbits > static_cast<uint64_t>(kMaxBits)) {
        throw bad(path, "expected 1 <= nbits <= " + str(kMaxBits) + ", got " + str(nbits));
    }
    const uint64_t w = words_of(static_cast<int64_t>(nbits));
    if (nwords != w) {
        throw bad(path, "expected " + str(w) + " words per code for nbits=" + str(nbits) + ", got " + str(nwords));
    }
    if (kind == kKindFlat && m != 0) throw bad(path, "expected m = 0 for a flat index, got " + str(m));
    if (kind == kKindMIH && m != 0 && !(w <= m && m <= nbits)) {
        throw bad(path, "expected m = 0 or " + str(w) + " <= m <= " + str(nbits) + " for an MIH index, got " +
                            str(m));
    }
    if (next_id > kIdLimit) throw bad(path, "expected a next id of at most 2**63, got " + str(next_id));
    for (size_t i = kReservedBegin; i < kHeaderCrcAt; ++i) {
        if (raw[i] != 0) {
            throw bad(path, "expected the reserved header bytes " + str(kReservedBegin) + " to " +
                                str(kHeaderCrcAt - 1) + " to be zero, got " + hex_of(raw[i]) + " at byte " + str(i));
        }
    }
    // The count decides every size: check it against the file before
    // anything is allocated, so a forged count cannot ask for memory.
    if (count > file_size / 8) throw bad(path, "count " + str(count) + " does not fit a " + str(file_size) + "-byte file");
    FileLayout want{};
    try {
        want = file_layout(count, static_cast<int64_t>(nbits));
    } catch (const std::overflow_error&) {
        throw bad(path, "count " + str(count) + " does not fit a " + str(file_size) + "-byte file");
    }
    if (ids_offset != want.ids_offset || codes_offset != want.codes_offset || end != want.end) {
        throw bad(path, "expected ids, codes and end at " + triple(want.ids_offset, want.codes_offset, want.end) +
                            " for " + str(count) + " codes of " + str(nbits) + " bits, got " +
                            triple(ids_offset, codes_offset, end));
    }
    if (file_size < end) {
        throw bad(path, "truncated: expected " + str(end) + " bytes for " + str(count) + " codes of " + str(nbits) +
                            " bits, got " + str(file_size));
    }
    if (file_size > end) {
        throw bad(path, "expected " + str(end) + " bytes for " + str(count) + " codes of " + str(nbits) +
                            " bits, got " + str(file_size) + " (" + str(file_size - end) +
                            " bytes of trailing data)");
    }
    FileHeader h;
    h.kind = kind;
    h.nbits = static_cast<int64_t>(nbits);
    h.count = count;
    h.next_id = next_id;
    h.m = m;
    h.ids_offset = ids_offset;
    h.codes_offset = codes_offset;
    h.end = end;
    h.data_crc = get_u32(raw + 88);
    return h;
}

void verify_data(const FileHeader& h, const int64_t* ids, const unsigned char* gap, const uint64_t* codes,
                 const std::string& path) {
    const size_t n = static_cast<size_t>(h.count), w = static_cast<size_t>(h.words());
    const size_t gap_len = static_cast<size_t>(h.codes_offset - h.ids_offset - 8 * h.count);
    uint32_t crc = crc32(ids, 8 * n);
    crc = crc32(gap, gap_len, crc);
    crc = crc32(codes, 8 * n * w, crc);
    if (crc != h.data_crc) throw bad(path, "data checksum mismatch: the ids or codes are corrupt");
    for (size_t i = 0; i < gap_len; ++i) {
        if (gap[i] != 0) {
            throw bad(path, "expected zero padding between the ids and the codes, got " + hex_of(gap[i]) +
                                " at byte " + str(h.ids_offset + 8 * h.count + i));
        }
    }
    if (n == 0) return;
    int64_t lo = ids[0], hi = ids[0];
    bool ascending = true;
    for (size_t i = 1; i < n; ++i) {
        lo = std::min(lo, ids[i]);
        hi = std::max(hi, ids[i]);
        ascending = ascending && ids[i] > ids[i - 1];
    }
    if (lo < 0) throw bad(path, "expected non-negative ids, got " + std::to_string(lo));
    if (!ascending) {
        std::vector<int64_t> sorted(ids, ids + n);
        std::sort(sorted.begin(), sorted.end());
        const auto dup = std::adjacent_find(sorted.begin(), sorted.end());
        if (dup != sorted.end()) throw bad(path, "expected unique ids, got " + std::to_string(*dup) + " more than once");
    }
    if (static_cast<uint64_t>(hi) >= h.next_id) {
        throw bad(path, "expected ids below the next id " + str(h.next_id) + ", got " + std::to_string(hi));
    }
    try {
        check_pad_bits(codes, n, w, h.nbits, "codes");
    } catch (const std::invalid_argument& e) {
        const std::string what = e.what();  // "codes: expected the pad bits ..."
        throw bad(path, what.substr(what.find(": ") + 2));
    }
}

#if HS_HAVE_POSIX_FILES

namespace {

// Reads up to n bytes at offset; returns how many it read (fewer at the end
// of the file). Throws FileError.
size_t read_at(int fd, uint64_t offset, void* data, size_t n, const std::string& path) {
    unsigned char* p = static_cast<unsigned char*>(data);
    size_t done = 0;
    while (done < n) {
        const size_t chunk = std::min<size_t>(n - done, size_t{1} << 30);
        const ssize_t got = ::pread(fd, p + done, chunk, static_cast<off_t>(offset + done));
        if (got < 0) {
            if (errno == EINTR) continue;
            throw FileError(errno, path);
        }
        if (got == 0) break;
        done += static_cast<size_t>(got);
    }
    return done;
}

const char* file_type(mode_t mode) {
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
#ifdef S_ISSOCK
    if (S_ISSOCK(mode)) return "a socket";
#endif
    return "something other than a regular file";
}

void fsync_directory(const std::string& dir) {
#ifdef O_DIRECTORY
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
#else
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_CLOEXEC);
#endif
    if (dfd < 0) return;  // some systems cannot open directories: the rename stands, less durably
    (void)::fsync(dfd);   // some file systems refuse; nothing better to do
    ::close(dfd);
}

std::string temporary_name(const std::string& dir, const std::string& base) {
    static std::atomic<uint64_t> counter{0};
    uint64_t r = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    r ^= (static_cast<uint64_t>(::getpid()) << 40) ^ (counter.fetch_add(1) * 0x9E3779B97F4A7C15ull);
    char buf[20];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
    return dir + "/." + base + "." + buf + ".tmp";
}

}  // namespace

IndexFile::IndexFile(const std::string& path) : path_(path) {
    check_path(path);
    require_little_endian();
    // Non-blocking, so that a FIFO cannot hold the open; fstat then refuses it.
    do {
        fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    } while (fd_ < 0 && errno == EINTR);
    if (fd_ < 0) throw FileError(errno, path);
    try {
        struct stat st;
        if (::fstat(fd_, &st) != 0) throw FileError(errno, path);
        if (S_ISDIR(st.st_mode)) throw FileError(EISDIR, path);
        if (!S_ISREG(st.st_mode)) throw bad(path, std::string("expected a regular file, got ") + file_type(st.st_mode));
        const int fl = ::fcntl(fd_, F_GETFL);
        if (fl >= 0) (void)::fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK);
        const uint64_t size = static_cast<uint64_t>(st.st_size);
        unsigned char raw[kHeaderSize] = {};
        const size_t len = read_at(fd_, 0, raw, static_cast<size_t>(std::min<uint64_t>(size, kHeaderSize)), path);
        header_ = parse_header(raw, len, len < kHeaderSize ? len : size, path);
    } catch (...) {
        ::close(fd_);
        fd_ = -1;
        throw;
    }
}

IndexFile::~IndexFile() { close(); }

void IndexFile::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

int IndexFile::fd() const {
    if (fd_ < 0) throw std::invalid_argument(path_ + ": I/O operation on a closed index file");
    return fd_;
}

void IndexFile::read(PodBuffer<int64_t>& ids, PodBuffer<uint64_t>& codes, bool verify) const {
    const FileHeader& h = header_;
    const int f = fd();
    const size_t n = static_cast<size_t>(h.count), w = static_cast<size_t>(h.words());
    const size_t gap_len = static_cast<size_t>(h.codes_offset - h.ids_offset - 8 * h.count);
    ids.resize(n);
    codes.resize(n * w);
    unsigned char gap[64] = {};
    const bool whole = read_at(f, h.ids_offset, ids.data(), 8 * n, path_) == 8 * n &&
                       read_at(f, h.ids_offset + 8 * n, gap, gap_len, path_) == gap_len &&
                       read_at(f, h.codes_offset, codes.data(), 8 * n * w, path_) == 8 * n * w;
    if (!whole) throw bad(path_, "truncated: the file shrank while it was read");
    if (verify) verify_data(h, ids.data(), gap, codes.data(), path_);
}

std::shared_ptr<const FileMap> IndexFile::map(bool verify) const {
    const FileHeader& h = header_;
    std::shared_ptr<const FileMap> m;
    try {
        m = std::make_shared<const FileMap>(fd(), static_cast<size_t>(h.end));
    } catch (const std::system_error& e) {
        throw FileError(e.code().value(), path_);
    }
    if (verify) {
        const unsigned char* base = m->data();
        verify_data(h, reinterpret_cast<const int64_t*>(base + h.ids_offset), base + h.ids_offset + 8 * h.count,
                    reinterpret_cast<const uint64_t*>(base + h.codes_offset), path_);
    }
    return m;
}

void IndexFile::load_into(FlatIndex& index, bool mmap, bool verify) const {
    if (index.nbits() != header_.nbits) {
        throw std::invalid_argument(path_ + ": expected an index of " + std::to_string(header_.nbits) +
                                    " bits to load into, got " + std::to_string(index.nbits()));
    }
    if (index.size() != 0) throw std::invalid_argument(path_ + ": expected an empty index to load into");
    if (mmap && header_.count > 0 && FileMap::supported()) {
        index.assign_map(map(verify), header_.ids_offset, header_.codes_offset, header_.count);
        return;
    }
    PodBuffer<int64_t> ids;
    PodBuffer<uint64_t> codes;
    read(ids, codes, verify);
    index.assign(codes, ids);
}

void IndexFile::load_into(MIHIndex& index, bool mmap, bool verify) const { load_into(index.flat(), mmap, verify); }

void write_at(int fd, uint64_t offset, const void* data, size_t n, const std::string& path) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    while (n > 0) {
        const size_t chunk = std::min<size_t>(n, size_t{1} << 30);
        const ssize_t got = ::pwrite(fd, p, chunk, static_cast<off_t>(offset));
        if (got < 0) {
            if (errno == EINTR) continue;
            throw FileError(errno, path);
        }
        p += got;
        offset += static_cast<uint64_t>(got);
        n -= static_cast<size_t>(got);
    }
}

void write_atomic(const std::string& path, const std::function<void(int fd)>& write) {
    check_path(path);
    if (path.empty()) throw FileError(ENOENT, path);
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) throw FileError(EISDIR, path);
    const size_t slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base.empty()) throw FileError(EISDIR, path);
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; fd < 0; ++attempt) {
        tmp = temporary_name(dir, base);
        // 0666: the mode a new file gets from open(), less the umask.
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && (errno != EEXIST || attempt > 100) && errno != EINTR) throw FileError(errno, path);
    }
    try {
        write(fd);
        if (::fsync(fd) != 0) throw FileError(errno, path);
        const int closed = ::close(fd);
        fd = -1;
        if (closed != 0) throw FileError(errno, path);
        if (::rename(tmp.c_str(), path.c_str()) != 0) throw FileError(errno, path);
    } catch (...) {
        if (fd >= 0) ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    fsync_directory(dir);
}

#else  // no POSIX files

IndexFile::IndexFile(const std::string& path) : path_(path) {
    throw std::runtime_error("index files are not supported on this platform yet");
}
IndexFile::~IndexFile() = default;
void IndexFile::close() {}
int IndexFile::fd() const { return fd_; }
void IndexFile::read(PodBuffer<int64_t>&, PodBuffer<uint64_t>&, bool) const {}
std::shared_ptr<const FileMap> IndexFile::map(bool) const { return nullptr; }
void IndexFile::load_into(FlatIndex&, bool, bool) const {}
void IndexFile::load_into(MIHIndex&, bool, bool) const {}
void write_at(int, uint64_t, const void*, size_t, const std::string&) {
    throw std::runtime_error("index files are not supported on this platform yet");
}
void write_atomic(const std::string&, const std::function<void(int fd)>&) {
    throw std::runtime_error("index files are not supported on this platform yet");
}

#endif

void write_atomic(const std::string& path, const void* data, size_t n) {
    write_atomic(path, [&](int fd) { write_at(fd, 0, data, n, path); });
}

namespace {

// Writes the payload and the header of an index file to fd. The header is
// checked as a reader checks it before a byte is written, so that save never
// writes a file that load refuses.
void write_index(int fd, const std::string& path, uint32_t kind, int64_t nbits, uint64_t m, uint64_t next_id,
                 const int64_t* ids, const uint64_t* codes, size_t n) {
    require_little_endian();
    for (size_t i = 0; i < n; ++i) {
        if (ids[i] < 0 || static_cast<uint64_t>(ids[i]) >= next_id) {
            throw std::invalid_argument("save: expected ids from 0 to below the next id " + str(next_id) + ", got " +
                                        std::to_string(ids[i]));
        }
    }
    if (nbits < 1 || nbits > kMaxBits) {
        throw std::invalid_argument("save: expected 1 <= nbits <= " + str(kMaxBits) + ", got " + std::to_string(nbits));
    }
    const FileLayout at = file_layout(n, nbits);
    const size_t w = static_cast<size_t>(words_of(nbits));
    check_pad_bits(codes, n, w, nbits, "save: codes");
    static const unsigned char zeros[64] = {};
    const size_t gap = static_cast<size_t>(at.codes_offset - at.ids_offset - 8 * uint64_t{n});
    FileHeader h;
    h.kind = kind;
    h.nbits = nbits;
    h.count = n;
    h.next_id = next_id;
    h.m = m;
    h.ids_offset = at.ids_offset;
    h.codes_offset = at.codes_offset;
    h.end = at.end;
    h.data_crc = crc32(codes, 8 * n * w, crc32(zeros, gap, crc32(ids, 8 * n)));
    const auto head = pack_header(h);
    try {
        parse_header(head.data(), head.size(), at.end, path);
    } catch (const FormatError& e) {
        throw std::invalid_argument(std::string("save: ") + e.what());
    }
    write_at(fd, at.ids_offset, ids, 8 * n, path);
    write_at(fd, at.ids_offset + 8 * n, zeros, gap, path);
    write_at(fd, at.codes_offset, codes, 8 * n * w, path);
    write_at(fd, 0, head.data(), head.size(), path);
}

void save_store(const FlatIndex& flat, const std::string& path, uint32_t kind, uint64_t m, uint64_t next_id) {
    write_atomic(path, [&](int fd) {
        const FlatIndex::Reader contents = flat.read();
        write_index(fd, path, kind, flat.nbits(), m, next_id, contents.ids(), contents.codes(), contents.size());
    });
}

}  // namespace

void save_index(const FlatIndex& index, const std::string& path, uint64_t next_id) {
    save_store(index, path, kKindFlat, 0, next_id);
}

void save_index(const MIHIndex& index, const std::string& path, uint64_t next_id) {
    save_store(index.flat(), path, kKindMIH, static_cast<uint64_t>(index.m()), next_id);
}

void save_arrays(const std::string& path, uint32_t kind, int64_t nbits, uint64_t m, uint64_t next_id,
                 const int64_t* ids, const uint64_t* codes, size_t n) {
    write_atomic(path, [&](int fd) { write_index(fd, path, kind, nbits, m, next_id, ids, codes, n); });
}

}  // namespace hamsearch
