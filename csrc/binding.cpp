// The one file that knows about Python: argument checks (the second line of
// defence behind hamsearch/_validate.py), output allocation, GIL release.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "hamsearch/common.h"
#include "hamsearch/flat_index.h"
#include "hamsearch/format.h"
#include "hamsearch/metrics.h"
#include "hamsearch/mih_index.h"
#include "hamsearch/version.h"
#include "mih_policy.h"

namespace py = pybind11;
using hamsearch::FlatIndex;
using hamsearch::MIHIndex;

namespace {

// noconvert(): a uint8 or int64 array must not be widened value by value into
// uint64 codes; c_style: the kernels read rows as contiguous words.
using Codes = py::array_t<uint64_t, py::array::c_style>;
using Ids = py::array_t<int64_t, py::array::c_style>;
using Bytes = py::array_t<uint8_t, py::array::c_style>;

// The kernels load whole words: an array at an odd address (a view into a
// byte buffer) must be copied by the caller, as the Python layer does.
template <class Array>
void check_aligned(const Array& a, const char* what) {
    if (reinterpret_cast<uintptr_t>(a.data()) % alignof(typename Array::value_type) != 0) {
        throw std::invalid_argument(std::string(what) + ": expected an array aligned to its " +
                                    std::to_string(sizeof(typename Array::value_type)) +
                                    "-byte items, got a misaligned view; pass a copy");
    }
}

size_t check_matrix(const Codes& a, size_t w, const char* what) {
    check_aligned(a, what);
    if (a.ndim() != 2) {
        throw std::invalid_argument(std::string(what) + ": expected a 2-D array, got " + std::to_string(a.ndim()) +
                                    "-D");
    }
    if (static_cast<size_t>(a.shape(1)) != w) {
        throw std::invalid_argument(std::string(what) + ": expected " + std::to_string(w) + " words per code, got " +
                                    std::to_string(a.shape(1)));
    }
    return static_cast<size_t>(a.shape(0));
}

size_t check_threads(int64_t threads) {
    if (threads < 1) throw std::invalid_argument("threads: expected threads >= 1, got " + std::to_string(threads));
    return static_cast<size_t>(threads);
}

// A numpy array that owns a std::vector without copying it.
template <class T, class Alloc>
py::array_t<T> adopt(std::vector<T, Alloc>&& v) {
    auto* heap = new std::vector<T, Alloc>(std::move(v));
    py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T, Alloc>*>(p); });
    return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {static_cast<py::ssize_t>(sizeof(T))},
                          heap->data(), owner);
}

// k-NN as both index classes bind it: checks, output allocation, GIL
// release around search(q, nq, k, threads, D, I), results as (D, I).
template <class Index, class Search>
py::tuple knn_arrays(const Index& self, const Codes& q, int64_t k, int64_t threads, Search&& search) {
    const size_t nq = check_matrix(q, self.words(), "q");
    self.flat().check_codes(q.data(), nq, "q");
    if (k < 1) throw std::invalid_argument("k: expected k >= 1, got " + std::to_string(k));
    // nq * k distances and ids must be addressable (12 bytes each).
    if (static_cast<uint64_t>(k) > static_cast<uint64_t>(PY_SSIZE_T_MAX) / 16 / std::max<size_t>(nq, 1)) {
        throw std::invalid_argument("k: expected nq * k results to fit in memory, got nq = " + std::to_string(nq) +
                                    ", k = " + std::to_string(k));
    }
    const size_t t = check_threads(threads);
    py::array_t<int32_t> D({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)});
    py::array_t<int64_t> I({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(k)});
    const uint64_t* qp = q.data();
    int32_t* dp = D.mutable_data();
    int64_t* ip = I.mutable_data();
    {
        py::gil_scoped_release release;
        search(qp, nq, static_cast<size_t>(k), t, dp, ip);
    }
    return py::make_tuple(D, I);
}

// Checks a radius search's arguments and runs search(q, nq, r, threads) with
// the GIL released; results as (lims, D, I).
template <class Index, class Search>
py::tuple radius_arrays(const Index& self, const Codes& q, int64_t r, int64_t threads, Search&& search) {
    const size_t nq = check_matrix(q, self.words(), "q");
    self.flat().check_codes(q.data(), nq, "q");
    if (r < 0) throw std::invalid_argument("r: expected r >= 0, got " + std::to_string(r));
    const size_t t = check_threads(threads);
    const uint64_t* qp = q.data();
    hamsearch::RadiusResult res;
    {
        py::gil_scoped_release release;
        res = search(qp, nq, r, t);
    }
    return py::make_tuple(adopt(std::move(res.lims)), adopt(std::move(res.D)), adopt(std::move(res.I)));
}

