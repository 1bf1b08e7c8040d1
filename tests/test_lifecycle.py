"""Index lifecycle: save / load / mmap round trips, the file format written
from its specification, the corrupt-file matrix, and remove against the oracle.

The format oracle here is ``docs/format.md`` transcribed with ``struct`` and
``zlib``, never the package's own header code.
"""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest

import hamsearch as hs
from hamsearch import _backend
from oracle import (
    Reference,
    assert_knn_equal,
    assert_radius_equal,
    assert_rank_equal,
    bits_from_codes,
    codes_from_bits,
)

HEADER = 128
MAGIC = b"\x89HSINDEX"


@pytest.fixture(autouse=True)
def _files_need_the_core(request: pytest.FixtureRequest) -> None:
    """Index files are read and written by the native core on both backends
    (without it, save and load raise RuntimeError: tests/test_format.py)."""
    if "remove" not in request.node.originalname:
        from conftest import require_native

        require_native()


def make(kind: str, nbits: int, backend: str, m=None):
    if kind == "mih":
        return hs.MIHIndex(nbits, m=m, backend=backend)
    return hs.FlatIndex(nbits, backend=backend)


def populated(kind: str, nbits: int, backend: str, rng: np.random.Generator, n: int = 300):
    """An index and its oracle: default ids, then custom shuffled ids,
    duplicate codes, then a removal."""
    idx, ref = make(kind, nbits, backend), Reference(nbits)
    bits = rng.integers(0, 2, size=(n, nbits), dtype=np.uint8)
    bits[n // 2 : n // 2 + 20] = bits[:20]
    half = n // 2
    assert np.array_equal(idx.add(codes_from_bits(bits[:half])), ref.add(bits[:half]))
    ids = rng.permutation(10 * n)[: n - half] + 1000
    idx.add(codes_from_bits(bits[half:]), ids=ids)
    ref.add(bits[half:], ids)
    gone = np.concatenate([ref.ids[::7], [-5, 10**9]])
    assert idx.remove(gone) == ref.remove(gone)
    return idx, ref


def assert_same_answers(idx, ref: Reference, rng: np.random.Generator) -> None:
    q = rng.integers(0, 2, size=(6, ref.nbits), dtype=np.uint8)
    q[:3] = ref.bits[:3] if len(ref.ids) >= 3 else q[:3]
    qc = codes_from_bits(q)
    assert len(idx) == len(ref.ids)
    for k in (1, 5, len(ref.ids) + 2):
        assert_knn_equal(idx.query(qc, k), ref.knn(q, k))
    assert_radius_equal(idx.radius(qc, ref.nbits // 3), ref.radius(q, ref.nbits // 3))
    assert_rank_equal(idx.rank(qc), ref.rank(q))


# -- round trips -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "mih"])
@pytest.mark.parametrize("nbits", [1, 63, 64, 65, 128, 200, 256])
@pytest.mark.parametrize("mmap", [False, True])
def test_round_trip(tmp_path, be, kind, nbits, mmap, rng):
    idx, ref = populated(kind, nbits, be, rng)
    path = tmp_path / "index.hsi"
    idx.save(path)
    got = hs.load(path, mmap=mmap, backend=be)
    assert type(got) is type(idx) and got.nbits == nbits and got.backend == be
    assert got.mapped == (mmap and be == "native")
    assert np.array_equal(got._store.ids(), ref.ids)
    assert np.array_equal(bits_from_codes(got._store.codes(), nbits), ref.bits)
    assert_same_answers(got, ref, rng)
    # Default ids continue past every id ever added, removed ones included.
    nxt = got.add(codes_from_bits(ref.bits[:2]))
    assert nxt.tolist() == [ref.next_id, ref.next_id + 1]
    ref.add(ref.bits[:2])
    assert not got.mapped  # the add copied the map into memory
    assert_same_answers(got, ref, rng)
    # Removing from a freshly mapped index copies it too.
    again = hs.load(path, mmap=mmap, backend=be)
    assert again.remove(ref.ids[:3]) == 3
    assert len(again) == len(ref.ids) - 5


def test_mih_keeps_m_and_empty_index_round_trips(tmp_path, be):
    idx = hs.MIHIndex(96, m=4, backend=be)
    idx.save(tmp_path / "empty.hsi")
    got = hs.load(tmp_path / "empty.hsi", backend=be)
    assert isinstance(got, hs.MIHIndex) and len(got) == 0 and got.m == 4
    D, I = got.query(np.zeros((2, 2), np.uint64), 3)
    assert (I == -1).all() and (D == hs.DISTANCE_PAD).all()
    assert os.path.getsize(tmp_path / "empty.hsi") == HEADER


def test_backends_write_identical_files(tmp_path, rng):
    if _backend._native is None:
        pytest.skip("needs the native core")
    bits = rng.integers(0, 2, size=(50, 130), dtype=np.uint8)
    paths = []
    for be in ("native", "numba"):
        idx = hs.FlatIndex(130, backend=be)
        idx.add(codes_from_bits(bits), ids=np.arange(50)[::-1] * 3)
        idx.remove([3, 6])
        paths.append(tmp_path / f"{be}.hsi")
        idx.save(paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_mapped_search_reads_the_file_in_place(tmp_path, rng):
    if _backend._native is None:
        pytest.skip("needs the native core")
    bits = rng.integers(0, 2, size=(200, 64), dtype=np.uint8)
    idx = hs.FlatIndex(64, backend="native")
    idx.add(codes_from_bits(bits))
    path = tmp_path / "a.hsi"
    idx.save(path)
    mapped = hs.load(path, mmap=True, backend="native")
    # Saving another index over the name renames a new file into place: the
    # mapped index keeps the old inode and its answers.
    other = hs.FlatIndex(64, backend="native")
    other.add(codes_from_bits(1 - bits))
    other.save(path)
    D, I = mapped.query(codes_from_bits(bits[:5]), 1)
    assert D[:, 0].tolist() == [0] * 5 and I[:, 0].tolist() == [0, 1, 2, 3, 4]


# -- the format, from its specification -------------------------------------
def spec_file(nbits: int, ids: np.ndarray, codes: np.ndarray, *, kind: int = 1, m: int = 0,
              next_id: int | None = None, version: int = 1, flags: int = 0) -> bytes:
    """An index file built from docs/format.md alone."""
    n, w = codes.shape
    ids_off = 128
    codes_off = (ids_off + 8 * n + 63) // 64 * 64
    end = codes_off + 8 * n * w
    data = ids.astype("<i8").tobytes() + bytes(codes_off - ids_off - 8 * n) + codes.astype("<u8").tobytes()
    nxt = (int(ids.max()) + 1 if n else 0) if next_id is None else next_id
    head = struct.pack("<8sIIIIQQQQQQQQI", MAGIC, version, 128, kind, flags, nbits, w, n, nxt, m,
                       ids_off, codes_off, end, zlib.crc32(data))
    head += bytes(124 - len(head))
    return head + struct.pack("<I", zlib.crc32(head)) + data


def test_spec_file_loads(tmp_path, be, rng):
    bits = rng.integers(0, 2, size=(40, 70), dtype=np.uint8)
    ids = rng.permutation(1000)[:40].astype(np.int64)
    path = tmp_path / "spec.hsi"
    path.write_bytes(spec_file(70, ids, codes_from_bits(bits), kind=2, m=3, next_id=5000))
    idx = hs.load(path, backend=be)
    assert isinstance(idx, hs.MIHIndex) and idx.m == 3
    ref = Reference(70)
    ref.add(bits, ids)
    assert_same_answers(idx, ref, rng)
    assert idx.add(codes_from_bits(bits[:1])).tolist() == [5000]
    # and what save writes is the specified file, byte for byte
    idx2 = hs.FlatIndex(70, backend=be)
    idx2.add(codes_from_bits(bits), ids=ids)
    idx2.save(tmp_path / "ours.hsi")
    assert (tmp_path / "ours.hsi").read_bytes() == spec_file(70, ids, codes_from_bits(bits))


# -- bad files --------------------------------------------------------------
@pytest.fixture
def good_file(tmp_path, rng):
    bits = rng.integers(0, 2, size=(30, 100), dtype=np.uint8)
    raw = spec_file(100, np.arange(30, dtype=np.int64) * 2, codes_from_bits(bits))
    return tmp_path, raw


def _load_bytes(tmp_path, raw: bytes, be: str, **kw):
    path = tmp_path / "bad.hsi"
    path.write_bytes(raw)
    return hs.load(path, backend=be, **kw)


@pytest.mark.parametrize("cut", [0, 1, 8, 127, 128, 129, 300, -8, -1])
def test_truncated(good_file, be, cut):
    tmp_path, raw = good_file
    with pytest.raises(ValueError, match="truncated|not a hamsearch"):
        _load_bytes(tmp_path, raw[:cut] if cut >= 0 else raw[:cut], be)


def test_trailing_bytes(good_file, be):
    tmp_path, raw = good_file
    with pytest.raises(ValueError, match="trailing"):
        _load_bytes(tmp_path, raw + b"\0", be)


def test_wrong_magic_and_future_version(good_file, be):
    tmp_path, raw = good_file
    with pytest.raises(ValueError, match="not a hamsearch index file"):
        _load_bytes(tmp_path, b"PK\x03\x04" + raw[4:], be)
    with pytest.raises(ValueError, match="format version 2 is newer"):
        _load_bytes(tmp_path, raw[:8] + struct.pack("<I", 2) + raw[12:], be)


def test_every_header_byte_flip_is_caught(good_file, be):
    tmp_path, raw = good_file
    for at in range(HEADER):
        bad = bytearray(raw)
        bad[at] ^= 0x10
        with pytest.raises(ValueError, match="magic|version|header|checksum"):
            _load_bytes(tmp_path, bytes(bad), be)


@pytest.mark.parametrize("where", ["ids", "pad", "codes"])
def test_data_byte_flip_is_caught(good_file, be, where):
    tmp_path, raw = good_file
    at = {"ids": HEADER + 9, "pad": HEADER + 30 * 8 + 4, "codes": len(raw) - 3}[where]
    bad = bytearray(raw)
    bad[at] ^= 0x01
    with pytest.raises(ValueError, match="data checksum"):
        _load_bytes(tmp_path, bytes(bad), be)
    if where != "pad":
        # verify=False trusts the data: it loads (and never crashes).
        idx = _load_bytes(tmp_path, bytes(bad), be, verify=False)
        assert len(idx) == 30


@pytest.mark.parametrize("field, value, match", [
    ("count", 2**40, "does not fit"),
    ("count", 31, "expected ids, codes and end|truncated"),
    ("nbits", 0, "nbits"),
    ("nbits", 2**21, "nbits"),
    ("words", 3, "words per code"),
    ("kind", 7, "kind"),
    ("flags", 1, "flags"),
    ("m", 2, "m = 0 for a flat"),
    ("next_id", 2**63 + 1, "next id"),
    ("next_id", 2**64 - 1, "next id"),
    ("end", 10**12, "expected ids, codes and end"),
])
def test_forged_header_fields(good_file, be, field, value, match):
    """A header with consistent checksums but impossible fields: refused by
    its sizes before anything sized by them is allocated."""
    tmp_path, raw = good_file
    names = ["magic", "version", "header_size", "kind", "flags", "nbits", "words", "count", "next_id", "m",
             "ids_offset", "codes_offset", "end", "data_crc"]
    fields = list(struct.unpack_from("<8sIIIIQQQQQQQQI", raw))
    fields[names.index(field)] = value
    head = struct.pack("<8sIIIIQQQQQQQQI", *fields)
    head += bytes(124 - len(head))
    forged = head + struct.pack("<I", zlib.crc32(head)) + raw[HEADER:]
    with pytest.raises(ValueError, match=match):
        _load_bytes(tmp_path, forged, be)


@pytest.mark.parametrize("problem, match", [
    ("duplicate ids", "unique ids"),
    ("negative id", "non-negative"),
    ("pad bits", "pad bits"),
    ("next id", "below the next id"),
])
def test_bad_contents_with_valid_checksums(tmp_path, be, rng, problem, match):
    bits = rng.integers(0, 2, size=(10, 100), dtype=np.uint8)
    codes = codes_from_bits(bits)
    ids = np.arange(10, dtype=np.int64)
    nxt = None
    if problem == "duplicate ids":
        ids[4] = ids[7]
    elif problem == "negative id":
        ids[2] = -3
    elif problem == "pad bits":
        codes[5, 1] |= np.uint64(1) << np.uint64(63)
    else:
        nxt = 5
    with pytest.raises(ValueError, match=match):
        _load_bytes(tmp_path, spec_file(100, ids, codes, next_id=nxt), be)


def test_missing_file_directory_and_bad_arguments(tmp_path, be):
    with pytest.raises(FileNotFoundError):
        hs.load(tmp_path / "nope.hsi", backend=be)
    with pytest.raises(IsADirectoryError):
        hs.load(tmp_path, backend=be)
    idx = hs.FlatIndex(8, backend=be)
    with pytest.raises(IsADirectoryError):
        idx.save(tmp_path)
    with pytest.raises(TypeError, match="mmap"):
        hs.load(tmp_path / "x", mmap="yes")
    with pytest.raises(TypeError, match="path"):
        hs.load(b"bytes-path")
    with pytest.raises(FileNotFoundError):
        idx.save(tmp_path / "no-such-dir" / "x.hsi")


def test_failed_save_keeps_the_old_file(tmp_path, be):
    """A save that fails midway (here: the file size limit) raises OSError,
    keeps the old file and leaves no temporary file. In a subprocess, as the
    limit is per process."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import os, resource, signal, numpy as np, hamsearch as hs
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        idx = hs.FlatIndex(64, backend={be!r})
        idx.add(np.arange(20, dtype=np.uint64)[:, None])
        idx.save("keep.hsi")
        before = open("keep.hsi", "rb").read()
        idx.add(np.ones((2000, 1), np.uint64))
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            idx.save("keep.hsi")
        except OSError as exc:
            print("OSError", exc.errno)
        assert open("keep.hsi", "rb").read() == before
        print(sorted(os.listdir(".")))
        """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(hs.__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    first, listing = res.stdout.strip().splitlines()[-2:]
    assert first.startswith("OSError") and listing == "['keep.hsi']", res.stdout


# -- remove -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_remove_against_oracle(be, kind, rng):
    nbits = 72
    idx, ref = make(kind, nbits, be), Reference(nbits)
    for step in range(6):
        bits = rng.integers(0, 2, size=(int(rng.integers(0, 120)), nbits), dtype=np.uint8)
        if len(ref.ids) and bits.shape[0]:
            bits[: min(5, bits.shape[0])] = ref.bits[: min(5, bits.shape[0])]  # duplicates of present codes
        custom = step % 2 == 1
        ids = (rng.permutation(100000)[: bits.shape[0]] + 10**6 * (step + 1)) if custom else None
        assert np.array_equal(idx.add(codes_from_bits(bits), ids=ids), ref.add(bits, ids))
        if len(ref.ids):
            pick = rng.choice(ref.ids, size=min(len(ref.ids), int(rng.integers(0, 40))), replace=False)
            request = np.concatenate([pick, pick[:3], [-1, 2**40]])  # repeats and unknown ids
            assert idx.remove(request) == ref.remove(pick)
        assert_same_answers(idx, ref, rng)
    # removed ids never come back, and default ids never reuse them
    assert idx.remove(ref.ids) == len(ref.ids) and len(idx) == 0
    assert idx.add(codes_from_bits(np.zeros((1, nbits), np.uint8))).tolist() == [ref.next_id]


def test_remove_inputs(be):
    idx = hs.FlatIndex(16, backend=be)
    idx.add(np.arange(10, dtype=np.uint64).reshape(10, 1))
    assert idx.remove(3) == 1
    assert idx.remove(np.uint64(2**64 - 1)) == 0
    assert idx.remove([]) == 0
    assert idx.remove(np.array([4, 4, 5], dtype=np.int32)) == 2
    with pytest.raises(TypeError, match="integer"):
        idx.remove([1.0])
    with pytest.raises(TypeError, match="integer"):
        idx.remove(np.array([True]))
    with pytest.raises(ValueError, match="1-D"):
        idx.remove(np.zeros((2, 2), np.int64))
    with pytest.raises(ValueError, match="already in the index"):
        idx.add(np.zeros((1, 1), np.uint64), ids=[7])
    assert idx.add(np.zeros((1, 1), np.uint64), ids=[3]).tolist() == [3]  # a removed id may be given back explicitly
    assert len(idx) == 8


def test_empty_file_data_checksum_is_checked(tmp_path, be):
    """An empty index has no data, so its data CRC must be that of nothing
    (0); a header with another value and a valid header CRC is corrupt."""
    raw = bytearray(spec_file(16, np.zeros(0, np.int64), np.zeros((0, 1), np.uint64)))
    raw[88:92] = struct.pack("<I", 1)
    raw[124:128] = struct.pack("<I", zlib.crc32(bytes(raw[:124])))
    with pytest.raises(ValueError, match="data checksum"):
        _load_bytes(tmp_path, bytes(raw), be)
    assert len(_load_bytes(tmp_path, bytes(raw), be, verify=False)) == 0
