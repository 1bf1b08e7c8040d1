"""The bad-input matrix: every public call, TypeError for the wrong kind of
object or dtype, ValueError for a wrong value, and a message that says what
was expected."""
from __future__ import annotations

import numpy as np
import pytest

import hamsearch as hs

NBITS = 100  # two words, 28 pad bits in the second
W = 2


def _good(n: int = 3) -> np.ndarray:
    codes = np.zeros((n, W), dtype=np.uint64)
    codes[:, 0] = np.arange(n, dtype=np.uint64) * 0x9E3779B97F4A7C15 % (2**63)
    codes[:, 1] = np.arange(n, dtype=np.uint64) % 7
    return codes


def _pad_bit_set(row: int = 0, n: int = 3) -> np.ndarray:
    codes = _good(n)
    codes[row, 1] |= np.uint64(1 << (NBITS - 64))  # bit 100
    return codes


def _top_pad_bit_set() -> np.ndarray:
    codes = _good()
    codes[1, 1] |= np.uint64(1 << 63)  # bit 127
    return codes


BAD_CODES = [
    # (array, exception, fragment)
    pytest.param(np.zeros((3, W), dtype=np.uint8), TypeError, "from_bytes", id="uint8"),
    pytest.param(np.zeros((3, W), dtype=np.float64), TypeError, "pack", id="float64"),
    pytest.param(np.zeros((3, W), dtype=np.float32), TypeError, "pack", id="float32"),
    pytest.param(np.zeros((3, W), dtype=np.bool_), TypeError, "pack", id="bool"),
    pytest.param(np.zeros((3, W), dtype=np.int64), TypeError, "pack", id="int64"),
    pytest.param(np.zeros((3, W), dtype=np.uint32), TypeError, "pack", id="uint32"),
    pytest.param(np.zeros((3, W), dtype=">u8"), TypeError, "expected", id="big-endian"),
    pytest.param(np.zeros((3, W), dtype=object), TypeError, "expected", id="object"),
    pytest.param(np.zeros(W, dtype=np.uint64), ValueError, "2-D", id="1d"),
    pytest.param(np.zeros((1, 3, W), dtype=np.uint64), ValueError, "2-D", id="3d"),
    pytest.param(np.zeros((3, 1), dtype=np.uint64), ValueError, "expected shape", id="too-narrow"),
    pytest.param(np.zeros((3, 3), dtype=np.uint64), ValueError, "expected shape", id="too-wide"),
    pytest.param(np.zeros((0, 3), dtype=np.uint64), ValueError, "expected shape", id="empty-too-wide"),
    pytest.param(_pad_bit_set(), ValueError, "pad bits", id="pad-bit-100"),
    pytest.param(_pad_bit_set(row=49, n=50), ValueError, "pad bits", id="pad-bit-last-row"),
    pytest.param(_top_pad_bit_set(), ValueError, "pad bits", id="pad-bit-127"),
    pytest.param(_good(6)[::2], ValueError, "contiguous", id="strided-rows"),
    pytest.param(np.asfortranarray(_good(4)), ValueError, "contiguous", id="fortran"),
    pytest.param(np.zeros((3, 2 * W), dtype=np.uint64)[:, :W], ValueError, "contiguous", id="column-slice"),
    pytest.param([[0, 0]], TypeError, "expected", id="list"),
    pytest.param(None, TypeError, "expected", id="none"),
]


@pytest.fixture
def index(backend):
    idx = hs.FlatIndex(NBITS, backend=backend)
    idx.add(_good(5))
    return idx


# --- codes and queries ---------------------------------------------------------

CODE_CALLS = {
    "add": lambda idx, a: idx.add(a),
    "add-with-ids": lambda idx, a: idx.add(a, ids=np.arange(100, 103)),
    "query": lambda idx, a: idx.query(a, 3),
    "radius": lambda idx, a: idx.radius(a, 3),
    "rank": lambda idx, a: idx.rank(a),
}


