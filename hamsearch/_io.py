"""Index files: ``idx.save(path)`` and :func:`load` (the layout is in ``docs/format.md``).

A file is a 128-byte header, the ids and the codes, little-endian, the codes
64-byte aligned so that they can be searched in place through a memory map.
CRC-32 checksums (zlib's) cover the header and the data. Nothing in a file is
ever executed: loading parses numbers and checks them before it allocates
anything sized by them.
"""
from __future__ import annotations

import mmap as _mmap
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np

from ._files import write_all, write_atomic
from ._limits import FORMAT_VERSION, MAX_NBITS
from ._validate import pad_mask, words

__all__ = ["load"]

MAGIC = b"\x89HSINDEX"  # 8 bytes; the high first byte catches 7-bit and text-mode mangling
HEADER_SIZE = 128
KIND_FLAT = 1
KIND_MIH = 2
KINDS = {KIND_FLAT: "flat", KIND_MIH: "mih"}

# magic, version, header size, kind, flags, nbits, words, count, next id, MIH m,
# ids offset, codes offset, end, data CRC-32; zeros to byte 124; header CRC-32.
_FIELDS = struct.Struct("<8sIIIIQQQQQQQQI")
_HEADER_CRC_AT = HEADER_SIZE - 4
_CHUNK = 64 << 20  # bytes checksummed at a time

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Header:
    kind: int
    nbits: int
    count: int
    next_id: int
    m: int  # MIH substrings asked for (0: automatic); 0 for a flat index
    ids_offset: int
    codes_offset: int
    end: int
    data_crc: int

    @property
    def words(self) -> int:
        return words(self.nbits)


