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
call that has no answer ``timeout`` seconds after it began raises it too: no
call waits forever, and one deadline bounds the whole call, the restart of a
shard and the call sent again after it included. Once the index has been saved (or was loaded) and a shard has
not changed since, the shard is recoverable: Ray restarts its actor
(``max_restarts``), the actor reloads its file in ``__init__`` (or, for an
index that was created and then saved, on the driver's request), and the call
that met the restart is sent again, so searches go on answering with nothing
lost. A shard that changed since the last save cannot come back whole: it
raises :class:`ShardError`, and so does every later call, until the index is
loaded again from its directory. A shard that only ran out of the call's
time while it came back is not lost: the next call finishes restoring it.

Layout
------
``merge``
    routing ids to shards, merging top-k, radius and rank results (numpy only);
``actor``
    the Ray actor that holds one shard, and how it is created;
``cluster``
    importing Ray and joining or starting the cluster;
``manifest``
    the saved directory's ``manifest.json``: written atomically, read back checked;
``checks``
    argument checks;
``faults``
    :class:`ShardError` and how Ray's actor errors are read;
``calls``
    calls to the shards: gathering, restarts, recovery, timeouts;
``index``
    :class:`ShardedIndex` and :func:`load`.
"""
from __future__ import annotations

# The public names, and the others the single module this package replaced
# offered (bench/bench_distributed.py times merge_topk; tests read route and
# _key_shift), all importable from here.
from .checks import KINDS  # noqa: F401
from .faults import ShardError
from .index import DEFAULT_MAX_RESTARTS, DEFAULT_TIMEOUT, ShardedIndex, load  # noqa: F401
from .manifest import MANIFEST_FORMAT, MANIFEST_NAME, MANIFEST_VERSION, ROUTING  # noqa: F401
from .merge import _key_shift, merge_radius, merge_rank, merge_topk, route  # noqa: F401

__all__ = ["MANIFEST_NAME", "ShardError", "ShardedIndex", "load"]

# Tracebacks and reprs name them where users import them from.
ShardError.__module__ = ShardedIndex.__module__ = __name__