@pytest.mark.parametrize("call", list(CODE_CALLS), ids=list(CODE_CALLS))
@pytest.mark.parametrize("bad, exc, fragment", BAD_CODES)
def test_index_rejects_bad_codes(index, call, bad, exc, fragment):
    with pytest.raises(exc, match="expected") as info:
        CODE_CALLS[call](index, bad)
    assert fragment in str(info.value)
    assert len(index) == 5


@pytest.mark.parametrize("bad, exc, fragment", BAD_CODES)
def test_empty_index_rejects_bad_queries(backend, bad, exc, fragment):
    idx = hs.FlatIndex(NBITS, backend=backend)
    for call in (lambda: idx.query(bad, 1), lambda: idx.radius(bad, 1), lambda: idx.rank(bad)):
        with pytest.raises(exc, match="expected") as info:
            call()
        assert fragment in str(info.value)


def test_argument_name_in_messages(index):
    with pytest.raises(TypeError, match=r"^codes: expected"):
        index.add(np.zeros((1, W), dtype=np.uint8))
    with pytest.raises(TypeError, match=r"^q: expected"):
        index.query(np.zeros((1, W), dtype=np.uint8), 1)
    with pytest.raises(ValueError, match=r"np\.ascontiguousarray"):
        index.query(_good(6)[::2], 1)
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        index.rank(np.zeros((2, 3), dtype=np.uint64))


@pytest.mark.parametrize("bad, exc, fragment", BAD_CODES)
def test_unpack_and_to_bytes_reject_bad_codes(bad, exc, fragment):
    for call in (lambda: hs.unpack(bad, NBITS), lambda: hs.to_bytes(bad, NBITS)):
        with pytest.raises(exc, match="expected") as info:
            call()
        assert fragment in str(info.value)


def test_nbits_64_has_no_pad_bits(backend):
    idx = hs.FlatIndex(64, backend=backend)
    all_ones = np.full((2, 1), 2**64 - 1, dtype=np.uint64)
    idx.add(all_ones)
    D, I = idx.query(all_ones[:1], 2)
    assert D.tolist() == [[0, 0]] and I.tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="pad bits"):
        hs.FlatIndex(63, backend=backend).add(all_ones)


# --- k, r, threads ---------------------------------------------------------------

BAD_K = [
    pytest.param(0, ValueError, id="zero"),
    pytest.param(-1, ValueError, id="negative"),
    pytest.param(-(2**40), ValueError, id="very-negative"),
    pytest.param(2.0, TypeError, id="float"),
    pytest.param(np.float64(3), TypeError, id="np-float"),
    pytest.param(True, TypeError, id="bool"),
    pytest.param(np.bool_(True), TypeError, id="np-bool"),
    pytest.param("3", TypeError, id="str"),
    pytest.param(None, TypeError, id="none"),
]


@pytest.mark.parametrize("k, exc", BAD_K)
def test_query_rejects_bad_k(index, k, exc):
    with pytest.raises(exc, match=r"^k: expected"):
        index.query(_good(2), k)


BAD_R = [
    pytest.param(-1, ValueError, id="negative"),
    pytest.param(1.5, TypeError, id="float"),
    pytest.param(2.0, TypeError, id="integral-float"),
    pytest.param(True, TypeError, id="bool"),
    pytest.param("2", TypeError, id="str"),
    pytest.param(None, TypeError, id="none"),
]


@pytest.mark.parametrize("r, exc", BAD_R)
def test_radius_rejects_bad_r(index, r, exc):
    with pytest.raises(exc, match=r"^r: expected"):
        index.radius(_good(2), r)


BAD_THREADS = [
    pytest.param(0, ValueError, id="zero"),
    pytest.param(-2, ValueError, id="negative"),
    pytest.param(1.0, TypeError, id="float"),
    pytest.param(True, TypeError, id="bool"),
    pytest.param("2", TypeError, id="str"),
]


