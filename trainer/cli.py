"""``python -m trainer``: train, reproduce the MAP table, evaluate saved codes.

::

    python -m trainer train --method dcmh --dataset synthetic --bits 16 32 --out runs/dcmh
    python -m trainer train --method dcmh --dataset wiki --data ../shared/data/wiki/wikiData.mat \\
        --bits 16 32 64 128 --out runs/wiki-dcmh --epochs 100 --seed 0 --device cpu
    python -m trainer reproduce --dataset synthetic --out runs/synthetic
    python -m trainer evaluate runs/dcmh            # or codes_16.npz files
    python -m trainer methods                       # what is registered

Each run prints the MAP table in markdown (rows method / bits, columns I->T
and T->I, MAP over the whole ranking, then the tie-aware MAP, MAP@50 and the
training seconds) and writes into
``--out``: ``results.json``, ``table.md``, ``codes_{bits}.npz`` (packed uint64
query/database codes of both modalities and the {0,1} labels), the database
codes as hamsearch index files (where the engine can save), PR and top-N
PNGs (with matplotlib), ``checkpoint_{method}_{bits}.pt`` and ``train.log``.
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

log = logging.getLogger("trainer")

DEFAULT_BITS = (16, 32, 64, 128)
DIRECTIONS = (("i2t", "I->T", "query_image", "db_text"), ("t2i", "T->I", "query_text", "db_image"))
CODE_KEYS = ("query_image", "query_text", "db_image", "db_text")
LABEL_KEYS = ("query_labels", "db_labels")


# --------------------------------------------------------------------------- evaluation


def _topn_grid(n_db: int) -> np.ndarray:
    """N = 1, 5, 10, 20, 50, 100, ..., up to min(n_db, 5000): the field's top-N axis."""
    grid = [1, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000]
    out = [g for g in grid if g <= n_db]
    return np.asarray(out or [n_db], dtype=np.int64)


def evaluate_codes(codes: Mapping[str, np.ndarray], bits: int, *, seed: int = 0,
                   curves: bool = True) -> List[Dict[str, Any]]:
    """Score one ``codes_{bits}.npz``-style mapping: one entry per direction.

    Each entry: ``bits``, ``direction`` ("i2t" | "t2i"), ``map`` (MAP@all, ties
    by database row), ``map_tie_aware``, ``map_at_50`` (MAP@50: the ranking
    truncated to its top 50, the metric of the unsupervised papers),
    ``map_random`` (uniform random codes of the same length on the same split:
    the floor of MAP@all), ``map_at_50_random``, ``precision_at_100``
    (P@min(100, database)) and, with ``curves``, ``pr`` (precision/recall by
    Hamming radius 0..bits, micro-averaged) and ``topn`` (P@N over a grid).
    """
    from hamsearch import metrics

    ql, dl = codes["query_labels"], codes["db_labels"]
    nq, ndb = ql.shape[0], dl.shape[0]
    k50, k100 = min(50, ndb), min(100, ndb)
    grid = _topn_grid(ndb)
    # One pass of the engine per ranking scores every metric (hamsearch.metrics.evaluate).
    rand_q, rand_db = random_codes(nq, bits, seed), random_codes(ndb, bits, seed + 1)
    # The floors: the same random codes serve both directions, so once.
    floor = metrics.evaluate(rand_q, rand_db, ql, dl, nbits=bits, map_at=(None, k50), tie_aware=False)
    floors = {"map_random": floor["map"], "map_at_50_random": floor[f"map@{k50}"]}
    out: List[Dict[str, Any]] = []
    for key, _, qkey, dkey in DIRECTIONS:
        s = metrics.evaluate(codes[qkey], codes[dkey], ql, dl, nbits=bits, map_at=(None, k50), tie_aware=True,
                             ks=[k100], topn=grid if curves else None, pr=curves)
        entry: Dict[str, Any] = {
            "bits": int(bits),
            "direction": key,
            "map": s["map"],
            "map_tie_aware": s["map_tie_aware"],
            "map_at_50": s[f"map@{k50}"],
            **floors,
            f"precision_at_{k100}": float(s["precision_at_k"][0]),
        }
        if curves:
            prec, rec = s["pr_curve"]
            entry["pr"] = {"precision": prec.tolist(), "recall": rec.tolist()}
            entry["topn"] = {"n": grid.tolist(), "precision": s["topn_precision"].tolist()}
        out.append(entry)
    return out


