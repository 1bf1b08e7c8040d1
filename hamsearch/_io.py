"""Index files: ``idx.save(path)`` and the reading half of :func:`hamsearch.load`.

The format (``docs/format.md``) lives in the native core (``hamsearch/include/hamsearch/format.h``):
the header, the checksums, the checks, the atomic write and the memory map.
This module checks arguments and hands the work over to the store's
persistence part of the store contract (``hamsearch._store``: ``save_file``
and ``load_file``). The native stores save and load themselves through the
core; the Numba stores, which keep codes in their own block layout, hand the
core copies of their ids and codes to save, and take the ids and codes the
core read to load. Without the native core, saving and loading raise
``RuntimeError``.
"""
from __future__ import annotations

import os
from typing import Any

from ._files import file_core, fspath

__all__ = ["open_index", "read_into", "save"]


def save(index: Any, path: Any) -> None:
    """Writes ``index`` (a FlatIndex or MIHIndex) to ``path`` atomically, as
    one snapshot: no ``add`` or ``remove`` runs between the data and the
    next id (the index's add lock is held); searches go on."""
    path = fspath(path)
    file_core("saving an index")  # a RuntimeError naming the build problem, before anything else
    name = os.fsencode(path)
    with index._add_lock:
        index._store.save_file(name, int(index._next_id))


def open_index(path: Any) -> Any:
    """The file at ``path`` opened and its header checked: a
    ``_core.IndexFile`` (a context manager) with ``kind``, ``nbits``,
    ``count``, ``next_id`` and ``m``. Never blocks: anything but a regular
    file is refused."""
    path = fspath(path)
    core = file_core("loading an index")
    return core.IndexFile(os.fsencode(path))


def read_into(index: Any, file: Any, mmap: bool, verify: bool) -> None:
    """Fills the new, empty ``index`` from the open ``file`` (from
    :func:`open_index`): the native store reads or maps that very
    descriptor; a Numba store takes the ids and codes the core read."""
    index._store.load_file(file, mmap, verify)
    index._next_id = int(file.next_id)
