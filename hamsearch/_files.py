"""Writing a file atomically: the one helper that index files, the sharded
index's manifest and the benchmark caches share."""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


MODE = 0o666 & ~_umask()  # the mode open() gives a new file


def write_atomic(path: str, write: Callable[[int], None]) -> None:
    """Writes ``path`` through ``write(fd)`` into a temporary file in the same
    directory, flushed to disk, given the usual mode, then renamed over
    ``path`` and the rename made durable: a crash or an error leaves either
    the old file or the new one, never a part of one, and no temporary file."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        write(fd)
        if hasattr(os, "fchmod"):  # mkstemp makes 0600
            os.fchmod(fd, MODE)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_directory(directory)


def write_all(fd: int, data: object, offset: int) -> None:
    """Writes every byte of ``data`` (a C-contiguous buffer) at ``offset``:
    ``os.pwrite`` may write less than asked (Linux stops at about 2 GiB a call)."""
    view = memoryview(data)  # type: ignore[arg-type]
    if view.nbytes == 0:
        return
    view = view.cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
    view.release()


def fsync_directory(directory: str) -> None:
    """Makes a rename in ``directory`` durable (POSIX); a no-op where
    directories cannot be opened."""
    if sys.platform.startswith("win"):  # pragma: no cover
        return
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(dfd)