def random_codes(n: int, bits: int, seed: int) -> np.ndarray:
    """Uniform random packed codes: the floor every method must clear."""
    import hamsearch

    rng = np.random.default_rng([seed, bits, n, 0x7A])
    return hamsearch.pack(rng.random((n, bits)) < 0.5)


def format_table(runs: Sequence[Mapping[str, Any]]) -> str:
    """The paper-style markdown table of one or more ``results.json`` objects.

    Columns: MAP@all in both directions, the tie-aware MAP, MAP@50 (the
    unsupervised papers' metric) and the training time of the code length.
    """
    lines = [
        "| method | bits | I->T MAP | T->I MAP | I->T MAP (tie-aware) | T->I MAP (tie-aware) "
        "| I->T MAP@50 | T->I MAP@50 | train s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    floors: Dict[int, float] = {}
    floors50: Dict[int, float] = {}
    for run in runs:
        by_bits: Dict[int, Dict[str, Mapping[str, Any]]] = {}
        for e in run["results"]:
            by_bits.setdefault(int(e["bits"]), {})[e["direction"]] = e
        for bits in sorted(by_bits):
            d = by_bits[bits]
            i2t, t2i = d.get("i2t", {}), d.get("t2i", {})

            def f(e: Mapping[str, Any], k: str) -> str:
                return f"{e[k]:.4f}" if k in e else "-"

            secs = i2t.get("train_seconds")
            lines.append(
                f"| {run.get('title') or run['method']} | {bits} | {f(i2t, 'map')} | {f(t2i, 'map')} "
                f"| {f(i2t, 'map_tie_aware')} | {f(t2i, 'map_tie_aware')} "
                f"| {f(i2t, 'map_at_50')} | {f(t2i, 'map_at_50')} | {'-' if secs is None else f'{secs:.1f}'} |"
            )
            if "map_random" in i2t:
                floors.setdefault(bits, i2t["map_random"])
            if "map_at_50_random" in i2t:
                floors50.setdefault(bits, i2t["map_at_50_random"])
    if floors:
        # The same random query and database codes serve both directions, so one value per length.
        parts = ", ".join(f"{v:.4f} ({b} bits)" for b, v in sorted(floors.items()))
        lines.append("")
        line = f"Floor: uniform random codes score MAP {parts}"
        if floors50:
            line += "; MAP@50 " + ", ".join(f"{v:.4f} ({b} bits)" for b, v in sorted(floors50.items()))
        lines.append(line + ".")
    return "\n".join(lines)


# --------------------------------------------------------------------------- outputs


def save_codes(path: Path, codes: Mapping[str, np.ndarray], *, bits: int, method: str, dataset: str) -> None:
    """``codes_{bits}.npz``: packed uint64 codes, {0,1} uint8 labels, and the metadata."""
    arrays = {k: np.ascontiguousarray(codes[k], dtype=np.uint64) for k in CODE_KEYS}
    arrays.update({k: np.ascontiguousarray(codes[k], dtype=np.uint8) for k in LABEL_KEYS})
    np.savez(path, **arrays, nbits=np.int64(bits), method=np.str_(method), dataset=np.str_(dataset))  # type: ignore[arg-type]


def load_codes(path: Path) -> Tuple[Dict[str, np.ndarray], int, str, str]:
    """Read a ``codes_{bits}.npz``: (arrays, bits, method, dataset); checked."""
    import hamsearch

    if not path.is_file():
        raise FileNotFoundError(f"codes: no such file: {path}")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in CODE_KEYS + LABEL_KEYS if k not in z.files]
        if missing:
            raise ValueError(f"{path}: expected arrays {list(CODE_KEYS + LABEL_KEYS)}, missing {missing}")
        arrays = {k: z[k] for k in CODE_KEYS + LABEL_KEYS}
        if "nbits" in z.files:
            bits = int(z["nbits"])
        else:
            stem = path.stem.rsplit("_", 1)[-1]
            bits = int(stem) if stem.isdigit() else 64 * arrays["query_image"].shape[1]
        method = str(z["method"]) if "method" in z.files else path.parent.name
        dataset = str(z["dataset"]) if "dataset" in z.files else "?"
    for k in CODE_KEYS:
        hamsearch.unpack(arrays[k], bits)  # validates dtype, width and pad bits
    from .data import as_labels

    for k in LABEL_KEYS:
        arrays[k] = as_labels(arrays[k], f"{path}: {k}")
    return arrays, bits, method, dataset


