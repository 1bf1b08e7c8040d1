"""Backend choice: the native core (``hamsearch._core``) or the Numba fallback.

``HAMSEARCH_IMPLEMENTATION`` selects the implementation for indexes created
with ``backend="auto"`` (the default):

- ``auto`` (or unset): native if the compiled module loads, otherwise Numba,
  with a ``RuntimeWarning`` that carries the import error;
- ``native``: the compiled module, and an ``ImportError`` if it is missing;
- ``numba``: the Numba kernels.

``HAMSEARCH_ISA`` caps the native kernel level; ``hamsearch.isa()`` names the
level in use.
"""
from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import Optional, Tuple

BACKENDS = ("auto", "native", "numba")
ISA_LEVELS = ("scalar", "popcnt", "avx2", "avx512_vpopcntdq")

_native: Optional[ModuleType] = None
_native_error: Optional[BaseException] = None
try:
    from . import _core as _native  # type: ignore[no-redef]
except ImportError as exc:  # pragma: no cover - depends on the build
    _native_error = exc

_warned_fallback = False


def _apply_isa_cap() -> None:
    """Cap the kernel level by ``HAMSEARCH_ISA`` (a level above what the CPU
    supports leaves the CPU's best; an unknown name is an error)."""
    cap = os.environ.get("HAMSEARCH_ISA", "").strip().lower()
    if not cap or _native is None:
        return
    if cap not in ISA_LEVELS:
        raise ValueError(f"HAMSEARCH_ISA: expected one of {', '.join(ISA_LEVELS)}, got {cap!r}")
    allowed = [level for level in _native.available_isas() if ISA_LEVELS.index(level) <= ISA_LEVELS.index(cap)]
    _native.set_isa(allowed[-1])


_apply_isa_cap()


def _env_implementation() -> str:
    value = os.environ.get("HAMSEARCH_IMPLEMENTATION", "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(
            f"HAMSEARCH_IMPLEMENTATION: expected one of {', '.join(BACKENDS)}, got {value!r}"
        )
    return value


def native_module() -> ModuleType:
    """The compiled module, or an ``ImportError`` that says why it did not load."""
    if _native is None:
        raise ImportError(
            "hamsearch: the native core hamsearch._core is not available "
            f"({_native_error!r}); build it with `pip install .`, or use backend='numba'"
        ) from _native_error
    return _native


def check_name(backend: Optional[str]) -> str:
    """A ``backend=`` argument checked and lower-cased, not resolved (None
    means ``"auto"``): the sharded index resolves it on each shard's node."""
    if backend is None:
        return "auto"
    if not isinstance(backend, str):
        raise TypeError(f"backend: expected a str (one of {', '.join(BACKENDS)}), got {type(backend).__name__}")
    backend = backend.lower()
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    return backend


def resolve(backend: Optional[str]) -> str:
    """Turn a ``backend=`` argument into ``"native"`` or ``"numba"``."""
    global _warned_fallback
    backend = check_name(backend)
    if backend == "auto":
        backend = _env_implementation()
    if backend == "native":
        native_module()
        return "native"
    if backend == "numba":
        return "numba"
    if _native is not None:
        return "native"
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            "hamsearch: the native core could not be imported "
            f"({_native_error!r}); falling back to the Numba backend, which is slower. "
            "Set HAMSEARCH_IMPLEMENTATION=native to make this an error.",
            RuntimeWarning,
            stacklevel=3,
        )
    return "numba"


def isa() -> str:
    """The native kernel level in use: ``scalar``, ``popcnt``, ``avx2`` or
    ``avx512_vpopcntdq``; ``"none"`` when the native core is not available."""
    if _native is None:
        return "none"
    return str(_native.isa())


def available_isas() -> Tuple[str, ...]:
    """Every kernel level this CPU and build support, lowest first (ignores the cap)."""
    if _native is None:
        return ()
    return tuple(_native.available_isas())


def set_isa(level: str) -> str:
    """Switch the native kernels to ``level`` and return the previous level.

    For tests and benchmarks that compare kernel levels. ``level`` must be one
    of :func:`available_isas`. Not thread-safe against running searches.
    """
    if not isinstance(level, str):
        raise TypeError(f"level: expected a str, got {type(level).__name__}")
    if level not in ISA_LEVELS:
        raise ValueError(f"level: expected one of {', '.join(ISA_LEVELS)}, got {level!r}")
    mod = native_module()
    if level not in mod.available_isas():
        raise ValueError(
            f"level: {level!r} is not supported here; available: {', '.join(mod.available_isas())}"
        )
    previous = str(mod.isa())
    mod.set_isa(level)
    return previous


def default_threads() -> int:
    """Usable cores: the process's CPU affinity where the OS reports it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
