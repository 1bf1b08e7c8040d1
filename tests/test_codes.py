"""pack / unpack / from_bytes / to_bytes against hand-worked layouts and np.packbits."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hamsearch as hs
from oracle import bits_from_codes, codes_from_bits, random_bits

NBITS = [1, 2, 7, 8, 9, 63, 64, 65, 100, 127, 128, 129, 200, 256, 257, 512]


def _words(nbits: int) -> int:
    return (nbits + 63) // 64


def _one_hot(nbits: int, i: int) -> np.ndarray:
    bits = np.zeros((1, nbits), dtype=np.bool_)
    bits[0, i] = True
    return bits


# --- the layout, worked by hand -------------------------------------------------


@pytest.mark.parametrize(
    "nbits, bit, expected",
    [
        (1, 0, [1]),
        (8, 0, [1]),
        (8, 7, [128]),
        (64, 0, [1]),
        (64, 1, [2]),
        (64, 8, [256]),
        (64, 63, [2**63]),
        (65, 64, [0, 1]),
        (66, 65, [0, 2]),
        (128, 127, [0, 2**63]),
        (200, 130, [0, 0, 4, 0]),
        (200, 199, [0, 0, 0, 2**7]),
    ],
)
def test_pack_single_bit_layout(nbits, bit, expected):
    codes = hs.pack(_one_hot(nbits, bit))
    assert codes.dtype == np.uint64
    assert codes.shape == (1, _words(nbits))
    assert codes.flags.c_contiguous
    assert codes[0].tolist() == expected


def test_pack_hand_worked_rows():
    bits = np.zeros((3, 70), dtype=np.bool_)
    bits[0, [0, 1, 2, 3]] = True  # 0b1111 in word 0
    bits[1, [5, 64, 69]] = True  # 32 in word 0; 1 + 32 in word 1
    bits[2, :] = True  # all ones: word 0 full, word 1 has 6 bits
    codes = hs.pack(bits)
    assert codes.tolist() == [[15, 0], [32, 33], [2**64 - 1, 63]]


def test_pack_empty_batch():
    codes = hs.pack(np.zeros((0, 130), dtype=np.bool_))
    assert codes.dtype == np.uint64
    assert codes.shape == (0, 3)
    codes = hs.pack(np.zeros((0, 10), dtype=np.float32))
    assert codes.shape == (0, 1)


# --- pack from every accepted input kind ---------------------------------------


@pytest.mark.parametrize("nbits", NBITS)
def test_pack_bool_matches_packbits(nbits, rng):
    bits = random_bits(rng, 17, nbits)
    codes = hs.pack(bits.astype(np.bool_))
    assert codes.dtype == np.uint64 and codes.shape == (17, _words(nbits))
    np.testing.assert_array_equal(codes, codes_from_bits(bits))
    # Pad bits above nbits are zero.
    np.testing.assert_array_equal(bits_from_codes(codes, _words(nbits) * 64)[:, nbits:], 0)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64])
def test_pack_zero_one_integers(dtype, rng):
    bits = random_bits(rng, 11, 77)
    np.testing.assert_array_equal(hs.pack(bits.astype(dtype)), codes_from_bits(bits))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_pack_plus_minus_one_integers(dtype, rng):
    bits = random_bits(rng, 11, 130)
    pm = (2 * bits.astype(np.int64) - 1).astype(dtype)
    np.testing.assert_array_equal(hs.pack(pm), codes_from_bits(bits))


def test_pack_all_minus_one_and_all_plus_one():
    assert hs.pack(-np.ones((2, 64), dtype=np.int32)).tolist() == [[0], [0]]
    assert hs.pack(np.ones((2, 64), dtype=np.int32)).tolist() == [[2**64 - 1], [2**64 - 1]]
    # All zeros as integers are {0, 1} bits: zero.
    assert hs.pack(np.zeros((1, 64), dtype=np.int64)).tolist() == [[0]]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_pack_floats_sign(dtype, rng):
    x = rng.standard_normal((9, 150)).astype(dtype)
    x[0, :5] = 0.0
    x[1, :5] = -0.0
    expected = codes_from_bits((x >= 0).astype(np.uint8))
    codes = hs.pack(x)
    np.testing.assert_array_equal(codes, expected)
    # Exact zeros (either sign) are bit 1.
    assert int(codes[0, 0]) & 0b11111 == 0b11111
    assert int(codes[1, 0]) & 0b11111 == 0b11111


def test_pack_float_tiny_values():
    x = np.array([[1e-30, -1e-30, 0.0, -np.finfo(np.float64).tiny, 5.0, -5.0]])
    assert hs.pack(x).tolist() == [[0b010101]]


def test_pack_float_zero_one_warns_and_maps_by_sign():
    x = np.array([[0.0, 1.0, 0.0, 1.0]], dtype=np.float32)
    with pytest.warns(UserWarning, match="0.0") as record:
        codes = hs.pack(x)
    assert len(record) == 1
    # x >= 0 everywhere: every bit is 1, including the zeros.
    assert codes.tolist() == [[0b1111]]


def test_pack_float_with_negatives_does_not_warn():
    x = np.array([[0.0, 1.0, -1.0, 0.5]], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hs.pack(x).tolist() == [[0b1011]]


class FakeArray:
    """The minimal array protocol: what a foreign array library offers."""

    def __init__(self, a):
        self._a = np.asarray(a)

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class FakeTensor:
    """Mimics a torch tensor: numpy conversion fails while attached to autograd
    or on another device, so the facade must detach() and cpu() first."""

    def __init__(self, a, requires_grad=True, device="cuda"):
        self._a = np.asarray(a)
        self.requires_grad = requires_grad
        self.device = device
        self.calls = []

    def detach(self):
        self.calls.append("detach")
        return FakeTensor(self._a, requires_grad=False, device=self.device)

    def cpu(self):
        self.calls.append("cpu")
        return FakeTensor(self._a, requires_grad=self.requires_grad, device="cpu")

    def numpy(self):
        if self.requires_grad or self.device != "cpu":
            raise RuntimeError("Can't call numpy() on a tensor that requires grad or is not on the CPU")
        return self._a

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)


def test_pack_array_protocol_object(rng):
    bits = random_bits(rng, 5, 100)
    np.testing.assert_array_equal(hs.pack(FakeArray(bits.astype(np.bool_))), codes_from_bits(bits))
    x = rng.standard_normal((5, 100))
    np.testing.assert_array_equal(hs.pack(FakeArray(x)), codes_from_bits((x >= 0).astype(np.uint8)))


def test_pack_torch_like_tensor_with_grad(rng):
    x = rng.standard_normal((4, 70)).astype(np.float32)
    t = FakeTensor(x, requires_grad=True, device="cuda")
    np.testing.assert_array_equal(hs.pack(t), codes_from_bits((x >= 0).astype(np.uint8)))


def test_pack_real_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((6, 96)).astype(np.float32)
    expected = codes_from_bits((x >= 0).astype(np.uint8))
    np.testing.assert_array_equal(hs.pack(torch.from_numpy(x)), expected)
    np.testing.assert_array_equal(hs.pack(torch.from_numpy(x).requires_grad_(True)), expected)
    np.testing.assert_array_equal(hs.pack(torch.from_numpy(x) >= 0), expected)
    np.testing.assert_array_equal(hs.pack(torch.sign(torch.from_numpy(x)).to(torch.int8)), expected)


def test_pack_does_not_modify_input(rng):
    x = rng.standard_normal((3, 65))
    before = x.copy()
    x.setflags(write=False)
    hs.pack(x)
    np.testing.assert_array_equal(x, before)


def test_pack_accepts_non_contiguous_input(rng):
    bits = random_bits(rng, 8, 128).astype(np.bool_)
    view = bits[::2, ::2]
    np.testing.assert_array_equal(hs.pack(view), codes_from_bits(np.ascontiguousarray(view)))
    np.testing.assert_array_equal(hs.pack(np.asfortranarray(bits)), codes_from_bits(bits))


# --- pack: bad inputs ----------------------------------------------------------


@pytest.mark.parametrize(
    "x, exc, fragment",
    [
        (np.zeros(8, dtype=np.bool_), ValueError, "2-D"),
        (np.zeros((2, 3, 4), dtype=np.bool_), ValueError, "2-D"),
        (np.zeros((2, 0), dtype=np.bool_), ValueError, "expected"),
        (np.array([[0.5, np.nan]]), ValueError, "finite"),
        (np.array([[0.5, np.inf]]), ValueError, "finite"),
        (np.array([[-np.inf, 1.0]]), ValueError, "finite"),
        (np.array([[-1, 0, 1]]), ValueError, "ambiguous"),
        (np.array([[0, 1, 2]]), ValueError, "expected"),
        (np.array([[-2, 2]]), ValueError, "expected"),
        (np.array([[3, 3]], dtype=np.uint8), ValueError, "expected"),
        (np.array([["0", "1"]]), TypeError, "expected"),
        (np.array([[b"0", b"1"]]), TypeError, "expected"),
        (np.array([[0, 1]], dtype=object), TypeError, "expected"),
        (np.array([[1 + 0j, -1 + 0j]]), TypeError, "expected"),
        ("0101", TypeError, "expected"),
        (None, TypeError, "expected"),
    ],
    ids=[
        "1d", "3d", "zero-width", "nan", "inf", "minus-inf", "ints-minus-one-zero-one",
        "ints-two", "ints-plus-minus-two", "uint8-three", "strings", "bytes", "object",
        "complex", "python-str", "none",
    ],
)
def test_pack_rejects(x, exc, fragment):
    with pytest.raises(exc, match=fragment):
        hs.pack(x)


def test_pack_one_d_hint():
    with pytest.raises(ValueError, match=r"x\[None, :\]"):
        hs.pack(np.ones(64, dtype=np.bool_))


def test_pack_too_many_bits():
    with pytest.raises(ValueError, match="nbits"):
        hs.pack(np.zeros((1, (1 << 20) + 1), dtype=np.bool_))


# --- unpack --------------------------------------------------------------------


@pytest.mark.parametrize("nbits", NBITS)
def test_unpack_round_trip(nbits, rng):
    bits = random_bits(rng, 13, nbits)
    bits[0] = 0
    bits[1] = 1
    codes = codes_from_bits(bits)
    out = hs.unpack(codes, nbits)
    assert out.dtype == np.uint8 and out.shape == (13, nbits)
    np.testing.assert_array_equal(out, bits)
    np.testing.assert_array_equal(hs.unpack(hs.pack(bits.astype(np.bool_)), nbits), bits)
    np.testing.assert_array_equal(hs.pack(out), codes)


def test_unpack_hand_worked():
    codes = np.array([[1 | (1 << 63), 2]], dtype=np.uint64)
    out = hs.unpack(codes, 66)
    expected = np.zeros((1, 66), dtype=np.uint8)
    expected[0, [0, 63, 65]] = 1
    np.testing.assert_array_equal(out, expected)


def test_unpack_empty():
    out = hs.unpack(np.zeros((0, 2), dtype=np.uint64), 100)
    assert out.shape == (0, 100) and out.dtype == np.uint8


def test_unpack_rejects_pad_bits():
    with pytest.raises(ValueError, match="pad bits"):
        hs.unpack(np.array([[1 << 10]], dtype=np.uint64), 10)


def test_unpack_rejects_wrong_width():
    with pytest.raises(ValueError, match="expected"):
        hs.unpack(np.zeros((1, 2), dtype=np.uint64), 64)


@settings(max_examples=60)
@given(
    nbits=st.integers(1, 300),
    n=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["bool", "u8", "i64", "pm1", "float"]),
)
def test_pack_unpack_property(nbits, n, seed, kind):
    rng = np.random.default_rng(seed)
    bits = random_bits(rng, n, nbits)
    if kind == "bool":
        x = bits.astype(np.bool_)
    elif kind == "u8":
        x = bits
    elif kind == "i64":
        x = bits.astype(np.int64)
    elif kind == "pm1":
        x = 2 * bits.astype(np.int8) - 1
    else:
        # Strictly positive for bit 1, negative for bit 0: no {0, 1}-only warning.
        x = np.where(bits == 1, rng.random(bits.shape) + 0.5, -rng.random(bits.shape) - 0.5)
    codes = hs.pack(x)
    assert codes.dtype == np.uint64 and codes.shape == (n, _words(nbits))
    np.testing.assert_array_equal(codes, codes_from_bits(bits))
    np.testing.assert_array_equal(hs.unpack(codes, nbits), bits)


# --- from_bytes / to_bytes -------------------------------------------------------


@pytest.mark.parametrize("bitorder", ["little", "big"])
@pytest.mark.parametrize("nbits", NBITS)
def test_bytes_against_packbits(nbits, bitorder, rng):
    bits = random_bits(rng, 9, nbits)
    u8 = np.packbits(bits, axis=1, bitorder=bitorder)
    assert u8.shape == (9, (nbits + 7) // 8)
    codes = hs.from_bytes(u8, nbits, bitorder=bitorder)
    assert codes.dtype == np.uint64 and codes.shape == (9, _words(nbits))
    np.testing.assert_array_equal(codes, codes_from_bits(bits))
    back = hs.to_bytes(codes, nbits, bitorder=bitorder)
    assert back.dtype == np.uint8 and back.shape == u8.shape
    np.testing.assert_array_equal(back, u8)


def test_bytes_default_bitorder_is_little(rng):
    bits = random_bits(rng, 4, 24)
    u8 = np.packbits(bits, axis=1, bitorder="little")
    np.testing.assert_array_equal(hs.from_bytes(u8, 24), codes_from_bits(bits))
    np.testing.assert_array_equal(hs.to_bytes(codes_from_bits(bits), 24), u8)


@pytest.mark.parametrize(
    "byte, bitorder, expected",
    [
        (0x01, "little", 1),  # bit 0
        (0x80, "little", 128),  # bit 7
        (0x01, "big", 128),  # bit 7
        (0x80, "big", 1),  # bit 0
        (0x05, "little", 5),  # bits 0, 2
        (0x05, "big", 0xA0),  # bits 5, 7
    ],
)
def test_from_bytes_hand_worked(byte, bitorder, expected):
    codes = hs.from_bytes(np.array([[byte]], dtype=np.uint8), 8, bitorder=bitorder)
    assert codes.tolist() == [[expected]]
    assert hs.to_bytes(codes, 8, bitorder=bitorder).tolist() == [[byte]]


def test_from_bytes_multi_word_hand_worked():
    # Little bit order, 72 bits: byte 8 bit 1 is bit 65 -> word 1 value 2.
    u8 = np.zeros((1, 9), dtype=np.uint8)
    u8[0, 0] = 0x01
    u8[0, 8] = 0x02
    assert hs.from_bytes(u8, 72).tolist() == [[1, 2]]
    # Byte j of a little-ordered row is byte j of the little-endian words.
    u8 = np.arange(1, 17, dtype=np.uint8)[None, :]
    assert hs.from_bytes(u8, 128).tolist() == [[0x0807060504030201, 0x100F0E0D0C0B0A09]]


@pytest.mark.parametrize(
    "nbits, bitorder, last",
    [
        (5, "little", 0b00100000),  # bit 5 of a 5-bit code
        (5, "little", 0b10000000),
        (5, "big", 0b00000100),  # the low three positions hold bits 5..7 in big order
        (5, "big", 0b00000001),
        (12, "little", 0b00010000),
        (12, "big", 0b00001000),
        (1, "little", 0b00000010),
        (1, "big", 0b01000000),
    ],
)
def test_from_bytes_rejects_pad_bits(nbits, bitorder, last):
    nbytes = (nbits + 7) // 8
    u8 = np.zeros((3, nbytes), dtype=np.uint8)
    u8[2, -1] = last
    with pytest.raises(ValueError, match="expected") as info:
        hs.from_bytes(u8, nbits, bitorder=bitorder)
    assert "row 2" in str(info.value)


@pytest.mark.parametrize("bitorder", ["little", "big"])
def test_from_bytes_accepts_valid_last_byte(bitorder):
    # Every valid bit of a 5-bit code set: no pad bit.
    byte = 0b00011111 if bitorder == "little" else 0b11111000
    codes = hs.from_bytes(np.array([[byte]], dtype=np.uint8), 5, bitorder=bitorder)
    assert codes.tolist() == [[31]]


@pytest.mark.parametrize(
    "call, exc, fragment",
    [
        (lambda: hs.from_bytes(np.zeros((1, 1), dtype=np.uint64), 8), TypeError, "uint8"),
        (lambda: hs.from_bytes(np.zeros((1, 1), dtype=np.int8), 8), TypeError, "uint8"),
        (lambda: hs.from_bytes(np.zeros((1, 2), dtype=np.uint8), 8), ValueError, "expected shape"),
        (lambda: hs.from_bytes(np.zeros((1, 1), dtype=np.uint8), 9), ValueError, "expected shape"),
        (lambda: hs.from_bytes(np.zeros(2, dtype=np.uint8), 16), ValueError, "expected shape"),
        (lambda: hs.from_bytes(np.zeros((1, 1), dtype=np.uint8), 8, bitorder="middle"), ValueError, "bitorder"),
        (lambda: hs.from_bytes(np.zeros((1, 1), dtype=np.uint8), 0), ValueError, "nbits"),
        (lambda: hs.from_bytes(np.zeros((1, 1), dtype=np.uint8), 8.0), TypeError, "nbits"),
        (lambda: hs.to_bytes(np.zeros((1, 1), dtype=np.uint64), 8, bitorder="BIG"), ValueError, "bitorder"),
        (lambda: hs.to_bytes(np.array([[256]], dtype=np.uint64), 8), ValueError, "pad bits"),
        (lambda: hs.to_bytes(np.zeros((1, 1), dtype=np.uint8), 8), TypeError, "from_bytes"),
        (lambda: hs.to_bytes(np.zeros((1, 1), dtype=np.uint64), -3), ValueError, "nbits"),
    ],
    ids=[
        "uint64-in", "int8-in", "too-wide", "too-narrow", "1d", "bad-bitorder", "nbits-0",
        "nbits-float", "to-bad-bitorder", "to-pad-bits", "to-uint8", "to-nbits-negative",
    ],
)
def test_bytes_rejects(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()


def test_bytes_do_not_modify_inputs(rng):
    bits = random_bits(rng, 5, 40)
    u8 = np.packbits(bits, axis=1, bitorder="big")
    u8_before = u8.copy()
    u8.setflags(write=False)
    codes = hs.from_bytes(u8, 40, bitorder="big")
    np.testing.assert_array_equal(u8, u8_before)
    codes_before = codes.copy()
    codes.setflags(write=False)
    hs.to_bytes(codes, 40, bitorder="little")
    hs.unpack(codes, 40)
    np.testing.assert_array_equal(codes, codes_before)