@pytest.mark.parametrize("threads, exc", BAD_THREADS)
def test_searches_reject_bad_threads(index, threads, exc):
    q = _good(2)
    for call in (
        lambda: index.query(q, 2, threads=threads),
        lambda: index.radius(q, 2, threads=threads),
        lambda: index.rank(q, threads=threads),
    ):
        with pytest.raises(exc, match=r"^threads: expected"):
            call()


@pytest.mark.parametrize("threads, exc", BAD_THREADS)
def test_constructor_rejects_bad_threads(backend, threads, exc):
    with pytest.raises(exc, match=r"^threads: expected"):
        hs.FlatIndex(NBITS, backend=backend, threads=threads)


# --- ids -------------------------------------------------------------------------

BAD_IDS = [
    pytest.param(np.array([100, -1, 102]), None, ValueError, "non-negative", id="negative"),
    pytest.param(np.array([-(2**63), 200, 201]), None, ValueError, "non-negative", id="int64-min"),
    pytest.param(np.array([100, 101, 100]), None, ValueError, "unique", id="duplicate-in-batch"),
    pytest.param(np.array([100, 3, 101]), None, ValueError, "already", id="already-in-index"),
    pytest.param(np.array([100, 101]), None, ValueError, "3", id="too-short"),
    pytest.param(np.array([100, 101, 102, 103]), None, ValueError, "3", id="too-long"),
    pytest.param(np.array([[100, 101, 102]]), None, ValueError, "1-D", id="2d"),
    pytest.param(np.array(100), None, ValueError, "1-D", id="0d"),
    pytest.param(np.array([100.0, 101.0, 102.0]), None, TypeError, "integer", id="float"),
    pytest.param(np.array([True, False, True]), None, TypeError, "integer", id="bool"),
    pytest.param(np.array(["a", "b", "c"]), None, TypeError, "integer", id="str"),
    pytest.param(np.array([2**63, 1, 2], dtype=np.uint64), None, ValueError, "2**63", id="uint64-overflow"),
    pytest.param("100", None, TypeError, "expected", id="python-str"),
]


@pytest.mark.parametrize("ids, _unused, exc, fragment", BAD_IDS)
def test_add_rejects_bad_ids(index, ids, _unused, exc, fragment):
    with pytest.raises(exc, match=r"^ids: expected") as info:
        index.add(_good(3), ids=ids)
    assert fragment in str(info.value)
    # Nothing was added, and default ids still continue from the same place.
    assert len(index) == 5
    assert index.add(_good(1)).tolist() == [5]


def test_ids_clash_across_batches(backend):
    idx = hs.FlatIndex(NBITS, backend=backend)
    idx.add(_good(2), ids=np.array([50, 7]))
    for ids in ([7, 60], [60, 50], [50, 7]):
        with pytest.raises(ValueError, match="already"):
            idx.add(_good(2), ids=np.array(ids))
    assert idx.add(_good(1)).tolist() == [51]
    with pytest.raises(ValueError, match="already"):
        idx.add(_good(1), ids=np.array([51]))
    assert len(idx) == 3


# --- nbits and backend -------------------------------------------------------------

BAD_NBITS = [
    pytest.param(0, ValueError, id="zero"),
    pytest.param(-1, ValueError, id="negative"),
    pytest.param(2**40, ValueError, id="huge"),
    pytest.param((1 << 20) + 1, ValueError, id="just-too-big"),
    pytest.param(64.0, TypeError, id="float"),
    pytest.param(True, TypeError, id="bool"),
    pytest.param("64", TypeError, id="str"),
    pytest.param(None, TypeError, id="none"),
]


@pytest.mark.parametrize("nbits, exc", BAD_NBITS)
def test_constructor_rejects_bad_nbits(backend, nbits, exc):
    with pytest.raises(exc, match=r"^nbits: expected"):
        hs.FlatIndex(nbits, backend=backend)