def _save_index_files(out_dir: Path, bits: int, codes: Mapping[str, np.ndarray]) -> List[str]:
    """Save the database codes of each modality as hamsearch index files.

    Needs ``hamsearch.FlatIndex.save`` (DESIGN section 3). The engine does not
    have it yet; until it does this logs a note and writes nothing. Files:
    ``index_{bits}_image.hsi`` (answers T->I) and ``index_{bits}_text.hsi``
    (answers I->T); ids are database rows, as in ``codes_{bits}.npz``.
    """
    import hamsearch

    if not hasattr(hamsearch.FlatIndex, "save"):
        log.info("hamsearch.FlatIndex has no save() yet: index files skipped; the database codes are in "
                 "codes_%d.npz (db_image, db_text)", bits)
        return []
    written = []
    for modality in ("image", "text"):
        idx = hamsearch.FlatIndex(bits)
        idx.add(codes[f"db_{modality}"])
        path = out_dir / f"index_{bits}_{modality}.hsi"
        idx.save(str(path))
        written.append(path.name)
    return written


def _plot_runs(runs: Sequence[Mapping[str, Any]], out_dir: Path, dataset: str) -> List[str]:
    from . import plots

    written: List[str] = []
    bits_all = sorted({int(e["bits"]) for r in runs for e in r["results"]})
    for bits in bits_all:
        pr, topn = [], []
        for run in runs:
            for e in run["results"]:
                if int(e["bits"]) != bits or "pr" not in e:
                    continue
                name = f"{run.get('title') or run['method']} {'I->T' if e['direction'] == 'i2t' else 'T->I'}"
                # Radii that retrieve nothing relevant (recall 0) carry no point of the curve.
                kept = [(r, p) for r, p in zip(e["pr"]["recall"], e["pr"]["precision"]) if r > 0]
                pr.append((name, [r for r, _ in kept], [p for _, p in kept]))
                topn.append((name, e["topn"]["n"], e["topn"]["precision"]))
        for kind, fn, series in (("pr", plots.pr_plot, pr), ("topn", plots.topn_plot, topn)):
            title = f"{dataset}, {bits} bits: {'precision-recall (Hamming radius)' if kind == 'pr' else 'top-N precision'}"
            p = fn(series, out_dir / f"{kind}_{bits}.png", title)
            if p is not None:
                written.append(p.name)
    return written


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n")


# --------------------------------------------------------------------------- runs


