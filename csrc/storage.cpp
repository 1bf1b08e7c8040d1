#include "storage.h"

#include <cerrno>
#include <cstring>

#if defined(__unix__) || defined(__APPLE__)
#define HS_HAVE_MMAP 1
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#else
#define HS_HAVE_MMAP 0
#include <io.h>
#endif

namespace hamsearch {

namespace {

std::runtime_error os_error(const std::string& what, const std::string& path) {
    return std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

bool FileMap::supported() { return HS_HAVE_MMAP != 0; }

#if HS_HAVE_MMAP

FileMap::FileMap(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw os_error("cannot open", path);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
        auto err = os_error("cannot stat", path);
        ::close(fd);
        throw err;
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw std::runtime_error("cannot map " + path + ": not a regular file");
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            auto err = os_error("cannot map", path);
            ::close(fd);
            throw err;
        }
        data_ = static_cast<const unsigned char*>(p);
    }
    ::close(fd);  // the mapping stays valid
}

FileMap::~FileMap() {
    if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), size_);
}

void write_at(int fd, uint64_t offset, const void* data, size_t n) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    while (n > 0) {
        const size_t chunk = n < (size_t{1} << 30) ? n : (size_t{1} << 30);
        const ssize_t got = ::pwrite(fd, p, chunk, static_cast<off_t>(offset));
        if (got < 0) {
            if (errno == EINTR) continue;
            throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
        }
        p += got;
        offset += static_cast<uint64_t>(got);
        n -= static_cast<size_t>(got);
    }
}

#else

FileMap::FileMap(const std::string& path) {
    throw std::runtime_error("cannot map " + path + ": memory maps are not supported on this platform");
}

FileMap::~FileMap() = default;

void write_at(int fd, uint64_t offset, const void* data, size_t n) {
    if (_lseeki64(fd, static_cast<__int64>(offset), SEEK_SET) < 0) {
        throw std::runtime_error(std::string("seek failed: ") + std::strerror(errno));
    }
    const unsigned char* p = static_cast<const unsigned char*>(data);
    while (n > 0) {
        const unsigned chunk = static_cast<unsigned>(n < (size_t{1} << 30) ? n : (size_t{1} << 30));
        const int got = _write(fd, p, chunk);
        if (got < 0) throw std::runtime_error(std::string("write failed: ") + std::strerror(errno));
        p += got;
        n -= static_cast<size_t>(got);
    }
}

#endif

}  // namespace hamsearch
