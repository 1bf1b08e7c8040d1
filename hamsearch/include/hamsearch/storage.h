// Storage for an index's codes and ids: growable buffers of plain values, and
// read-only file maps that searches can run on in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "hamsearch/common.h"

namespace hamsearch {

/// A growable array of a trivially copyable T on malloc / realloc, its
/// values aligned to kAlign bytes (a cache line, so that the kernels' vector
/// loads of codes never straddle two lines; malloc alone gives 16, and where
/// within a line a buffer starts then depends on the allocator's history: a
/// copy of 10^6 64-bit codes 16 bytes past a line scanned 8% slower).
/// Growing a large buffer lets the allocator move its pages instead of
/// copying them (glibc remaps buffers above its mmap threshold), so
/// appending to a big index needs no second copy of everything held at
/// once; the values move within the block only where its alignment changed.
/// The room each growth adds is advised for huge pages (advise_huge_pages,
/// collapsing what the allocator reused: a store is scanned many times)
/// before it is written.
template <class T>
class PodBuffer {
    static_assert(std::is_trivially_copyable<T>::value, "PodBuffer holds plain values");
    static_assert(alignof(T) <= 16, "PodBuffer aligns within malloc's 16-byte blocks");

   public:
    static constexpr size_t kAlign = 64;

    PodBuffer() = default;
    PodBuffer(const PodBuffer&) = delete;
    PodBuffer& operator=(const PodBuffer&) = delete;
    ~PodBuffer() { std::free(raw_); }

    T* data() { return data_; }
    const T* data() const { return data_; }
    size_t size() const { return size_; }
    size_t capacity() const { return cap_; }

    /// Room for at least `need` values, growing by half the capacity at a
    /// time so that repeated appends cost amortized linear time. Throws
    /// std::bad_alloc (the buffer unchanged) when memory runs out.
    void reserve_for(size_t need) {
        if (need <= cap_) return;
        size_t cap = cap_ + cap_ / 2;
        if (cap < need) cap = need;
        if (cap > (std::numeric_limits<size_t>::max() - kAlign) / sizeof(T)) throw std::bad_alloc();
        const size_t old_offset = static_cast<size_t>(reinterpret_cast<char*>(data_) - static_cast<char*>(raw_));
        void* p = std::realloc(raw_, cap * sizeof(T) + kAlign);
        if (p == nullptr) throw std::bad_alloc();
        char* base = static_cast<char*>(p);
        const size_t offset = (kAlign - reinterpret_cast<uintptr_t>(base) % kAlign) % kAlign;
        if (size_ && offset != old_offset) std::memmove(base + offset, base + old_offset, size_ * sizeof(T));
        T* data = reinterpret_cast<T*>(base + offset);
        advise_huge_pages(data + size_, (cap - size_) * sizeof(T), true);
        raw_ = p;
        data_ = data;
        cap_ = cap;
    }

    /// Appends n values (reserve_for(size() + n) first for the strong guarantee).
    void append(const T* src, size_t n) {
        reserve_for(size_ + n);
        if (n) std::memcpy(data_ + size_, src, n * sizeof(T));
        size_ += n;
    }

    /// Sets the size to n, growing the buffer as reserve_for does; values
    /// past the old size are uninitialized, to be written by the caller.
    void resize(size_t n) {
        reserve_for(n);
        size_ = n;
    }

    /// Keeps the first n values (n <= size()).
    void truncate(size_t n) { size_ = n < size_ ? n : size_; }

    void swap(PodBuffer& other) noexcept {
        std::swap(raw_, other.raw_);
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
        std::swap(cap_, other.cap_);
    }

    /// Drops everything and returns the memory.
    void release() {
        std::free(raw_);
        raw_ = nullptr;
        data_ = nullptr;
        size_ = cap_ = 0;
    }

   private:
    void* raw_ = nullptr;  // the block malloc gave
    T* data_ = nullptr;    // the first value, kAlign-aligned within it
    size_t size_ = 0;
    size_t cap_ = 0;
};

/// A file mapped read-only into memory (POSIX mmap), from an open
/// descriptor: the map shows the file that descriptor refers to, whatever is
/// renamed over its path later.
class FileMap {
   public:
    /// Maps the first `size` bytes of fd (the descriptor may be closed
    /// after). Throws std::system_error with errno where mmap fails.
    FileMap(int fd, size_t size);
    FileMap(const FileMap&) = delete;
    FileMap& operator=(const FileMap&) = delete;
    ~FileMap();

    const unsigned char* data() const { return data_; }
    size_t size() const { return size_; }
    /// Whether this platform can map files (the loader copies otherwise).
    static bool supported();

   private:
    const unsigned char* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace hamsearch
