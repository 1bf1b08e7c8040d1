"""The saved directory's ``manifest.json``: what it holds, writing it
atomically and reading it back checked field by field.

A saved :class:`ShardedIndex` is one index file per shard (``docs/format.md``)
plus this manifest, which names them; it is written last, through
``hamsearch._files.write_atomic``, so a crash leaves the old index or the new
one, never a mix."""
from __future__ import annotations

import json
import os
import uuid
from typing import Any, Dict, List, Optional, Sequence

from .._files import write_atomic
from .._limits import ID_LIMIT, MAX_NBITS
from .checks import KINDS, check_options

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "ROUTING",
    "has_files",
    "make_manifest",
    "new_shard_names",
    "read_manifest",
    "write_manifest",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "hamsearch-sharded-index"
MANIFEST_VERSION = 1
ROUTING = "splitmix64"  # shard of an id: splitmix64(id) mod num_shards
MAX_SHARDS = 1 << 20  # the most shards a manifest may name


def new_shard_names(num_shards: int) -> List[str]:
    """Fresh shard file names, never those of an earlier save (the manifest
    switches from the old files to the new ones in one rename)."""
    tag = uuid.uuid4().hex[:12]
    return [f"shard-{s:05d}-{tag}.hsidx" for s in range(num_shards)]


def make_manifest(*, nbits: int, kind: str, next_id: int, m: Optional[int], names: Sequence[str],
                  counts: Sequence[int]) -> Dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "nbits": nbits,
        "kind": kind,
        "num_shards": len(names),
        "routing": ROUTING,
        "next_id": next_id,
        "count": int(sum(counts)),
        "options": {"m": m} if kind == "mih" else {},
        "shards": [{"file": name, "count": int(count)} for name, count in zip(names, counts)],
    }


def write_manifest(path: str, manifest: Dict[str, Any]) -> None:
    text = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    write_atomic(path, text)


def has_files(directory: str) -> bool:
    """Whether ``directory`` holds anything but hidden entries."""
    with os.scandir(directory) as entries:
        return any(not e.name.startswith(".") for e in entries)


def read_manifest(path: str) -> Dict[str, Any]:
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
    num_shards = integer("num_shards", 1, MAX_SHARDS)
    integer("next_id", 0, ID_LIMIT - 1)
    if m.get("routing") != ROUTING:
        raise bad(f"expected routing {ROUTING!r}, got {m.get('routing')!r}")
    options = m.get("options")
    if not isinstance(options, dict) or set(options) - {"m"}:
        raise bad(f"expected options a mapping with at most the key 'm', got {options!r}")
    try:
        check_options(m["kind"], nbits, options)
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
    if integer("count", 0, ID_LIMIT - 1) != sum(sh["count"] for sh in shards):
        raise bad(f"expected count the sum of the shards' counts, got {m['count']}")
    return m