@pytest.mark.parametrize("nbits, exc", BAD_NBITS)
def test_codes_functions_reject_bad_nbits(nbits, exc):
    codes = np.zeros((1, 1), dtype=np.uint64)
    u8 = np.zeros((1, 1), dtype=np.uint8)
    for call in (
        lambda: hs.unpack(codes, nbits),
        lambda: hs.to_bytes(codes, nbits),
        lambda: hs.from_bytes(u8, nbits),
    ):
        with pytest.raises(exc, match=r"^nbits: expected"):
            call()


@pytest.mark.parametrize(
    "backend_arg, exc",
    [
        pytest.param("gpu", ValueError, id="unknown"),
        pytest.param("", ValueError, id="empty"),
        pytest.param("native ", ValueError, id="trailing-space"),
        pytest.param(1, TypeError, id="int"),
        pytest.param(["native"], TypeError, id="list"),
    ],
)
def test_constructor_rejects_bad_backend(backend_arg, exc):
    with pytest.raises(exc, match=r"^backend: expected"):
        hs.FlatIndex(64, backend=backend_arg)


def test_largest_nbits_is_accepted(backend):
    nbits = 1 << 20
    idx = hs.FlatIndex(nbits, backend=backend)
    assert idx.words == nbits // 64
    codes = np.zeros((2, nbits // 64), dtype=np.uint64)
    codes[1, -1] = 2**63
    idx.add(codes)
    D, I = idx.query(codes[:1], 2)
    assert D.tolist() == [[0, 1]] and I.tolist() == [[0, 1]]


# --- defects found by the adversarial review (issue 17) -------------------------


def _misaligned_int64(values) -> np.ndarray:
    """A C-contiguous int64 array whose data starts one byte past an 8-byte boundary."""
    values = np.asarray(values, dtype=np.int64)
    raw = np.zeros(values.nbytes + 1, dtype=np.uint8)
    arr = raw[1:].view(np.int64)
    arr[:] = values
    assert not arr.flags.aligned and arr.flags.c_contiguous
    return arr


def test_remove_accepts_misaligned_ids(backend):
    idx = hs.FlatIndex(NBITS, backend=backend)
    idx.add(_good(5))
    assert idx.remove(_misaligned_int64([1, 3, 7])) == 2
    _, ids = idx.query(_good(5)[:1], 5)
    assert sorted(int(i) for i in ids[0] if i >= 0) == [0, 2, 4]


def test_add_accepts_misaligned_ids(backend):
    idx = hs.FlatIndex(NBITS, backend=backend)
    assert idx.add(_good(3), _misaligned_int64([5, 9, 2])).tolist() == [5, 9, 2]
    assert len(idx) == 3


def test_meta_tensor_is_a_type_error():
    torch = pytest.importorskip("torch")
    meta = torch.zeros((2, 1), dtype=torch.int64, device="meta")
    idx = hs.FlatIndex(NBITS)
    with pytest.raises(TypeError, match=r"codes: .*meta"):
        idx.add(meta)
    with pytest.raises(TypeError, match=r"ids: .*meta"):
        idx.remove(meta[:, 0])


def test_largest_id_then_default_ids_are_refused_cleanly(backend):
    # An index may hold id 2**63 - 1; then no default id is left, and add
    # without ids says so (a ValueError) instead of overflowing.
    idx = hs.FlatIndex(NBITS, backend=backend)
    top = 2**63 - 1
    assert idx.add(_good(1), [top]).tolist() == [top]
    with pytest.raises(ValueError, match=r"ids: no default ids left"):
        idx.add(_good(1))
    assert idx.add(_good(0)).tolist() == []  # nothing to number: fine
    assert idx.add(_good(1), [7]).tolist() == [7]  # explicit ids still work
    assert len(idx) == 2


def test_default_ids_refused_when_they_would_pass_the_limit(backend):
    idx = hs.FlatIndex(NBITS, backend=backend)
    idx.add(_good(1), [2**63 - 3])
    assert idx.add(_good(2)).tolist() == [2**63 - 2, 2**63 - 1]
    with pytest.raises(ValueError, match=r"ids: no default ids left"):
        idx.add(_good(1))
