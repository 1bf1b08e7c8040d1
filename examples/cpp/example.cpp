// Embedding hamsearch from C++: build an index, add codes, query the k nearest,
// save, load and query again. Usage:
//     hamsearch_example OUT.hsi [IN.hsi]
// writes its index to OUT.hsi; with IN.hsi (an index file saved by C++ or by
// Python's index.save) it also loads that file and queries its first code.
// Output lines "query J: ID:DIST ..." list each query's neighbours.
#include <hamsearch/hamsearch.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <string>
#include <vector>

static_assert(HAMSEARCH_VERSION_MAJOR == 0, "written for the 0.x headers");

namespace {

// The k nearest of nq queries (w words each) as "query J: ID:DIST ...".
template <class Index>
std::vector<int64_t> print_knn(const Index& index, const uint64_t* q, size_t nq, size_t k) {
    std::vector<int32_t> D(nq * k);
    std::vector<int64_t> I(nq * k);
    index.knn(q, nq, k, /*threads=*/1, D.data(), I.data());
    for (size_t j = 0; j < nq; ++j) {
        std::printf("query %zu:", j);
        for (size_t i = 0; i < k; ++i) std::printf(" %lld:%d", static_cast<long long>(I[j * k + i]), D[j * k + i]);
        std::printf("\n");
    }
    return I;
}

// Loads `path` into the index its header names and prints its first code's neighbours.
void query_file(const std::string& path) {
    hamsearch::IndexFile file(path);  // checks the header
    const hamsearch::FileHeader& h = file.header();
    std::printf("loaded %s kind %u nbits %lld count %llu\n", path.c_str(), h.kind, static_cast<long long>(h.nbits),
                static_cast<unsigned long long>(h.count));
    if (h.count == 0) return;
    const size_t k = h.count < 3 ? h.count : 3;
    if (h.kind == hamsearch::kKindMIH) {
        hamsearch::MIHIndex index(h.nbits, static_cast<int64_t>(h.m));
        file.load_into(index, /*mmap=*/true, /*verify=*/true);
        print_knn(index, index.flat().codes().data(), 1, k);
    } else {
        hamsearch::FlatIndex index(h.nbits);
        file.load_into(index, /*mmap=*/true, /*verify=*/true);
        print_knn(index, index.codes().data(), 1, k);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || argc > 3) {
        std::fprintf(stderr, "usage: %s OUT.hsi [IN.hsi]\n", argv[0]);
        return 2;
    }
    try {
        std::printf("hamsearch %d.%d.%d, kernels %s\n", HAMSEARCH_VERSION_MAJOR, HAMSEARCH_VERSION_MINOR,
                    HAMSEARCH_VERSION_PATCH, hamsearch::isa_name(hamsearch::active_kernels().isa));

        // 1000 random 128-bit codes (2 words each, row-major), ids 100, 101, ...
        const int64_t nbits = 128;
        const size_t n = 1000, w = 2, k = 5;
        std::mt19937_64 gen(42);
        std::vector<uint64_t> codes(n * w);
        for (uint64_t& c : codes) c = gen();
        std::vector<int64_t> ids(n);
        for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int64_t>(100 + i);

        hamsearch::FlatIndex index(nbits);
        index.add(codes.data(), ids.data(), n);
        // Queries: the first three codes with a few bits flipped.
        std::vector<uint64_t> queries(codes.begin(), codes.begin() + 3 * w);
        queries[0] ^= 0x7;
        queries[3] ^= uint64_t{1} << 63;
        const std::vector<int64_t> before = print_knn(index, queries.data(), 3, k);

        // Save (atomically) and load back, searched in place from the map.
        hamsearch::save_index(index, argv[1], /*next_id=*/100 + n);
        hamsearch::IndexFile file(argv[1]);
        hamsearch::FlatIndex loaded(file.header().nbits);
        file.load_into(loaded, /*mmap=*/true, /*verify=*/true);
        std::printf("saved and loaded %zu codes\n", loaded.size());
        const std::vector<int64_t> after = print_knn(loaded, queries.data(), 3, k);
        if (after != before) {
            std::fprintf(stderr, "the loaded index answers differently\n");
            return 1;
        }
        if (argc == 3) query_file(argv[2]);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
