"""The driver's side: :class:`ShardedIndex` (the verbs every index shares,
their steps fanned out to the shards and merged) and :func:`load`."""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .._index import _IndexBase
from .._limits import DISTANCE_PAD, ID_PAD
from .._validate import check_nbits, check_threads
from .actor import spawn
from .calls import ShardCalls
from .faults import Deadline
from .checks import (
    check_cpus,
    check_kind,
    check_max_restarts,
    check_num_shards,
    check_options,
    check_timeout,
    fspath,
)
from .cluster import check_fits, connect, fitting_cpus, ray_module
from .manifest import (
    MANIFEST_NAME,
    has_files,
    make_manifest,
    new_shard_names,
    read_manifest,
    write_manifest,
)
from .merge import merge_radius, merge_rank, merge_topk, owned, partition, route

__all__ = ["DEFAULT_MAX_RESTARTS", "DEFAULT_TIMEOUT", "ShardedIndex", "load"]

logger = logging.getLogger("hamsearch.distributed")

DEFAULT_TIMEOUT = 600.0  # seconds any one gather may take before ShardError
DEFAULT_MAX_RESTARTS = 3


class ShardedIndex(ShardCalls, _IndexBase):
    """An exact Hamming index sharded over Ray actors.

    Parameters
    ----------
    nbits : int
        Bits per code, 1 to 2**20.
    num_shards : int
        Shards, one Ray actor each.
    kind : {"flat", "mih"}, optional
        The index each shard holds: :class:`~hamsearch.FlatIndex` (default) or
        :class:`~hamsearch.MIHIndex`.
    address : str, optional
        The Ray cluster to join (``"auto"``, ``"ray://host:10001"``, ...). By
        default: the Ray this process already runs, else ``RAY_ADDRESS``, else
        a cluster started on this machine with ``ray start``, else a local
        Ray started here with ``max(cores, num_shards * num_cpus_per_shard)``
        CPUs (``num_shards`` for None) (left running until the process exits
        or ``ray.shutdown()``).
    num_cpus_per_shard : float or None, optional
        Ray CPUs reserved by each shard actor (default 1; a fraction below 1
        lets more shards than cores share a machine). None fits the cluster:
        1 where it has a CPU for every shard, else an equal share of its CPUs
        (rounded down to Ray's 1/10000), as :func:`load` does by default. An
        explicit value that the cluster cannot grant every shard is a
        ``ValueError``. Each shard searches with
        ``max(1, int(num_cpus_per_shard))`` threads unless ``threads`` says
        otherwise.
    timeout : float or None, optional
        Seconds any one call may take (default 600), counted from its start
        and bounding all of it: the shards' answers, a shard's restart and
        the reload of its file, the call sent again after it, and the wait
        for another thread's ``add``, ``remove`` or ``save``. Past it the call
        raises :class:`ShardError` ("did not answer within the timeout").
        None waits without limit.
    max_restarts : int, optional
        Restarts Ray grants each shard actor (default 3; -1: no limit). A
        restarted shard comes back whole only if it has not changed since the
        index was last saved or loaded.
    **index_options
        The shard index's own options: ``backend`` and ``threads``, and
        ``m`` for ``kind="mih"``, as in :class:`~hamsearch.MIHIndex`.

    Notes
    -----
    The verbs (``add``, ``remove``, ``query``, ``radius``, ``rank``) are those
    of every index, with the same arguments, checks, results and errors as
    :class:`~hamsearch.FlatIndex`; ``threads`` is the threads each shard
    searches with (default: the shard's own). ``add`` sends each shard's part
    through the object store once (``ray.put``) and the shard adds it from
    there without another copy; a custom id that clashes with one held is
    found on its shard before any shard adds anything. A query batch goes
    through the object store once when several shards read it; with more than
    one non-empty shard, ``rank`` has each shard return its ranking with
    distances (12 bytes a result) for the merge.

    Ids: ``add`` gives consecutive default ids from one past the largest id
    ever added, as every index does; an id lives on shard
    ``splitmix64(id) % num_shards``, so removal goes to one shard only.
    Results equal those of one :class:`~hamsearch.FlatIndex` holding the same
    codes and ids: ``(distance, id)`` order, padding ``(2**31 - 1, -1)``, no
    cap on ``k``. ``save(directory)`` writes one file per shard in the index
    file format (``docs/format.md``) through the shard's own ``save``, and a
    JSON manifest; the directory must be reachable from the driver and every
    shard's node (a shared file system on a cluster).

    Thread safety: searches may run from several driver threads at once (each
    shard answers its calls one at a time); ``add``, ``remove`` and ``save``
    are serialised. The index is one driver's: two drivers must not change
    the same shards.
    """

    def __init__(self, nbits: int, num_shards: int, kind: str = "flat", *, address: Optional[str] = None,
                 num_cpus_per_shard: Optional[float] = 1, timeout: Optional[float] = DEFAULT_TIMEOUT,
                 max_restarts: int = DEFAULT_MAX_RESTARTS, **index_options: Any) -> None:
        nbits = check_nbits(nbits)
        num_shards = check_num_shards(num_shards)
        kind = check_kind(kind)
        options = check_options(kind, nbits, index_options)
        self._setup(nbits, num_shards, kind, options, address=address, num_cpus_per_shard=num_cpus_per_shard,
                    timeout=timeout, max_restarts=max_restarts, next_id=0, paths=None, mmap=False, verify=True)

    def _setup(self, nbits: int, num_shards: int, kind: str, options: Dict[str, Any], *, address: Optional[str],
               num_cpus_per_shard: Any, timeout: Any, max_restarts: Any, next_id: int,
               paths: Optional[List[str]], mmap: bool, verify: bool,
               sizes: Optional[List[int]] = None) -> None:
        self._actors: List[Any] = []  # close() works whatever fails below
        self._closed = False
        cpus = None if num_cpus_per_shard is None else check_cpus(num_cpus_per_shard)
        self._timeout = check_timeout(timeout)
        self._max_restarts = check_max_restarts(max_restarts)
        ray = self._ray = ray_module()
        self._nbits, self._num_shards, self._kind = nbits, num_shards, kind
        self._options = dict(options)
        self._mmap, self._verify = mmap, verify
        self._next_id = next_id
        self._lock = threading.RLock()  # add/remove/save, and recovery of a shard
        self._sizes = [0] * num_shards
        self._tokens: List[Optional[str]] = [None] * num_shards
        self._retired: List[set] = [set() for _ in range(num_shards)]  # tokens of past good incarnations
        self._saved: List[Optional[str]] = list(paths) if paths is not None else [None] * num_shards
        self._dirty = [False] * num_shards
        self._lost: List[Optional[str]] = [None] * num_shards
        self._restarts = 0
        connect(ray, address, num_shards * (1 if cpus is None else cpus))
        total = float(ray.cluster_resources().get("CPU", 0.0))
        if cpus is None:
            cpus = fitting_cpus(num_shards, total)
        check_fits(num_shards, cpus, total)
        self._cpus = cpus
        if self._options.get("threads") is None:
            self._options["threads"] = max(1, int(cpus))
        free = float(ray.available_resources().get("CPU", 0.0))
        if num_shards * cpus > free + 1e-9:
            logger.warning("hamsearch: %d shards of %g CPUs need %g CPUs and %g are free now; the shards "
                           "wait for CPUs (up to the timeout)", num_shards, cpus, num_shards * cpus, free)
        try:
            self._actors = [self._spawn(s, self._saved[s]) for s in range(num_shards)]
            infos = self._gather([(s, "info", (sizes is not None and verify,)) for s in range(num_shards)],
                                 first=True)
        except BaseException:
            self.close()
            raise
        backends = sorted({info["backend"] for info in infos})
        self._backend = backends[0] if len(backends) == 1 else "mixed"
        problems = [(s, info["error"]) for s, info in enumerate(infos) if info["error"]]
        if problems:
            self.close()
            s, message = problems[0]
            raise ValueError(f"shard {s} of {num_shards}: {message}")
        if sizes is not None:
            for s, info in enumerate(infos):
                if self._sizes[s] != sizes[s]:
                    self.close()
                    raise ValueError(f"{self._saved[s]}: expected {sizes[s]} codes (as the manifest says), "
                                     f"got {self._sizes[s]}")
                if verify and info["max_id"] >= next_id:
                    self.close()
                    raise ValueError(f"{self._saved[s]}: expected ids below the manifest's next id "
                                     f"{next_id}, got {info['max_id']}")

    def _spawn(self, s: int, path: Optional[str]) -> Any:
        return spawn(self._ray, kind=self._kind, nbits=self._nbits, options=self._options, shard=s,
                     num_shards=self._num_shards, path=path, mmap=self._mmap, verify=self._verify,
                     num_cpus=self._cpus, max_restarts=self._max_restarts)

    # -- properties (nbits and words: _IndexBase) ----------------------------
    @property
    def kind(self) -> str:
        """``"flat"`` or ``"mih"``: the index each shard holds."""
        return self._kind

    @property
    def num_shards(self) -> int:
        """Shards, one Ray actor each."""
        return self._num_shards

    @property
    def backend(self) -> str:
        """The shards' backend, ``"native"`` or ``"numba"`` (``"mixed"`` where
        nodes differ), as each shard resolved it when the index was made."""
        return self._backend

    @property
    def threads(self) -> int:
        """Threads each shard searches with by default."""
        return int(self._options["threads"])

    @property
    def shard_sizes(self) -> List[int]:
        """Codes held by each shard."""
        return list(self._sizes)

    @property
    def actors(self) -> List[Any]:
        """The shards' Ray actor handles, in shard order (for monitoring and
        fault drills: ``ray.kill(idx.actors[0], no_restart=False)``)."""
        return list(self._actors)

    @property
    def restarts(self) -> int:
        """Shard restarts this index has recovered from."""
        return self._restarts

    @property
    def timeout(self) -> Optional[float]:
        """Seconds one call may take, from its start to its answer, restarts
        and calls sent again included, before :class:`ShardError`; None: no
        limit. May be changed between calls."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: Optional[float]) -> None:
        self._timeout = check_timeout(value)

    def __len__(self) -> int:
        return int(sum(self._sizes))

    def __repr__(self) -> str:
        return (f"ShardedIndex(nbits={self._nbits}, num_shards={self._num_shards}, kind={self._kind!r}, "
                f"n={len(self)})")

    def shard_info(self) -> List[Dict[str, Any]]:
        """Per shard: ``size``, ``pid``, ``node``, ``niceness``, ``backend``,
        ``isa``, ``threads``, ``mapped``, ``cpus`` (the CPUs Ray reserved for
        its actor), ``saved`` (its file, or None) and ``changed`` (changed
        since that file was written)."""
        infos = self._gather([(s, "info", ()) for s in range(self._num_shards)])
        out = []
        for s, info in enumerate(infos):
            d = {k: v for k, v in info.items() if k not in ("error", "max_id")}
            d.update(shard=s, size=self._sizes[s], saved=self._saved[s], changed=self._dirty[s])
            out.append(d)
        return out

    def close(self) -> None:
        """Ends the shard actors (the Ray cluster stays up). Later calls raise."""
        self._closed = True
        ray = getattr(self, "_ray", None)
        for actor in getattr(self, "_actors", []):
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self._actors = []

    def __reduce__(self) -> Any:
        raise TypeError("ShardedIndex: expected to stay in the driver that made it (it holds actor handles "
                        "and a lock), got a request to pickle it; save it and load it elsewhere instead")

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


    # -- the verbs' steps (the verbs themselves: _IndexBase) ------------------
    def _call(self) -> Deadline:
        return Deadline(self._timeout)

    @contextmanager
    def _changing(self, deadline: Deadline) -> Iterator[None]:
        """The lock of add, remove and save, waited for within the call's
        deadline, and every shard usable."""
        with self._locked(deadline):
            self._usable(range(self._num_shards))
            yield

    def _per_shard(self, ids: np.ndarray, method: str) -> List[Tuple[int, str, tuple]]:
        """``method`` of each non-empty shard with its part of ``ids``."""
        S = self._num_shards
        order, bounds = partition(route(ids, S), S)
        calls = []
        for s in range(S):
            part = ids[order[bounds[s]:bounds[s + 1]]]
            if part.size and self._sizes[s]:
                calls.append((s, method, (part,)))
        return calls

    def _first_clash(self, ids: np.ndarray, deadline: Deadline) -> int:
        # Each id is looked for on its own shard, before any shard adds anything.
        clashes = [c for c in self._gather(self._per_shard(ids, "contains"), deadline=deadline) if c >= 0]
        return clashes[0] if clashes else -1

    def _append(self, codes: np.ndarray, ids: np.ndarray, deadline: Deadline) -> None:
        # Each shard's part goes through the object store once (ray.put) and
        # the shard adds it from there without another copy.
        S = self._num_shards
        order, bounds = partition(route(ids, S), S)
        ray = self._ray
        sorted_codes = codes[order] if S > 1 else codes
        sorted_ids = ids[order] if S > 1 else ids
        calls = []
        for s in range(S):
            a, b = int(bounds[s]), int(bounds[s + 1])
            if a < b:
                calls.append((s, "add", (ray.put(sorted_codes[a:b]), ray.put(sorted_ids[a:b]))))
        try:
            self._gather(calls, deadline=deadline)
        finally:
            for s, _, _ in calls:
                self._dirty[s] = True

    def _discard(self, ids: np.ndarray, deadline: Deadline) -> int:
        calls = self._per_shard(ids, "remove")
        removed = self._gather(calls, deadline=deadline)
        for (s, _, _), r in zip(calls, removed):
            if r:
                self._dirty[s] = True
        return int(sum(removed))

    def _search_threads(self, threads: Optional[int]) -> Optional[int]:
        # None: each shard's own default.
        return None if threads is None else check_threads(threads, 0)

    def _filled(self) -> List[int]:
        """The shards that hold codes, once every shard is known usable."""
        self._usable(range(self._num_shards))
        return [s for s, size in enumerate(self._sizes) if size]

    def _share(self, arr: np.ndarray, fanout: int) -> Any:
        """The query batch in the object store once, when several shards read it."""
        return self._ray.put(arr) if fanout > 1 else arr

    def _knn(self, q: np.ndarray, k: int, threads: Optional[int], deadline: Deadline) -> Tuple[np.ndarray, np.ndarray]:
        nq = q.shape[0]
        # Each shard is asked for no more than it holds: k = n + 5 moves no padding.
        asks = [(s, min(k, self._sizes[s])) for s in self._filled()]
        if not asks or nq == 0:
            return np.full((nq, k), DISTANCE_PAD, dtype=np.int32), np.full((nq, k), ID_PAD, dtype=np.int64)
        qref = self._share(q, len(asks))
        parts = self._gather([(s, "query", (qref, ks, threads)) for s, ks in asks], deadline=deadline)
        return merge_topk([p[0] for p in parts], [p[1] for p in parts], k, self._nbits, self._next_id)

    def _within(self, q: np.ndarray, r: int, threads: Optional[int],
                deadline: Deadline) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        shards = self._filled()
        nq = q.shape[0]
        if not shards or nq == 0:
            return np.zeros(nq + 1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        qref = self._share(q, len(shards))
        parts = self._gather([(s, "radius", (qref, r, threads)) for s in shards], deadline=deadline)
        return merge_radius(parts, nq, self._nbits, self._next_id)

    def _ranking(self, q: np.ndarray, threads: Optional[int], with_distances: bool,
                 deadline: Deadline) -> Tuple[Optional[np.ndarray], np.ndarray]:
        shards = self._filled()
        nq = q.shape[0]
        if not shards or nq == 0:
            I = np.zeros((nq, len(self)), dtype=np.int64)
            return (np.zeros(I.shape, dtype=np.int32) if with_distances else None), I
        qref = self._share(q, len(shards))
        if len(shards) == 1:
            (reply,) = self._gather([(shards[0], "rank", (qref, threads, with_distances))], deadline=deadline)
            if with_distances:
                return owned(reply[0], np.int32), owned(reply[1], np.int64)
            return None, owned(reply, np.int64)
        # The merge needs every shard's distances, asked for or not.
        parts = self._gather([(s, "rank", (qref, threads, True)) for s in shards], deadline=deadline)
        return merge_rank([p[0] for p in parts], [p[1] for p in parts], self._nbits, self._next_id)

    # -- persistence ------------------------------------------------------
    def save(self, directory: Any) -> None:
        """Write the index to ``directory``: one index file per shard, written
        by the shard itself (``docs/format.md``), and ``manifest.json``.

        The directory is created if missing; it must be empty or hold a
        saved ``ShardedIndex``, which is replaced. The shard files get new
        names and the manifest, written last and atomically (a temporary file
        renamed over it), is what names them, so a crash leaves the old index
        or the new one, never a mix; the old shard files are then removed.
        Load it back with :func:`hamsearch.distributed.load`. On a cluster
        the directory must be on a file system every node sees.
        """
        deadline = Deadline(self._timeout)
        directory = os.path.abspath(fspath(directory, "directory"))
        with self._changing(deadline):
            if os.path.exists(directory) and not os.path.isdir(directory):
                raise NotADirectoryError(f"{directory}: is not a directory")
            os.makedirs(directory, exist_ok=True)
            manifest_path = os.path.join(directory, MANIFEST_NAME)
            old_files: List[str] = []
            if os.path.exists(manifest_path):
                try:
                    old_files = [sh["file"] for sh in read_manifest(manifest_path)["shards"]]
                except (ValueError, OSError):  # a broken manifest: replace it, delete nothing
                    old_files = []
            elif has_files(directory):
                raise FileExistsError(f"{directory}: expected an empty directory or a saved ShardedIndex "
                                      f"(with {MANIFEST_NAME}), got a directory holding other files")
            names = new_shard_names(self._num_shards)
            paths = [os.path.join(directory, name) for name in names]
            try:
                self._gather([(s, "save", (paths[s],)) for s in range(self._num_shards)], deadline=deadline)
                manifest = make_manifest(nbits=self._nbits, kind=self._kind, next_id=self._next_id,
                                         m=self._options.get("m"), names=names, counts=self._sizes)
                write_manifest(manifest_path, manifest)
            except BaseException:
                for p in paths:
                    try:
                        os.unlink(p)
                    except OSError:
                        pass
                raise
            self._saved = paths
            self._dirty = [False] * self._num_shards
            for name in old_files:
                if name not in names:
                    try:
                        os.unlink(os.path.join(directory, name))
                    except OSError:  # already gone
                        pass


def load(directory: Any, *, address: Optional[str] = None, mmap: bool = False, verify: bool = True,
         backend: Optional[str] = "auto", threads: Optional[int] = None,
         num_cpus_per_shard: Optional[float] = None, timeout: Optional[float] = DEFAULT_TIMEOUT,
         max_restarts: int = DEFAULT_MAX_RESTARTS) -> ShardedIndex:
    """Reads a :class:`ShardedIndex` written by ``idx.save(directory)``.

    Each shard's actor loads its own file (``hamsearch.load`` with ``mmap``,
    ``verify``, ``backend`` and ``threads`` as given), and loads it again
    itself if Ray restarts it.

    Parameters
    ----------
    directory : str or os.PathLike
        Reachable from every shard's node (a shared file system on a cluster).
    address, timeout, max_restarts
        As for :class:`ShardedIndex`.
    num_cpus_per_shard : float or None, optional
        As for :class:`ShardedIndex`, but None by default: the saved shard
        count is fixed, so each shard takes 1 CPU where the cluster has one
        for every shard and an equal share of the cluster's CPUs where it has
        fewer CPUs than shards. An explicit value is used as given, and is a
        ``ValueError`` where the cluster cannot grant it to every shard.
    mmap, verify, backend, threads
        As for :func:`hamsearch.load`, applied to every shard.

    Returns
    -------
    ShardedIndex
        The same codes, ids, shards and next default id as saved.

    Raises
    ------
    FileNotFoundError
        No manifest, or a shard file it names is missing.
    ValueError
        A bad manifest, or a shard file that is not a valid index or does not
        match the manifest.
    """
    if not isinstance(mmap, bool):
        raise TypeError(f"mmap: expected a bool, got {type(mmap).__name__}")
    if not isinstance(verify, bool):
        raise TypeError(f"verify: expected a bool, got {type(verify).__name__}")
    directory = os.path.abspath(fspath(directory, "directory"))
    manifest_path = os.path.join(directory, MANIFEST_NAME)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such directory")
    if not os.path.exists(manifest_path):
        raise FileNotFoundError(f"{manifest_path}: no manifest; was the index saved with ShardedIndex.save?")
    m = read_manifest(manifest_path)
    paths = [os.path.join(directory, sh["file"]) for sh in m["shards"]]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p}: shard file named by {manifest_path} is missing")
    options = check_options(m["kind"], m["nbits"], dict(m["options"], backend=backend, threads=threads))
    index = ShardedIndex.__new__(ShardedIndex)
    index._setup(m["nbits"], m["num_shards"], m["kind"], options, address=address,
                 num_cpus_per_shard=num_cpus_per_shard, timeout=timeout, max_restarts=max_restarts,
                 next_id=m["next_id"], paths=paths, mmap=mmap, verify=verify,
                 sizes=[sh["count"] for sh in m["shards"]])
    return index
