#include "hamsearch/storage.h"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <system_error>

#if defined(__unix__) || defined(__APPLE__)
#define HS_HAVE_MMAP 1
#include <sys/mman.h>
#include <unistd.h>
#else
#define HS_HAVE_MMAP 0
#endif

namespace hamsearch {

bool FileMap::supported() { return HS_HAVE_MMAP != 0; }

void advise_huge_pages(void* p, size_t bytes, bool collapse) noexcept {
#if HS_HAVE_MMAP && defined(MADV_HUGEPAGE)
    constexpr size_t kMin = size_t{4} << 20;
    if (p == nullptr || bytes < kMin) return;
    static const uintptr_t page = [] {
        const long got = ::sysconf(_SC_PAGESIZE);
        return got > 0 ? static_cast<uintptr_t>(got) : uintptr_t{4096};
    }();
    const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
    const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(page - 1);
    if (end <= begin) return;
    (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#if defined(__linux__)
    // Memory the allocator hands back from its free lists was touched before
    // on small pages, which the advice leaves as they are: collapse them now
    // (Linux 6.1's MADV_COLLAPSE, 25; earlier kernels refuse it, harmlessly).
    if (collapse) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, 25);
#else
    (void)collapse;
#endif
#else
    (void)p;
    (void)bytes;
    (void)collapse;
#endif
}

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