// A path from Python: os.fsencode()'d bytes (str is taken too, as UTF-8).
std::string path_arg(const py::object& path) {
    if (py::isinstance<py::bytes>(path)) return path.cast<std::string>();
    if (py::isinstance<py::str>(path)) return path.cast<std::string>();
    throw py::type_error(std::string("path: expected bytes or str, got ") + Py_TYPE(path.ptr())->tp_name);
}

// The verbs both index classes bind alike: size, ids, codes, add, rank.
template <class Index>
void bind_common(py::class_<Index>& cls) {
    cls.def_property_readonly("nbits", &Index::nbits)
        .def("size", &Index::size)
        .def("ids", [](const Index& self) { return adopt(self.flat().ids()); })
        .def("codes",
             [](const Index& self) {
                 auto flat = adopt(self.flat().codes());
                 const py::ssize_t w = static_cast<py::ssize_t>(self.words());
                 return flat.reshape({flat.size() / w, w});
             })
        .def(
            "add",
            [](Index& self, Codes codes, Ids ids) {
                const size_t n = check_matrix(codes, self.words(), "codes");
                check_aligned(ids, "ids");
                if (ids.ndim() != 1 || static_cast<size_t>(ids.shape(0)) != n) {
                    throw std::invalid_argument("ids: expected a 1-D array of " + std::to_string(n) + " ids");
                }
                const uint64_t* c = codes.data();
                const int64_t* i = ids.data();
                py::gil_scoped_release release;
                self.add(c, i, n);
            },
            py::arg("codes").noconvert(), py::arg("ids").noconvert())
        .def(
            "remove",
            [](Index& self, Ids ids) {
                check_aligned(ids, "ids");
                if (ids.ndim() != 1) throw std::invalid_argument("ids: expected a 1-D array of ids");
                const int64_t* i = ids.data();
                const size_t n = static_cast<size_t>(ids.shape(0));
                py::gil_scoped_release release;
                return self.remove(i, n);
            },
            py::arg("ids").noconvert())
        .def_property_readonly("mapped", [](const Index& self) { return self.flat().mapped(); })
        .def("version", [](const Index& self) { return self.flat().version(); })
        .def(
            "load_file",
            [](Index& self, const hamsearch::IndexFile& file, bool mmap, bool verify) {
                py::gil_scoped_release release;
                file.load_into(self, mmap, verify);
            },
            py::arg("file"), py::arg("mmap"), py::arg("verify"),
            "Loads an open index file into this empty index, read into memory or mapped (mmap), "
            "its data checked first (verify).")
        .def(
            "save_file",
            [](const Index& self, const py::object& path, uint64_t next_id) {
                const std::string p = path_arg(path);
                py::gil_scoped_release release;
                hamsearch::save_index(self, p, next_id);
            },
            py::arg("path"), py::arg("next_id"),
            "Saves this index atomically as one snapshot, with its next default id (the store contract's "
            "persistence part).")
        .def(
            "rank",
            [](const Index& self, Codes q, int64_t threads, bool with_distances) {
                const size_t nq = check_matrix(q, self.words(), "q");
                self.flat().check_codes(q.data(), nq, "q");
                const size_t t = check_threads(threads);
                const uint64_t* qp = q.data();
                hamsearch::UninitVector<int64_t> ranked;
                hamsearch::UninitVector<int32_t> dists;
                size_t n = 0;
                {
                    py::gil_scoped_release release;
                    n = self.flat().rank(qp, nq, t, ranked, with_distances ? &dists : nullptr);
                }
                const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(n)};
                py::object D = py::none();
                if (with_distances) D = adopt(std::move(dists)).reshape(shape);
                return py::make_tuple(D, adopt(std::move(ranked)).reshape(shape));
            },
            py::arg("q").noconvert(), py::arg("threads"), py::arg("with_distances"),
            "(D, I): every id per query in (distance, id) order, D its distances (None unless with_distances).");
}

py::object decode_path(const std::string& path) {
    PyObject* s = PyUnicode_DecodeFSDefaultAndSize(path.data(), static_cast<py::ssize_t>(path.size()));
    if (s == nullptr) {
        PyErr_Clear();
        return py::bytes(path);
    }
    return py::reinterpret_steal<py::object>(s);
}

