"""Frozen config dataclasses: built from a mapping where an unknown key is an error."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

C = TypeVar("C")


def make_config(cls: Type[C], overrides: Optional[Mapping[str, Any]] = None) -> C:
    """``cls(**overrides)`` for a frozen dataclass, with clear errors.

    Raises
    ------
    ValueError
        For a key that is not a field of ``cls`` (a typo must not silently
        train with the default), or a value of the wrong kind for the field.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"expected a dataclass type, got {cls!r}")
    overrides = dict(overrides or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(
            f"{cls.__name__}: unknown config key(s) {unknown}; expected some of {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    coerced: Dict[str, Any] = {}
    for key, value in overrides.items():
        coerced[key] = _coerce(cls.__name__, key, hints.get(key, Any), value)
    return cls(**coerced)


def _coerce(owner: str, key: str, hint: Any, value: Any) -> Any:
    """Convert strings from the command line (``--set key=value``) to the field's type."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{owner}.{key}: expected a bool, got {value!r}")
        if not isinstance(value, bool):
            raise ValueError(f"{owner}.{key}: expected a bool, got {type(value).__name__}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"{owner}.{key}: expected an int, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{owner}.{key}: expected an int, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f"{owner}.{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{owner}.{key}: expected a number, got {value!r}") from None
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{owner}.{key}: expected a sequence, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(owner, key, item, v) for v in value)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ValueError(f"{owner}.{key}: expected one of {list(allowed)}, got {value!r}")
        return value
    return value


def parse_assignments(items: Optional[list]) -> Dict[str, str]:
    """``["lr=0.1", "gamma=1"]`` -> ``{"lr": "0.1", "gamma": "1"}`` (values coerced later)."""
    out: Dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def config_dict(config: Any) -> Dict[str, Any]:
    """A JSON-friendly dict of a config dataclass."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}
