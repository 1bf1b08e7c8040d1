"""An exact sharded index over Ray actors: :class:`ShardedIndex` and :func:`load`.

Each shard is a Ray actor that holds one native :class:`~hamsearch.FlatIndex`
or :class:`~hamsearch.MIHIndex` and builds it itself (no native object is ever
pickled). Codes go to a shard chosen by a hash of their id, so an id always
lives on one known shard. A search sends the query batch through the object
store once, fans out to every shard and gathers the per-shard answers in one
``ray.get``; the answers merge exactly by ``(distance, id)`` in numpy, so a
``ShardedIndex`` returns what one :class:`~hamsearch.FlatIndex` over the same
codes returns.

Ray is an optional dependency (``pip install "hamsearch[distributed]"``).
Importing this module does not import it; creating or loading an index does.

>>> import numpy as np, hamsearch as hs
>>> from hamsearch.distributed import ShardedIndex, load
>>> idx = ShardedIndex(64, num_shards=2)              # doctest: +SKIP
>>> ids = idx.add(codes)                              # doctest: +SKIP
>>> D, I = idx.query(q, k=10)                         # doctest: +SKIP
>>> idx.save("index-dir"); idx = load("index-dir")    # doctest: +SKIP

Faults
------
A shard whose actor dies raises :class:`ShardError` naming the shard, and a
call that gets no answer within ``timeout`` seconds raises it too: no call
waits forever. Once the index has been saved (or was loaded) and a shard has
not changed since, the shard is recoverable: Ray restarts its actor
(``max_restarts``), the actor reloads its file in ``__init__`` (or, for an
index that was created and then saved, on the driver's request), and the call
that met the restart is sent again, so searches go on answering with nothing
lost. A shard that changed since the last save cannot come back whole: it
raises :class:`ShardError`, and so does every later call, until the index is
loaded again from its directory.
"""
from __future__ import annotations

import json
import logging
import math
import numbers
import os
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._files import write_atomic
from ._limits import DISTANCE_PAD, ID_PAD, MAX_NBITS
from ._validate import (
    as_int,
    check_codes,
    check_ids,
    check_k,
    check_nbits,
    check_radius,
    check_remove_ids,
    check_threads,
    words,
)

__all__ = ["MANIFEST_NAME", "ShardError", "ShardedIndex", "load"]

logger = logging.getLogger("hamsearch.distributed")

INSTALL_HINT = 'pip install "hamsearch[distributed]"'
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "hamsearch-sharded-index"
MANIFEST_VERSION = 1
ROUTING = "splitmix64"  # shard of an id: splitmix64(id) mod num_shards
_CHANGES = ("add", "remove")  # shard methods that change its contents
KINDS = ("flat", "mih")
BACKENDS = ("auto", "native", "numba")
DEFAULT_TIMEOUT = 600.0  # seconds any one gather may take before ShardError
DEFAULT_MAX_RESTARTS = 3