def run_method(method: str, dataset: Any, bits_list: Sequence[int], out_dir: Path, *,
               config: Optional[Mapping[str, Any]] = None, epochs: Optional[int] = None, seed: int = 0,
               device: str = "cpu", preset: Union[bool, str] = True, val_fraction: float = 0.1, progress: bool = True,
               checkpoints: bool = True, plots: bool = True, finetune: bool = False,
               backbone_lr_scale: Optional[float] = None, workers: int = 0) -> Dict[str, Any]:
    """Train ``method`` at each code length, export and score; returns the results.json object.

    Each code length writes ``encoder_{bits}.pt`` (:func:`trainer.load_encoder`),
    and the run's codes come from that encoder. ``finetune`` trains a copy of
    ``dataset.backbone`` end to end with the method's loss, per code length.
    """
    import copy

    from . import engine
    from .config import config_dict
    from .encoder import encode_dataset, from_training
    from .methods import get_method

    cls = get_method(method)
    if finetune and dataset.backbone is None:
        raise ValueError("--finetune trains an image backbone end to end: pass --image-backbone (the dataset must "
                         "hold raw images: --dataset folder, or a .mat release with raw IAll)")
    out_dir.mkdir(parents=True, exist_ok=True)
    # preset: True applies the method's preset for this dataset's name, a string another data set's
    preset_name = preset if isinstance(preset, str) else dataset.name
    if isinstance(preset, str) and preset not in cls.presets:
        log.warning("%s has no preset %r (it has %s): its defaults are used", method, preset, sorted(cls.presets))
    cfg, n_epochs = engine.settings(cls, preset_name, config, epochs, bool(preset))
    results: List[Dict[str, Any]] = []
    files: List[str] = []
    for bits in bits_list:
        backbone = copy.deepcopy(dataset.backbone) if finetune else None
        fr = engine.fit(cls, dataset, bits, config=cfg, epochs=n_epochs, seed=seed, device=device,
                        val_fraction=val_fraction, checkpoint_dir=out_dir if checkpoints else None,
                        progress=progress, backbone=backbone, backbone_lr_scale=backbone_lr_scale, workers=workers)
        encoder = from_training(fr.method, dataset)
        encoder.save(out_dir / f"encoder_{bits}.pt")
        files.append(f"encoder_{bits}.pt")
        stats: Dict[str, int] = {}
        codes = encode_dataset(encoder, dataset, stats, workers=workers, progress=progress)
        zeros = stats["zero_outputs"]
        if zeros:
            log.warning("%s, %d bits: %d outputs are exactly 0 (each became bit 1)", method, bits, zeros)
        save_codes(out_dir / f"codes_{bits}.npz", codes, bits=bits, method=method, dataset=dataset.name)
        files.append(f"codes_{bits}.npz")
        if fr.checkpoint is not None:
            files.append(fr.checkpoint.name)
        files += _save_index_files(out_dir, bits, codes)
        for entry in evaluate_codes(codes, bits, seed=seed):
            entry.update(epochs=fr.epochs, best_epoch=fr.best_epoch + 1, val_map=fr.best_val_map,
                         train_seconds=round(fr.seconds, 3), zero_outputs=zeros)
            results.append(entry)
        log.info("%s, %d bits: I->T %.4f, T->I %.4f", method, bits, results[-2]["map"], results[-1]["map"])
    files += _write_items(out_dir, dataset)
    split = dataset.split
    run = {
        "method": method,
        "title": _title(cls, dataset, finetune),
        "dataset": dataset.name,
        "dataset_description": dataset.description,
        "supervised": cls.supervised,
        "seed": seed,
        "device": str(device),
        "config": config_dict(cfg),
        "epochs": n_epochs,
        "preset": preset_name if preset and preset_name in cls.presets else None,
        "inputs": _inputs(dataset, finetune, cls, backbone_lr_scale),
        "split": {"query": int(split.query.size), "database": int(split.database.size),
                  "train": int(split.train.size), "val_fraction": val_fraction},
        "metric": ("MAP@all over Hamming ranking, ties by database row; tie-aware per He et al. CVPR 2018; "
                   "MAP@50 over the top 50 of the same ranking"),
        "versions": _versions(),
        "results": results,
    }
    if plots:
        files += _plot_runs([run], out_dir, dataset.name)
    run["files"] = sorted(set(files))
    _write_json(out_dir / "results.json", run)
    (out_dir / "table.md").write_text(format_table([run]) + "\n")
    return run


