"""The Ray actor that holds one shard, and how the driver creates it.

The actor builds its own :class:`~hamsearch.FlatIndex` or
:class:`~hamsearch.MIHIndex`, or loads its own file: no native object is
ever pickled. Ray restarts it by calling ``__init__`` again with the same
arguments, so a shard made from a file comes back from that file."""
from __future__ import annotations

import os
import uuid
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .._validate import first_clash
from .merge import route

__all__ = ["new_index", "spawn"]

Reply = Tuple[str, Optional[str], int, Any]


def new_index(kind: str, nbits: int, options: Dict[str, Any]) -> Any:
    from ..flat import FlatIndex
    from ..mih import MIHIndex

    if kind == "mih":
        return MIHIndex(nbits, m=options.get("m"), backend=options.get("backend", "auto"),
                        threads=options.get("threads"))
    return FlatIndex(nbits, backend=options.get("backend", "auto"), threads=options.get("threads"))


class _Shard:
    """One shard, living in its Ray actor. Every method answers
    ``(token, origin, size, payload)``: ``token`` is drawn anew by each
    ``__init__`` (so the driver sees a restart), ``origin`` is the file whose
    contents the shard held when the call began (None once changed since a
    load or save), ``size`` the number of codes after the call."""

    def __init__(self, kind: str, nbits: int, options: Dict[str, Any], shard: int, num_shards: int,
                 path: Optional[str] = None, mmap: bool = False, verify: bool = True) -> None:
        self._token = uuid.uuid4().hex
        self._kind, self._nbits, self._options = kind, nbits, dict(options)
        self._shard, self._num_shards = shard, num_shards
        self._mmap, self._verify = mmap, verify
        self._origin: Optional[str] = None
        self._error: Optional[str] = None
        self._index: Any = None
        if path is not None:
            # On a restart Ray calls __init__ again with these arguments, so
            # a shard made from a file comes back from that file. A failure
            # is reported through info() rather than raised: an actor whose
            # __init__ raises cannot be told to load another file.
            try:
                self._load(path)
            except Exception as exc:  # reported to the driver, which raises it
                self._error = f"{type(exc).__name__}: {exc}"
        if self._index is None:
            self._index = new_index(kind, nbits, self._options)

    def _reply(self, origin: Optional[str], payload: Any) -> Reply:
        return self._token, origin, len(self._index), payload

    def _load(self, path: str) -> None:
        from .._load import load as load_file

        index = load_file(path, self._mmap, backend=self._options.get("backend", "auto"),
                          threads=self._options.get("threads"), verify=self._verify)
        if index._kind != self._kind or index.nbits != self._nbits:
            raise ValueError(f"{path}: expected a {self._kind} index of {self._nbits} bits, "
                             f"got a {index._kind} index of {index.nbits} bits")
        if self._verify and self._num_shards > 1 and len(index):
            ids = index._store.ids()
            wrong = np.flatnonzero(route(ids, self._num_shards) != self._shard)
            if wrong.size:
                raise ValueError(f"{path}: expected the ids of shard {self._shard} of {self._num_shards}, "
                                 f"got id {int(ids[wrong[0]])}, which belongs to shard "
                                 f"{int(route(ids[wrong[:1]], self._num_shards)[0])}")
        self._index, self._origin, self._error = index, path, None

    def info(self, with_max_id: bool = False) -> Reply:
        from .. import _backend

        index = self._index
        max_id = -1
        if with_max_id and len(index):  # reads every id: only when a load verifies
            max_id = int(index._store.ids().max())
        return self._reply(self._origin, {
            "error": self._error,
            "pid": os.getpid(),
            "niceness": os.nice(0) if hasattr(os, "nice") else 0,  # Ray starts workers at 15 by default
            "node": _node_ip(),
            "backend": index.backend,
            "isa": _backend.isa() if index.backend == "native" else "numba",
            "threads": index.threads,
            "mapped": index.mapped,
            "max_id": max_id,
            "cpus": _assigned_cpus(),
        })

    def reload(self, path: str) -> Reply:
        self._load(path)
        # A new token: a reply computed before the reload must not pass for
        # one computed after it.
        self._token = uuid.uuid4().hex
        return self._reply(self._origin, None)

    def add(self, codes: np.ndarray, ids: np.ndarray) -> Reply:
        origin = self._origin
        self._index.add(codes, ids)  # read-only arrays from the object store are fine
        self._origin = None
        return self._reply(origin, None)

    def contains(self, ids: np.ndarray) -> Reply:
        """The first of ``ids`` already held, or -1."""
        held = self._index._store.ids() if len(self._index) else ids[:0]
        return self._reply(self._origin, first_clash(ids, held))

    def remove(self, ids: np.ndarray) -> Reply:
        origin = self._origin
        n = self._index.remove(ids)
        if n:
            self._origin = None
        return self._reply(origin, n)

    def query(self, q: np.ndarray, k: int, threads: Optional[int]) -> Reply:
        return self._reply(self._origin, self._index.query(q, k, threads=threads))

    def radius(self, q: np.ndarray, r: int, threads: Optional[int]) -> Reply:
        return self._reply(self._origin, self._index.radius(q, r, threads=threads))

    def rank(self, q: np.ndarray, threads: Optional[int], with_distances: bool) -> Reply:
        # With distances: the whole shard in (distance, id) order, for the merge.
        return self._reply(self._origin, self._index.rank(q, threads=threads, with_distances=with_distances))

    def save(self, path: str) -> Reply:
        origin = self._origin
        self._index.save(path)
        self._origin = path
        return self._reply(origin, None)


def _node_ip() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:  # informational only
        return ""


def _assigned_cpus() -> Optional[float]:
    """The CPUs Ray reserved for this actor, as Ray sees them."""
    try:
        import ray

        return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0))
    except Exception:  # informational only
        return None


_actor_classes: Dict[int, Any] = {}


def _actor_class(ray: Any) -> Any:
    cls = _actor_classes.get(id(ray))
    if cls is None:
        cls = _actor_classes[id(ray)] = ray.remote(_Shard)
    return cls


def spawn(ray: Any, *, kind: str, nbits: int, options: Dict[str, Any], shard: int, num_shards: int,
          path: Optional[str], mmap: bool, verify: bool, num_cpus: float, max_restarts: int) -> Any:
    """A new actor for ``shard``, built from ``path`` when given (and rebuilt
    from it by Ray on each of up to ``max_restarts`` restarts)."""
    return _actor_class(ray).options(
        num_cpus=num_cpus,
        max_restarts=max_restarts,
        max_task_retries=0,  # the driver decides what to resend after a restart
        scheduling_strategy="SPREAD",
    ).remote(kind, nbits, options, shard, num_shards, path, mmap, verify)
