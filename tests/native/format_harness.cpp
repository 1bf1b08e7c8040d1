// Saves and loads index files through hamsearch/include/hamsearch/format.h alone, as a C++ program
// would; run by tests/test_format.py, which checks the files written here
// with its Python oracle and gives this program oracle-written files to read.
// Usage: format_harness DIR (DIR holds oracle.hsi and corrupt.hsi).
#include <cstdio>
#include <string>
#include <vector>

#include "hamsearch/format.h"

using namespace hamsearch;

static void print_index(const char* name, const FlatIndex& idx) {
    std::printf("%s ids", name);
    for (int64_t id : idx.ids()) std::printf(" %lld", static_cast<long long>(id));
    std::printf("\n%s codes", name);
    for (uint64_t c : idx.codes()) std::printf(" %llu", static_cast<unsigned long long>(c));
    std::printf("\n");
}

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    const std::string dir = argv[1];
    // Save: a flat index of 100 bits and an MIH index of 130 bits with m = 3.
    FlatIndex flat(100);
    const std::vector<uint64_t> codes = {1, 2, 3, 4, 5, 0xFFFFFFFFFull, 7, 8, 9, 10};
    const std::vector<int64_t> ids = {10, 3, 7, 20, 1};
    flat.add(codes.data(), ids.data(), 5);
    save_index(flat, dir + "/cpp-flat.hsi", 21);
    MIHIndex mih(130, 3);
    std::vector<uint64_t> mcodes(3 * 3);
    for (size_t i = 0; i < mcodes.size(); ++i) mcodes[i] = (i % 3 == 2) ? i % 4 : 1000 + i;
    const std::vector<int64_t> mids = {5, 6, 7};
    mih.add(mcodes.data(), mids.data(), 3);
    save_index(mih, dir + "/cpp-mih.hsi", 99);

    // Load what was saved, mapped and copied: the same contents.
    for (bool mmap : {true, false}) {
        IndexFile file(dir + "/cpp-flat.hsi");
        FlatIndex back(file.header().nbits);
        file.load_into(back, mmap, true);
        if (back.ids() != flat.ids() || back.codes() != flat.codes() || back.mapped() != mmap ||
            file.header().next_id != 21) {
            std::printf("round trip differs (mmap=%d)\n", int(mmap));
            return 1;
        }
    }

    // Load a file the Python oracle wrote.
    IndexFile oracle(dir + "/oracle.hsi");
    const FileHeader& h = oracle.header();
    std::printf("oracle kind %u nbits %lld count %llu next %llu m %llu\n", h.kind, static_cast<long long>(h.nbits),
                static_cast<unsigned long long>(h.count), static_cast<unsigned long long>(h.next_id),
                static_cast<unsigned long long>(h.m));
    MIHIndex loaded(h.nbits, static_cast<int64_t>(h.m));
    oracle.load_into(loaded, true, true);
    print_index("oracle", loaded.flat());

    // Errors: an invalid file, a missing one.
    try {
        IndexFile bad(dir + "/corrupt.hsi");
        PodBuffer<int64_t> i;
        PodBuffer<uint64_t> c;
        bad.read(i, c, true);
        std::printf("corrupt loaded\n");
    } catch (const FormatError& e) {
        std::printf("FormatError %s\n", e.what());
    }
    try {
        IndexFile missing(dir + "/missing.hsi");
    } catch (const FileError& e) {
        std::printf("FileError %d %s\n", e.error(), e.what());
    }
    std::printf("crc32 of 123456789: %08x\n", crc32("123456789", 9));
    return 0;
}
