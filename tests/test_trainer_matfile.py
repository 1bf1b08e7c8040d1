"""trainer.matfile: v7.3 (HDF5) and v7 copies of the same variables read alike,
images read lazily, sources pickled into worker processes, and clear errors.

The v7.3 files are written here in the releases' layout: a 512-byte MATLAB
header (116 bytes of text, the subsystem offset, version 0x0200, 'IM') ahead
of the HDF5 data, one dataset per variable with its ``MATLAB_class``
attribute, axes column-major (``matlab_array.T``), the images chunked and
compressed as MATLAB writes them. numpy, scipy and h5py only; no torch.
"""
from __future__ import annotations

import multiprocessing
import operator
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
sio = pytest.importorskip("scipy.io")
sp = pytest.importorskip("scipy.sparse")

from trainer import matfile as M
from trainer.data import DataError

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HAMSEARCH_DATA", ROOT.parent / "shared" / "data"))

N, H, W = 7, 5, 4  # images of 5 x 4 pixels: every axis has its own length

_CLASSES = {
    np.dtype(np.uint8): "uint8",
    np.dtype(np.float64): "double",
    np.dtype(np.float32): "single",
    np.dtype(np.int16): "int16",
    np.dtype(np.bool_): "logical",
}


def matlab_header() -> bytes:
    """The first 128 bytes MATLAB writes in a v7.3 file's 512-byte user block."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  6 12:00:00 2025 HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + (0x0200).to_bytes(2, "little") + b"IM"


def write_v73(path: Path, variables: Dict[str, np.ndarray]) -> Path:
    """Write ``variables`` (MATLAB-ordered arrays) as a MATLAB v7.3 file."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, arr in variables.items():
            arr = np.asarray(arr)
            cls = _CLASSES[arr.dtype]
            data = arr.astype(np.uint8) if arr.dtype == np.bool_ else arr
            opts = {}
            if data.ndim == 4:  # images: chunked and compressed, one image a chunk
                opts = {"chunks": (1,) + data.T.shape[1:], "compression": "gzip"}
            ds = f.create_dataset(name, data=data.T, **opts)
            ds.attrs["MATLAB_class"] = np.bytes_(cls)
            if cls == "logical":
                ds.attrs["MATLAB_int_decode"] = np.int32(1)
    with open(path, "r+b") as fh:
        fh.write(matlab_header())
    return path


def write_v7(path: Path, variables: Dict[str, np.ndarray]) -> Path:
    sio.savemat(str(path), variables)
    return path


def triplet(seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "IAll": rng.integers(0, 256, size=(H, W, 3, N), dtype=np.uint8),
        "YAll": (rng.random((N, 9)) < 0.3).astype(np.float64),
        "LAll": (rng.random((N, 6)) < 0.4).astype(np.uint8),
    }


def write_both(tmp_path: Path, variables: Dict[str, np.ndarray], layout: str):
    """Write ``variables`` as v7.3 and as v7, in one file or one file per
    variable; returns {name: (v73 path, v7 path)}."""
    files = {}
    for fmt, writer in (("v73", write_v73), ("v7", write_v7)):
        d = tmp_path / fmt
        d.mkdir()
        if layout == "combined":
            p = writer(d / "FLICKR-25K.mat", variables)
            files[fmt] = {k: p for k in variables}
        else:
            files[fmt] = {k: writer(d / f"mirflickr25k-{k.lower()}.mat", {k: v}) for k, v in variables.items()}
    return {k: (files["v73"][k], files["v7"][k]) for k in variables}


# ----------------------------------------------------------------------------- the fixture's layout


def test_written_v73_files_are_what_matlab_writes(tmp_path):
    p = write_v73(tmp_path / "x.mat", {"LAll": np.eye(3, dtype=np.uint8)})
    raw = p.read_bytes()
    assert raw[:19] == b"MATLAB 7.3 MAT-file"
    assert raw[124:128] == b"\x00\x02IM"
    assert raw[512:520] == b"\x89HDF\r\n\x1a\n"
    from scipy.io.matlab import matfile_version

    assert matfile_version(str(p)) == (2, 0)  # scipy reads the header as MATLAB 7.3


# ----------------------------------------------------------------------------- v7.3 == v7