def _title(cls: Any, dataset: Any, finetune: bool) -> str:
    """The table row: the method's title, or with a backbone its name and regime
    (DCMH on frozen features is the paper's DCMH-I; end to end it is DCMH)."""
    if dataset.backbone is None:
        return str(cls.title)
    base = str(cls.title).split(" (")[0]
    if finetune and base.endswith("-I"):
        base = base[:-2]
    return f"{base} ({dataset.backbone.name}, {'end to end' if finetune else 'frozen'})"


def _inputs(dataset: Any, finetune: bool, cls: Any, backbone_lr_scale: Optional[float]) -> Dict[str, Any]:
    """What the image and text sides were trained from (results.json)."""
    bb = dataset.backbone
    image: Dict[str, Any] = {"kind": "features", "dim": int(dataset.dims[0])}
    if bb is not None:
        image = {"kind": "pixels", "backbone": bb.spec(), "weights": getattr(bb, "weights_source", None),
                 "regime": "end to end" if finetune else "frozen"}
        if finetune:
            image["backbone_lr_scale"] = float(cls.backbone_lr_scale if backbone_lr_scale is None else backbone_lr_scale)
    text: Dict[str, Any] = {"kind": "features", "dim": int(dataset.dims[1])}
    if dataset.vectorizer is not None:
        v = dataset.vectorizer
        text = {"kind": "text", "features": v.get("kind"), "analyzer": v.get("analyzer"),
                "vocabulary": len(v.get("vocabulary", []))}
    return {"image": image, "text": text}