class ShardError(RuntimeError):
    """A shard of a :class:`ShardedIndex` failed: its actor died, did not
    answer within the timeout, lost changes made since the last save, or
    raised inside the actor.

    Attributes
    ----------
    shards : tuple of int
        The shards concerned, numbered from 0.
    """

    def __init__(self, message: str, shards: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.shards = tuple(int(s) for s in shards)


def _ray() -> Any:
    """The ``ray`` module, imported on first use."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"hamsearch.distributed needs Ray, which could not be imported ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    return ray


# -- routing and merging (numpy only) -----------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def route(ids: np.ndarray, num_shards: int) -> np.ndarray:
    """The shard of each id: ``splitmix64(id) % num_shards`` as intp.

    A hash rather than ``id % num_shards`` so that strided custom ids (all
    multiples of the shard count, say) still spread evenly."""
    ids = np.asarray(ids, dtype=np.int64)
    if num_shards == 1:
        return np.zeros(ids.shape, dtype=np.intp)
    z = ids.astype(np.uint64)  # a copy; uint64 arithmetic wraps, as splitmix64 wants
    z += _GOLDEN
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return (z % np.uint64(num_shards)).astype(np.intp)


def _partition(shard: np.ndarray, num_shards: int) -> Tuple[np.ndarray, np.ndarray]:
    """(order, bounds): rows of shard ``s`` are ``order[bounds[s]:bounds[s+1]]``,
    in their original order."""
    key = shard.astype(np.uint16) if num_shards <= 1 << 16 else shard
    order = np.argsort(key, kind="stable")  # radix sort for 16-bit keys
    bounds = np.zeros(num_shards + 1, dtype=np.int64)
    np.cumsum(np.bincount(shard, minlength=num_shards), out=bounds[1:])
    return order, bounds


def _key_shift(nbits: int, next_id: int) -> Optional[int]:
    """Bits left for the id in a composite ``distance << shift | id`` key that
    sorts as ``(distance, id)``, with distance ``nbits + 1`` kept for padding;
    None when the ids are too large to fit."""
    shift = 63 - (nbits + 1).bit_length()
    return shift if next_id <= (1 << shift) else None


def _owned(a: np.ndarray, dtype: Any) -> np.ndarray:
    """``a`` as a writable C-contiguous array of ``dtype``: arrays that come
    out of the object store are read-only views, the merged results are not."""
    out = np.ascontiguousarray(a, dtype=dtype)
    return out if out.flags.writeable else out.copy()


def merge_topk(Ds: Sequence[np.ndarray], Is: Sequence[np.ndarray], k: int, nbits: int,
               next_id: int) -> Tuple[np.ndarray, np.ndarray]:
    """Merges per-shard top-k lists, each ``(nq, k_s)`` sorted by
    ``(distance, id)``, into the first ``k`` of their union, padded with
    ``(2**31 - 1, -1)``: int32 ``(nq, k)`` and int64 ``(nq, k)``."""
    nq = Ds[0].shape[0]
    D = np.concatenate(Ds, axis=1) if len(Ds) > 1 else Ds[0]
    I = np.concatenate(Is, axis=1) if len(Is) > 1 else Is[0]
    width = D.shape[1]
    if len(Ds) > 1 and width:
        shift = _key_shift(nbits, next_id)
        pad = I < 0
        if shift is not None:
            # One int64 key per result, unique but for padding: select the k
            # smallest (introselect, linear in the shards' results), then sort
            # those k.
            key = D.astype(np.int64)
            key <<= shift
            key |= I
            if pad.any():
                key[pad] = np.int64(nbits + 1) << shift
            if width > 2 * k:
                key = np.partition(key, k - 1, axis=1)[:, :k]
            key.sort(axis=1)
            key = key[:, :k]
            D = (key >> shift).astype(np.int32)
            I = key & np.int64((1 << shift) - 1)
            gone = D == nbits + 1
            if gone.any():
                D[gone] = DISTANCE_PAD
                I[gone] = ID_PAD
        else:
            Dk = np.where(pad, np.int64(DISTANCE_PAD), D.astype(np.int64))
            order = np.lexsort((I, Dk), axis=1)[:, :k]
            D = np.take_along_axis(D, order, axis=1)
            I = np.take_along_axis(I, order, axis=1)
    width = D.shape[1]
    if width >= k:
        return _owned(D[:, :k], np.int32), _owned(I[:, :k], np.int64)
    outD = np.full((nq, k), DISTANCE_PAD, dtype=np.int32)
    outI = np.full((nq, k), ID_PAD, dtype=np.int64)
    outD[:, :width] = D
    outI[:, :width] = I
    return outD, outI


def merge_radius(parts: Sequence[Tuple[np.ndarray, np.ndarray, np.ndarray]], nq: int, nbits: int,
                 next_id: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merges per-shard CSR radius results into one CSR ``(lims, D, I)``,
    each query's results in ``(distance, id)`` order."""
    counts = np.zeros(nq, dtype=np.int64)
    for lims, _, _ in parts:
        counts += np.diff(lims)
    lims = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(counts, out=lims[1:])
    if not parts:
        return lims, np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    if len(parts) == 1:
        _, D, I = parts[0]
        return lims, _owned(D, np.int32), _owned(I, np.int64)
    qidx = np.concatenate([np.repeat(np.arange(nq, dtype=np.int64), np.diff(p[0])) for p in parts])
    D = np.concatenate([p[1] for p in parts]).astype(np.int32, copy=False)
    I = np.concatenate([p[2] for p in parts]).astype(np.int64, copy=False)
    shift = _key_shift(nbits, next_id)
    if shift is not None:
        order = np.lexsort(((D.astype(np.int64) << shift) | I, qidx))
    else:
        order = np.lexsort((I, D, qidx))
    return lims, D[order], I[order]


def merge_rank(Ds: Sequence[np.ndarray], Is: Sequence[np.ndarray], nbits: int, next_id: int) -> np.ndarray:
    """Merges per-shard full rankings (``(nq, n_s)`` distances and ids, each
    sorted by ``(distance, id)``) into the int64 ``(nq, sum n_s)`` ranking."""
    D = np.concatenate(Ds, axis=1)
    I = np.concatenate(Is, axis=1)
    shift = _key_shift(nbits, next_id)
    if shift is not None:
        key = (D.astype(np.int64) << shift) | I
        key.sort(axis=1, kind="stable")
        key &= np.int64((1 << shift) - 1)
        return key
    order = np.lexsort((I, D), axis=1)
    return np.take_along_axis(I, order, axis=1)


# -- the actor ----------------------------------------------------------------
def _new_index(kind: str, nbits: int, options: Dict[str, Any]) -> Any:
    from .flat import FlatIndex
    from .mih import MIHIndex

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
            self._index = _new_index(kind, nbits, self._options)

    def _reply(self, origin: Optional[str], payload: Any) -> Tuple[str, Optional[str], int, Any]:
        return self._token, origin, len(self._index), payload

    def _load(self, path: str) -> None:
        from ._load import load as load_file

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

    def info(self, with_max_id: bool = False) -> Tuple[str, Optional[str], int, Dict[str, Any]]:
        from . import _backend

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
        })

    def reload(self, path: str) -> Tuple[str, Optional[str], int, None]:
        self._load(path)
        # A new token: a reply computed before the reload must not pass for
        # one computed after it.
        self._token = uuid.uuid4().hex
        return self._reply(self._origin, None)

    def add(self, codes: np.ndarray, ids: np.ndarray) -> Tuple[str, Optional[str], int, None]:
        origin = self._origin
        self._index.add(codes, ids)  # read-only arrays from the object store are fine
        self._origin = None
        return self._reply(origin, None)

    def contains(self, ids: np.ndarray) -> Tuple[str, Optional[str], int, int]:
        """The first of ``ids`` already held, or -1."""
        clash = ids[np.isin(ids, self._index._store.ids())] if len(self._index) else ids[:0]
        return self._reply(self._origin, int(clash[0]) if clash.size else -1)

    def remove(self, ids: np.ndarray) -> Tuple[str, Optional[str], int, int]:
        origin = self._origin
        n = self._index.remove(ids)
        if n:
            self._origin = None
        return self._reply(origin, n)

    def query(self, q: np.ndarray, k: int, threads: Optional[int]) -> Tuple[str, Optional[str], int, Any]:
        return self._reply(self._origin, self._index.query(q, k, threads=threads))

    def radius(self, q: np.ndarray, r: int, threads: Optional[int]) -> Tuple[str, Optional[str], int, Any]:
        return self._reply(self._origin, self._index.radius(q, r, threads=threads))

    def rank(self, q: np.ndarray, threads: Optional[int], with_distances: bool) -> Tuple[str, Optional[str], int, Any]:
        if not with_distances:
            return self._reply(self._origin, self._index.rank(q, threads=threads))
        # The whole shard with its distances, for the merge: a radius of
        # nbits holds every code, in (distance, id) order.
        _, D, I = self._index.radius(q, self._nbits, threads=threads)
        n = len(self._index)
        return self._reply(self._origin, (D.reshape(q.shape[0], n), I.reshape(q.shape[0], n)))

    def save(self, path: str) -> Tuple[str, Optional[str], int, None]:
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


