"""Codes produced by the trainer: a data source of the benchmark suite.

The rest of the suite searches uniform random codes (:class:`bench.peers.Dataset`):
every bit is a fair coin, so the distances from a query to the database
concentrate around ``nbits / 2`` and no code has close neighbours. Codes that a
hashing method has learned look different. Items with the same labels get
nearby codes, so the database is a union of tight clusters, one for each
label combination that occurs, and a query usually has many database codes a
few bits away, often at the same distance. That changes how a search behaves:
more ties at the k-th distance, small radii returning many items, unequal
multi-index hashing buckets. This module trains a real method on real (or
realistically structured) features and hands back the codes, so that the
benchmark also measures the searchers on the codes they will be used on.

Two sources:

- ``"synthetic"``: the trainer's embedded set (:func:`trainer.data.make_synthetic`,
  shaped like MIRFLICKR-25K: 24 correlated labels, about 3.8 per item, dense
  image features and a sparse bag of words) at any size. ``n`` database items
  and ``nq`` queries, 2,000 of the database items for training.
- ``"wiki"``: the Wiki set (Rasiwasia et al. 2010, ``wikiData.mat``) with its
  fixed split: 2,173 database items and 693 queries in 10 classes.

Both train DCGH (:mod:`trainer.methods.dcgh`) with the data set's preset and
take the database items' *image* codes as the database and the queries' *text*
codes as the queries: a cross-modal text -> image search, the field's T->I
direction. Everything follows from ``seed`` (data, split, initialisation,
batches), so that the same call gives the same codes on the same machine and
torch thread count (the cache key holds the thread count).

Training takes minutes on a CPU at n = 100,000; ``cache_dir`` keeps the result
(one ``.npz`` per call signature, checked on reading, rewritten when stale).
Where torch, the trainer or the Wiki file is missing, :func:`trained_codes`
raises :class:`bench.peers.Unavailable`, which the suite reports as a skip.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import numbers
import os
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np

from hamsearch._files import write_atomic

from .peers import Unavailable

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "wiki")
METHOD = "dcgh"
DEFAULT_N = 100_000  # synthetic database items
QUICK_N = 5_000  # synthetic database items with quick=True
QUICK_EPOCHS = 3  # epochs with quick=True (smoke runs), for either source
N_TRAIN = 2_000  # synthetic training items, drawn from the database
MAX_NBITS = 1 << 20  # hamsearch's limit; the trainer takes any positive length
CACHE_FORMAT = 1  # bumped when the cache file's layout or meaning changes

ROOT = Path(__file__).resolve().parents[1]
PathLike = Union[str, "os.PathLike[str]"]

_INSTALL_HINT = 'install the trainer\'s extra from the repository root: pip install -e ".[train]"'


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedCodes:
    """Learned codes of one data set, ready for the searchers.

    Attributes
    ----------
    source : str
        ``"synthetic"`` or ``"wiki"``.
    nbits : int
        Code length in bits.
    codes : ndarray of uint64, shape (n, ceil(nbits / 64))
        The database: image codes of the database items. C-contiguous, pad
        bits zero.
    queries : ndarray of uint64, shape (nq, ceil(nbits / 64))
        Text codes of the query items (a cross-modal T->I search). Same layout.
    description : str
        One line for the benchmark report.
    train_seconds : float
        Wall-clock seconds spent making the codes (data set, training,
        encoding); 0.0 when they were read from the cache.
    """

    source: str
    nbits: int
    codes: np.ndarray
    queries: np.ndarray
    description: str
    train_seconds: float

    @property
    def n(self) -> int:
        """Database items."""
        return int(self.codes.shape[0])

    @property
    def nq(self) -> int:
        """Queries."""
        return int(self.queries.shape[0])


def wiki_path() -> Path:
    """Where the Wiki file is looked for: ``$HAMSEARCH_DATA/wiki/wikiData.mat``,
    by default ``../shared/data/wiki/wikiData.mat`` next to the repository."""
    base = os.environ.get("HAMSEARCH_DATA")
    data = Path(base) if base else ROOT.parent / "shared" / "data"
    return data / "wiki" / "wikiData.mat"


def trained_codes(
    source: str,
    nbits: int,
    *,
    n: Optional[int] = None,
    nq: int = 1000,
    seed: int = 0,
    cache_dir: Optional[PathLike] = None,
    quick: bool = False,
    threads: Optional[int] = None,
) -> TrainedCodes:
    """Train DCGH on ``source`` and return its database image codes and query text codes.

    Parameters
    ----------
    source : {"synthetic", "wiki"}
        The trainer's embedded synthetic set, or Wiki with its fixed split.
    nbits : int
        Code length, ``1 <= nbits <= 2**20`` (the trainer takes any positive
        length; hamsearch's limit bounds it).
    n : int, optional
        Synthetic: database items (default 100,000; 5,000 with ``quick``).
        Wiki: must be None or Wiki's 2,173 (its split is fixed).
    nq : int
        Synthetic: queries, drawn apart from the database (default 1,000).
        Wiki: ignored, all 693 of its queries are used.
    seed : int
        Seeds the synthetic data and split and the training (initialisation,
        batches, validation carve) through the trainer's own ``seed``.
    cache_dir : str or os.PathLike, optional
        Directory for ``trained-{source}-b{nbits}-n{n}-q{nq}-s{seed}[-quick].npz``:
        read when its key (method, epochs, config, data, torch version and
        thread count) matches and its arrays check out, otherwise (re)computed
        and written atomically (a call with another thread count replaces the file).
    quick : bool
        Smoke runs: 3 epochs, and 5,000 synthetic database items unless ``n``
        is given.
    threads : int, optional
        torch CPU threads while training (restored afterwards); default:
        torch's current setting. Codes are bit-identical for a given seed and
        thread count, but may differ between thread counts (Wiki's 50 epochs
        at 128 bits do). On a small shared machine one thread is the safe
        choice: these matrices are small, and two threads competing with
        other work for two cores can be many times slower than one.

    Returns
    -------
    TrainedCodes

    Raises
    ------
    TypeError, ValueError
        For an argument of the wrong type or out of range.
    bench.peers.Unavailable
        Where torch, scipy or the trainer cannot be imported, or the Wiki file
        is missing.
    """
    if not isinstance(source, str) or source not in SOURCES:
        raise ValueError(f"source: expected one of {list(SOURCES)}, got {source!r}")
    nbits = _check_int("nbits", nbits, 1, MAX_NBITS)
    if n is not None:
        n = _check_int("n", n, 1)
    nq = _check_int("nq", nq, 1)
    seed = _check_int("seed", seed, 0)
    if threads is not None:
        threads = _check_int("threads", threads, 1)
    if not isinstance(quick, (bool, np.bool_)):
        raise TypeError(f"quick: expected a bool, got {type(quick).__name__}")
    quick = bool(quick)

    engine, data_mod, torch_version = _import_trainer()
    cls = _method_class()

    wiki_file: Optional[Path] = None
    if source == "wiki":
        wiki_file = wiki_path()
        if not wiki_file.is_file():
            raise Unavailable(
                f"the Wiki data set is missing: no file {wiki_file}; put wikiData.mat (Rasiwasia et al. 2010, "
                "variables I_tr, T_tr, L_tr, I_te, T_te, L_te) there, or point $HAMSEARCH_DATA at a "
                "directory holding wiki/wikiData.mat"
            )
        # The split is fixed: the sizes come from the file (cheap to read, 1 MB).
        dataset = data_mod.load_dataset("wiki", wiki_file)
        n_db, n_q = int(dataset.split.database.size), int(dataset.split.query.size)
        if n is not None and n != n_db:
            raise ValueError(f"n: Wiki's split is fixed at {n_db} database items; expected None or {n_db}, got {n}")
        data_key: Dict[str, Any] = {"file_sha256": _sha256(wiki_file), "database": n_db, "queries": n_q}
    else:
        dataset = None
        n_db = n if n is not None else (QUICK_N if quick else DEFAULT_N)
        n_q = nq
        data_key = {"spec": dataclasses.asdict(_synthetic_spec(data_mod, n_db, n_q))}

    cfg, epochs = engine.settings(cls, source, None, QUICK_EPOCHS if quick else None)
    from trainer.config import config_dict

    # The thread count is part of the key: float reductions split differently
    # over threads, and over 50 epochs that changes the codes.
    train_threads = threads if threads is not None else _torch_threads()
    key = json.dumps(
        {
            "format": CACHE_FORMAT, "source": source, "nbits": nbits, "n": n_db, "nq": n_q, "seed": seed,
            "quick": quick, "method": METHOD, "epochs": epochs, "config": config_dict(cfg), "data": data_key,
            "torch": torch_version, "torch_threads": train_threads,
        },
        sort_keys=True,
    )
    words = (nbits + 63) // 64
    path: Optional[Path] = None
    if cache_dir is not None:
        name = f"trained-{source}-b{nbits}-n{n_db}-q{n_q}-s{seed}{'-quick' if quick else ''}.npz"
        path = Path(cache_dir) / name
        cached = _read_cache(path, key, nbits, (n_db, words), (n_q, words))
        if cached is not None:
            codes, queries, description = cached
            return TrainedCodes(source, nbits, codes, queries, description, 0.0)

    t0 = time.perf_counter()
    previous = _torch_threads()
    if threads is not None:
        _set_torch_threads(threads)
    try:
        if dataset is None:
            dataset = data_mod.load_dataset(
                "synthetic", seed=seed, n_query=n_q, n_train=min(N_TRAIN, n_db), synthetic={"n": n_db + n_q}
            )
        fr = engine.fit(cls, dataset, nbits, config=cfg, epochs=epochs, seed=seed, device="cpu",
                        checkpoint_dir=None, progress=False)
        stats: Dict[str, int] = {}
        from trainer.encoder import encode_dataset

        encoded = encode_dataset(fr.method, dataset, stats)
    finally:
        if threads is not None:
            _set_torch_threads(previous)
    seconds = time.perf_counter() - t0
    if stats.get("zero_outputs"):
        log.info("%s, %d bits: %d outputs were exactly 0 (each became bit 1)", source, nbits, stats["zero_outputs"])

    codes = np.ascontiguousarray(encoded["db_image"], dtype=np.uint64)
    queries = np.ascontiguousarray(encoded["query_text"], dtype=np.uint64)
    problem = _check_codes(codes, (n_db, words), nbits) or _check_codes(queries, (n_q, words), nbits)
    if problem:  # pragma: no cover - the trainer's packing guarantees the layout
        raise AssertionError(f"trained codes: {problem}")
    description = _describe(source, nbits, n_db, n_q, seed, epochs, fr.best_epoch + 1, quick)
    if path is not None:
        _write_cache(path, key, codes, queries, description)
    return TrainedCodes(source, nbits, codes, queries, description, seconds)


# --------------------------------------------------------------------------- helpers


def _check_int(name: str, value: Any, lo: int, hi: Optional[int] = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo} <= {name} <= {hi}" if hi is not None else f"{name} >= {lo}"
        raise ValueError(f"{name}: expected {bound}, got {value}")
    return value


def _import_trainer() -> Tuple[Any, Any, str]:
    """(trainer.engine, trainer.data, torch version), or Unavailable saying what is missing."""
    try:
        import torch
    except ImportError as exc:
        raise Unavailable(f"torch is not installed ({exc}); {_INSTALL_HINT}") from exc
    try:
        import scipy.stats  # noqa: F401 - make_synthetic and the .mat reader need scipy
    except ImportError as exc:
        raise Unavailable(f"scipy is not installed ({exc}); {_INSTALL_HINT}") from exc
    try:
        from trainer import data as data_mod
        from trainer import engine
    except ImportError as exc:
        raise Unavailable(
            f"the trainer package did not import ({exc!r}); run from the repository root or {_INSTALL_HINT}"
        ) from exc
    return engine, data_mod, str(torch.__version__)


def _method_class() -> Any:
    from trainer.methods import get_method

    return get_method(METHOD)


def _synthetic_spec(data_mod: Any, n_db: int, n_q: int) -> Any:
    """The SyntheticSpec that load_dataset builds for this call (its fields go into the cache key)."""
    return data_mod.SyntheticSpec(n=n_db + n_q, n_query=n_q, n_train=min(N_TRAIN, n_db))


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _describe(source: str, nbits: int, n: int, nq: int, seed: int, epochs: int, best: int, quick: bool) -> str:
    if source == "synthetic":
        data = f"a {n + nq:,}-item synthetic MIRFLICKR-like set (24 labels)"
    else:
        data = "Wiki (10 classes, fixed split)"
    return (
        f"DCGH codes ({epochs} epochs{', quick' if quick else ''}, best epoch {best}, seed {seed}) of {data}, "
        f"{nbits} bits: image codes of {n:,} database items, text codes of {nq:,} queries (T->I)"
    )


def _check_codes(arr: Any, shape: Tuple[int, int], nbits: int) -> Optional[str]:
    """None when ``arr`` is a C-contiguous uint64 array of ``shape`` with zero pad bits, else what is wrong."""
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint64:
        return f"expected uint64 codes, got {getattr(arr, 'dtype', type(arr).__name__)}"
    if arr.shape != shape:
        return f"expected shape {shape}, got {arr.shape}"
    if not arr.flags.c_contiguous:
        return "expected C-contiguous codes"
    if nbits % 64 and arr.size and np.any(arr[:, -1] >> np.uint64(nbits % 64)):
        return f"expected the pad bits above bit {nbits} to be zero"
    return None


def _read_cache(path: Path, key: str, nbits: int, db_shape: Tuple[int, int],
                q_shape: Tuple[int, int]) -> Optional[Tuple[np.ndarray, np.ndarray, str]]:
    """The cached (codes, queries, description), or None where the file is absent,
    unreadable, stale (another key) or fails the checks."""
    if not path.is_file():
        return None
    try:
        # Our own handle: np.load leaves its file open when a truncated archive fails to parse.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            stored_key = str(z["key"][()])
            if stored_key != key:
                log.info("%s: stale cache (another key); recomputing", path)
                return None
            codes, queries = z["codes"], z["queries"]
            description = str(z["description"][()])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("%s: unreadable cache (%s); recomputing", path, exc)
        return None
    for what, arr, shape in (("codes", codes, db_shape), ("queries", queries, q_shape)):
        problem = _check_codes(arr, shape, nbits)
        if problem:
            log.warning("%s: bad cached %s (%s); recomputing", path, what, problem)
            return None
    return codes, queries, description


def _write_cache(path: Path, key: str, codes: np.ndarray, queries: np.ndarray, description: str) -> None:
    """Write the cache file atomically (``hamsearch._files.write_atomic``)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    buf = io.BytesIO()
    np.savez(buf, codes=codes, queries=queries, description=np.str_(description), key=np.str_(key))
    write_atomic(str(path), buf.getbuffer())


__all__ = ["SOURCES", "TrainedCodes", "trained_codes", "wiki_path"]