def _write_items(out_dir: Path, dataset: Any) -> List[str]:
    """``query_items.json`` and ``database_items.json`` for datasets of raw items:
    the image paths (or ``file.mat:IAll[i]`` for a release's rows) and texts in
    query (database) order, the dataset rows, and the class names of each row
    where the files name them; ids of the index files are database rows."""
    if dataset.images is None and dataset.texts is None:
        return []
    written = []
    for part, rows in (("query", dataset.split.query), ("database", dataset.split.database)):
        images = None
        if dataset.image_names is not None:  # files a user can open again
            images = [dataset.image_names[i] for i in rows]
        elif dataset.images is not None:  # rows of a .mat release's IAll: "file.mat:IAll[i]"
            images = [dataset.images.describe(int(i)) for i in rows]
        items: Dict[str, Any] = {
            "images": images,
            "texts": None if dataset.texts is None else [dataset.texts[i] for i in rows],
            "rows": [int(i) for i in rows],
        }
        if dataset.class_names is not None:
            names = dataset.class_names
            items["classes"] = [[names[c] for c in np.flatnonzero(dataset.labels[i])] for i in rows]
        path = out_dir / f"{part}_items.json"
        path.write_text(json.dumps(items, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path.name)
    return written


def _versions() -> Dict[str, str]:
    import torch

    import hamsearch

    return {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "hamsearch": hamsearch.__version__, "isa": hamsearch.isa()}


# --------------------------------------------------------------------------- command line


def _add_data(p: argparse.ArgumentParser, *, need_dataset: bool) -> None:
    """Options that say what to read and how to turn it into features."""
    from .backbones import BACKBONES
    from .data import DATASETS

    p.add_argument("--dataset", required=need_dataset, default="synthetic", choices=DATASETS,
                   help="synthetic (embedded, no --data), npz, wiki, mirflickr, nuswide, coco (the field's .mat "
                        "files, v7 or v7.3), folder (Wiki archive layout: images/, texts/, lists)")
    p.add_argument("--data", type=Path, default=None, help="file or directory of the dataset (all but synthetic)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the initialisation and the batches")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--n-query", type=int, default=None, help="queries (overrides the dataset's protocol)")
    p.add_argument("--n-train", type=int, default=None, help="training items (overrides the protocol)")
    p.add_argument("--image-backbone", default="features", choices=("features",) + BACKBONES,
                   help="features (default: the dataset's image features as they are) or a network over raw images")
    p.add_argument("--backbone-weights", type=Path, default=None,
                   help="weights of the backbone: a torch state dict (torchvision layout) or, for cnnf, "
                        "MatConvNet's imagenet-vgg-f.mat; without it the backbone starts from random weights")
    p.add_argument("--image-size", type=int, default=224, help="side of the square backbone input (default 224)")
    p.add_argument("--text-features", default="tfidf", choices=("tfidf", "bow"),
                   help="raw texts: tf-idf (default) or {0,1} bag of words, vocabulary from the training texts")
    p.add_argument("--text-analyzer", default="word", choices=("word", "char"),
                   help="raw texts: word tokens, or character 1-2-grams (languages without spaces)")
    p.add_argument("--text-vocab", type=int, default=10000,
                   help="raw texts: keep the N most frequent terms (default 10000; 0: all)")
    p.add_argument("--text-stopwords", type=Path, default=None,
                   help="raw texts: a file of words to drop, one a line (e.g. ../shared/data/wiki/raw/stopwords.txt)")
    p.add_argument("--text-data", type=Path, default=None,
                   help="raw texts in the Wiki archive layout replacing the dataset's text, row for row "
                        "(e.g. ../shared/data/wiki/raw with --dataset wiki)")
    p.add_argument("--strict-data", action="store_true",
                   help="a listed item whose image or text is missing or unreadable is an error, not a warning")
    p.add_argument("--workers", type=int, default=2, help="processes decoding images (0: none; default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only on stderr")
    p.add_argument("--synthetic", action="append", metavar="KEY=VALUE", default=[],
                   help="synthetic data option (n, n_query, n_train, image_dim, text_dim, ...)")


def _add_common(p: argparse.ArgumentParser, *, need_dataset: bool) -> None:
    _add_data(p, need_dataset=need_dataset)
    p.add_argument("--bits", type=int, nargs="+", default=None, metavar="B", help="code lengths")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the method's, or its dataset preset's)")
    p.add_argument("--protocol", default="dcmh", choices=("dcmh", "paper"),
                   help="split sizes of mirflickr/nuswide/coco: dcmh (default: the field's common split, one for "
                        "every method) or paper (each method's own paper or code; docs/methods.md)")
    p.add_argument("--finetune", action="store_true",
                   help="train the image backbone end to end with the method's loss (default: frozen features)")
    p.add_argument("--backbone-lr-scale", type=float, default=None,
                   help="the backbone's learning rate relative to the method's (default: the method's)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training items held out to choose the epoch (default 0.1; 0: last epoch)")
    p.add_argument("--no-preset", action="store_true", help="ignore the method's per-dataset preset")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="use the methods' presets of another data set (e.g. wiki for a Wiki-layout folder); "
                        "default: the dataset's own")
    p.add_argument("--no-checkpoints", action="store_true", help="do not write checkpoint_*.pt")
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG curves")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one method at one or more code lengths")
    t.add_argument("--method", required=True, help="a registered method (python -m trainer methods)")
    _add_common(t, need_dataset=True)
    t.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="method config override, repeatable (an unknown key is an error)")

    r = sub.add_parser("reproduce", help="every method at 16 32 64 128 bits on one dataset: the MAP table")
    r.add_argument("--methods", nargs="+", default=None, help="subset of the methods (default: all)")
    _add_common(r, need_dataset=False)

    f = sub.add_parser("features", help="extract frozen backbone features once, into the project's .npz layout")
    _add_data(f, need_dataset=True)
    f.add_argument("--out", type=Path, required=True, help="the .npz to write (image, text, labels, split)")

    e = sub.add_parser("evaluate", help="score saved codes_{bits}.npz files")
    e.add_argument("codes", nargs="+", type=Path, help="codes_{bits}.npz files or directories holding them")
    e.add_argument("--out", type=Path, default=None, help="write results.json, table.md and PNGs here")
    e.add_argument("--no-plots", action="store_true")
    e.add_argument("--quiet", action="store_true")

    sub.add_parser("methods", help="list the registered methods")
    return parser


