"""Index files: ``idx.save(path)`` and the reading half of :func:`hamsearch.load`.

The format (``docs/format.md``) lives in the native core (``csrc/format.h``):
the header, the checksums, the checks, the atomic write and the memory map.
This module checks arguments and hands the work over. The native stores save
and load themselves through the core; the Numba stores, which keep codes in
their own block layout, hand the core copies of their ids and codes to save,
and take the ids and codes the core read to load. Without the native core,
saving and loading raise ``RuntimeError``.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._files import file_core, fspath

__all__ = ["open_index", "read_into", "save"]


def save(index: Any, path: Any) -> None:
    """Writes ``index`` (a FlatIndex or MIHIndex) to ``path`` atomically, as
    one snapshot: no ``add`` or ``remove`` runs between the data and the
    next id (the index's add lock is held); searches go on."""
    path = fspath(path)
    core = file_core("saving an index")
    name = os.fsencode(path)
    store = index._store
    with index._add_lock:
        next_id = int(index._next_id)
        if isinstance(store, (core.FlatIndex, core.MIHIndex)):
            core.save_index(store, name, next_id)
        else:
            kind = core.KIND_MIH if index._kind == "mih" else core.KIND_FLAT
            ids = np.ascontiguousarray(store.ids(), dtype=np.int64)
            codes = np.ascontiguousarray(store.codes(), dtype=np.uint64).reshape(ids.shape[0], index.words)
            core.save_arrays(name, kind, index.nbits, int(getattr(index, "_m", None) or 0), next_id, ids, codes)


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
    store = index._store
    if hasattr(store, "load_file"):
        store.load_file(file, mmap, verify)
    else:
        ids, codes = file.read(verify)
        if ids.shape[0]:
            store.add(codes, ids)
    index._next_id = int(file.next_id)