@pytest.mark.parametrize("layout", ["combined", "per-variable"])
def test_v73_and_v7_copies_read_alike(tmp_path, layout):
    variables = triplet()
    files = write_both(tmp_path, variables, layout)
    idx = [5, 0, 5, 3, 6, 0, 2]  # unsorted, repeated
    for name, (p73, p7) in files.items():
        with M.open_mat(p73) as m73, M.open_mat(p7) as m7:
            assert (m73.version, m7.version) == ("v7.3", "v4-v7")
            assert sorted(m73.names) == sorted(m7.names)
            assert name in m73.names
            assert m73.shape(name) == m7.shape(name) == variables[name].shape
            if name == "IAll":
                im73, im7 = m73.images(name), m7.images(name)
                assert len(im73) == len(im7) == N
                got73, got7 = im73.read(idx), im7.read(idx)
                for i, a, b in zip(idx, got73, got7):
                    want = variables["IAll"][:, :, :, i]
                    assert a.shape == (H, W, 3) and a.dtype == np.uint8 and a.flags["C_CONTIGUOUS"]
                    np.testing.assert_array_equal(a, want)
                    np.testing.assert_array_equal(b, want)
                assert im73.describe(3) == f"{p73.name}:IAll[3]"
            a73, a7 = m73.array(name), m7.array(name)
            assert a73.dtype == a7.dtype == variables[name].dtype
            np.testing.assert_array_equal(a73, a7)
            np.testing.assert_array_equal(a73, variables[name])


def test_array_matches_scipy_for_each_class(tmp_path):
    rng = np.random.default_rng(1)
    variables = {
        "d": rng.standard_normal((3, 5)),
        "f": rng.standard_normal((4, 2)).astype(np.float32),
        "i": rng.integers(-300, 300, size=(2, 3, 4)).astype(np.int16),
        "b": rng.random((3, 4)) < 0.5,
        "col": rng.standard_normal((6, 1)),
        "scalar": np.full((1, 1), 2.5),
    }
    p73 = write_v73(tmp_path / "a73.mat", variables)
    want = sio.loadmat(str(write_v7(tmp_path / "a7.mat", variables)))
    with M.open_mat(p73) as m:
        for name in variables:
            got = m.array(name)
            assert got.dtype == want[name].dtype, name  # logical -> uint8, as scipy
            assert got.shape == want[name].shape == m.shape(name), name
            np.testing.assert_array_equal(got, want[name])


