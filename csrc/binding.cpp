// The one file that knows about Python: argument checks (the second line of
// defence behind hamsearch/_validate.py), output allocation, GIL release.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "common.h"
#include "flat_index.h"
#include "mih_index.h"

namespace py = pybind11;
using hamsearch::FlatIndex;
using hamsearch::MIHIndex;

namespace {

// noconvert(): a uint8 or int64 array must not be widened value by value into
// uint64 codes; c_style: the kernels read rows as contiguous words.
using Codes = py::array_t<uint64_t, py::array::c_style>;
using Ids = py::array_t<int64_t, py::array::c_style>;

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
            "map_file",
            [](Index& self, const std::string& path, uint64_t ids_offset, uint64_t codes_offset, uint64_t n,
               bool copy) {
                py::gil_scoped_release release;
                self.map_file(path, ids_offset, codes_offset, n, copy);
            },
            py::arg("path"), py::arg("ids_offset"), py::arg("codes_offset"), py::arg("n"), py::arg("copy"))
        .def(
            "save_payload",
            [](const Index& self, int fd, uint64_t offset) {
                hamsearch::PayloadLayout at;
                {
                    py::gil_scoped_release release;
                    at = self.flat().save_payload(fd, offset);
                }
                return py::make_tuple(at.n, at.ids_offset, at.codes_offset, at.end);
            },
            py::arg("fd"), py::arg("offset"))
        .def(
            "rank",
            [](const Index& self, Codes q, int64_t threads) {
                const size_t nq = check_matrix(q, self.words(), "q");
                self.flat().check_codes(q.data(), nq, "q");
                const size_t t = check_threads(threads);
                const uint64_t* qp = q.data();
                hamsearch::UninitVector<int64_t> ranked;
                size_t n = 0;
                {
                    py::gil_scoped_release release;
                    n = self.flat().rank(qp, nq, t, ranked);
                }
                return adopt(std::move(ranked)).reshape({static_cast<py::ssize_t>(nq), static_cast<py::ssize_t>(n)});
            },
            py::arg("q").noconvert(), py::arg("threads"));
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "hamsearch native core: popcount kernels, flat scan and top-k selection";
    m.attr("__version__") = HAMSEARCH_VERSION;

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

    py::class_<FlatIndex> flat(m, "FlatIndex");
    flat.def(py::init<int64_t>(), py::arg("nbits"));
    bind_common(flat);
    flat.def(
        "knn",
        [](const FlatIndex& self, Codes q, int64_t k, int64_t threads) {
            return knn_arrays(self, q, k, threads, [&](auto... args) { self.knn(args...); });
        },
        py::arg("q").noconvert(), py::arg("k"), py::arg("threads"));
    flat.def(
        "radius",
        [](const FlatIndex& self, Codes q, int64_t r, int64_t threads) {
            return radius_arrays(self, q, r, threads, [&](auto... args) { return self.radius(args...); });
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
