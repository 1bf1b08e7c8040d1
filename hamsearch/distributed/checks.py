"""Argument checks of :class:`ShardedIndex` and :func:`load`, with messages
that read as the other indexes' ("<name>: expected ..., got ...").

The checks every index shares come from ``hamsearch._validate``. Five that
the single-machine indexes make inline (in ``MIHIndex.__init__``,
``_backend.resolve``, ``_Index.add`` and ``_Index.query``) are written out
here, with the same messages, because the driver cannot call those: it builds
no index (the actors do) and resolves no backend (each node resolves its
own)."""
from __future__ import annotations

import math
import numbers
import os
from typing import Any, Dict, Optional

import numpy as np

from .._backend import BACKENDS
from .._limits import RESULT_BYTES
from .._validate import as_int, check_threads, words

__all__ = [
    "KINDS",
    "check_backend",
    "check_cpus",
    "check_kind",
    "check_m",
    "check_max_restarts",
    "check_num_shards",
    "check_options",
    "check_result_size",
    "check_timeout",
    "clash_error",
    "default_ids",
    "first_clash",
    "fspath",
]

KINDS = ("flat", "mih")


def check_kind(kind: Any) -> str:
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected a str ('flat' or 'mih'), got {type(kind).__name__}")
    if kind not in KINDS:
        raise ValueError(f"kind: expected 'flat' or 'mih', got {kind!r}")
    return kind


def check_num_shards(num_shards: Any) -> int:
    num_shards = as_int(num_shards, "num_shards")
    if num_shards < 1:
        raise ValueError(f"num_shards: expected an int >= 1, got {num_shards}")
    return num_shards


def check_cpus(num_cpus: Any) -> float:
    if isinstance(num_cpus, (bool, np.bool_)) or not isinstance(num_cpus, numbers.Real):
        raise TypeError(f"num_cpus_per_shard: expected a number > 0, got {type(num_cpus).__name__}")
    value = float(num_cpus)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"num_cpus_per_shard: expected a number > 0, got {num_cpus}")
    if value > 1 and value != int(value):
        raise ValueError(f"num_cpus_per_shard: expected a fraction below 1 or a whole number "
                         f"(Ray's rule for CPUs), got {num_cpus}")
    return int(value) if value == int(value) else value


def check_timeout(timeout: Any) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, (bool, np.bool_)) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout: expected None or a number of seconds > 0, got {type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout: expected None or a number of seconds > 0, got {timeout}")
    return float(timeout)


def check_max_restarts(value: Any) -> int:
    value = as_int(value, "max_restarts")
    if value < -1:
        raise ValueError(f"max_restarts: expected -1 (no limit) or an int >= 0, got {value}")
    return value


def check_backend(backend: Any) -> str:
    """``backend`` lower-cased, checked as ``_backend.resolve`` checks it but
    not resolved: ``"auto"`` is resolved on each shard's node."""
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected a str (one of {', '.join(BACKENDS)}), got {type(backend).__name__}")
    if backend.lower() not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend.lower()


def check_m(m: Any, nbits: int) -> Optional[int]:
    """MIH substrings, checked as ``MIHIndex`` checks them."""
    if m is None:
        return None
    m = as_int(m, "m")
    lo = words(nbits)
    if not lo <= m <= nbits:
        raise ValueError(f"m: expected None or {lo} <= m <= {nbits} (substrings of at most 64 bits), got {m}")
    return m


def check_options(kind: str, nbits: int, options: Dict[str, Any]) -> Dict[str, Any]:
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
        out["backend"] = check_backend(backend)
    threads = options.get("threads")
    if threads is not None:
        out["threads"] = check_threads(threads, 0)
    if kind == "mih":
        out["m"] = check_m(options.get("m"), nbits)
    return out


def check_result_size(nq: int, k: int) -> None:
    """``nq * k`` results (an int32 distance and an int64 id each, 16 bytes
    with room to merge) within ``RESULT_BYTES``, as ``_Index.query`` checks."""
    if k > (RESULT_BYTES // 16) // max(1, nq):
        raise ValueError(f"k: expected nq * k results to fit in memory, got nq = {nq}, k = {k}")


def default_ids(next_id: int, n: int) -> np.ndarray:
    """The ids ``add`` gives ``n`` codes by default: consecutive from ``next_id``."""
    return np.arange(next_id, next_id + n, dtype=np.int64)


def first_clash(ids: np.ndarray, held: np.ndarray) -> int:
    """The first of ``ids`` that is among ``held``, or -1."""
    clash = ids[np.isin(ids, held)] if held.size else ids[:0]
    return int(clash[0]) if clash.size else -1


def clash_error(id_: int) -> ValueError:
    return ValueError(f"ids: expected ids not already in the index, got {id_} again")


def fspath(path: Any, name: str) -> str:
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"{name}: expected a str or os.PathLike of str, got {type(path).__name__}") from None
    if not isinstance(path, str):
        raise TypeError(f"{name}: expected a str or os.PathLike of str, got {type(path).__name__}")
    return path
