"""The index file format of ``docs/format.md``, read and written independently
of the package (``struct``, ``zlib`` and numpy only): the test oracle for the
native core's reader and writer.

``write`` builds a file from its fields, with options to forge each part (the
checksums are recomputed unless told otherwise, so that a forged field gets
past them to the check behind); ``parse`` reads a file by the rules of the
specification and says which of them it breaks.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

MAGIC = b"\x89HSINDEX"
HEADER = 128
VERSION = 1
KIND_FLAT, KIND_MIH = 1, 2
MAX_NBITS = 1 << 20
NEXT_ID_LIMIT = 1 << 63  # a next id may equal it; ids stay below it
RESERVED = (92, 124)  # zero bytes
HEADER_CRC_AT = 124

FIELDS = {  # name: (offset, struct code)
    "magic": (0, "8s"), "version": (8, "<I"), "header_size": (12, "<I"), "kind": (16, "<I"),
    "flags": (20, "<I"), "nbits": (24, "<Q"), "words": (32, "<Q"), "count": (40, "<Q"),
    "next_id": (48, "<Q"), "m": (56, "<Q"), "ids_offset": (64, "<Q"), "codes_offset": (72, "<Q"),
    "end": (80, "<Q"), "data_crc": (88, "<I"),
}


def nwords(nbits: int) -> int:
    return (nbits + 63) // 64


def layout(count: int, nbits: int) -> tuple:
    """(ids offset, codes offset, end) of a file of ``count`` codes."""
    codes_offset = (HEADER + 8 * count + 63) // 64 * 64
    return HEADER, codes_offset, codes_offset + 8 * count * nwords(nbits)


def read_field(raw: bytes, name: str) -> int:
    at, code = FIELDS[name]
    return struct.unpack_from(code, raw, at)[0]


def write_field(raw: bytearray, name: str, value: int) -> None:
    at, code = FIELDS[name]
    struct.pack_into(code, raw, at, value % (1 << (8 * struct.calcsize(code))))


def fix_header_crc(raw: bytearray) -> None:
    struct.pack_into("<I", raw, HEADER_CRC_AT, zlib.crc32(bytes(raw[:HEADER_CRC_AT])))


def fix_data_crc(raw: bytearray) -> None:
    """Recomputes the data CRC (where the offsets allow) and the header CRC."""
    if len(raw) >= HEADER:
        start, end = read_field(raw, "ids_offset"), read_field(raw, "end")
        if start <= end <= len(raw):
            write_field(raw, "data_crc", zlib.crc32(bytes(raw[start:end])))
    fix_header_crc(raw)


def write(nbits: int, ids: np.ndarray, codes: np.ndarray, *, kind: int = KIND_FLAT, m: int = 0,
          next_id: Optional[int] = None, version: int = VERSION, flags: int = 0,
          reserved: bytes = b"", padding: Optional[bytes] = None) -> bytes:
    """A file holding ``ids`` (int64, (n,)) and ``codes`` (uint64, (n, words)).
    ``next_id`` defaults to one past the largest id; ``reserved`` overwrites
    the start of the reserved header bytes and ``padding`` the zero padding
    between the ids and the codes (both zeros by default). Both checksums are
    computed over what is written."""
    ids = np.asarray(ids, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.uint64).reshape(ids.size, nwords(nbits))
    n = ids.size
    ids_offset, codes_offset, end = layout(n, nbits)
    gap = bytearray(codes_offset - ids_offset - 8 * n)
    if padding is not None:
        assert len(padding) <= len(gap), "no room for that padding"
        gap[: len(padding)] = padding
    data = ids.astype("<i8").tobytes() + bytes(gap) + codes.astype("<u8").tobytes()
    if next_id is None:
        next_id = int(ids.max()) + 1 if n else 0
    head = bytearray(HEADER)
    struct.pack_into("<8sIIIIQQQQQQQQI", head, 0, MAGIC, version, HEADER, kind, flags, nbits, nwords(nbits), n,
                     next_id, m, ids_offset, codes_offset, end, zlib.crc32(data))
    assert len(reserved) <= RESERVED[1] - RESERVED[0]
    head[RESERVED[0] : RESERVED[0] + len(reserved)] = reserved
    fix_header_crc(head)
    return bytes(head) + data


class Invalid(Exception):
    """The file breaks the format; the message names the rule."""


@dataclass
class Parsed:
    kind: int
    nbits: int
    m: int
    next_id: int
    ids: np.ndarray  # int64 (n,)
    codes: np.ndarray  # uint64 (n, words)
    crc_ok: bool  # the data CRC matches
    contents_ok: bool  # ids non-negative, unique, below the next id; pad bits and padding zero

    @property
    def kind_name(self) -> str:
        return "mih" if self.kind == KIND_MIH else "flat"


def pad_bits_clear(codes: np.ndarray, nbits: int) -> bool:
    if nbits % 64 == 0 or codes.shape[0] == 0:
        return True
    mask = np.uint64(((1 << 64) - 1) ^ ((1 << (nbits % 64)) - 1))
    return not bool(np.any(codes[:, -1] & mask))


def parse(raw: bytes) -> Parsed:
    """The contents of a file whose header holds by the specification; raises
    Invalid otherwise. The data CRC and the contents are judged, not enforced
    (``crc_ok``, ``contents_ok``), as ``verify`` decides whether they count."""
    if len(raw) < HEADER or raw[:8] != MAGIC:
        raise Invalid("not a hamsearch index file" if raw[:8] != MAGIC[: len(raw[:8])] else "truncated")
    f = {name: read_field(raw, name) for name in FIELDS}
    if f["version"] != VERSION or f["header_size"] != HEADER:
        raise Invalid("version or header size")
    if zlib.crc32(raw[:HEADER_CRC_AT]) != read_u32(raw, HEADER_CRC_AT):
        raise Invalid("header checksum")
    nbits, count, kind, m = f["nbits"], f["count"], f["kind"], f["m"]
    if kind not in (KIND_FLAT, KIND_MIH) or f["flags"] != 0:
        raise Invalid("kind or flags")
    if not 1 <= nbits <= MAX_NBITS or f["words"] != nwords(nbits):
        raise Invalid("nbits or words")
    if (kind == KIND_FLAT and m != 0) or (kind == KIND_MIH and m != 0 and not nwords(nbits) <= m <= nbits):
        raise Invalid("m")
    if f["next_id"] > NEXT_ID_LIMIT:
        raise Invalid("next id")
    if raw[RESERVED[0] : RESERVED[1]] != bytes(RESERVED[1] - RESERVED[0]):
        raise Invalid("reserved bytes")
    want = layout(count, nbits)
    if (f["ids_offset"], f["codes_offset"], f["end"]) != want or len(raw) != want[2]:
        raise Invalid("offsets or size")
    ids_offset, codes_offset, end = want
    w = nwords(nbits)
    ids = np.frombuffer(raw, dtype="<i8", count=count, offset=ids_offset).astype(np.int64)
    codes = np.frombuffer(raw, dtype="<u8", count=count * w, offset=codes_offset).astype(np.uint64).reshape(count, w)
    contents_ok = (
        (count == 0 or (int(ids.min()) >= 0 and int(ids.max()) < f["next_id"]))
        and np.unique(ids).size == count
        and pad_bits_clear(codes, nbits)
        and raw[ids_offset + 8 * count : codes_offset] == bytes(codes_offset - ids_offset - 8 * count)
    )
    crc_ok = zlib.crc32(raw[ids_offset:end]) == f["data_crc"]
    return Parsed(kind, nbits, m, f["next_id"], ids, codes, crc_ok, bool(contents_ok))


def read_u32(raw: bytes, at: int) -> int:
    return struct.unpack_from("<I", raw, at)[0]
