"""Argument checks of :class:`ShardedIndex` and :func:`load`, with messages
that read as the other indexes' ("<name>: expected ..., got ...").

The checks every index shares (m, backend names, result sizes, default ids,
id clashes) come from ``hamsearch._validate`` and ``hamsearch._backend``,
the same functions the single-machine indexes call; here are only the
sharded index's own."""
from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Optional

import numpy as np

from .._backend import check_name
from .._files import fspath
from .._validate import as_int, check_m, check_threads

__all__ = [
    "KINDS",
    "check_cpus",
    "check_kind",
    "check_max_restarts",
    "check_num_shards",
    "check_options",
    "check_timeout",
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
        out["backend"] = check_name(backend)
    threads = options.get("threads")
    if threads is not None:
        out["threads"] = check_threads(threads, 0)
    if kind == "mih":
        out["m"] = check_m(options.get("m"), nbits)
    return out
