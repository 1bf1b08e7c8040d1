"""The registry of hashing methods: one module per method.

A method is a :class:`trainer.engine.HashMethod` subclass in
``trainer/methods/<name>.py``. Adding one takes that file and one line in
:data:`BUILTIN` below; out-of-tree methods call
:func:`register` on their class. Modules are imported on first use, so a
method with heavy imports costs nothing until it is asked for.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Dict, List, Type

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import HashMethod

#: name -> "module:Class" of the methods shipped here, in table order.
BUILTIN: Dict[str, str] = {
    "dcmh": "trainer.methods.dcmh:DCMH",
    "bi_ncmh": "trainer.methods.bi_ncmh:BiNCMH",
    "dbrc": "trainer.methods.dbrc:DBRC",
    "dcgh": "trainer.methods.dcgh:DCGH",
    "uchm": "trainer.methods.uchm:UCHM",
    "cca_itq": "trainer.methods.cca_itq:CCAITQ",
}

_registered: Dict[str, "Type[HashMethod]"] = {}


def register(cls: "Type[HashMethod]") -> "Type[HashMethod]":
    """Register a method class under ``cls.name`` (usable as a decorator)."""
    if not getattr(cls, "name", ""):
        raise ValueError(f"{cls!r}: a method class needs a non-empty 'name'")
    _registered[cls.name] = cls
    return cls


def available_methods() -> List[str]:
    """Every method name: the shipped ones in table order, then registered ones."""
    return list(BUILTIN) + [n for n in _registered if n not in BUILTIN]


def get_method(name: str) -> "Type[HashMethod]":
    """The method class registered under ``name``."""
    if name in _registered:
        return _registered[name]
    if name not in BUILTIN:
        raise ValueError(f"method: expected one of {available_methods()}, got {name!r}")
    module, _, attr = BUILTIN[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    _registered[name] = cls
    return cls


__all__ = ["BUILTIN", "available_methods", "get_method", "register"]
