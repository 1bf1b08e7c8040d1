"""``hamsearch.load``: an index file back as the index it was. Above the
index classes and the file layer, so that neither imports the other."""
from __future__ import annotations

from typing import Any, Optional

from . import _io
from .flat import FlatIndex
from .mih import MIHIndex

__all__ = ["load"]


def load(path: Any, mmap: bool = False, *, backend: Optional[str] = "auto",
         threads: Optional[int] = None, verify: bool = True) -> Any:
    """Reads an index written by ``idx.save(path)`` (``docs/format.md``).

    Parameters
    ----------
    path : str or os.PathLike
        A regular file; anything else (a FIFO, a device) is refused without
        blocking.
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
        True (default) checks the data checksum and the contents (zero
        padding, unique non-negative ids below the next id, zero pad bits),
        reading the whole file once. False checks only the header, for
        instant loads of trusted files.

    Returns
    -------
    FlatIndex or MIHIndex
        The index as saved: the same codes, ids, order and next default id
        (and, for MIH, the ``m`` asked for; its tables are rebuilt on the
        first search, about 0.1 to 0.3 s per million codes). The file is
        opened once and everything is read from (or mapped from) that
        descriptor, so a ``save`` to the same path meanwhile cannot mix two
        files.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        As ``open`` raises them.
    ValueError
        The file is not a valid index: not a regular file, wrong magic, a
        newer format version, a checksum mismatch, inconsistent sizes,
        truncation, nonzero reserved bytes, bad contents.
    RuntimeError
        The native core, which reads index files for both backends, is not
        available (the message says why it did not load).
    """
    if not isinstance(mmap, bool):
        raise TypeError(f"mmap: expected a bool, got {type(mmap).__name__}")
    if not isinstance(verify, bool):
        raise TypeError(f"verify: expected a bool, got {type(verify).__name__}")
    with _io.open_index(path) as file:
        if file.kind == 2:  # multi-index hashing (docs/format.md)
            index: Any = MIHIndex(file.nbits, m=file.m or None, backend=backend, threads=threads)
        else:
            index = FlatIndex(file.nbits, backend=backend, threads=threads)
        _io.read_into(index, file, mmap, verify)
    return index