def test_sparse_char_and_empty_variables(tmp_path):
    dense = np.array([[0.0, 1.5, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    csc = sp.csc_matrix(dense)
    p = tmp_path / "s73.mat"
    with h5py.File(p, "w", userblock_size=512) as f:
        g = f.create_group("S")
        g.attrs["MATLAB_class"] = np.bytes_("double")
        g.attrs["MATLAB_sparse"] = np.uint64(dense.shape[0])
        g["data"], g["ir"], g["jc"] = csc.data, csc.indices.astype(np.uint64), csc.indptr.astype(np.uint64)
        c = f.create_dataset("C", data=np.array([[ord(ch) for ch in "hello"]], dtype=np.uint16).T)
        c.attrs["MATLAB_class"] = np.bytes_("char")
        c.attrs["MATLAB_int_decode"] = np.int32(2)
        e = f.create_dataset("E", data=np.array([0, 5], dtype=np.uint64))
        e.attrs["MATLAB_class"] = np.bytes_("double")
        e.attrs["MATLAB_empty"] = np.uint8(1)
        f.create_group("#refs#")
    with open(p, "r+b") as fh:
        fh.write(matlab_header())
    want = sio.loadmat(str(write_v7(tmp_path / "s7.mat", {"S": csc, "C": "hello", "E": np.zeros((0, 5))})))
    with M.open_mat(p) as m:
        assert sorted(m.names) == ["C", "E", "S"]  # no '#refs#'
        assert m.shape("S") == dense.shape
        s = m.array("S")
        assert sp.issparse(s) and s.dtype == want["S"].dtype
        np.testing.assert_array_equal(s.toarray(), want["S"].toarray())
        assert m.array("C").tolist() == want["C"].tolist() == ["hello"]
        e = m.array("E")
        assert e.shape == want["E"].shape == (0, 5) and e.dtype == want["E"].dtype


# ----------------------------------------------------------------------------- laziness


def test_images_read_only_the_rows_asked(tmp_path, monkeypatch):
    variables = triplet()
    p = write_v73(tmp_path / "iall.mat", {"IAll": variables["IAll"]})
    calls = []
    real = h5py.Dataset.__getitem__

    def spy(self, key):
        out = real(self, key)
        calls.append((self.name, key, out.size))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    with M.open_mat(p) as m:
        src = m.images("IAll")
        assert m.shape("IAll") == (H, W, 3, N)
        assert calls == []  # opening and checking the shape reads no pixels
        got = src.read([5, 2, 5])
        assert calls == [("/IAll", [2, 5], 2 * 3 * W * H)]  # one read, sorted, unique
        np.testing.assert_array_equal(got[0], variables["IAll"][:, :, :, 5])
        np.testing.assert_array_equal(got[1], variables["IAll"][:, :, :, 2])
        np.testing.assert_array_equal(got[2], got[0])
        calls.clear()
        src.read([4, 3])
        assert calls == [("/IAll", slice(3, 5), 2 * 3 * W * H)]  # a contiguous run: one slice
        calls.clear()
        assert src.read([]) == [] and calls == []
        with pytest.raises(IndexError, match=r"\[0, 7\)"):
            src.read([N])


def test_array_refuses_large_image_arrays(tmp_path):
    variables = triplet()
    files = write_both(tmp_path, {"IAll": variables["IAll"]}, "combined")
    for p in files["IAll"]:
        with M.open_mat(p) as m:
            with pytest.raises(DataError, match=r"420 bytes; expected at most 100 bytes .*images\('IAll'\)") as err:
                m.array("IAll", max_bytes=100)
            assert str(p) in str(err.value)
            np.testing.assert_array_equal(m.array("IAll"), variables["IAll"])  # small: allowed


# ----------------------------------------------------------------------------- pickling


def test_image_source_pickles_into_this_and_a_spawned_process(tmp_path):
    variables = triplet()
    p = write_v73(tmp_path / "iall.mat", {"IAll": variables["IAll"]})
    idx = [6, 1, 1, 4]
    with M.open_mat(p) as m:
        src = m.images()
    want = src.read(idx)  # the handle is open now
    blob = pickle.dumps(src)
    assert b"HDF" not in blob and src._file is not None
    copy = pickle.loads(blob)
    assert copy._file is None and len(copy) == N
    for a, b in zip(copy.read(idx), want):
        np.testing.assert_array_equal(a, b)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        got = pool.submit(operator.methodcaller("read", idx), src).result(timeout=120)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    src.close()
    np.testing.assert_array_equal(src.read([0])[0], variables["IAll"][:, :, :, 0])  # reopens
    src.close()


# ----------------------------------------------------------------------------- errors


MISSING = r"expected a variable 'XAll', got only \['IAll', 'LAll', 'YAll'\]"


def test_missing_variable_names_those_present(tmp_path):
    files = write_both(tmp_path, triplet(), "combined")
    for p in files["LAll"]:
        with M.open_mat(p) as m:
            for method in (m.array, m.images, m.shape):
                with pytest.raises(DataError, match=MISSING) as err:
                    method("XAll")
                assert str(p) in str(err.value)


@pytest.mark.parametrize(
    "bad, got",
    [
        (np.zeros((H, W, N), np.uint8), r"got 5 x 4 x 7 uint8"),  # 3-D
        (np.zeros((H, W, 4, N), np.uint8), r"got 5 x 4 x 4 x 7 uint8"),  # RGBA
        (np.zeros((H, W, 3, N), np.float64), r"got 5 x 4 x 3 x 7 double"),  # float pixels
        (np.zeros((N, H, W, 3), np.uint8), r"got 7 x 5 x 4 x 3 uint8; the last axis is 3"),  # Python order
    ],
    ids=["3-D", "third-axis-4", "float", "N-first"],
)
def test_wrong_image_layout(tmp_path, bad, got):
    files = write_both(tmp_path, {"IAll": bad}, "combined")
    for p in files["IAll"]:
        with M.open_mat(p) as m:
            with pytest.raises(DataError, match=r"expected an H x W x 3 x N uint8 RGB image array .*" + got) as err:
                m.images("IAll")
            assert str(p) in str(err.value)


def test_truncated_v73_file(tmp_path):
    p = write_v73(tmp_path / "iall.mat", triplet())
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    assert M.is_v73(p)
    expected = r"expected a readable MATLAB v7.3 \(HDF5\) file, got one that is truncated or corrupt"
    with pytest.raises(DataError, match=expected) as err:
        M.open_mat(p)
    assert str(p) in str(err.value)


def test_corrupt_image_chunk(tmp_path):
    """The file opens (its metadata is intact) but one image's compressed chunk is garbage."""
    p = write_v73(tmp_path / "iall.mat", triplet())
    with h5py.File(p, "r") as f:
        chunk = f["IAll"].id.read_direct_chunk((3, 0, 0, 0))[1]
    raw = bytearray(p.read_bytes())
    at = raw.find(chunk)
    assert at > 512 and raw.find(chunk, at + 1) == -1
    raw[at : at + len(chunk)] = b"\xff" * len(chunk)
    p.write_bytes(bytes(raw))
    with M.open_mat(p) as m:
        src = m.images("IAll")
        src.read([2, 4])  # the other images still read
        with pytest.raises(DataError, match=r"expected readable images \[3\].*truncated or corrupt") as err:
            src.read([3])
        src.close()
    assert str(p) in str(err.value)


def test_truncated_v7_file(tmp_path):
    p = write_v7(tmp_path / "lall.mat", triplet())
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"expected a (readable )?MATLAB .*truncated or corrupt") as err:
        M.open_mat(p).array("YAll")
    assert str(p) in str(err.value)


def test_v73_header_without_hdf5_data(tmp_path):
    p = tmp_path / "header-only.mat"
    p.write_bytes(matlab_header() + b"\x00" * 300)
    with pytest.raises(DataError, match=r"v7.3 header without HDF5 data") as err:
        M.open_mat(p)
    assert str(p) in str(err.value)


@pytest.mark.parametrize("content", [b"", b"hello world, not a mat file\n" * 40], ids=["empty", "text"])
def test_not_a_mat_file(tmp_path, content):
    p = tmp_path / "notes.mat"
    p.write_bytes(content)
    with pytest.raises(DataError, match=r"expected a MATLAB \.mat file \(v4 to v7\.3\)") as err:
        M.open_mat(p)
    assert str(p) in str(err.value)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        M.open_mat(tmp_path / "absent.mat")
    with pytest.raises(DataError, match=r"expected a file, got a directory: .*" + tmp_path.name):
        M.open_mat(tmp_path)
    with pytest.raises(DataError, match="expected a file, got a directory"):
        M.is_v73(tmp_path)


def test_h5py_missing_says_how_to_install(tmp_path, monkeypatch):
    p = write_v73(tmp_path / "l.mat", {"LAll": np.eye(2, dtype=np.uint8)})
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(ImportError, match=r"pip install h5py"):
        M.open_mat(p)


# ----------------------------------------------------------------------------- is_v73


def test_is_v73(tmp_path):
    variables = {"LAll": np.eye(3, dtype=np.uint8)}
    assert M.is_v73(write_v73(tmp_path / "a73.mat", variables))
    assert not M.is_v73(write_v7(tmp_path / "a7.mat", variables))
    plain = tmp_path / "plain.h5"  # HDF5 without the MATLAB user block: signature at 0
    with h5py.File(plain, "w") as f:
        f["LAll"] = np.eye(3, dtype=np.uint8)
    assert M.is_v73(plain)
    with M.open_mat(plain) as m:  # no MATLAB_class: the dataset's dtype, axes reversed
        assert m.version == "v7.3" and m.array("LAll").dtype == np.uint8
    for name, content in (("empty", b""), ("short", b"\x89HDF"), ("garbage", bytes(range(256)) * 4)):
        g = tmp_path / name
        g.write_bytes(content)
        assert not M.is_v73(g)
    with pytest.raises(FileNotFoundError):
        M.is_v73(tmp_path / "absent.mat")


# ----------------------------------------------------------------------------- the real files


def test_real_mirflickr_labels():
    p = SHARED / "mirflickr25k" / "mirflickr25k-lall.mat"
    if not p.is_file():
        pytest.skip(f"{p} not present")
    with M.open_mat(p) as m:
        assert m.version == "v4-v7" and "LAll" in m.names
        assert m.shape("LAll") == (20015, 24)
        labels = m.array("LAll")
    assert labels.shape == (20015, 24) and labels.dtype == np.uint8
    assert set(np.unique(labels).tolist()) <= {0, 1}
