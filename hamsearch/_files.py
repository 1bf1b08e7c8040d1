"""Writing a file atomically: the one helper that index files, the sharded
index's manifest and the benchmark caches share. The work is done by the
native core (``hamsearch/include/hamsearch/format.h``), which index files go through too, so the
project has one atomic write."""
from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from . import _backend


def file_core(what: str) -> ModuleType:
    """The native core, which reads and writes files; a RuntimeError naming
    the build problem where it is not importable (``what`` says what needed it)."""
    if _backend._native is None:
        raise RuntimeError(
            f"hamsearch: {what} needs the native core hamsearch._core, which is not available "
            f"({_backend._native_error!r}); build it with `pip install .`"
        ) from _backend._native_error
    return _backend._native


def fspath(path: Any, name: str = "path") -> str:
    """``path`` as a str (a str or an os.PathLike of str); TypeError naming
    the argument (``name``) otherwise."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{name}: expected a str or os.PathLike of str, got {type(path).__name__}") from None
    if not isinstance(path, str):
        raise TypeError(f"{name}: expected a str or os.PathLike of str, got {type(path).__name__}")
    return path


def write_atomic(path: str, data: Any) -> None:
    """Writes the bytes of ``data`` (bytes or any C-contiguous buffer) to
    ``path``: into a temporary file in the same directory, flushed to disk,
    given the usual mode (``0666`` less the umask), then renamed over
    ``path`` and the rename made durable. A crash or an error leaves either
    the old file or the new one, never a part of one, and no temporary file.

    Raises
    ------
    TypeError
        ``data`` is not a C-contiguous buffer (a str, say).
    OSError
        As the operating system reports it (FileNotFoundError for a missing
        directory, IsADirectoryError where ``path`` is a directory, ...).
    RuntimeError
        The native core is not available.
    """
    path = fspath(path)
    view = memoryview(data)
    if not view.c_contiguous:
        raise TypeError("data: expected a C-contiguous buffer, got a strided view; pass bytes(data)")
    core = file_core("writing a file atomically")
    core.write_atomic(os.fsencode(path), view.cast("B") if view.ndim != 1 or view.format != "B" else view)