def _setup_logging(out: Optional[Path], quiet: bool) -> List[logging.Handler]:
    root = logging.getLogger("trainer")
    root.setLevel(logging.DEBUG)
    handlers: List[logging.Handler] = []
    h = logging.StreamHandler(sys.stderr)
    h.setLevel(logging.WARNING if quiet else logging.INFO)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    handlers.append(h)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(out / "train.log")
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handlers.append(fh)
    for hd in handlers:
        root.addHandler(hd)
    return handlers


def _load(args: argparse.Namespace, method: Optional[str] = None) -> Any:
    from .config import parse_assignments
    from .data import PROTOCOLS, load_raw, prepare, protocol_sizes
    from .engine import resolve_device

    synth = parse_assignments(args.synthetic)
    if synth and args.dataset != "synthetic":
        raise ValueError("--synthetic options apply to --dataset synthetic only")
    n_query, n_train = args.n_query, args.n_train
    protocol = getattr(args, "protocol", "dcmh")
    if args.dataset in PROTOCOLS and protocol == "paper":
        pq, pt = protocol_sizes(args.dataset, method, protocol)
        n_query = pq if n_query is None else n_query
        n_train = pt if n_train is None else n_train
    raw = load_raw(args.dataset, args.data, seed=args.seed, n_query=n_query, n_train=n_train, synthetic=synth,
                   strict=args.strict_data, text_data=args.text_data)
    backbone = None
    device = resolve_device(args.device)
    if args.image_backbone != "features":
        import torch

        from .backbones import build_backbone

        backbone = build_backbone(args.image_backbone, weights=args.backbone_weights, image_size=args.image_size,
                                  generator=torch.Generator().manual_seed(args.seed)).to(device)
        if args.backbone_weights is None:
            log.warning("%s: no --backbone-weights, so the backbone starts from random weights (seed %d)",
                        args.image_backbone, args.seed)
    elif args.backbone_weights is not None:
        raise ValueError("--backbone-weights needs --image-backbone (cnnf, resnet18, ...)")
    ds = prepare(raw, backbone=backbone, text_features=args.text_features, text_analyzer=args.text_analyzer,
                 text_vocab=args.text_vocab or None, text_stopwords=args.text_stopwords, device=device, workers=args.workers, progress=not args.quiet,
                 centre=args.command != "features")
    log.info("%s", ds.summary())
    return ds


