// The core through its public headers alone, as an embedding program sees it:
// k-NN and radius of FlatIndex and MIHIndex at every ISA level this CPU has,
// checked against a brute-force loop ranked by (distance, id); and save/load
// round trips of both kinds, read and mapped. Usage: hamsearch_test_core DIR
// (a writable directory for the files). Exits 1 on the first mismatch.
#include <hamsearch/hamsearch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace hamsearch;

namespace {

int failures = 0;

#define CHECK(cond, ...)                                               \
    do {                                                               \
        if (!(cond)) {                                                 \
            ++failures;                                                \
            std::printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            std::printf(__VA_ARGS__);                                  \
            std::printf("\n");                                         \
        }                                                              \
    } while (0)

int32_t distance(const uint64_t* a, const uint64_t* b, size_t w) {
    int32_t d = 0;
    for (size_t i = 0; i < w; ++i)
        for (uint64_t x = a[i] ^ b[i]; x; x &= x - 1) ++d;  // one bit at a time: no kernel shared
    return d;
}

// The (distance, id) pairs of every code, sorted: the oracle for knn and radius.
std::vector<std::pair<int32_t, int64_t>> brute(const uint64_t* q, const std::vector<uint64_t>& codes,
                                               const std::vector<int64_t>& ids, size_t w) {
    std::vector<std::pair<int32_t, int64_t>> all;
    for (size_t i = 0; i < ids.size(); ++i) all.emplace_back(distance(q, &codes[i * w], w), ids[i]);
    std::sort(all.begin(), all.end());
    return all;
}

// Random codes with the pad bits zero, a few exact duplicates (ties) and
// shuffled, non-contiguous ids.
void make_data(std::mt19937_64& gen, int64_t nbits, size_t n, std::vector<uint64_t>& codes,
               std::vector<int64_t>& ids) {
    const size_t w = static_cast<size_t>((nbits + 63) / 64);
    codes.resize(n * w);
    for (uint64_t& c : codes) c = gen();
    for (size_t i = 0; i + 7 < n; i += 7) std::copy_n(&codes[i * w], w, &codes[(i + 3) * w]);
    if (nbits % 64)
        for (size_t i = 0; i < n; ++i) codes[i * w + w - 1] &= (uint64_t{1} << (nbits % 64)) - 1;
    ids.resize(n);
    for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int64_t>(3 * i + 5);
    std::shuffle(ids.begin(), ids.end(), gen);
}

template <class Index>
void check_knn(const char* what, const Index& index, const std::vector<uint64_t>& q, size_t nq,
               const std::vector<uint64_t>& codes, const std::vector<int64_t>& ids, size_t w, size_t k,
               size_t threads) {
    std::vector<int32_t> D(nq * k);
    std::vector<int64_t> I(nq * k);
    index.knn(q.data(), nq, k, threads, D.data(), I.data());
    for (size_t j = 0; j < nq; ++j) {
        const auto want = brute(&q[j * w], codes, ids, w);
        for (size_t i = 0; i < k; ++i) {
            const int32_t wd = i < want.size() ? want[i].first : kDistancePad;
            const int64_t wi = i < want.size() ? want[i].second : kIdPad;
            CHECK(D[j * k + i] == wd && I[j * k + i] == wi, "%s query %zu rank %zu k %zu: got (%d, %lld), want (%d, %lld)",
                  what, j, i, k, D[j * k + i], static_cast<long long>(I[j * k + i]), wd, static_cast<long long>(wi));
        }
    }
}

template <class Index>
void check_radius(const char* what, const Index& index, const std::vector<uint64_t>& q, size_t nq,
                  const std::vector<uint64_t>& codes, const std::vector<int64_t>& ids, size_t w, int64_t r) {
    const RadiusResult res = index.radius(q.data(), nq, r, 2);
    CHECK(res.lims.size() == nq + 1, "%s lims size %zu", what, res.lims.size());
    if (res.lims.size() != nq + 1) return;
    for (size_t j = 0; j < nq; ++j) {
        std::vector<std::pair<int32_t, int64_t>> want;
        for (const auto& p : brute(&q[j * w], codes, ids, w))
            if (p.first <= r) want.push_back(p);
        std::vector<std::pair<int32_t, int64_t>> got;
        for (int64_t i = res.lims[j]; i < res.lims[j + 1]; ++i) got.emplace_back(res.D[i], res.I[i]);
        CHECK(got == want, "%s radius %lld query %zu: got %zu results, want %zu", what, static_cast<long long>(r), j,
              got.size(), want.size());
    }
}

void search_tests() {
    std::mt19937_64 gen(20240518);
    for (Isa isa : available_isas()) {
        set_isa(isa);
        for (int64_t nbits : {64, 100, 256}) {
            const size_t w = static_cast<size_t>((nbits + 63) / 64), n = 700, nq = 9;
            std::vector<uint64_t> codes;
            std::vector<int64_t> ids;
            make_data(gen, nbits, n, codes, ids);
            // Queries: stored codes (distance 0 and ties), some with bits flipped, and random ones.
            std::vector<uint64_t> q(nq * w);
            for (size_t j = 0; j < nq; ++j)
                for (size_t i = 0; i < w; ++i) q[j * w + i] = j < 6 ? codes[(j * 97) % n * w + i] ^ (j % 2) : gen();
            if (nbits % 64)
                for (size_t j = 0; j < nq; ++j) q[j * w + w - 1] &= (uint64_t{1} << (nbits % 64)) - 1;

            FlatIndex flat(nbits);
            flat.add(codes.data(), ids.data(), n);
            MIHIndex mih(nbits, 0);
            mih.add(codes.data(), ids.data(), n);
            MIHIndex probing(nbits, 0);  // never falls back to the scan: the tables answer
            probing.set_scan_fraction(std::numeric_limits<double>::infinity());
            probing.add(codes.data(), ids.data(), n);
            const std::string tag = std::string(isa_name(isa)) + " nbits " + std::to_string(nbits);
            for (size_t k : {size_t{1}, size_t{10}, n + 3}) {
                for (size_t threads : {size_t{1}, size_t{3}}) {
                    check_knn(("flat " + tag).c_str(), flat, q, nq, codes, ids, w, k, threads);
                    check_knn(("mih " + tag).c_str(), mih, q, nq, codes, ids, w, k, threads);
                    // Probing alone enumerates ever wider balls: only for k well below n
                    // and short substrings, where it ends quickly.
                    if (k <= 10 && nbits <= 100)
                        check_knn(("mih probing " + tag).c_str(), probing, q, nq, codes, ids, w, k, threads);
                }
            }
            for (int64_t r : {int64_t{0}, nbits / 4, nbits / 2 - 4}) {
                check_radius(("flat " + tag).c_str(), flat, q, nq, codes, ids, w, r);
                check_radius(("mih " + tag).c_str(), mih, q, nq, codes, ids, w, r);
                if (nbits <= 100) check_radius(("mih probing " + tag).c_str(), probing, q, nq, codes, ids, w, r);
            }
            std::printf("%s: checked\n", tag.c_str());
        }
    }
    set_isa(detect_isa());
}

// Batches large enough for the scan's multi-query kernels (and, on the avx2
// level, the byte-sliced one: from 32 queries a thread), past the priming run
// and over several blocks, n no multiple of any step or tile, the queries'
// complements planted (a distance of nbits), thresholds from 0 to nbits.
void batch_tests() {
    std::mt19937_64 gen(20261207);
    for (Isa isa : available_isas()) {
        set_isa(isa);
        for (int64_t nbits : {128, 200, 256}) {
            const size_t w = static_cast<size_t>((nbits + 63) / 64), n = 9037, nq = 131;
            std::vector<uint64_t> codes;
            std::vector<int64_t> ids;
            make_data(gen, nbits, n, codes, ids);
            const uint64_t last = nbits % 64 ? (uint64_t{1} << (nbits % 64)) - 1 : ~uint64_t{0};
            std::vector<uint64_t> q(nq * w);
            for (size_t j = 0; j < nq; ++j) {
                for (size_t i = 0; i < w; ++i) q[j * w + i] = j % 5 == 0 ? codes[(j * 61) % n * w + i] : gen();
                q[j * w + w - 1] &= last;
                for (size_t i = 0; i < w; ++i) codes[(j * 67 + 11) % n * w + i] = ~q[j * w + i];
                codes[(j * 67 + 11) % n * w + w - 1] &= last;
            }
            FlatIndex flat(nbits);
            flat.add(codes.data(), ids.data(), n);
            const std::string tag = std::string("flat batch ") + isa_name(isa) + " nbits " + std::to_string(nbits);
            for (size_t k : {size_t{1}, size_t{10}, size_t{100}}) {
                for (size_t threads : {size_t{1}, size_t{2}}) {
                    check_knn(tag.c_str(), flat, q, nq, codes, ids, w, k, threads);
                }
            }
            for (int64_t r : {int64_t{0}, nbits / 2 - 10, nbits - 1, nbits}) {
                check_radius(tag.c_str(), flat, q, nq, codes, ids, w, r);
            }
            std::printf("%s: checked\n", tag.c_str());
        }
    }
    set_isa(detect_isa());
}

// The read view: the contents as added, its searches equal to the brute
// force, and a change from another thread waits until the view is gone.
void reader_tests() {
    std::mt19937_64 gen(99);
    const int64_t nbits = 100;
    const size_t n = 50, w = 2, nq = 3, k = 5;
    std::vector<uint64_t> codes;
    std::vector<int64_t> ids;
    make_data(gen, nbits, n, codes, ids);
    MIHIndex mih(nbits, 0);
    mih.add(codes.data(), ids.data(), n);
    std::vector<uint64_t> q(codes.begin(), codes.begin() + nq * w);
    std::atomic<bool> added{false};
    std::thread writer;
    {
        const FlatIndex::Reader view = mih.flat().read();
        CHECK(view.size() == n && view.words() == w && view.nbits() == nbits, "reader: shape");
        CHECK(std::equal(codes.begin(), codes.end(), view.codes()) && std::equal(ids.begin(), ids.end(), view.ids()),
              "reader: contents differ from what was added");
        writer = std::thread([&] {
            mih.add(codes.data(), ids.data(), 1);  // waits for the view
            added = true;
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        CHECK(!added && view.size() == n, "reader: an add went through while a view was held");
        std::vector<int32_t> D(nq * k);
        std::vector<int64_t> I(nq * k);
        view.knn(q.data(), nq, k, 2, D.data(), I.data());
        for (size_t j = 0; j < nq; ++j) {
            const auto want = brute(q.data() + j * w, codes, ids, w);
            for (size_t t = 0; t < k; ++t)
                CHECK(D[j * k + t] == want[t].first && I[j * k + t] == want[t].second, "reader knn: query %zu rank %zu",
                      j, t);
        }
        const RadiusResult res = view.radius(q.data(), nq, 40, 1);
        for (size_t j = 0; j < nq; ++j) {
            size_t within = 0;
            for (const auto& c : brute(q.data() + j * w, codes, ids, w)) within += c.first <= 40;
            CHECK(static_cast<size_t>(res.lims[j + 1] - res.lims[j]) == within, "reader radius: query %zu", j);
        }
    }
    writer.join();
    CHECK(added && mih.size() == n + 1, "reader: the add did not go through once the view was gone");
    std::printf("reader: checked\n");
}

template <class Index>
void check_same(const char* what, const Index& a, const Index& b, const std::vector<uint64_t>& q, size_t nq) {
    CHECK(a.flat().ids() == b.flat().ids() && a.flat().codes() == b.flat().codes(), "%s: contents differ", what);
    const size_t k = 7;
    std::vector<int32_t> Da(nq * k), Db(nq * k);
    std::vector<int64_t> Ia(nq * k), Ib(nq * k);
    a.knn(q.data(), nq, k, 1, Da.data(), Ia.data());
    b.knn(q.data(), nq, k, 2, Db.data(), Ib.data());
    CHECK(Da == Db && Ia == Ib, "%s: answers differ", what);
}

void file_tests(const std::string& dir) {
    std::mt19937_64 gen(7);
    const int64_t nbits = 130;
    const size_t n = 300, w = 3;
    std::vector<uint64_t> codes;
    std::vector<int64_t> ids;
    make_data(gen, nbits, n, codes, ids);
    const std::vector<uint64_t> q(codes.begin(), codes.begin() + 4 * w);

    FlatIndex flat(nbits);
    flat.add(codes.data(), ids.data(), n);
    MIHIndex mih(nbits, 5);
    mih.add(codes.data(), ids.data(), n);
    save_index(flat, dir + "/flat.hsi", 2000);
    save_index(mih, dir + "/mih.hsi", 3000);

    for (bool mmap : {false, true}) {
        IndexFile ff(dir + "/flat.hsi");
        CHECK(ff.header().kind == kKindFlat && ff.header().nbits == nbits && ff.header().count == n &&
                  ff.header().next_id == 2000,
              "flat header");
        FlatIndex fb(ff.header().nbits);
        ff.load_into(fb, mmap, true);
        CHECK(fb.mapped() == mmap, "flat mapped %d", int(mmap));
        check_same(mmap ? "flat mapped" : "flat read", flat, fb, q, 4);

        IndexFile mf(dir + "/mih.hsi");
        CHECK(mf.header().kind == kKindMIH && mf.header().m == 5 && mf.header().next_id == 3000, "mih header");
        MIHIndex mb(mf.header().nbits, static_cast<int64_t>(mf.header().m));
        mf.load_into(mb, mmap, true);
        CHECK(mb.m() == 5, "mih m");
        check_same(mmap ? "mih mapped" : "mih read", mih, mb, q, 4);
    }
    // A corrupt file is refused with FormatError, a missing one with FileError.
    {
        std::FILE* f = std::fopen((dir + "/flat.hsi").c_str(), "r+b");
        CHECK(f != nullptr, "reopen");
        if (f) {
            std::fseek(f, -1, SEEK_END);
            const int c = std::fgetc(f);
            std::fseek(f, -1, SEEK_END);
            std::fputc(c ^ 1, f);
            std::fclose(f);
        }
        bool refused = false;
        try {
            IndexFile bad(dir + "/flat.hsi");
            FlatIndex b(bad.header().nbits);
            bad.load_into(b, false, true);
        } catch (const FormatError&) {
            refused = true;
        }
        CHECK(refused, "a corrupt file loaded");
        refused = false;
        try {
            IndexFile missing(dir + "/missing.hsi");
        } catch (const FileError&) {
            refused = true;
        }
        CHECK(refused, "a missing file opened");
    }
    std::printf("files: checked\n");
}

}  // namespace

// PodBuffer, the store's memory: every value aligned to a cache line and
// kept, against a std::vector given the same appends, through growth from a
// few values (malloc's heap) to 64 MiB (its own maps, remapped on growth),
// and after a second buffer's allocations move the heap.
void buffer_tests() {
    std::mt19937_64 gen(11);
    PodBuffer<uint64_t> buf;
    PodBuffer<int64_t> other;
    std::vector<uint64_t> want;
    std::vector<uint64_t> chunk;
    for (size_t step = 1; want.size() < (size_t{8} << 20); step = step * 3 + 1) {
        chunk.resize(step);
        for (auto& v : chunk) v = gen();
        buf.append(chunk.data(), chunk.size());
        want.insert(want.end(), chunk.begin(), chunk.end());
        std::vector<int64_t> noise(step % 977 + 1, 7);
        other.append(noise.data(), noise.size());
        CHECK(reinterpret_cast<uintptr_t>(buf.data()) % PodBuffer<uint64_t>::kAlign == 0, "buffer: %zu values at %p",
              buf.size(), static_cast<void*>(buf.data()));
        CHECK(reinterpret_cast<uintptr_t>(other.data()) % PodBuffer<int64_t>::kAlign == 0, "buffer: other at %p",
              static_cast<void*>(other.data()));
        CHECK(buf.size() == want.size() && std::equal(want.begin(), want.end(), buf.data()),
              "buffer: values lost growing to %zu", want.size());
    }
    buf.truncate(5);
    buf.resize(6);
    CHECK(buf.size() == 6 && std::equal(want.begin(), want.begin() + 5, buf.data()), "buffer: truncate and resize");
    PodBuffer<uint64_t> fresh;
    const uint64_t seven = 7;
    fresh.append(&seven, 1);
    buf.swap(fresh);
    CHECK(fresh.size() == 6 && buf.size() == 1 && buf.data()[0] == 7, "buffer: swap");
    buf.release();
    CHECK(buf.size() == 0 && buf.data() == nullptr, "buffer: release");
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
#ifdef HAMSEARCH_EXPECTED_VERSION
    const std::string version = std::to_string(HAMSEARCH_VERSION_MAJOR) + "." + std::to_string(HAMSEARCH_VERSION_MINOR) +
                                "." + std::to_string(HAMSEARCH_VERSION_PATCH);
    CHECK(version == HAMSEARCH_EXPECTED_VERSION, "header version %s, project %s", version.c_str(),
          HAMSEARCH_EXPECTED_VERSION);
#endif
    try {
        buffer_tests();
        search_tests();
        batch_tests();
        reader_tests();
        file_tests(argv[1]);
    } catch (const std::exception& e) {
        std::printf("FAIL: exception %s\n", e.what());
        return 1;
    }
    std::printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
