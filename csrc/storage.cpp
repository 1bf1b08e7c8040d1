#include "hamsearch/storage.h"

#include <cerrno>
#include <cstring>
#include <system_error>

#if defined(__unix__) || defined(__APPLE__)
#define HS_HAVE_MMAP 1
#include <sys/mman.h>
#else
#define HS_HAVE_MMAP 0
#endif

namespace hamsearch {

bool FileMap::supported() { return HS_HAVE_MMAP != 0; }

#if HS_HAVE_MMAP

FileMap::FileMap(int fd, size_t size) : size_(size) {
    if (size_ == 0) return;
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "cannot map the file");
    data_ = static_cast<const unsigned char*>(p);
}

FileMap::~FileMap() {
    if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), size_);
}

#else

FileMap::FileMap(int, size_t) {
    throw std::system_error(ENOSYS, std::generic_category(), "cannot map the file");
}

FileMap::~FileMap() = default;

#endif

}  // namespace hamsearch