_actor_classes: Dict[int, Any] = {}


def _actor_class(ray: Any) -> Any:
    cls = _actor_classes.get(id(ray))
    if cls is None:
        cls = _actor_classes[id(ray)] = ray.remote(_Shard)
    return cls


# -- validation ---------------------------------------------------------------
def _check_kind(kind: Any) -> str:
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected a str ('flat' or 'mih'), got {type(kind).__name__}")
    if kind not in KINDS:
        raise ValueError(f"kind: expected 'flat' or 'mih', got {kind!r}")
    return kind


def _check_num_shards(num_shards: Any) -> int:
    num_shards = as_int(num_shards, "num_shards")
    if num_shards < 1:
        raise ValueError(f"num_shards: expected an int >= 1, got {num_shards}")
    return num_shards


def _check_cpus(num_cpus: Any) -> float:
    if isinstance(num_cpus, (bool, np.bool_)) or not isinstance(num_cpus, numbers.Real):
        raise TypeError(f"num_cpus_per_shard: expected a number > 0, got {type(num_cpus).__name__}")
    value = float(num_cpus)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"num_cpus_per_shard: expected a number > 0, got {num_cpus}")
    if value > 1 and value != int(value):
        raise ValueError(f"num_cpus_per_shard: expected a fraction below 1 or a whole number "
                         f"(Ray's rule for CPUs), got {num_cpus}")
    return int(value) if value == int(value) else value