def layout(count: int, nbits: int) -> tuple:
    """(ids offset, codes offset, end) of a file holding ``count`` codes."""
    ids_offset = HEADER_SIZE
    codes_offset = -(-(ids_offset + 8 * count) // 64) * 64
    return ids_offset, codes_offset, codes_offset + 8 * count * words(nbits)


def pack_header(h: Header) -> bytes:
    body = _FIELDS.pack(MAGIC, FORMAT_VERSION, HEADER_SIZE, h.kind, 0, h.nbits, h.words, h.count, h.next_id,
                        h.m, h.ids_offset, h.codes_offset, h.end, h.data_crc)
    body = body + bytes(_HEADER_CRC_AT - len(body))
    return body + struct.pack("<I", zlib.crc32(body))


def _bad(path: str, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def parse_header(raw: bytes, file_size: int, path: str) -> Header:
    """The header of a file of ``file_size`` bytes whose first bytes are
    ``raw``, checked field by field; ValueError says what is wrong."""
    if len(raw) < HEADER_SIZE:
        if raw[: len(MAGIC)] != MAGIC[: len(raw)]:
            raise _bad(path, f"not a hamsearch index file (expected the magic bytes {MAGIC!r})")
        raise _bad(path, f"truncated: expected a {HEADER_SIZE}-byte header, got a {file_size}-byte file")
    (magic, version, header_size, kind, flags, nbits, nwords, count, next_id, m, ids_offset, codes_offset, end,
     data_crc) = _FIELDS.unpack_from(raw)
    if magic != MAGIC:
        raise _bad(path, f"not a hamsearch index file (expected the magic bytes {MAGIC!r}, got {magic!r})")
    if version > FORMAT_VERSION:
        raise _bad(path, f"format version {version} is newer than this hamsearch reads ({FORMAT_VERSION}); "
                         "upgrade hamsearch to load it")
    if version < 1:
        raise _bad(path, f"expected format version 1 to {FORMAT_VERSION}, got {version}")
    if header_size != HEADER_SIZE:
        raise _bad(path, f"expected a header of {HEADER_SIZE} bytes for format version {version}, got {header_size}")
    (stored_crc,) = struct.unpack_from("<I", raw, _HEADER_CRC_AT)
    if zlib.crc32(raw[:_HEADER_CRC_AT]) != stored_crc:
        raise _bad(path, "header checksum mismatch: the header is corrupt")
    if kind not in KINDS:
        raise _bad(path, f"expected index kind {sorted(KINDS)} ({', '.join(KINDS.values())}), got {kind}")
    if flags != 0:
        raise _bad(path, f"expected flags 0 in format version {version}, got {flags:#x}")
    if not 1 <= nbits <= MAX_NBITS:
        raise _bad(path, f"expected 1 <= nbits <= {MAX_NBITS}, got {nbits}")
    if nwords != words(nbits):
        raise _bad(path, f"expected {words(nbits)} words per code for nbits={nbits}, got {nwords}")
    if kind == KIND_FLAT and m != 0:
        raise _bad(path, f"expected m = 0 for a flat index, got {m}")
    if kind == KIND_MIH and m != 0 and not words(nbits) <= m <= nbits:
        raise _bad(path, f"expected m = 0 or {words(nbits)} <= m <= {nbits} for an MIH index, got {m}")
    if next_id >= 2**63:
        raise _bad(path, f"expected a next id below 2**63, got {next_id}")
    # The count decides every size: check it against the file before
    # anything is allocated, so a forged count cannot ask for memory.
    if count > file_size // 8:
        raise _bad(path, f"count {count} does not fit a {file_size}-byte file")
    want = layout(count, nbits)
    if (ids_offset, codes_offset, end) != want:
        raise _bad(path, f"expected ids, codes and end at {want} for {count} codes of {nbits} bits, "
                         f"got {(ids_offset, codes_offset, end)}")
    if file_size < end:
        raise _bad(path, f"truncated: expected {end} bytes for {count} codes of {nbits} bits, got {file_size}")
    if file_size > end:
        raise _bad(path, f"expected {end} bytes for {count} codes of {nbits} bits, got {file_size} "
                         f"({file_size - end} bytes of trailing data)")
    return Header(kind, nbits, count, next_id, m, ids_offset, codes_offset, end, data_crc)


def _crc_of(buf: Any, start: int, stop: int) -> int:
    crc = 0
    view = memoryview(buf)
    for a in range(start, stop, _CHUNK):
        crc = zlib.crc32(view[a : min(stop, a + _CHUNK)], crc)
    view.release()
    return crc


def _check_contents(path: str, h: Header, ids: np.ndarray, codes: np.ndarray) -> None:
    """Ids non-negative, unique and below the next id; pad bits zero."""
    if h.count == 0:
        return
    if int(ids.min()) < 0:
        raise _bad(path, f"expected non-negative ids, got {int(ids.min())}")
    if not bool(np.all(ids[1:] > ids[:-1])):
        s = np.sort(ids)
        dup = s[1:][s[1:] == s[:-1]]
        if dup.size:
            raise _bad(path, f"expected unique ids, got {int(dup[0])} more than once")
    if int(ids.max()) >= h.next_id:
        raise _bad(path, f"expected ids below the next id {h.next_id}, got {int(ids.max())}")
    mask = pad_mask(h.nbits)
    if mask != (1 << 64) - 1:
        bad = np.flatnonzero(codes[:, -1] & np.uint64(~mask & ((1 << 64) - 1)))
        if bad.size:
            raise _bad(path, f"expected the pad bits above nbits={h.nbits} to be zero, got set pad bits "
                             f"in row {int(bad[0])}")


def _verify(mm: Any, h: Header, path: str) -> Optional[str]:
    """What is wrong with the data of a mapped file, or None. Returns a
    message rather than raising, so that no traceback keeps views of the map
    alive past this call (the map could not be closed)."""
    if _crc_of(mm, h.ids_offset, h.end) != h.data_crc:
        return f"{path}: data checksum mismatch: the ids or codes are corrupt"
    ids = np.frombuffer(mm, dtype="<i8", count=h.count, offset=h.ids_offset)
    codes = np.frombuffer(mm, dtype="<u8", count=h.count * h.words, offset=h.codes_offset).reshape(h.count, h.words)
    try:
        _check_contents(path, h, ids, codes)
    except ValueError as exc:
        return str(exc)
    finally:
        del ids, codes
    return None


def save(index: Any, path: PathLike) -> None:
    """Writes ``index`` to ``path`` atomically (``_files.write_atomic``)."""
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path: expected a str or os.PathLike of str, got {type(path).__name__}")
    kind = KIND_MIH if index._kind == "mih" else KIND_FLAT

    def write(fd: int) -> None:
        with index._add_lock:  # one snapshot: no add or remove between the data and the header
            next_id = index._next_id
            if hasattr(index._store, "save_payload"):
                try:
                    count, ids_offset, codes_offset, end = index._store.save_payload(fd, HEADER_SIZE)
                except RuntimeError as exc:  # the native core's write error, with errno's text
                    raise OSError(f"{path}: {exc}") from exc
            else:
                ids = index._store.ids()
                codes = index._store.codes()
                count = ids.shape[0]
                ids_offset, codes_offset, end = layout(count, index.nbits)
                write_all(fd, ids.astype("<i8", copy=False), ids_offset)
                write_all(fd, bytes(codes_offset - ids_offset - 8 * count), ids_offset + 8 * count)
                write_all(fd, codes.astype("<u8", copy=False), codes_offset)
        if (ids_offset, codes_offset, end) != layout(count, index.nbits):  # pragma: no cover - internal check
            raise RuntimeError("save: the payload layout differs from the format's")
        os.ftruncate(fd, end)
        if end > HEADER_SIZE:
            with _mmap.mmap(fd, end, access=_mmap.ACCESS_READ) as mm:
                data_crc = _crc_of(mm, ids_offset, end)
        else:
            data_crc = zlib.crc32(b"")
        header = Header(kind, index.nbits, count, next_id, int(getattr(index, "_m", None) or 0), ids_offset,
                        codes_offset, end, data_crc)
        write_all(fd, pack_header(header), 0)

    write_atomic(path, write)


def load(path: PathLike, mmap: bool = False, *, backend: Optional[str] = "auto",
         threads: Optional[int] = None, verify: bool = True) -> Any:
    """Reads an index written by ``idx.save(path)``.

    Parameters
    ----------
    path : str or os.PathLike
    mmap : bool, optional
        False (default) reads the codes into memory. True maps the file
        read-only and searches it in place without copying (native core; the
        Numba backend lays codes out in its own blocks, so it copies either
        way). Adding to or removing from a mapped index copies it into memory
        first. Do not truncate or rewrite a file while it is mapped (``save``
        replaces files by renaming, which is safe).
    backend : {"auto", "native", "numba"}, optional
        As for the index constructors.
    threads : int or None, optional
        Default worker threads of the loaded index.
    verify : bool, optional
        True (default) checks the data checksum and the contents (unique
        non-negative ids, zero pad bits), reading the whole file once. False
        checks only the header, for instant loads of trusted files.

    Returns
    -------
    FlatIndex or MIHIndex
        The index as saved: the same codes, ids, order and next default id
        (and, for MIH, the ``m`` asked for; its tables are rebuilt on the
        first search, about 0.1 to 0.3 s per million codes).

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        As ``open`` raises them.
    ValueError
        The file is not a valid index: wrong magic, a newer format version,
        a checksum mismatch, inconsistent sizes, truncation, bad contents.
    """
    from .flat import FlatIndex
    from .mih import MIHIndex

    if not isinstance(mmap, bool):
        raise TypeError(f"mmap: expected a bool, got {type(mmap).__name__}")
    if not isinstance(verify, bool):
        raise TypeError(f"verify: expected a bool, got {type(verify).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path: expected a str or os.PathLike of str, got {type(path).__name__}")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        raw = fh.read(HEADER_SIZE)
        h = parse_header(raw, size, path)
        if h.kind == KIND_MIH:
            index: Any = MIHIndex(h.nbits, m=h.m or None, backend=backend, threads=threads)
        else:
            index = FlatIndex(h.nbits, backend=backend, threads=threads)
        if verify and h.count == 0 and h.data_crc != zlib.crc32(b""):  # no data: its CRC is that of nothing
            raise _bad(path, "data checksum mismatch: the ids or codes are corrupt")
        if h.count:
            with _mmap.mmap(fh.fileno(), 0, access=_mmap.ACCESS_READ) as mm:
                problem = _verify(mm, h, path) if verify else None
                if problem is not None:
                    raise ValueError(problem)
                if hasattr(index._store, "map_file"):
                    try:
                        index._store.map_file(path, h.ids_offset, h.codes_offset, h.count, not mmap)
                    except RuntimeError as exc:  # the file changed or cannot be mapped
                        raise OSError(str(exc)) from exc
                else:
                    ids = np.frombuffer(mm, dtype="<i8", count=h.count, offset=h.ids_offset)
                    codes = np.frombuffer(mm, dtype="<u8", count=h.count * h.words,
                                          offset=h.codes_offset).reshape(h.count, h.words)
                    try:
                        # views of the map (native-endian on little-endian machines): add copies them in
                        index._store.add(codes.astype(np.uint64, copy=False), ids.astype(np.int64, copy=False))
                    finally:
                        del ids, codes
    index._next_id = h.next_id
    return index