// Index file errors as Python raises them: FileError as the OSError subclass
// its errno selects, with the file name; FormatError as ValueError, its path
// decoded as os.fsdecode does.
void translate_file_errors(std::exception_ptr p) {
    try {
        if (p) std::rethrow_exception(p);
    } catch (const hamsearch::FileError& e) {
        py::object name = decode_path(e.path());
        errno = e.error();
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, name.ptr());
    } catch (const hamsearch::FormatError& e) {
        const std::string what = e.what();
        PyObject* msg = PyUnicode_DecodeFSDefaultAndSize(what.data(), static_cast<py::ssize_t>(what.size()));
        if (msg == nullptr) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "not a valid index file");
        } else {
            PyErr_SetObject(PyExc_ValueError, msg);
            Py_DECREF(msg);
        }
    }
}

// The ids and codes an IndexFile read, owned by the numpy arrays that show them.
struct ReadArrays {
    hamsearch::PodBuffer<int64_t> ids;
    hamsearch::PodBuffer<uint64_t> codes;
};

void bind_files(py::module_& m) {
    py::register_exception_translator(&translate_file_errors);
    m.attr("HEADER_SIZE") = hamsearch::kHeaderSize;
    m.attr("KIND_FLAT") = hamsearch::kKindFlat;
    m.attr("KIND_MIH") = hamsearch::kKindMIH;

    py::class_<hamsearch::IndexFile>(m, "IndexFile",
                                     "An index file open for reading, its header checked (hamsearch/include/hamsearch/format.h).")
        .def(py::init([](const py::object& path) {
                 const std::string p = path_arg(path);
                 py::gil_scoped_release release;
                 return std::make_unique<hamsearch::IndexFile>(p);
             }),
             py::arg("path"))
        .def_property_readonly("kind", [](const hamsearch::IndexFile& f) { return f.header().kind; })
        .def_property_readonly("nbits", [](const hamsearch::IndexFile& f) { return f.header().nbits; })
        .def_property_readonly("count", [](const hamsearch::IndexFile& f) { return f.header().count; })
        .def_property_readonly("next_id", [](const hamsearch::IndexFile& f) { return f.header().next_id; })
        .def_property_readonly("m", [](const hamsearch::IndexFile& f) { return f.header().m; })
        .def(
            "read",
            [](const hamsearch::IndexFile& f, bool verify) {
                auto owned = std::make_unique<ReadArrays>();
                {
                    py::gil_scoped_release release;
                    f.read(owned->ids, owned->codes, verify);
                }
                const auto n = static_cast<py::ssize_t>(f.header().count);
                const auto w = static_cast<py::ssize_t>(f.header().words());
                ReadArrays* raw = owned.release();
                py::capsule owner(raw, [](void* p) { delete static_cast<ReadArrays*>(p); });
                py::array_t<int64_t> ids({n}, {static_cast<py::ssize_t>(8)}, raw->ids.data(), owner);
                py::array_t<uint64_t> codes({n, w}, {8 * w, static_cast<py::ssize_t>(8)}, raw->codes.data(), owner);
                return py::make_tuple(ids, codes);
            },
            py::arg("verify"), "The ids (int64, (n,)) and codes (uint64, (n, words)), checked with verify.")
        .def("close", &hamsearch::IndexFile::close)
        .def("__enter__", [](hamsearch::IndexFile& f) -> hamsearch::IndexFile& { return f; },
             py::return_value_policy::reference)
        .def("__exit__", [](hamsearch::IndexFile& f, const py::args&) { f.close(); });

    m.def(
        "save_arrays",
        [](const py::object& path, uint32_t kind, int64_t nbits, uint64_t mm, uint64_t next_id, const Ids& ids,
           const Codes& codes) {
            const std::string p = path_arg(path);
            if (nbits < 1 || nbits > hamsearch::kMaxBits) {
                throw std::invalid_argument("nbits: expected 1 <= nbits <= " + std::to_string(hamsearch::kMaxBits) +
                                            ", got " + std::to_string(nbits));
            }
            const size_t n = check_matrix(codes, static_cast<size_t>((nbits + 63) / 64), "codes");
            check_aligned(ids, "ids");
            if (ids.ndim() != 1 || static_cast<size_t>(ids.shape(0)) != n) {
                throw std::invalid_argument("ids: expected a 1-D array of " + std::to_string(n) + " ids");
            }
            const int64_t* ip = ids.data();
            const uint64_t* cp = codes.data();
            py::gil_scoped_release release;
            hamsearch::save_arrays(p, kind, nbits, mm, next_id, ip, cp, n);
        },
        py::arg("path"), py::arg("kind"), py::arg("nbits"), py::arg("m"), py::arg("next_id"),
        py::arg("ids").noconvert(), py::arg("codes").noconvert(),
        "Saves ids (int64, (n,)) and codes (uint64, (n, words)) atomically as an index file.");
    m.def(
        "write_atomic",
        [](const py::object& path, const py::buffer& data) {
            const std::string p = path_arg(path);
            py::buffer_info info = data.request();
            if (!PyBuffer_IsContiguous(info.view(), 'C')) {
                throw std::invalid_argument("data: expected a C-contiguous buffer");
            }
            const void* ptr = info.ptr;
            const size_t n = static_cast<size_t>(info.size * info.itemsize);
            py::gil_scoped_release release;
            hamsearch::write_atomic(p, ptr, n);
        },
        py::arg("path"), py::arg("data"),
        "Writes the bytes of data to path atomically (temporary file, fsync, rename, directory fsync).");
}