def _check_timeout(timeout: Any) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, (bool, np.bool_)) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout: expected None or a number of seconds > 0, got {type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout: expected None or a number of seconds > 0, got {timeout}")
    return float(timeout)


def _check_max_restarts(value: Any) -> int:
    value = as_int(value, "max_restarts")
    if value < -1:
        raise ValueError(f"max_restarts: expected -1 (no limit) or an int >= 0, got {value}")
    return value


def _check_options(kind: str, nbits: int, options: Dict[str, Any]) -> Dict[str, Any]:
    """The shard index's options, checked as its constructor checks them
    (without building one here: the actors do that)."""
    allowed = ("m", "backend", "threads") if kind == "mih" else ("backend", "threads")
    for key in options:
        if key not in allowed:
            raise TypeError(f"ShardedIndex: unexpected keyword argument {key!r} for kind={kind!r} "
                            f"(shard index options: {', '.join(allowed)})")
    out: Dict[str, Any] = {}
    backend = options.get("backend", "auto")
    if backend is not None:
        if not isinstance(backend, str):
            raise TypeError(f"backend: expected a str (one of {', '.join(BACKENDS)}), got {type(backend).__name__}")
        if backend.lower() not in BACKENDS:
            raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
        out["backend"] = backend.lower()
    threads = options.get("threads")
    if threads is not None:
        out["threads"] = check_threads(threads, 0)
    if kind == "mih":
        m = options.get("m")
        if m is not None:
            m = as_int(m, "m")
            lo = words(nbits)
            if not lo <= m <= nbits:
                raise ValueError(f"m: expected None or {lo} <= m <= {nbits} (substrings of at most 64 bits), got {m}")
        out["m"] = m
    return out


def _fspath(path: Any, name: str) -> str:
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{name}: expected a str or os.PathLike of str, got {type(path).__name__}") from None
    if not isinstance(path, str):
        raise TypeError(f"{name}: expected a str or os.PathLike of str, got {type(path).__name__}")
    return path


def _connect(ray: Any, address: Optional[str], cpus_needed: float) -> None:
    """Joins the cluster at ``address``, or the one this process or machine
    already runs, or starts a local one with enough CPUs for the shards."""
    if ray.is_initialized():
        return
    if address is not None:
        if not isinstance(address, str):
            raise TypeError(f"address: expected None or a str such as 'ray://host:10001' or 'auto', "
                            f"got {type(address).__name__}")
        ray.init(address=address, logging_level=logging.WARNING)
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
        return
    try:
        ray.init(address="auto", logging_level=logging.WARNING)  # a cluster started by `ray start` here
        return
    except ConnectionError:
        pass
    cores = os.cpu_count() or 1
    ray.init(num_cpus=max(cores, math.ceil(cpus_needed)), include_dashboard=False, logging_level=logging.WARNING)


# -- the driver-side index ----------------------------------------------------
class ShardedIndex:
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
        CPUs (left running until the process exits or ``ray.shutdown()``).
    num_cpus_per_shard : float, optional
        Ray CPUs reserved by each shard actor (default 1; a fraction below 1
        lets more shards than cores share a machine). Each shard searches with
        ``max(1, int(num_cpus_per_shard))`` threads unless ``threads`` says
        otherwise.
    timeout : float or None, optional
        Seconds any one call may wait for its shards (default 600) before it
        raises :class:`ShardError`; None waits without limit.
    max_restarts : int, optional
        Restarts Ray grants each shard actor (default 3; -1: no limit). A
        restarted shard comes back whole only if it has not changed since the
        index was last saved or loaded.
    **index_options
        The shard index's own options: ``backend`` and ``threads``, and
        ``m`` for ``kind="mih"``, as in :class:`~hamsearch.MIHIndex`.

    Notes
    -----
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
                 num_cpus_per_shard: float = 1, timeout: Optional[float] = DEFAULT_TIMEOUT,
                 max_restarts: int = DEFAULT_MAX_RESTARTS, **index_options: Any) -> None:
        nbits = check_nbits(nbits)
        num_shards = _check_num_shards(num_shards)
        kind = _check_kind(kind)
        options = _check_options(kind, nbits, index_options)
        self._setup(nbits, num_shards, kind, options, address=address, num_cpus_per_shard=num_cpus_per_shard,
                    timeout=timeout, max_restarts=max_restarts, next_id=0, paths=None, mmap=False, verify=True)

    def _setup(self, nbits: int, num_shards: int, kind: str, options: Dict[str, Any], *, address: Optional[str],
               num_cpus_per_shard: Any, timeout: Any, max_restarts: Any, next_id: int,
               paths: Optional[List[str]], mmap: bool, verify: bool,
               sizes: Optional[List[int]] = None) -> None:
        self._actors: List[Any] = []  # close() works whatever fails below
        self._closed = False
        cpus = _check_cpus(num_cpus_per_shard)
        self._timeout = _check_timeout(timeout)
        self._max_restarts = _check_max_restarts(max_restarts)
        ray = self._ray = _ray()
        self._nbits, self._num_shards, self._kind = nbits, num_shards, kind
        self._options = dict(options)
        if self._options.get("threads") is None:
            self._options["threads"] = max(1, int(cpus))
        self._cpus = cpus
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
        _connect(ray, address, num_shards * cpus)
        total = float(ray.cluster_resources().get("CPU", 0.0))
        if num_shards * cpus > total + 1e-9:
            raise ValueError(
                f"num_shards * num_cpus_per_shard: expected at most the cluster's {total:g} CPUs, got "
                f"{num_shards} * {cpus} = {num_shards * cpus:g}; the actors could never all start "
                "(use fewer shards, a fractional num_cpus_per_shard, or a larger cluster)"
            )
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
        cls = _actor_class(self._ray)
        return cls.options(
            num_cpus=self._cpus,
            max_restarts=self._max_restarts,
            max_task_retries=0,  # the driver decides what to resend after a restart
            scheduling_strategy="SPREAD",
        ).remote(self._kind, self._nbits, self._options, s, self._num_shards, path, self._mmap, self._verify)

    # -- properties -------------------------------------------------------
    @property
    def nbits(self) -> int:
        """Bits per code."""
        return self._nbits

    @property
    def words(self) -> int:
        """uint64 words per code, ``ceil(nbits / 64)``."""
        return words(self._nbits)

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
        """Seconds a call waits for its shards before :class:`ShardError`; None: no limit."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: Optional[float]) -> None:
        self._timeout = _check_timeout(value)

    def __len__(self) -> int:
        return int(sum(self._sizes))

    def __repr__(self) -> str:
        return (f"ShardedIndex(nbits={self._nbits}, num_shards={self._num_shards}, kind={self._kind!r}, "
                f"n={len(self)})")

    def shard_info(self) -> List[Dict[str, Any]]:
        """Per shard: ``size``, ``pid``, ``node``, ``niceness``, ``backend``,
        ``isa``, ``threads``, ``mapped``, ``saved`` (its file, or None) and
        ``changed`` (changed since that file was written)."""
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

    # -- calls to the shards ------------------------------------------------
    def _usable(self, shards: Sequence[int]) -> None:
        if self._closed:
            raise RuntimeError("ShardedIndex: the index is closed")
        lost = [s for s in shards if self._lost[s] is not None]
        if lost:
            raise ShardError(f"shard {lost[0]} of {self._num_shards}: {self._lost[lost[0]]}", lost)

    def _gather(self, calls: Sequence[Tuple[int, str, tuple]], first: bool = False) -> List[Any]:
        """Sends ``(shard, method, args)`` calls and gathers their payloads in
        one ``ray.get``; deals with restarts, deaths and timeouts."""
        self._usable([s for s, _, _ in calls])
        ray = self._ray
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        refs = [getattr(self._actors[s], method).remote(*args) for s, method, args in calls]
        error: Optional[BaseException] = None
        try:
            replies = ray.get(refs, timeout=self._timeout)
        except ray.exceptions.RayError as exc:
            replies, error = self._settle(calls, refs, exc, deadline)
        out = []
        for (s, method, args), reply in zip(calls, replies):
            if reply is None:  # failed: error says why
                out.append(None)
                continue
            token = reply[0]
            if first:
                self._tokens[s] = token
            elif token != self._tokens[s] and token not in self._retired[s]:
                reply = self._restarted(s, method, args, reply)
            self._sizes[s] = reply[2]
            out.append(reply[3])
        if error is not None:
            raise error
        return out

    def _settle(self, calls: Sequence[Tuple[int, str, tuple]], refs: List[Any], first_error: BaseException,
                deadline: Optional[float]) -> Tuple[List[Any], Optional[BaseException]]:
        """After a failed gather: each call's reply (or None), where a shard
        that was recovered answers the call sent again, and the ShardError
        naming the shards that failed or did not answer in time."""
        ray = self._ray
        exc_mod = ray.exceptions
        replies: List[Any] = [None] * len(refs)
        slow: List[int] = []
        failed: List[Tuple[int, BaseException]] = []
        for i, ((s, method, args), ref) in enumerate(zip(calls, refs)):
            try:
                replies[i] = ray.get(ref, timeout=_remaining(deadline))
            except exc_mod.GetTimeoutError:
                slow.append(s)
                if method in _CHANGES:
                    # The change may still happen, or not: the shard's
                    # contents are unknown from here on.
                    self._lose(s, f"it did not answer {method!r} within the timeout of {self._timeout:g} s")
            except exc_mod.RayActorError as exc:
                try:
                    replies[i] = self._recover_and_resend(s, method, args, exc)
                except ShardError as err:
                    failed.append((s, err))
            except exc_mod.RayError as exc:
                failed.append((s, exc))
        if slow:
            names = ", ".join(map(str, slow))
            err: BaseException = ShardError(
                f"shard{'s' if len(slow) > 1 else ''} {names} of {self._num_shards} did not answer within the "
                f"timeout of {self._timeout:g} s (a hung or overloaded node, an actor still waiting for CPUs "
                "on the cluster, or too short a timeout for this batch: see ShardedIndex.timeout)",
                slow + [f[0] for f in failed])
            err.__cause__ = first_error
            return replies, err
        if failed:
            s, exc = failed[0]
            if isinstance(exc, ShardError):
                return replies, exc
            cause = getattr(exc, "cause", None) or exc
            err = ShardError(f"shard {s} of {self._num_shards} failed: {type(cause).__name__}: {cause}",
                             [f[0] for f in failed])
            err.__cause__ = exc
            return replies, err
        return replies, None

    def _recoverable(self, s: int) -> bool:
        return self._saved[s] is not None and not self._dirty[s] and self._lost[s] is None

    def _lose(self, s: int, why: str, cause: Optional[BaseException] = None) -> ShardError:
        saved = self._saved[s]
        if saved is None:
            hint = "the index was never saved, so its codes are gone; build it again"
        elif self._dirty[s]:
            hint = (f"it had changed since it was last saved, so those changes are gone; "
                    f"load the index again from {os.path.dirname(saved)!r} (its last save)")
        else:
            hint = f"load the index again from {os.path.dirname(saved)!r}"
        self._lost[s] = f"{why}; {hint}"
        return ShardError(f"shard {s} of {self._num_shards}: {why}; {hint}", [s])

    def _recover_and_resend(self, s: int, method: str, args: tuple, exc: BaseException) -> Any:
        """Shard ``s`` died or restarted during ``method``: restore it from its
        file, if it has one and had not changed since, and send the call again."""
        died = _is_dead(self._ray, exc)
        with self._lock:
            if not self._recoverable(s):
                what = "its actor died" if died else "its actor was restarted"
                raise self._lose(s, f"{what} ({type(exc).__name__})", exc) from exc
            self._restore(s, respawn=died)
        return self._resend(s, method, args)

    def _restarted(self, s: int, method: str, args: tuple, reply: Any) -> Any:
        """A reply from a new incarnation of shard ``s`` (restarted between
        calls): valid if the shard held its saved file when the call began,
        else restore the shard and send the call again."""
        token, origin, _, _ = reply
        with self._lock:
            if not self._recoverable(s):
                raise self._lose(s, "its actor was restarted and came back without its codes")
            if origin == self._saved[s]:
                self._set_token(s, token)
                self._restarts += 1
                logger.warning("hamsearch: shard %d restarted and reloaded %s", s, origin)
                return reply
            self._restore(s, respawn=False)
        return self._resend(s, method, args)

    def _set_token(self, s: int, token: str) -> None:
        """Shard ``s`` now answers with ``token``; replies still on their way
        from its previous incarnation stay valid."""
        if self._tokens[s] is not None and self._tokens[s] != token:
            self._retired[s].add(self._tokens[s])
        self._tokens[s] = token

    def _restore(self, s: int, respawn: bool) -> None:
        """Waits for shard ``s`` to be back (a new actor if Ray gave up on the
        old one) and makes it hold its saved file. Caller holds the lock."""
        ray = self._ray
        path = self._saved[s]
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        if respawn:
            self._actors[s] = self._spawn(s, path)
        while True:
            try:
                reply = ray.get(self._actors[s].info.remote(), timeout=_remaining(deadline))
                break
            except ray.exceptions.GetTimeoutError:
                raise self._lose(s, f"it did not come back within {self._timeout:g} s") from None
            except ray.exceptions.RayActorError as exc:
                if not _is_dead(ray, exc):  # still restarting
                    if deadline is not None and time.monotonic() >= deadline:
                        raise self._lose(s, f"it did not come back within {self._timeout:g} s") from None
                    time.sleep(0.05)
                    continue
                if respawn:
                    raise self._lose(s, f"a new actor for it died at once ({exc})") from exc
                respawn = True
                self._actors[s] = self._spawn(s, path)
        token, origin, size, info = reply
        if token == self._tokens[s]:  # another thread restored it meanwhile
            return
        if origin != path:
            try:
                token, origin, size, _ = ray.get(self._actors[s].reload.remote(path), timeout=_remaining(deadline))
            except ray.exceptions.RayError as exc:
                raise self._lose(s, f"it could not reload {path} ({exc})", exc) from exc
        if size != self._sizes[s]:
            raise self._lose(s, f"it came back with {size} codes where it had {self._sizes[s]}")
        self._set_token(s, token)
        self._restarts += 1
        logger.warning("hamsearch: shard %d restarted and reloaded %s", s, path)

    def _resend(self, s: int, method: str, args: tuple) -> Any:
        ray = self._ray
        try:
            reply = ray.get(getattr(self._actors[s], method).remote(*args), timeout=self._timeout)
        except ray.exceptions.GetTimeoutError as exc:
            raise ShardError(f"shard {s} of {self._num_shards} did not answer within the timeout of "
                             f"{self._timeout:g} s after its restart", [s]) from exc
        except ray.exceptions.RayError as exc:
            raise ShardError(f"shard {s} of {self._num_shards} failed again after its restart: {exc}", [s]) from exc
        if reply[0] != self._tokens[s]:
            raise self._lose(s, "it restarted again while answering")
        return reply

    # -- mutation ---------------------------------------------------------
    def add(self, codes: Any, ids: Any = None) -> np.ndarray:
        """Append codes, each to the shard its id hashes to.

        Parameters
        ----------
        codes : ndarray of uint64, shape (n, words)
        ids : array_like of int, shape (n,), optional
            Unique non-negative ids, none already in the index. By default,
            consecutive integers from the largest id so far plus one.

        Returns
        -------
        ids : ndarray of int64, shape (n,)

        Each shard's part goes through the object store once (``ray.put``)
        and the shard adds it from there without another copy.
        """
        arr = check_codes(codes, self._nbits)
        n = arr.shape[0]
        custom = None if ids is None else check_ids(ids, n)
        with self._lock:
            self._usable(range(self._num_shards))
            S = self._num_shards
            if custom is None:
                new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
            else:
                new_ids = custom
            if n == 0:
                return new_ids
            shard = route(new_ids, S)
            order, bounds = _partition(shard, S)
            if custom is not None and int(new_ids.min()) < self._next_id and len(self):
                # Ids above every id so far cannot clash; the others are
                # checked on their shards before anything is added anywhere.
                calls = []
                for s in range(S):
                    part = new_ids[order[bounds[s]:bounds[s + 1]]]
                    if part.size and self._sizes[s]:
                        calls.append((s, "contains", (part,)))
                clashes = [c for c in self._gather(calls) if c >= 0]
                if clashes:
                    raise ValueError(f"ids: expected ids not already in the index, got {clashes[0]} again")
            ray = self._ray
            sorted_codes = arr[order] if S > 1 else arr
            sorted_ids = new_ids[order] if S > 1 else new_ids
            calls = []
            for s in range(S):
                a, b = int(bounds[s]), int(bounds[s + 1])
                if a < b:
                    calls.append((s, "add", (ray.put(sorted_codes[a:b]), ray.put(sorted_ids[a:b]))))
            try:
                self._gather(calls)
            finally:
                for s, _, _ in calls:
                    self._dirty[s] = True
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        return new_ids

    def remove(self, ids: Any) -> int:
        """Remove the codes with these ids, each from its own shard.

        Parameters
        ----------
        ids : int or array_like of int
            Ids to remove; ids not in the index (negative ones included) are
            ignored, and an id given twice is removed once.

        Returns
        -------
        int
            The number of codes removed. Default ids never reuse a removed one.
        """
        arr = check_remove_ids(ids)
        with self._lock:
            self._usable(range(self._num_shards))
            if arr.size == 0:
                return 0
            S = self._num_shards
            order, bounds = _partition(route(arr, S), S)
            calls = []
            for s in range(S):
                part = arr[order[bounds[s]:bounds[s + 1]]]
                if part.size and self._sizes[s]:
                    calls.append((s, "remove", (part,)))
            removed = self._gather(calls)
            for (s, _, _), r in zip(calls, removed):
                if r:
                    self._dirty[s] = True
            return int(sum(removed))

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
        directory = os.path.abspath(_fspath(directory, "directory"))
        with self._lock:
            self._usable(range(self._num_shards))
            if os.path.exists(directory) and not os.path.isdir(directory):
                raise NotADirectoryError(f"{directory}: is not a directory")
            os.makedirs(directory, exist_ok=True)
            manifest_path = os.path.join(directory, MANIFEST_NAME)
            old_files: List[str] = []
            if os.path.exists(manifest_path):
                try:
                    old_files = [sh["file"] for sh in _read_manifest(manifest_path)["shards"]]
                except (ValueError, OSError):  # a broken manifest: replace it, delete nothing
                    old_files = []
            elif _has_files(directory):
                raise FileExistsError(f"{directory}: expected an empty directory or a saved ShardedIndex "
                                      f"(with {MANIFEST_NAME}), got a directory holding other files")
            tag = uuid.uuid4().hex[:12]
            names = [f"shard-{s:05d}-{tag}.hsidx" for s in range(self._num_shards)]
            paths = [os.path.join(directory, name) for name in names]
            try:
                self._gather([(s, "save", (paths[s],)) for s in range(self._num_shards)])
                manifest = {
                    "format": MANIFEST_FORMAT,
                    "version": MANIFEST_VERSION,
                    "nbits": self._nbits,
                    "kind": self._kind,
                    "num_shards": self._num_shards,
                    "routing": ROUTING,
                    "next_id": self._next_id,
                    "count": len(self),
                    "options": {"m": self._options.get("m")} if self._kind == "mih" else {},
                    "shards": [{"file": names[s], "count": self._sizes[s]} for s in range(self._num_shards)],
                }
                _write_json_atomic(manifest_path, manifest)
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

    # -- search -----------------------------------------------------------
    def _prepare(self, q: Any, threads: Optional[int]) -> Tuple[np.ndarray, Optional[int]]:
        arr = check_codes(q, self._nbits, "q")
        if threads is not None:
            threads = check_threads(threads, 0)
        return arr, threads

    def _share(self, arr: np.ndarray, fanout: int) -> Any:
        """The query batch in the object store once, when several shards read it."""
        return self._ray.put(arr) if fanout > 1 else arr

    def query(self, q: Any, k: int, *, threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query over every shard.

        Parameters
        ----------
        q : ndarray of uint64, shape (nq, words)
        k : int, >= 1
            Any size; missing results are padded.
        threads : int, optional
            Threads each shard searches with (default: the shard's own).

        Returns
        -------
        D : ndarray of int32, shape (nq, k)
            Hamming distances, ascending; ``2**31 - 1`` where no result exists.
        I : ndarray of int64, shape (nq, k)
            Ids, ties broken by ascending id; ``-1`` where no result exists.
        """
        k = check_k(k)
        arr, threads = self._prepare(q, threads)
        self._usable(range(self._num_shards))
        nq = arr.shape[0]
        # Each shard is asked for no more than it holds: k = n + 5 moves no padding.
        asks = [(s, min(k, size)) for s, size in enumerate(self._sizes) if size]
        if not asks or nq == 0:
            return np.full((nq, k), DISTANCE_PAD, dtype=np.int32), np.full((nq, k), ID_PAD, dtype=np.int64)
        qref = self._share(arr, len(asks))
        parts = self._gather([(s, "query", (qref, ks, threads)) for s, ks in asks])
        return merge_topk([p[0] for p in parts], [p[1] for p in parts], k, self._nbits, self._next_id)

    def radius(self, q: Any, r: int, *, threads: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every code within Hamming distance ``r`` of each query.

        Returns
        -------
        lims : ndarray of int64, shape (nq + 1,)
            Query ``j``'s results are ``D[lims[j]:lims[j+1]]`` and ``I[lims[j]:lims[j+1]]``.
        D : ndarray of int32, shape (lims[-1],)
        I : ndarray of int64, shape (lims[-1],)
            Each query's results sorted by ``(distance, id)``.
        """
        r = check_radius(r)
        arr, threads = self._prepare(q, threads)
        self._usable(range(self._num_shards))
        shards = [s for s, size in enumerate(self._sizes) if size]
        nq = arr.shape[0]
        if not shards or nq == 0:
            return self._empty_radius(nq)
        qref = self._share(arr, len(shards))
        parts = self._gather([(s, "radius", (qref, r, threads)) for s in shards])
        return merge_radius(parts, nq, self._nbits, self._next_id)

    @staticmethod
    def _empty_radius(nq: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.zeros(nq + 1, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)

    def rank(self, q: Any, *, threads: Optional[int] = None) -> np.ndarray:
        """The whole index for each query in ``(distance, id)`` order.

        Returns
        -------
        I : ndarray of int64, shape (nq, len(self))

        With more than one non-empty shard each shard returns its ranking
        with distances (12 bytes a result) for the merge.
        """
        arr, threads = self._prepare(q, threads)
        self._usable(range(self._num_shards))
        shards = [s for s, size in enumerate(self._sizes) if size]
        nq = arr.shape[0]
        if not shards or nq == 0:
            return np.zeros((nq, len(self)), dtype=np.int64)
        qref = self._share(arr, len(shards))
        if len(shards) == 1:
            (I,) = self._gather([(shards[0], "rank", (qref, threads, False))])
            return _owned(I, np.int64)
        parts = self._gather([(s, "rank", (qref, threads, True)) for s in shards])
        return merge_rank([p[0] for p in parts], [p[1] for p in parts], self._nbits, self._next_id)


def _is_dead(ray: Any, exc: BaseException) -> bool:
    """Whether a RayActorError means the actor is gone for good (Ray will not
    restart it) rather than restarting. Ray before 2.11 tells neither apart:
    every actor error counts as a death there, and the shard is respawned."""
    died = getattr(ray.exceptions, "ActorDiedError", None)
    unavailable = getattr(ray.exceptions, "ActorUnavailableError", None)
    if unavailable is not None and isinstance(exc, unavailable):
        return False
    return died is None or isinstance(exc, died) or unavailable is None


def _remaining(deadline: Optional[float]) -> Optional[float]:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


# -- the manifest -------------------------------------------------------------
def _write_json_atomic(path: str, obj: Any) -> None:
    text = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")
    write_atomic(path, text)


def _has_files(directory: str) -> bool:
    """Whether ``directory`` holds anything but hidden entries."""
    with os.scandir(directory) as entries:
        return any(not e.name.startswith(".") for e in entries)


def _read_manifest(path: str) -> Dict[str, Any]:
    """The manifest at ``path``, checked field by field (ValueError naming
    the file and the field)."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            m = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a ShardedIndex manifest (invalid JSON: {exc})") from None

    def bad(what: str) -> ValueError:
        return ValueError(f"{path}: {what}")

    def integer(key: str, lo: int, hi: int) -> int:
        v = m.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise bad(f"expected {key} an integer in [{lo}, {hi}], got {v!r}")
        return v

    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise bad(f"not a ShardedIndex manifest (expected format {MANIFEST_FORMAT!r}, got {got!r})")
    version = m.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > MANIFEST_VERSION:
        raise bad(f"manifest version {version} is newer than this hamsearch reads ({MANIFEST_VERSION}); "
                  "upgrade hamsearch to load it")
    integer("version", 1, MANIFEST_VERSION)
    nbits = integer("nbits", 1, MAX_NBITS)
    if m.get("kind") not in KINDS:
        raise bad(f"expected kind 'flat' or 'mih', got {m.get('kind')!r}")
    num_shards = integer("num_shards", 1, 1 << 20)
    integer("next_id", 0, 2**63 - 1)
    if m.get("routing") != ROUTING:
        raise bad(f"expected routing {ROUTING!r}, got {m.get('routing')!r}")
    options = m.get("options")
    if not isinstance(options, dict) or set(options) - {"m"}:
        raise bad(f"expected options a mapping with at most the key 'm', got {options!r}")
    try:
        _check_options(m["kind"], nbits, options)
    except (TypeError, ValueError) as exc:
        raise bad(f"bad options: {exc}") from None
    shards = m.get("shards")
    if not isinstance(shards, list) or len(shards) != num_shards:
        raise bad(f"expected a list of {num_shards} shards, got {shards!r:.80}")
    for s, sh in enumerate(shards):
        if not isinstance(sh, dict) or not isinstance(sh.get("file"), str):
            raise bad(f"shard {s}: expected {{'file': name, 'count': n}}, got {sh!r:.80}")
        name = sh["file"]
        if not name or os.path.basename(name) != name or name in (".", ".."):
            raise bad(f"shard {s}: expected a file name inside the directory, got {name!r}")
        count = sh.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise bad(f"shard {s}: expected a count >= 0, got {count!r}")
    if integer("count", 0, 2**63 - 1) != sum(sh["count"] for sh in shards):
        raise bad(f"expected count the sum of the shards' counts, got {m['count']}")
    return m


