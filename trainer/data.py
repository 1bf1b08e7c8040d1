"""Datasets for cross-modal hashing: features of two modalities, labels, a split.

A :class:`Dataset` holds

- ``image``: ``(n, d_image)`` float32 image features,
- ``text``: ``(n, d_text)`` float32 text features (bag of words, topics, ...),
- ``labels``: ``(n, L)`` uint8 in {0, 1} (multi-label; single-label sets are one-hot),
- ``split``: a :class:`Split` of row indices: ``query`` (the test queries),
  ``database`` (what the queries retrieve) and ``train`` (inside the database,
  as in the field's protocols).

Loaders, one per layout (``load_dataset`` picks by name):

- ``synthetic``: :func:`make_synthetic`, the embedded default, no file.
- ``npz``: :func:`load_npz`, the project's own ``.npz`` with ``image``, ``text``,
  ``labels`` (and optionally ``query``, ``database``, ``train`` index arrays).
- ``mirflickr``, ``nuswide``, ``coco``: :func:`load_mat_triplet`, the field's
  ``.mat`` files with ``IAll`` / ``YAll`` / ``LAll`` (one file each or one file
  holding all three), split by the field's protocol with a seed.
- ``wiki``: :func:`load_wiki`, the ``wikiData.mat`` layout with its fixed split.

Features are centred on the training items' means (``Dataset.centred``): the
Wiki protocol asks for it, the MATLAB DCMH code does it to the bag of words, and
CCA needs it. Numpy and scipy only; no torch here.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .images import ImageSource

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: The field's protocols (DESIGN section 5): (queries, training items drawn from the database).
PROTOCOLS: Dict[str, Tuple[int, int]] = {
    "mirflickr": (2000, 10000),
    "nuswide": (2100, 10500),
    "coco": (5000, 10000),
}

#: Dataset names of the command line; every one but ``synthetic`` needs a path.
DATASETS = ("synthetic", "npz", "wiki", "mirflickr", "nuswide", "coco", "folder")


class DataError(ValueError):
    """A data file or array that does not have the expected content."""


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
    """Row indices (int64, ascending) of the query, database and training items.

    ``query`` and ``database`` are disjoint; ``train`` lies inside ``database``
    (the field's protocols train on part of the retrieval set).
    """

    query: np.ndarray
    database: np.ndarray
    train: np.ndarray

    def check(self, n: int) -> None:
        """Raise :class:`DataError` unless the split is valid for ``n`` items."""
        for name in ("query", "database", "train"):
            idx = getattr(self, name)
            if idx.ndim != 1 or idx.dtype != np.int64:
                raise DataError(f"split.{name}: expected a 1-D int64 index array, got {idx.dtype} {idx.shape}")
            if idx.size == 0:
                raise DataError(f"split.{name}: expected at least one item, got none")
            if idx.min() < 0 or idx.max() >= n:
                raise DataError(f"split.{name}: expected indices in [0, {n}), got {idx.min()}..{idx.max()}")
            if np.unique(idx).size != idx.size:
                raise DataError(f"split.{name}: expected unique indices, got duplicates")
        if np.intersect1d(self.query, self.database).size:
            raise DataError("split: expected disjoint query and database items, got shared rows")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Two modalities, labels and a split; see the module docstring."""

    name: str
    image: np.ndarray
    text: np.ndarray
    labels: np.ndarray
    split: Split
    centred: bool = False
    description: str = ""
    #: the raw images, row for row (a :class:`trainer.images.ImageSource`), where
    #: the image features came from a backbone over them; None for feature sets
    images: Optional[ImageSource] = None
    #: a name per row of ``images`` that a user can open again (file paths), if any
    image_names: Optional[Tuple[str, ...]] = None
    #: the raw texts, row for row, where the text features came from a vocabulary
    texts: Optional[Tuple[str, ...]] = None
    #: the fitted vocabulary (:meth:`trainer.text.TextVectorizer.state`) of ``texts``
    vectorizer: Optional[Dict[str, Any]] = None
    #: the backbone (a :class:`trainer.backbones.Backbone`) whose features ``image`` holds
    backbone: Any = None
    #: the name of each label column, where the files name them
    class_names: Optional[Tuple[str, ...]] = None
    #: the training means subtracted by :meth:`centre` (float64), None before
    image_offset: Optional[np.ndarray] = None
    text_offset: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        check_arrays(self.image, self.text, self.labels, where=self.name)
        self.split.check(self.image.shape[0])
        n = self.image.shape[0]
        for what, items in (("images", self.images), ("image_names", self.image_names), ("texts", self.texts)):
            if items is not None and len(items) != n:
                raise DataError(f"{self.name}: expected {n} {what}, one per row, got {len(items)}")

    @property
    def n(self) -> int:
        return int(self.image.shape[0])

    @property
    def dims(self) -> Tuple[int, int, int]:
        """(image features, text features, labels)."""
        return int(self.image.shape[1]), int(self.text.shape[1]), int(self.labels.shape[1])

    def centre(self) -> "Dataset":
        """A copy with both modalities centred on the training items' means."""
        if self.centred:
            return self
        tr = self.split.train
        image_offset = self.image[tr].mean(axis=0, dtype=np.float64)
        text_offset = self.text[tr].mean(axis=0, dtype=np.float64)
        return dataclasses.replace(self, image=centre_rows(self.image, image_offset),
                                   text=centre_rows(self.text, text_offset), centred=True,
                                   image_offset=image_offset, text_offset=text_offset)

    def summary(self) -> str:
        s = self.split
        dimg, dtxt, nlab = self.dims
        per_item = self.labels.sum(axis=1).mean()
        return (
            f"{self.name}: {self.n} items, image {dimg}-d, text {dtxt}-d, {nlab} labels "
            f"({per_item:.2f} per item); {s.query.size} queries, {s.database.size} database, "
            f"{s.train.size} training"
        )


def centre_rows(x: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``x - offset`` in float64, as float32: the one centring of the training
    features and of every item an encoder sees later (so both agree bit for bit)."""
    return (np.asarray(x, dtype=np.float32) - offset).astype(np.float32)


# --------------------------------------------------------------------------- checks


def as_labels(labels: Any, where: str = "labels") -> np.ndarray:
    """``labels`` as a C-contiguous (n, L) uint8 array, checked to hold only 0 and 1."""
    arr = np.asarray(labels)
    if arr.ndim == 1:
        raise DataError(
            f"{where}: expected an (n, L) {{0,1}} label matrix, got a 1-D array of shape {arr.shape}; "
            "for class ids use one_hot()"
        )
    if arr.ndim != 2:
        raise DataError(f"{where}: expected an (n, L) {{0,1}} label matrix, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected numeric {{0,1}} labels, got dtype {arr.dtype}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5]
        raise DataError(
            f"{where}: expected labels in {{0, 1}}, got other values such as {bad.tolist()}; "
            "class ids need one_hot(), scores need thresholding"
        )
    return np.ascontiguousarray(arr, dtype=np.uint8)


def as_features(x: Any, where: str) -> np.ndarray:
    """``x`` as a C-contiguous 2-D float32 array of finite values (sparse matrices are densified)."""
    if hasattr(x, "toarray"):  # scipy.sparse
        x = x.toarray()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise DataError(f"{where}: expected a 2-D (n, d) feature matrix, got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected numeric features, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.all(np.isfinite(arr)):
        raise DataError(f"{where}: expected finite features, got NaN or infinity")
    return arr


def check_arrays(image: np.ndarray, text: np.ndarray, labels: np.ndarray, where: str) -> None:
    rows = {"image": image.shape[0], "text": text.shape[0], "labels": labels.shape[0]}
    if len(set(rows.values())) != 1:
        raise DataError(f"{where}: expected the same number of rows in image, text and labels, got {rows}")
    if rows["image"] == 0:
        raise DataError(f"{where}: expected at least one item, got none")


def one_hot(class_ids: Any, classes: Optional[np.ndarray] = None, where: str = "labels") -> np.ndarray:
    """Class ids (any integers, shape (n,) or (n, 1)) -> (n, C) uint8 one-hot over ``classes``
    (default: the sorted distinct ids)."""
    ids = np.asarray(class_ids)
    if ids.ndim == 2 and ids.shape[1] == 1:
        ids = ids[:, 0]
    if ids.ndim != 1:
        raise DataError(f"{where}: expected class ids of shape (n,) or (n, 1), got {ids.shape}")
    if ids.dtype.kind == "f":
        if not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
            raise DataError(f"{where}: expected integer class ids, got non-integer values")
        ids = ids.astype(np.int64)
    if classes is None:
        classes = np.unique(ids)
    pos = np.searchsorted(classes, ids)
    pos = np.clip(pos, 0, len(classes) - 1)
    if not np.all(classes[pos] == ids):
        raise DataError(f"{where}: expected class ids among {classes.tolist()}, got others")
    out = np.zeros((ids.size, len(classes)), dtype=np.uint8)
    out[np.arange(ids.size), pos] = 1
    return out


# --------------------------------------------------------------------------- splits


def protocol_split(n: int, n_query: int, n_train: int, seed: int) -> Split:
    """The field's random split: ``n_query`` random queries, the rest the
    database, and ``n_train`` random database items for training.

    Raises DataError where the sizes do not fit in ``n`` items.
    """
    if n_query < 1 or n_query >= n:
        raise DataError(f"split: expected 1 <= queries < {n} items, got {n_query} queries")
    if n_train < 1 or n_train > n - n_query:
        raise DataError(
            f"split: expected 1 <= training items <= database size {n - n_query}, got {n_train}; "
            "pass a smaller --n-train"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n).astype(np.int64)
    query, database = perm[:n_query], perm[n_query:]
    train = database[rng.permutation(database.size)[:n_train]]
    return Split(np.sort(query), np.sort(database), np.sort(train))


# --------------------------------------------------------------------------- synthetic

#: MIRFLICKR-25K's label frequencies (fraction of the 20,015 items carrying each
#: of the 24 labels; mean 3.78 labels per item), measured on LAll.
MIRFLICKR_LABEL_FREQ = np.array(
    [0.132, 0.009, 0.032, 0.049, 0.161, 0.029, 0.231, 0.078, 0.041, 0.316, 0.035, 0.237,
     0.112, 0.392, 0.370, 0.137, 0.041, 0.057, 0.341, 0.423, 0.092, 0.122, 0.199, 0.144]
)


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and noise levels of the synthetic set (see :func:`make_synthetic`)."""

    n: int = 5000
    n_query: int = 500
    n_train: int = 2000
    image_dim: int = 512
    text_dim: int = 300
    n_factors: int = 6
    image_noise: float = 1.0
    image_nuisance: float = 1.0
    text_topic_words: int = 25
    text_tags_mean: float = 6.0
    text_on_topic: float = 0.6

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "SyntheticSpec":
        """The spec with ``options`` over the defaults (strings are converted;
        an unknown key is a ValueError)."""
        from .config import make_config

        return make_config(cls, options)


def make_synthetic(seed: int = 0, spec: Optional[SyntheticSpec] = None, **options: Any) -> Dataset:
    """The embedded default: a seeded two-modality, multi-label set shaped like MIRFLICKR-25K.

    - **Labels**: 24 labels with MIRFLICKR-25K's label frequencies (so about
      3.8 labels per item) and correlations between them, from a Gaussian copula
      over ``n_factors`` latent scene factors; every item has at least one label.
    - **Image**: dense, non-negative features (like CNN fc7 activations): a
      per-label prototype summed over the item's labels, plus a nuisance
      component from latent factors unrelated to the labels (lighting, style)
      and isotropic noise, through a ReLU.
    - **Text**: a sparse {0,1} bag of words, a few tags per item (MIRFLICKR has
      4.6 on average): each tag comes with probability ``text_on_topic`` from
      one of the item's labels' topic words, otherwise from a Zipf background
      vocabulary (noise that is specific to the text).
    - **Split**: the field's protocol in miniature: ``n_query`` random queries,
      the rest the database, ``n_train`` database items for training.

    A random ranking scores MAP near the fraction of pairs sharing a label
    (about 0.5, as on MIRFLICKR); learned codes do clearly better. Everything
    follows from ``seed``.
    """
    if spec is None:
        spec = SyntheticSpec.from_options(options)
    elif options:
        spec = dataclasses.replace(spec, **options)
    rng = np.random.default_rng([seed, 0x5EED])
    n, nlab = spec.n, MIRFLICKR_LABEL_FREQ.size

    # Labels: Gaussian copula with a low-rank factor structure, thresholds set
    # to MIRFLICKR's marginals.
    from scipy.stats import norm

    loadings = rng.normal(0.0, 1.0, (nlab, spec.n_factors)) * (rng.random((nlab, spec.n_factors)) < 0.35)
    loadings *= 0.8 / np.maximum(np.linalg.norm(loadings, axis=1, keepdims=True), 1e-9)
    factors = rng.standard_normal((n, spec.n_factors))
    z = factors @ loadings.T + rng.standard_normal((n, nlab)) * np.sqrt(1.0 - (loadings**2).sum(axis=1))
    thresholds = norm.ppf(1.0 - MIRFLICKR_LABEL_FREQ)
    labels = (z > thresholds).astype(np.uint8)
    empty = labels.sum(axis=1) == 0
    labels[np.flatnonzero(empty), np.argmax(z[empty] - thresholds, axis=1)] = 1

    # Image: dense, non-negative.
    d = spec.image_dim
    prototypes = rng.standard_normal((nlab, d))
    count = labels.sum(axis=1, keepdims=True).astype(np.float64)
    signal = (labels @ prototypes) / np.sqrt(count)
    nuisance_dirs = rng.standard_normal((8, d))
    nuisance = rng.standard_normal((n, 8)) @ nuisance_dirs / np.sqrt(8.0)
    pre = signal + spec.image_nuisance * nuisance + spec.image_noise * rng.standard_normal((n, d))
    image = np.maximum(pre, 0.0).astype(np.float32)

    # Text: sparse {0,1} bag of words.
    v = spec.text_dim
    topic_words = np.stack([rng.choice(v, size=spec.text_topic_words, replace=False) for _ in range(nlab)])
    background = 1.0 / np.arange(1, v + 1) ** 1.1
    background = rng.permutation(background / background.sum())
    n_tags = 1 + rng.poisson(spec.text_tags_mean - 1.0, size=n)
    text = np.zeros((n, v), dtype=np.float32)
    for i in range(n):
        own = np.flatnonzero(labels[i])
        k = n_tags[i]
        on_topic = rng.random(k) < spec.text_on_topic
        topic = own[rng.integers(0, own.size, size=k)]
        word_in_topic = rng.integers(0, spec.text_topic_words, size=k)
        words = np.where(on_topic, topic_words[topic, word_in_topic], rng.choice(v, size=k, p=background))
        text[i, words] = 1.0

    split = protocol_split(n, spec.n_query, spec.n_train, seed)
    return Dataset(
        name="synthetic",
        image=image,
        text=text,
        labels=labels,
        split=split,
        description=f"embedded synthetic set (seed {seed}), shaped like MIRFLICKR-25K",
    )


# --------------------------------------------------------------------------- files


def require_file(path: PathLike, what: str) -> Path:
    """``path`` as a Path, or FileNotFoundError / DataError saying it is missing or a directory."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what}: no such file: {p}")
    if not p.is_file():
        raise DataError(f"{what}: expected a file, got a directory: {p}")
    return p


def read_mat(path: PathLike, names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The variables of a MATLAB ``.mat`` file, v4 to v7 (scipy) or v7.3 (HDF5, h5py),
    in MATLAB's axis order either way (:mod:`trainer.matfile`); ``names``: only these."""
    from .matfile import open_mat

    with open_mat(require_file(path, ".mat file")) as f:
        return {k: f.array(k) for k in (f.names if names is None else names) if k in f.names}


def _get(variables: Mapping[str, Any], name: str, path: PathLike) -> Any:
    if name not in variables:
        have = sorted(variables)
        raise DataError(f"{path}: expected a variable {name!r}, got only {have}")
    return variables[name]


def load_npz(
    path: PathLike,
    *,
    seed: int = 0,
    n_query: Optional[int] = None,
    n_train: Optional[int] = None,
    name: str = "npz",
) -> Dataset:
    """The project's ``.npz`` layout.

    Required arrays: ``image`` (n, d_image), ``text`` (n, d_text), ``labels``
    (n, L) in {0, 1}. Optional: ``query``, ``database`` and ``train`` index
    arrays that fix the split; otherwise it is drawn with ``seed``: ``n_query``
    queries (default min(2000, n // 10)) and ``n_train`` training items from the
    database (default min(10000, the database)).
    """
    p = require_file(path, ".npz file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise DataError(f"{p}: not a readable .npz file: {exc}") from None
    image = as_features(_get(arrays, "image", p), f"{p}: image")
    text = as_features(_get(arrays, "text", p), f"{p}: text")
    labels = as_labels(_get(arrays, "labels", p), f"{p}: labels")
    check_arrays(image, text, labels, where=str(p))
    n = image.shape[0]
    given = [k for k in ("query", "database", "train") if k in arrays]
    if given:
        if len(given) != 3:
            raise DataError(f"{p}: expected all of query, database and train index arrays or none, got {given}")
        split = Split(*(np.sort(np.asarray(arrays[k]).astype(np.int64).ravel()) for k in ("query", "database", "train")))
        if n_query is not None or n_train is not None:
            log.warning("%s fixes its split; --n-query / --n-train are ignored", p)
    else:
        nq = min(2000, n // 10) if n_query is None else n_query
        nt = min(10000, n - nq) if n_train is None else n_train
        split = protocol_split(n, max(nq, 1), nt, seed)
    return Dataset(name=name, image=image, text=text, labels=labels, split=split, description=str(p))


def save_npz(path: PathLike, image: Any, text: Any, labels: Any, split: Optional[Split] = None) -> None:
    """Write the ``.npz`` layout read by :func:`load_npz` (checked first)."""
    image = as_features(image, "image")
    text = as_features(text, "text")
    labels = as_labels(labels)
    check_arrays(image, text, labels, where="save_npz")
    extra: Dict[str, np.ndarray] = {}
    if split is not None:
        split.check(image.shape[0])
        extra = {"query": split.query, "database": split.database, "train": split.train}
    np.savez(path, image=image, text=text, labels=labels, **extra)  # type: ignore[arg-type]


def _triplet_files(path: Path) -> Dict[str, Path]:
    """Map IAll / YAll / LAll to files: one .mat holding all three, or a
    directory with one file per variable (named like ``*iall*.mat``)."""
    if path.is_file():
        return {"IAll": path, "YAll": path, "LAll": path}
    if not path.exists():
        raise FileNotFoundError(f"mat data: no such file or directory: {path}")
    found: Dict[str, Path] = {}
    mats = sorted(path.glob("*.mat"))
    for var in ("IAll", "YAll", "LAll"):
        hits = [m for m in mats if var.lower() in m.name.lower()]
        if len(hits) > 1:
            raise DataError(f"{path}: expected one file named like *{var.lower()}*.mat, got {[h.name for h in hits]}")
        if hits:
            found[var] = hits[0]
    if len(found) < 3 and len(mats) == 1:  # one combined file in the directory
        return {"IAll": mats[0], "YAll": mats[0], "LAll": mats[0]}
    missing = [v for v in ("IAll", "YAll", "LAll") if v not in found]
    if missing:
        hint = ""
        if "IAll" in missing and "YAll" in found:
            hint = (
                "; the image features (IAll, e.g. CNN-F fc7 of the images) are missing: "
                "add them as *iall*.mat, or build an .npz with image, text, labels"
            )
        raise DataError(
            f"{path}: expected files named like *iall*.mat, *yall*.mat, *lall*.mat "
            f"(or one .mat holding IAll, YAll, LAll), missing {missing}{hint}"
        )
    return found


def _mat_triplet(path: PathLike, name: str) -> Tuple[Union[np.ndarray, ImageSource], np.ndarray, np.ndarray, str]:
    """(image features or raw images, text, labels, description) of the field's IAll / YAll / LAll files."""
    from .matfile import open_mat

    files = _triplet_files(Path(path))
    opened: Dict[Path, Any] = {}
    try:
        for f in files.values():
            if f not in opened:
                opened[f] = open_mat(f)
        for var, f in files.items():
            if var not in opened[f].names:
                raise DataError(f"{f}: expected a variable {var!r}, got only {sorted(opened[f].names)}")
        fi = files["IAll"]
        if len(opened[fi].shape("IAll")) == 4:  # raw H x W x 3 x N images, read lazily
            image: Union[np.ndarray, ImageSource] = opened[fi].images("IAll")
        else:
            image = as_features(opened[fi].array("IAll"), f"{fi}: IAll")
        text = as_features(opened[files["YAll"]].array("YAll"), f"{files['YAll']}: YAll")
        labels = as_labels(opened[files["LAll"]].array("LAll"), f"{files['LAll']}: LAll")
    finally:
        for f in opened.values():
            f.close()
    n_image = len(image) if isinstance(image, ImageSource) else image.shape[0]
    rows = {"IAll": n_image, "YAll": text.shape[0], "LAll": labels.shape[0]}
    if len(set(rows.values())) != 1:
        raise DataError(f"{path}: expected the same number of items in IAll, YAll and LAll, got {rows}")
    return image, text, labels, str(path)


def load_mat_triplet(
    path: PathLike,
    *,
    name: str = "mirflickr",
    seed: int = 0,
    n_query: Optional[int] = None,
    n_train: Optional[int] = None,
) -> Dataset:
    """The field's ``IAll`` (image), ``YAll`` (text), ``LAll`` (labels) ``.mat`` files.

    ``path`` is one ``.mat`` holding all three variables, or a directory with
    one file per variable (``*iall*.mat``, ``*yall*.mat``, ``*lall*.mat``, as
    the DCMH releases name them), MATLAB v4 to v7 or v7.3 (HDF5). The split
    follows the protocol of ``name`` (:data:`PROTOCOLS`): e.g. MIRFLICKR-25K,
    2,000 random queries and 10,000 database items for training;
    ``n_query``/``n_train`` override it. Raw images in ``IAll`` need an image
    backbone: use :func:`load_raw` and :func:`prepare`.
    """
    return prepare(load_raw(name, path, seed=seed, n_query=n_query, n_train=n_train), centre=False)


def load_wiki(path: PathLike) -> Dataset:
    """Wiki's ``wikiData.mat`` layout (Rasiwasia et al. 2010) with the field's fixed protocol.

    Variables ``I_tr``, ``T_tr``, ``L_tr`` (training) and ``I_te``, ``T_te``,
    ``L_te`` (test); labels are class ids (n, 1), turned into one-hot rows over
    the classes present (or (n, C) {0,1} matrices, taken as they are). The test
    items are the queries; the training items are both the database and the
    training set.
    """
    p = require_file(path, "wiki .mat file")
    v = read_mat(p)
    parts = {k: _get(v, k, p) for k in ("I_tr", "T_tr", "L_tr", "I_te", "T_te", "L_te")}
    img_tr = as_features(parts["I_tr"], f"{p}: I_tr")
    img_te = as_features(parts["I_te"], f"{p}: I_te")
    txt_tr = as_features(parts["T_tr"], f"{p}: T_tr")
    txt_te = as_features(parts["T_te"], f"{p}: T_te")
    ltr, lte = np.asarray(parts["L_tr"]), np.asarray(parts["L_te"])
    if ltr.ndim == 2 and ltr.shape[1] > 1:
        lab_tr, lab_te = as_labels(ltr, f"{p}: L_tr"), as_labels(lte, f"{p}: L_te")
    else:
        classes = np.unique(np.concatenate([ltr.ravel(), lte.ravel()]))
        lab_tr = one_hot(ltr, classes, f"{p}: L_tr")
        lab_te = one_hot(lte, classes, f"{p}: L_te")
    check_arrays(img_tr, txt_tr, lab_tr, where=f"{p} (training part)")
    check_arrays(img_te, txt_te, lab_te, where=f"{p} (test part)")
    for a, b, what in ((img_tr, img_te, "image"), (txt_tr, txt_te, "text"), (lab_tr, lab_te, "label")):
        if a.shape[1] != b.shape[1]:
            raise DataError(f"{p}: expected the same {what} width in training and test, got {a.shape[1]} and {b.shape[1]}")
    ntr, nte = img_tr.shape[0], img_te.shape[0]
    train = np.arange(ntr, dtype=np.int64)
    split = Split(query=np.arange(ntr, ntr + nte, dtype=np.int64), database=train, train=train.copy())
    return Dataset(
        name="wiki",
        image=np.concatenate([img_tr, img_te]),
        text=np.concatenate([txt_tr, txt_te]),
        labels=np.concatenate([lab_tr, lab_te]),
        split=split,
        description=str(p),
    )


# --------------------------------------------------------------------------- raw data


@dataclasses.dataclass(frozen=True, eq=False)
class RawData:
    """A dataset as read from its files, before features: image features or
    raw images (an :class:`ImageSource`), text features or raw texts, labels and
    the split. :func:`prepare` turns it into a :class:`Dataset`."""

    name: str
    image: Union[np.ndarray, ImageSource]
    text: Union[np.ndarray, Tuple[str, ...]]
    labels: np.ndarray
    split: Split
    description: str = ""
    image_names: Optional[Tuple[str, ...]] = None
    class_names: Optional[Tuple[str, ...]] = None

    @property
    def raw_images(self) -> bool:
        return isinstance(self.image, ImageSource)

    @property
    def raw_texts(self) -> bool:
        return isinstance(self.text, tuple)


def protocol_sizes(name: str, method: Optional[str] = None, protocol: str = "dcmh") -> Tuple[int, int]:
    """(queries, training items) of dataset ``name`` under ``protocol``.

    ``"dcmh"``: the field's common split (:data:`PROTOCOLS`), the same for every
    method, so that one table compares methods on one split. ``"paper"``: the
    method's own paper or released code where it differs
    (:data:`PAPER_PROTOCOLS`; docs/methods.md has the table).
    """
    if protocol not in ("dcmh", "paper"):
        raise ValueError(f"protocol: expected 'dcmh' or 'paper', got {protocol!r}")
    nq, nt = PROTOCOLS.get(name, PROTOCOLS["mirflickr"])
    if protocol == "paper" and method in PAPER_PROTOCOLS:
        own = PAPER_PROTOCOLS[method]
        nq, nt = own.get("query", nq), own.get("train", nt)
    return nq, nt


#: Where a paper's protocol differs from DCMH's (queries, training items):
#: DCGH's released code draws 5,000 queries and 10,000 training items [code];
#: the unsupervised papers (DBRC, UCHM) train on 5,000 pairs and report MAP@50
#: [third-party tables, ANCHORS.md].
PAPER_PROTOCOLS: Dict[str, Dict[str, int]] = {
    "dcgh": {"query": 5000, "train": 10000},
    "dbrc": {"train": 5000},
    "uchm": {"train": 5000},
}


def _seeded_split(n: int, name: str, seed: int, n_query: Optional[int], n_train: Optional[int]) -> Split:
    dq, dt = PROTOCOLS.get(name, PROTOCOLS["mirflickr"])
    nq = dq if n_query is None else n_query
    nt = min(dt, n - nq) if n_train is None else n_train
    return protocol_split(n, nq, nt, seed)


def load_raw(
    name: str,
    path: Optional[PathLike] = None,
    *,
    seed: int = 0,
    n_query: Optional[int] = None,
    n_train: Optional[int] = None,
    synthetic: Optional[Mapping[str, Any]] = None,
    strict: bool = False,
    text_data: Optional[PathLike] = None,
) -> RawData:
    """Read a dataset by its command-line name (:data:`DATASETS`), before features.

    ``folder`` reads the Wiki archive layout (:func:`trainer.folder.load_folder`:
    raw images and texts; ``strict`` makes a missing or unreadable item an error
    instead of a warning). ``text_data`` replaces the text modality by the raw
    texts of a folder in that layout, row for row (Wiki's raw archive beside
    ``wikiData.mat``). The split of ``mirflickr`` / ``nuswide`` / ``coco`` /
    ``npz`` / ``synthetic`` is drawn with ``seed``; ``n_query`` / ``n_train``
    override the protocol's sizes.
    """
    if name not in DATASETS:
        raise ValueError(f"dataset: expected one of {list(DATASETS)}, got {name!r}")
    image_names: Optional[Tuple[str, ...]] = None
    if name == "synthetic":
        if path is not None:
            raise ValueError("dataset 'synthetic' is generated, not read: drop --data")
        opts = dict(synthetic or {})
        if n_query is not None:
            opts["n_query"] = n_query
        if n_train is not None:
            opts["n_train"] = n_train
        ds = make_synthetic(seed, **opts)
        raw = RawData(ds.name, ds.image, ds.text, ds.labels, ds.split, ds.description)
    elif path is None:
        raise ValueError(f"dataset {name!r} needs a path: pass --data PATH")
    elif name == "npz":
        ds = load_npz(path, seed=seed, n_query=n_query, n_train=n_train)
        raw = RawData(ds.name, ds.image, ds.text, ds.labels, ds.split, ds.description)
    elif name == "wiki":
        if n_query is not None or n_train is not None:
            log.warning("wiki has a fixed split; --n-query / --n-train are ignored")
        ds = load_wiki(path)
        raw = RawData(ds.name, ds.image, ds.text, ds.labels, ds.split, ds.description)
    elif name == "folder":
        from .folder import load_folder

        if n_query is not None or n_train is not None:
            log.warning("a folder set has its split in its lists; --n-query / --n-train are ignored")
        fd = load_folder(path, strict=strict)
        image_names = tuple(fd.images.paths)
        raw = RawData(f"folder:{Path(path).name}", fd.images, tuple(fd.texts), fd.labels, fd.split, str(path),
                      image_names, tuple(fd.class_names))
    else:
        image, text, labels, desc = _mat_triplet(path, name)
        n = len(image) if isinstance(image, ImageSource) else image.shape[0]
        raw = RawData(name, image, text, labels, _seeded_split(n, name, seed, n_query, n_train), desc)
    if text_data is not None:
        raw = _with_texts(raw, text_data, strict)
    raw.split.check(raw.labels.shape[0])
    return raw


def _with_texts(raw: RawData, root: PathLike, strict: bool) -> RawData:
    """``raw`` with its texts replaced by a Wiki-layout folder's, which must list the same items."""
    from .folder import load_folder_texts

    ft = load_folder_texts(root, strict=strict)
    if ft.skipped:
        raise DataError(f"{root}: {len(ft.skipped)} listed texts are missing or unreadable, so its rows no longer "
                        f"pair with {raw.name}'s; first: {ft.skipped[0]}")
    if ft.n != raw.labels.shape[0] or not np.array_equal(ft.labels, raw.labels):
        raise DataError(f"{root}: expected the items of {raw.name} row for row ({raw.labels.shape[0]} rows with the "
                        f"same labels), got {ft.n} rows" + (" with other labels" if ft.n == raw.labels.shape[0] else ""))
    return dataclasses.replace(raw, text=tuple(ft.texts), description=f"{raw.description}; texts from {root}")


def prepare(
    raw: RawData,
    *,
    backbone: Any = None,
    text_features: str = "tfidf",
    text_analyzer: str = "word",
    text_vocab: Optional[int] = None,
    text_stopwords: Optional[PathLike] = None,
    device: Any = "cpu",
    workers: int = 0,
    progress: bool = False,
    centre: bool = True,
) -> Dataset:
    """Features of a :class:`RawData`: the :class:`Dataset` the methods train on.

    - Raw images go through ``backbone`` (a :class:`trainer.backbones.Backbone`)
      once, frozen, in batches (``workers`` decoding processes); a backbone
      from random weights first gets its BatchNorm statistics estimated on the
      training images (:func:`trainer.pixels.calibrate_batchnorm`); the dataset
      keeps the images and the backbone, for end-to-end training and for the
      encoder. Image features are used as they are, and a backbone beside them
      is an error.
    - Raw texts get a vocabulary (:class:`trainer.text.TextVectorizer`:
      ``text_features`` "tfidf" or "bow", ``text_analyzer`` "word" or "char",
      ``text_vocab`` terms at most, the words of the file ``text_stopwords``
      left out) fitted on the **training items only**; the
      dataset keeps the texts and the fitted vocabulary.
    - ``centre`` centres both modalities on the training items' means.
    """
    images: Optional[ImageSource] = None
    if raw.raw_images:
        if backbone is None:
            raise DataError(
                f"{raw.name}: the images are raw pixels ({len(raw.image)} images), which need an image backbone: "  # type: ignore[arg-type]
                "pass --image-backbone cnnf|resnet18|resnet50|vgg16|vit_b_32 (with --backbone-weights FILE for "
                "pretrained weights), or extract features once with `python -m trainer features`"
            )
        from .pixels import calibrate_batchnorm, extract_features

        images = raw.image  # type: ignore[assignment]
        if getattr(backbone, "weights_source", "") is None:  # random weights: BatchNorm statistics of nothing
            n_bn = calibrate_batchnorm(backbone, images, raw.split.train, device=device,  # type: ignore[arg-type]
                                       workers=workers)
            if n_bn:
                log.info("%s: the BatchNorm statistics of the randomly initialised backbone were estimated on "
                         "the %d training images (%d layers)", raw.name, raw.split.train.size, n_bn)
        image = extract_features(backbone, images, device=device, workers=workers, progress=progress)  # type: ignore[arg-type]
    else:
        if backbone is not None:
            raise DataError(f"{raw.name}: the dataset holds image features, not images, so an image backbone has "
                            "nothing to read: drop --image-backbone (or pass --image-backbone features)")
        image = raw.image  # type: ignore[assignment]
    texts: Optional[Tuple[str, ...]] = None
    vectorizer: Optional[Dict[str, Any]] = None
    if raw.raw_texts:
        from .text import TextVectorizer, read_stopwords

        texts = raw.text  # type: ignore[assignment]
        stop = read_stopwords(text_stopwords) if text_stopwords is not None else None
        vec = TextVectorizer(kind=text_features, analyzer=text_analyzer, max_features=text_vocab, stop_words=stop)
        vec.fit([texts[i] for i in raw.split.train])  # type: ignore[index]
        text = vec.transform(texts)  # type: ignore[arg-type]
        vectorizer = vec.state()
        log.info("%s: text vocabulary of %d %s terms (%s) fitted on the %d training texts", raw.name, vec.dim,
                 text_analyzer, text_features, raw.split.train.size)
    else:
        text = raw.text  # type: ignore[assignment]
    ds = Dataset(name=raw.name, image=as_features(image, f"{raw.name}: image"),
                 text=as_features(text, f"{raw.name}: text"), labels=raw.labels, split=raw.split,
                 description=raw.description, images=images, image_names=raw.image_names, texts=texts,
                 class_names=raw.class_names,
                 vectorizer=vectorizer, backbone=backbone if images is not None else None)
    return ds.centre() if centre else ds


def load_dataset(
    name: str,
    path: Optional[PathLike] = None,
    *,
    seed: int = 0,
    n_query: Optional[int] = None,
    n_train: Optional[int] = None,
    centre: bool = True,
    synthetic: Optional[Mapping[str, Any]] = None,
    **options: Any,
) -> Dataset:
    """Load a dataset by its command-line name (:data:`DATASETS`): :func:`load_raw`
    then :func:`prepare` (``options``: ``strict``, ``text_data`` for the former,
    ``backbone``, ``text_*``, ``device``, ``workers``, ``progress`` for the latter).

    ``seed`` draws the split (and the synthetic data); ``centre`` centres both
    modalities on the training means (the default for every dataset).
    """
    raw_keys = {"strict", "text_data"}
    raw = load_raw(name, path, seed=seed, n_query=n_query, n_train=n_train, synthetic=synthetic,
                   **{k: v for k, v in options.items() if k in raw_keys})
    return prepare(raw, centre=centre, **{k: v for k, v in options.items() if k not in raw_keys})