// hamsearch.metrics' native pass: checks the shapes, allocates the outputs
// (length 0 where not requested), scores with the GIL released and returns
// (ap_all, ap_tie, ap_k, hits, pairs, relevant).
py::tuple evaluate_metrics(const Codes& q, const Codes& db, int64_t nbits, const std::optional<Codes>& query_labels,
                           const std::optional<Codes>& db_labels, const std::optional<Bytes>& matrix,
                           const std::optional<Ids>& lims, const std::optional<Ids>& ids, bool map_all, bool tie_aware,
                           const std::vector<int64_t>& map_ks, int64_t depth, bool pr, int64_t threads) {
    if (nbits < 1 || nbits > hamsearch::kMaxBits) {
        throw std::invalid_argument("nbits: expected 1 <= nbits <= " + std::to_string(hamsearch::kMaxBits) +
                                    ", got " + std::to_string(nbits));
    }
    const size_t w = static_cast<size_t>((nbits + 63) / 64);
    const size_t nq = check_matrix(q, w, "q");
    const size_t n = check_matrix(db, w, "db");
    const size_t t = check_threads(threads);
    hamsearch::Relevance rel;
    const int given = int(query_labels.has_value() && db_labels.has_value()) + int(matrix.has_value()) +
                      int(lims.has_value() && ids.has_value());
    if (given != 1) throw std::invalid_argument("relevance: expected exactly one of labels, matrix or lists");
    if (query_labels) {
        check_aligned(*query_labels, "query_labels");
        check_aligned(*db_labels, "db_labels");
        if (query_labels->ndim() != 2 || db_labels->ndim() != 2 || query_labels->shape(1) < 1 ||
            query_labels->shape(1) != db_labels->shape(1) || static_cast<size_t>(query_labels->shape(0)) != nq ||
            static_cast<size_t>(db_labels->shape(0)) != n) {
            throw std::invalid_argument("labels: expected (nq, words) and (n, words) uint64 label bit sets");
        }
        rel.kind = hamsearch::Relevance::Kind::labels;
        rel.query_labels = query_labels->data();
        rel.db_labels = db_labels->data();
        rel.label_words = static_cast<size_t>(query_labels->shape(1));
    } else if (matrix) {
        if (matrix->ndim() != 2 || static_cast<size_t>(matrix->shape(0)) != nq ||
            static_cast<size_t>(matrix->shape(1)) != n) {
            throw std::invalid_argument("relevance: expected a (nq, n) uint8 matrix");
        }
        rel.kind = hamsearch::Relevance::Kind::matrix;
        rel.matrix = matrix->data();
    } else {
        check_aligned(*lims, "lims");
        check_aligned(*ids, "ids");
        if (lims->ndim() != 1 || static_cast<size_t>(lims->shape(0)) != nq + 1 || ids->ndim() != 1 ||
            lims->data()[nq] != ids->shape(0)) {
            throw std::invalid_argument("relevance: expected nq + 1 offsets ending at the number of ids");
        }
        rel.kind = hamsearch::Relevance::Kind::lists;
        rel.lims = lims->data();
        rel.ids = ids->data();
    }
    if (depth < 0 || static_cast<uint64_t>(depth) > n) {
        throw std::invalid_argument("depth: expected 0 <= depth <= " + std::to_string(n));
    }
    const auto len = [](bool on, size_t size) { return static_cast<py::ssize_t>(on ? size : 0); };
    py::array_t<double> ap_all(len(map_all, nq)), ap_tie(len(tie_aware, nq));
    py::array_t<double> ap_k({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(map_ks.size())});
    py::array_t<int64_t> hits(static_cast<py::ssize_t>(depth));
    py::array_t<int64_t> pairs(len(pr, static_cast<size_t>(nbits) + 1)), relevant(len(pr, static_cast<size_t>(nbits) + 1));
    std::fill(hits.mutable_data(), hits.mutable_data() + hits.size(), 0);
    std::fill(pairs.mutable_data(), pairs.mutable_data() + pairs.size(), 0);
    std::fill(relevant.mutable_data(), relevant.mutable_data() + relevant.size(), 0);
    hamsearch::MetricsRequest req;
    req.map_all = map_all;
    req.tie_aware = tie_aware;
    req.map_ks = map_ks;
    req.depth = depth;
    req.pr = pr;
    req.ap_all = ap_all.mutable_data();
    req.ap_tie = ap_tie.mutable_data();
    req.ap_k = ap_k.mutable_data();
    req.hits = hits.mutable_data();
    req.pairs = pairs.mutable_data();
    req.relevant = relevant.mutable_data();
    const uint64_t* qp = q.data();
    const uint64_t* dp = db.data();
    {
        py::gil_scoped_release release;
        hamsearch::evaluate_metrics(qp, nq, dp, n, nbits, rel, req, t);
    }
    return py::make_tuple(ap_all, ap_tie, ap_k, hits, pairs, relevant);
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "hamsearch native core: popcount kernels, flat scan and top-k selection";
    m.attr("__version__") = HAMSEARCH_VERSION_STRING;
    // The limits of hamsearch/include/hamsearch/constants.h, for tests/test_limits.py.
    m.attr("MAX_BITS") = hamsearch::kMaxBits;
    m.attr("MAX_THREADS") = hamsearch::kMaxThreads;
    m.attr("DISTANCE_PAD") = hamsearch::kDistancePad;
    m.attr("ID_PAD") = hamsearch::kIdPad;
    m.attr("ID_LIMIT") = hamsearch::kIdLimit;
    m.attr("FORMAT_VERSION") = hamsearch::kFormatVersion;
    bind_files(m);

    m.def("isa", [] { return std::string(hamsearch::isa_name(hamsearch::active_kernels().isa)); },
          "The kernel level in use.");
    m.def("detected_isa", [] { return std::string(hamsearch::isa_name(hamsearch::detect_isa())); },
          "The highest kernel level this CPU supports.");
    m.def("available_isas", [] {
        std::vector<std::string> names;
        for (auto i : hamsearch::available_isas()) names.emplace_back(hamsearch::isa_name(i));
        return names;
    });
    m.def("set_isa", [](const std::string& name) { hamsearch::set_isa(hamsearch::isa_from_name(name)); },
          py::arg("name"), "Selects the kernels of a level this CPU supports.");

    m.def("_read_bandwidth",
          [](Codes data, int64_t threads) {
              check_aligned(data, "data");
              const size_t t = check_threads(threads);
              const uint64_t* p = data.data();
              const size_t n = static_cast<size_t>(data.size());
              py::gil_scoped_release release;
              return hamsearch::read_bandwidth(p, n, t);
          },
          py::arg("data").noconvert(), py::arg("threads"),
          "Sums every word of data with `threads` threads (a memory-bandwidth probe).");
    m.def("_popcount_probe",
          [](Codes q, Codes codes, int64_t threads) {
              check_aligned(codes, "codes");
              if (codes.ndim() != 2) {
                  throw std::invalid_argument("codes: expected a 2-D array, got " + std::to_string(codes.ndim()) +
                                              "-D");
              }
              const size_t w = static_cast<size_t>(codes.shape(1));
              if (w == 0) throw std::invalid_argument("codes: expected at least one word per code, got 0");
              const size_t nq = check_matrix(q, w, "q");
              const size_t n = static_cast<size_t>(codes.shape(0));
              const size_t t = check_threads(threads);
              const uint64_t* qp = q.data();
              const uint64_t* cp = codes.data();
              py::gil_scoped_release release;
              return hamsearch::popcount_probe(qp, nq, cp, n, w, t);
          },
          py::arg("q").noconvert(), py::arg("codes").noconvert(), py::arg("threads"),
          "Compares every query with every code by the scan's kernel at threshold 0, no selection; "
          "returns the number of equal pairs (the popcount compute probe of the benchmarks).");

    m.def("evaluate_metrics", &evaluate_metrics, py::arg("q").noconvert(), py::arg("db").noconvert(),
          py::arg("nbits"), py::arg("query_labels").noconvert(), py::arg("db_labels").noconvert(),
          py::arg("matrix").noconvert(), py::arg("lims").noconvert(), py::arg("ids").noconvert(), py::arg("map_all"),
          py::arg("tie_aware"), py::arg("map_ks"), py::arg("depth"), py::arg("pr"), py::arg("threads"),
          "Retrieval metrics of Hamming ranking by (distance, row) without sorting (hamsearch.metrics); "
          "returns (ap_all, ap_tie, ap_k, hits, pairs, relevant).");

    // MIH's policy (csrc/mih_policy.h): the Numba backend takes its choices
    // from these, so both backends choose alike.
    const auto check_mih = [](int64_t nbits, int64_t mm) {
        if (nbits < 1 || nbits > hamsearch::kMaxBits) {
            throw std::invalid_argument("nbits: expected 1 <= nbits <= " + std::to_string(hamsearch::kMaxBits) +
                                        ", got " + std::to_string(nbits));
        }
        const int64_t lo = (nbits + 63) / 64;
        if (mm != 0 && (mm < lo || mm > nbits)) {
            throw std::invalid_argument("m: expected 0 (automatic) or " + std::to_string(lo) + " <= m <= " +
                                        std::to_string(nbits) + ", got " + std::to_string(mm));
        }
    };
    m.def(
        "mih_table_shapes",
        [check_mih](int64_t nbits, int64_t mm, uint64_t n) {
            check_mih(nbits, mm);
            py::list out;
            for (const auto& t : hamsearch::mih_table_shapes(nbits, mm, static_cast<size_t>(n))) {
                out.append(py::make_tuple(t.begin, t.len, t.dir_bits, t.row_bits, t.tag_bits));
            }
            return out;
        },
        py::arg("nbits"), py::arg("m"), py::arg("n"),
        "(begin, len, dir_bits, row_bits, tag_bits) of each table for n codes (m = 0: automatic).");
    m.def(
        "mih_costs",
        [](uint64_t w) {
            if (w < 1 || w > static_cast<uint64_t>(hamsearch::kMaxBits / 64)) {
                throw std::invalid_argument("w: expected 1 <= w <= " + std::to_string(hamsearch::kMaxBits / 64));
            }
            const auto c = hamsearch::mih_costs(static_cast<size_t>(w), hamsearch::active_kernels().isa);
            return py::make_tuple(c.probe, c.candidate);
        },
        py::arg("w"), "(probe, candidate) costs in scan words at the active kernel level.");
    m.def(
        "mih_budget",
        [](double scan_fraction, uint64_t n, uint64_t w) {
            if (!(scan_fraction > 0)) throw std::invalid_argument("scan_fraction: expected a positive number");
            return hamsearch::mih_budget(scan_fraction, static_cast<size_t>(n), static_cast<size_t>(w));
        },
        py::arg("scan_fraction"), py::arg("n"), py::arg("w"));
    m.def("mih_batch_trials", [](uint64_t nq) { return hamsearch::mih_batch_trials(static_cast<size_t>(nq)); },
          py::arg("nq"));
    // The per-query prediction (mih_policy.h), for the Numba backend's kernels.
    const auto check_lens = [check_mih](int64_t nbits, const std::vector<int64_t>& lens) {
        check_mih(nbits, 0);
        int64_t total = 0;
        for (int64_t len : lens) {
            if (len < 1 || len > 64) throw std::invalid_argument("lens: expected lengths 1 to 64, got " + std::to_string(len));
            total += len;
        }
        if (lens.empty() || total != nbits) {
            throw std::invalid_argument("lens: expected substring lengths summing to nbits = " + std::to_string(nbits));
        }
    };
    m.def("mih_sample_rows", [](uint64_t n) { return hamsearch::mih_sample_rows(static_cast<size_t>(n)); },
          py::arg("n"), "The database rows sampled for the per-query prediction, for n codes.");
    m.def(
        "mih_predict_kth",
        [](py::array_t<int32_t, py::array::c_style> dist, int64_t nbits, uint64_t n, uint64_t k) {
            if (dist.ndim() != 2) throw std::invalid_argument("dist: expected a 2-D array (queries, sample)");
            if (k < 1) throw std::invalid_argument("k: expected k >= 1, got 0");
            const size_t nq = static_cast<size_t>(dist.shape(0)), S = static_cast<size_t>(dist.shape(1));
            const size_t kk = std::min<size_t>(static_cast<size_t>(k), static_cast<size_t>(n));
            const double z = hamsearch::mih_tail_z(kk, static_cast<size_t>(n));
            std::vector<int32_t> row(S);
            std::vector<int64_t> out(nq);
            for (size_t j = 0; j < nq; ++j) {
                std::copy(dist.data() + j * S, dist.data() + (j + 1) * S, row.begin());
                out[j] = hamsearch::mih_predict_kth(row.data(), S, nbits, static_cast<size_t>(n), kk, z);
            }
            return adopt(std::move(out));
        },
        py::arg("dist").noconvert(), py::arg("nbits"), py::arg("n"), py::arg("k"),
        "Per query (a row of distances to the sampled codes), the predicted distance of its k-th neighbour "
        "among n codes; nbits + 1 where the sample is empty.");
    m.def(
        "mih_knn_model",
        [check_lens](int64_t nbits, std::vector<int64_t> lens, uint64_t n) {
            check_lens(nbits, lens);
            auto model = hamsearch::mih_knn_model(lens, nbits, static_cast<size_t>(n),
                                                  static_cast<size_t>((nbits + 63) / 64), hamsearch::active_kernels().isa);
            py::array_t<double> weight(adopt(std::move(model.found_weight))
                                           .reshape({static_cast<py::ssize_t>(hamsearch::kMihWeighedRadii),
                                                     static_cast<py::ssize_t>(nbits + 1)}));
            return py::make_tuple(adopt(std::move(model.cost)), weight, adopt(std::move(model.probes)),
                                  model.uniform_near);
        },
        py::arg("nbits"), py::arg("lens"), py::arg("n"),
        "(cost, found_weight, probes, uniform_near) of tables of these substring lengths over n codes at the "
        "active kernel level (mih_policy.h, MihKnnModel): cost[D], D = 0..nbits + 1; found_weight[s, d], "
        "d = 0..nbits; probes[s], s = 0..64.");
    m.def(
        "mih_knn_plan",
        [](py::array_t<double, py::array::c_style> cost, double uniform_near, uint64_t mm, uint64_t n,
           double scan_fraction, uint64_t S, uint64_t sample_near) {
            if (cost.ndim() != 1 || cost.size() < 3) throw std::invalid_argument("cost: expected mih_knn_model's costs");
            if (!(scan_fraction > 0)) throw std::invalid_argument("scan_fraction: expected a positive number");
            hamsearch::MihKnnModel model;
            model.cost.assign(cost.data(), cost.data() + cost.size());
            model.uniform_near = uniform_near;
            const int64_t nbits = static_cast<int64_t>(cost.size()) - 2;
            const auto plan = hamsearch::mih_knn_plan(model, static_cast<size_t>(mm), static_cast<size_t>(n),
                                                      static_cast<size_t>((nbits + 63) / 64),
                                                      hamsearch::active_kernels().isa, scan_fraction,
                                                      static_cast<size_t>(S), static_cast<size_t>(sample_near));
            return py::make_tuple(plan.dc, plan.budget, plan.peek, plan.deep_peek);
        },
        py::arg("cost").noconvert(), py::arg("uniform_near"), py::arg("m"), py::arg("n"), py::arg("scan_fraction"),
        py::arg("S"), py::arg("sample_near"),
        "(dc, budget, peek, deep_peek) of a k-NN batch over m tables (mih_policy.h, MihKnnPlan).");
    m.def(
        "mih_peek_may_reach",
        [](uint64_t s, uint64_t near, double evidence, double work, double radius_cost, double peek, uint64_t k) {
            if (k < 1) throw std::invalid_argument("k: expected k >= 1, got 0");
            return hamsearch::mih_peek_may_reach(static_cast<int64_t>(s), static_cast<double>(near), evidence, work,
                                                 radius_cost, peek, static_cast<size_t>(k));
        },
        py::arg("s"), py::arg("near"), py::arg("evidence"), py::arg("work"), py::arg("radius_cost"), py::arg("peek"),
        py::arg("k"),
        "Whether a peek that finished a radius goes on to the next (mih_policy.h).");
    m.attr("MIH_WEIGHED_RADII") = hamsearch::kMihWeighedRadii;
    m.attr("MIH_EVIDENCE_MARGIN") = hamsearch::kMihEvidenceMargin;
    m.attr("MIH_EVIDENCE_SPREAD") = hamsearch::kMihEvidenceSpread;
    m.attr("MIH_STRUCTURE") = hamsearch::kMihStructure;
    m.attr("MIH_SAMPLE_RUN") = hamsearch::kMihSampleRun;
    m.def(
        "mih_near_bound",
        [check_mih](int64_t nbits, int64_t len) {
            check_mih(nbits, 0);
            if (len < 1 || len > 64 || len > nbits)
                throw std::invalid_argument("len: expected 1 <= len <= min(64, nbits), got " + std::to_string(len));
            return hamsearch::mih_near_bound(nbits, len);
        },
        py::arg("nbits"), py::arg("len"),
        "The largest distance at which a code sharing a len-bit substring with a sampled code counts as near "
        "(mih_policy.h); -1 for none.");
    m.def(
        "mih_radius_costs",
        [check_lens](int64_t nbits, std::vector<int64_t> lens, int64_t r, uint64_t n, uint64_t S,
                     py::array_t<int64_t, py::array::c_style> sample_hits) {
            check_lens(nbits, lens);
            if (r < 0) throw std::invalid_argument("r: expected r >= 0, got " + std::to_string(r));
            const auto model = hamsearch::mih_radius_model(lens, std::min(r, nbits), static_cast<size_t>(n),
                                                           static_cast<size_t>((nbits + 63) / 64),
                                                           hamsearch::active_kernels().isa, static_cast<size_t>(S));
            std::vector<double> out(static_cast<size_t>(sample_hits.size()));
            for (size_t j = 0; j < out.size(); ++j) out[j] = model.cost(static_cast<size_t>(sample_hits.data()[j]));
            return adopt(std::move(out));
        },
        py::arg("nbits"), py::arg("lens"), py::arg("r"), py::arg("n"), py::arg("S"), py::arg("sample_hits").noconvert(),
        "Per query (its sampled codes within r), the predicted work of a radius-r search.");
    m.def(
        "mih_probe_threads",
        [](uint64_t nq, int64_t threads) {
            return hamsearch::mih_probe_threads(static_cast<size_t>(nq), check_threads(threads));
        },
        py::arg("nq"), py::arg("threads"), "Threads that probe a batch of nq queries, at most threads.");
    m.attr("MIH_SCAN_FRACTION") = hamsearch::kMihScanFraction;
    m.attr("MIH_PROBE_CHUNK") = hamsearch::kMihProbeChunk;

    py::class_<FlatIndex> flat(m, "FlatIndex");
    flat.def(py::init<int64_t>(), py::arg("nbits"));
    bind_common(flat);
    // The store contract (hamsearch/_store.py): knn and radius end with the
    // count of queries a scan answered instead of the index's own search
    // (always 0 for the flat scan).
    flat.def(
        "knn",
        [](const FlatIndex& self, Codes q, int64_t k, int64_t threads) {
            py::tuple DI = knn_arrays(self, q, k, threads, [&](auto... args) { self.knn(args...); });
            return py::make_tuple(DI[0], DI[1], 0);
        },
        py::arg("q").noconvert(), py::arg("k"), py::arg("threads"));
    flat.def(
        "radius",
        [](const FlatIndex& self, Codes q, int64_t r, int64_t threads) {
            py::tuple res = radius_arrays(self, q, r, threads, [&](auto... args) { return self.radius(args...); });
            return py::make_tuple(res[0], res[1], res[2], 0);
        },
        py::arg("q").noconvert(), py::arg("r"), py::arg("threads"));

    py::class_<MIHIndex> mih(m, "MIHIndex");
    mih.def(py::init<int64_t, int64_t>(), py::arg("nbits"), py::arg("m"));
    bind_common(mih);
    mih.def_property_readonly("m", &MIHIndex::m)
        .def("effective_m", [](const MIHIndex& self) { return self.effective_m(self.size()); })
        .def("substrings", [](const MIHIndex& self) { return self.substrings(self.size()); })
        .def_property("scan_fraction", &MIHIndex::scan_fraction, &MIHIndex::set_scan_fraction)
        .def(
            "knn",
            [](const MIHIndex& self, Codes q, int64_t k, int64_t threads) {
                size_t fallbacks = 0;
                py::tuple DI = knn_arrays(self, q, k, threads, [&](auto... args) { self.knn(args..., &fallbacks); });
                return py::make_tuple(DI[0], DI[1], fallbacks);
            },
            py::arg("q").noconvert(), py::arg("k"), py::arg("threads"))
        .def(
            "radius",
            [](const MIHIndex& self, Codes q, int64_t r, int64_t threads) {
                size_t fallbacks = 0;
                py::tuple res =
                    radius_arrays(self, q, r, threads, [&](auto... args) { return self.radius(args..., &fallbacks); });
                return py::make_tuple(res[0], res[1], res[2], fallbacks);
            },
            py::arg("q").noconvert(), py::arg("r"), py::arg("threads"));
}