def load(directory: Any, *, address: Optional[str] = None, mmap: bool = False, verify: bool = True,
         backend: Optional[str] = "auto", threads: Optional[int] = None, num_cpus_per_shard: float = 1,
         timeout: Optional[float] = DEFAULT_TIMEOUT, max_restarts: int = DEFAULT_MAX_RESTARTS) -> ShardedIndex:
    """Reads a :class:`ShardedIndex` written by ``idx.save(directory)``.

    Each shard's actor loads its own file (``hamsearch.load`` with ``mmap``,
    ``verify``, ``backend`` and ``threads`` as given), and loads it again
    itself if Ray restarts it.

    Parameters
    ----------
    directory : str or os.PathLike
        Reachable from every shard's node (a shared file system on a cluster).
    address, num_cpus_per_shard, timeout, max_restarts
        As for :class:`ShardedIndex`.
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
    directory = os.path.abspath(_fspath(directory, "directory"))
    manifest_path = os.path.join(directory, MANIFEST_NAME)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: no such directory")
    if not os.path.exists(manifest_path):
        raise FileNotFoundError(f"{manifest_path}: no manifest; was the index saved with ShardedIndex.save?")
    m = _read_manifest(manifest_path)
    paths = [os.path.join(directory, sh["file"]) for sh in m["shards"]]
    for p in paths:
        if not os.path.isfile(p):
            raise FileNotFoundError(f"{p}: shard file named by {manifest_path} is missing")
    options = _check_options(m["kind"], m["nbits"], dict(m["options"], backend=backend, threads=threads))
    index = ShardedIndex.__new__(ShardedIndex)
    index._setup(m["nbits"], m["num_shards"], m["kind"], options, address=address,
                 num_cpus_per_shard=num_cpus_per_shard, timeout=timeout, max_restarts=max_restarts,
                 next_id=m["next_id"], paths=paths, mmap=mmap, verify=verify,
                 sizes=[sh["count"] for sh in m["shards"]])
    return index