def _features(args: argparse.Namespace) -> int:
    """``python -m trainer features``: the frozen features in the .npz layout, with the split."""
    from .data import save_npz

    t0 = time.perf_counter()
    ds = _load(args)
    if ds.backbone is None and ds.vectorizer is None:
        raise ValueError(f"{ds.name} holds features already: features needs raw images (--image-backbone) or raw "
                         "texts to turn into features")
    out = args.out if args.out.suffix == ".npz" else args.out.with_suffix(".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, ds.image, ds.text, ds.labels, ds.split)
    print(f"{ds.summary()}\nwrote {out} in {time.perf_counter() - t0:.1f} s; train on it with "
          f"--dataset npz --data {out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "methods":
        from .methods import available_methods, get_method

        for name in available_methods():
            cls = get_method(name)
            kind = "supervised" if cls.supervised else "unsupervised"
            print(f"{name:10s} {cls.title} ({kind}; presets: {', '.join(cls.presets) or 'none'})")
        return 0
    log_dir = None if args.command == "features" else getattr(args, "out", None)  # features: --out is a file
    handlers = _setup_logging(log_dir, args.quiet)
    try:
        return _dispatch(parser, args)
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        log.debug("failed", exc_info=True)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        root = logging.getLogger("trainer")
        for h in handlers:
            root.removeHandler(h)
            h.close()


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "evaluate":
        return _evaluate(args)
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.command == "features":
        return _features(args)
    from .methods import available_methods

    t0 = time.perf_counter()
    bits = args.bits or list(DEFAULT_BITS)
    preset: Union[bool, str] = False if args.no_preset else (args.preset or True)
    common = dict(epochs=args.epochs, seed=args.seed, device=args.device, preset=preset,
                  val_fraction=args.val_fraction, progress=not args.quiet, checkpoints=not args.no_checkpoints,
                  plots=not args.no_plots, finetune=args.finetune, backbone_lr_scale=args.backbone_lr_scale,
                  workers=args.workers)
    if args.command == "train":
        from .config import parse_assignments

        ds = _load(args, args.method)
        run = run_method(args.method, ds, bits, args.out, config=parse_assignments(args.set), **common)
        runs = [run]
    else:
        methods = args.methods or available_methods()
        unknown = [m for m in methods if m not in available_methods()]
        if unknown:
            raise ValueError(f"--methods: expected some of {available_methods()}, got {unknown}")
        runs = []
        failed: Dict[str, str] = {}
        cache: Dict[Any, Any] = {}
        for m in methods:  # one dataset per split: "paper" protocols differ between methods
            key = _split_key(args, m)
            if key not in cache:
                cache[key] = _load(args, m)
            ds = cache[key]
            try:
                runs.append(run_method(m, ds, bits, args.out / m, **common))
            except FloatingPointError as exc:  # one diverging method must not lose the others' table
                log.error("%s failed: %s", m, exc)
                failed[m] = str(exc)
        combined = {"dataset": ds.name, "seed": args.seed, "bits": bits, "protocol": args.protocol, "methods": runs,
                    "failed": failed}
        _write_json(args.out / "results.json", combined)
        (args.out / "table.md").write_text(format_table(runs) + "\n")
        if not args.no_plots:
            _plot_runs(runs, args.out, ds.name)
    print(f"\n{ds.summary()}\n")
    print(format_table(runs))
    print(f"\n{time.perf_counter() - t0:.1f} s; outputs in {args.out}")
    if args.command == "reproduce" and failed:
        print(f"failed: {', '.join(f'{m} ({msg})' for m, msg in failed.items())}", file=sys.stderr)
        return 1
    return 0


def _split_key(args: argparse.Namespace, method: str) -> Any:
    from .data import PROTOCOLS, protocol_sizes

    if args.protocol == "paper" and args.dataset in PROTOCOLS:
        return protocol_sizes(args.dataset, method, "paper")
    return None


def _evaluate(args: argparse.Namespace) -> int:
    files: List[Path] = []
    for p in args.codes:
        if p.is_dir():
            found = sorted(p.glob("codes_*.npz"), key=lambda f: (len(f.name), f.name))
            if not found:
                raise FileNotFoundError(f"{p}: no codes_*.npz in this directory")
            files += found
        else:
            files.append(p)
    runs: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for f in files:
        arrays, bits, method, dataset = load_codes(f)
        run = runs.setdefault((method, dataset), {"method": method, "dataset": dataset, "results": []})
        for entry in evaluate_codes(arrays, bits):
            entry["codes"] = str(f)
            run["results"].append(entry)
    ordered = list(runs.values())
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        obj: Any = ordered[0] if len(ordered) == 1 else {"methods": ordered}
        _write_json(args.out / "results.json", obj)
        (args.out / "table.md").write_text(format_table(ordered) + "\n")
        if not args.no_plots:
            _plot_runs(ordered, args.out, ordered[0]["dataset"])
    print(format_table(ordered))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
