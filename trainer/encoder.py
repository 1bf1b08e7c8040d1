"""The trained model as a retrieval service uses it: new images and texts in,
packed codes out.

Every ``train`` run writes ``encoder_{bits}.pt`` beside its codes;
:func:`load_encoder` reads it back into an :class:`Encoder`::

    import hamsearch as hs
    import trainer

    enc = trainer.load_encoder("runs/webnews/encoder_64.pt")
    q = enc.encode_text(["习近平会见..."])          # (1, 1) uint64, hamsearch's layout
    index = hs.load("runs/webnews/index_64_image.hsi")
    D, I = index.query(q, k=10)                     # ids are database rows of the run

An encoder takes what the model was trained on:

- images: file paths (decoded by content), PIL images or a ``uint8`` array
  ``(n, H, W, 3)`` where the model holds an image backbone; a feature matrix
  ``(n, d)`` otherwise (the same features the dataset had, uncentred: the
  encoder centres them on the training means, as the run did);
- texts: strings where the model holds a fitted vocabulary; a feature matrix
  otherwise (e.g. MIRFLICKR-25K's tag vectors).

The run computes its own ``codes_{bits}.npz`` through the same object, so
encoding the run's query items again (``query_items.json`` for datasets of
raw items, in query order, as one list) gives exactly its query codes on the
same machine and device. Encoding a subset can differ in a bit whose output
lies within float rounding of 0, since a batch's composition can change the
last bits of a convolution.

The file holds only tensors, numbers, strings, lists and dicts: it is read
with ``torch.load(weights_only=True)``, never by unpickling code.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .data import Dataset, centre_rows
from .images import ArrayImages, ImageSource
from .pixels import IMAGE_BATCH, BackboneHead, backbone_outputs

log = logging.getLogger(__name__)

FORMAT = "hamsearch-encoder"
VERSION = 1

PathLike = Union[str, "Path"]


class _ListImages(ImageSource):
    """Images of different sizes held in a list (PIL images or arrays a user passed)."""

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self.images = list(images)

    def __len__(self) -> int:
        return len(self.images)

    def read(self, indices: Sequence[int]) -> List[np.ndarray]:
        return [self.images[i] for i in self._check_indices(indices)]


def _as_image_source(items: Any) -> ImageSource:
    """Paths, PIL images, (H, W, 3) uint8 arrays or one (n, H, W, 3) uint8 array -> an ImageSource."""
    if isinstance(items, ImageSource):
        return items
    if isinstance(items, (str, Path)):
        raise TypeError("images: expected a list of paths (or images), got a single path; wrap it in a list")
    if isinstance(items, np.ndarray):
        if items.ndim == 4 and items.shape[3] == 3 and items.dtype == np.uint8:
            return ArrayImages(items)
        raise ValueError(f"images: expected a uint8 array of shape (n, H, W, 3), got {items.dtype} {items.shape}; "
                         "this encoder holds an image backbone, so it takes pixels, not features")
    try:
        seq = list(items)
    except TypeError:
        raise TypeError(f"images: expected a list of paths, PIL images or arrays, got {type(items).__name__}") from None
    if not seq:
        raise ValueError("images: expected at least one image, got none")
    if all(isinstance(x, (str, Path)) for x in seq):
        from .folder import FileImages

        return FileImages([str(x) for x in seq])
    out: List[np.ndarray] = []
    for i, x in enumerate(seq):
        if hasattr(x, "convert") and hasattr(x, "size"):  # a PIL image
            out.append(np.asarray(x.convert("RGB"), dtype=np.uint8))
        elif isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[2] == 3 and x.dtype == np.uint8:
            out.append(np.ascontiguousarray(x))
        else:
            raise TypeError(f"images[{i}]: expected a path, a PIL image or an (H, W, 3) uint8 array, "
                            f"got {type(x).__name__} {getattr(x, 'shape', '')}")
    return _ListImages(out)


def _as_texts(items: Any) -> List[str]:
    if isinstance(items, str):
        raise TypeError("texts: expected a list of strings, got a single string; wrap it in a list")
    try:
        seq = list(items)
    except TypeError:
        raise TypeError(f"texts: expected a list of strings, got {type(items).__name__}") from None
    bad = [i for i, t in enumerate(seq) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts: expected strings, got {type(seq[bad[0]]).__name__} at position {bad[0]}")
    if not seq:
        raise ValueError("texts: expected at least one text, got none")
    return seq


class Encoder:
    """A trained hashing model's two encoders; see the module docstring.

    Attributes
    ----------
    nbits : int
        Code length; codes are ``(n, ceil(nbits / 64))`` uint64 (``hamsearch.pack``).
    method : str
        The method that trained it.
    image_input : str
        ``"pixels"`` (paths, PIL images, uint8 arrays) or ``"features"``.
    text_input : str
        ``"text"`` (strings) or ``"features"``.
    """

    def __init__(self, method: Any, *, image_offset: np.ndarray, text_offset: np.ndarray,
                 backbone: Optional[nn.Module] = None, vectorizer: Optional[Mapping[str, Any]] = None,
                 batch: int = IMAGE_BATCH) -> None:
        self._method = method
        self.nbits = int(method.bits)
        self.method = str(method.name)
        self.device = method.device
        self.image_offset = np.asarray(image_offset, dtype=np.float64)
        self.text_offset = np.asarray(text_offset, dtype=np.float64)
        self.batch = int(batch)
        net = method.networks["image"]
        self.finetuned = isinstance(net, BackboneHead)
        if backbone is not None and not self.finetuned:
            offset = torch.from_numpy(self.image_offset.astype(np.float32))
            net = BackboneHead(backbone, offset, net).to(self.device)
        self._image_net = net
        self.backbone: Optional[nn.Module] = net.backbone if isinstance(net, BackboneHead) else None
        self.image_input = "pixels" if self.backbone is not None else "features"
        self._vectorizer_state = dict(vectorizer) if vectorizer is not None else None
        self._vectorizer = None
        if vectorizer is not None:
            from .text import TextVectorizer

            self._vectorizer = TextVectorizer.from_state(dict(vectorizer))
        self.text_input = "text" if self._vectorizer is not None else "features"

    def __repr__(self) -> str:
        bb = f", backbone {getattr(self.backbone, 'name', '?')}{' fine-tuned' if self.finetuned else ''}" if self.backbone is not None else ""
        return (f"Encoder({self.method}, {self.nbits} bits, images: {self.image_input}{bb}, "
                f"texts: {self.text_input})")

    # ------------------------------------------------------------------ outputs
    def _features(self, items: Any, width: int, offset: np.ndarray, what: str) -> torch.Tensor:
        if isinstance(items, torch.Tensor):
            items = items.detach().cpu().numpy()
        arr = np.asarray(items)
        if arr.ndim != 2 or arr.shape[1] != width or arr.dtype.kind not in "biuf":
            raise ValueError(f"{what}: this encoder takes features, expected a numeric (n, {width}) array, "
                             f"got {arr.dtype} {arr.shape}")
        if arr.shape[0] == 0:
            raise ValueError(f"{what}: expected at least one row, got none")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}: expected finite features, got NaN or infinity")
        return torch.from_numpy(centre_rows(arr, offset))

    def centred_outputs(self, modality: str, x: np.ndarray) -> torch.Tensor:
        """Real outputs of features that are centred already (a :class:`Dataset`'s)."""
        # Features go to the method's own network (a backbone wrapper passes them to its head).
        return self._method.outputs(modality, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))

    def image_outputs(self, items: Any, *, workers: int = 0, rows: Optional[np.ndarray] = None,
                      progress: bool = False) -> torch.Tensor:
        """Real-valued outputs ``(n, nbits)`` of images (see :meth:`encode_image`)."""
        if self.backbone is None:
            return self._method.outputs("image", self._features(items, self._width("image"), self.image_offset, "images"))
        source = _as_image_source(items)
        rows = np.arange(len(source), dtype=np.int64) if rows is None else rows
        return backbone_outputs(self._image_net, source, rows, device=self.device, batch=self.batch,  # type: ignore[arg-type]
                                workers=workers, progress=progress, desc="encoding images")

    def text_outputs(self, items: Any) -> torch.Tensor:
        """Real-valued outputs ``(n, nbits)`` of texts (see :meth:`encode_text`)."""
        if self._vectorizer is None:
            return self._method.outputs("text", self._features(items, self._width("text"), self.text_offset, "texts"))
        feats = self._vectorizer.transform(_as_texts(items))
        return self._method.outputs("text", torch.from_numpy(centre_rows(feats, self.text_offset)))

    def _width(self, modality: str) -> int:
        return int(self.image_offset.size if modality == "image" else self.text_offset.size)

    # ------------------------------------------------------------------ codes
    def encode_image(self, items: Any, *, workers: int = 0) -> np.ndarray:
        """Packed codes of images: paths, PIL images or ``(n, H, W, 3)`` uint8
        (a model with a backbone), else an ``(n, d)`` feature matrix.
        ``workers`` processes decode image files."""
        return _pack(self.image_outputs(items, workers=workers))

    def encode_text(self, items: Any) -> np.ndarray:
        """Packed codes of texts: a list of strings (a model with a vocabulary),
        else an ``(n, d)`` feature matrix."""
        return _pack(self.text_outputs(items))

    # ------------------------------------------------------------------ files
    def state(self) -> Dict[str, Any]:
        """Everything :func:`load_encoder` needs; tensors, numbers, strings, lists, dicts only."""
        from .config import config_dict

        m = self._method
        networks = {k: v.detach().cpu() for k, v in m.networks.state_dict().items()
                    if k.split(".")[0] in ("image", "text")}
        frozen = None
        if self.backbone is not None and not self.finetuned:
            frozen = {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()}
        return {
            "format": FORMAT, "version": VERSION, "method": self.method, "bits": self.nbits,
            "config": config_dict(m.config), "dims": [int(d) for d in m.dims], "networks": networks,
            "image": {"input": self.image_input, "offset": torch.from_numpy(self.image_offset),
                      "backbone": self.backbone.spec() if self.backbone is not None else None,  # type: ignore[operator]
                      "finetuned": self.finetuned, "backbone_state": frozen},
            "text": {"input": self.text_input, "offset": torch.from_numpy(self.text_offset),
                     "vectorizer": self._vectorizer_state},
            "batch": self.batch,
        }

    def save(self, path: PathLike) -> Path:
        """Write the encoder file (atomically: a temporary file renamed over ``path``)."""
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        torch.save(self.state(), tmp)
        tmp.replace(p)
        return p


def _pack(outputs: torch.Tensor) -> np.ndarray:
    from .engine import pack_outputs

    return pack_outputs(outputs)


def from_training(method: Any, dataset: Dataset) -> Encoder:
    """The encoder of a method trained on ``dataset`` (its backbone and vocabulary included)."""
    zeros_i = np.zeros(dataset.dims[0]) if dataset.image_offset is None else dataset.image_offset
    zeros_t = np.zeros(dataset.dims[1]) if dataset.text_offset is None else dataset.text_offset
    return Encoder(method, image_offset=zeros_i, text_offset=zeros_t, backbone=dataset.backbone,
                   vectorizer=dataset.vectorizer)


def load_encoder(path: PathLike, *, device: Union[str, torch.device] = "cpu") -> Encoder:
    """Read an ``encoder_{bits}.pt`` written by a ``train`` run (see the module docstring).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not an encoder file, a newer format version, or an unknown method.
    """
    from .engine import resolve_device
    from .methods import get_method

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"encoder: no such file: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt or foreign file
        raise ValueError(f"{p}: not a readable encoder file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{p}: expected a {FORMAT} file (encoder_{{bits}}.pt of a train run), got something else")
    if int(state.get("version", 0)) > VERSION:
        raise ValueError(f"{p}: encoder format version {state['version']} is newer than this trainer's ({VERSION}); "
                         "upgrade hamsearch")
    dev = resolve_device(device)
    cls = get_method(state["method"])
    cfg = cls.make_config(state["config"])
    m = cls(cfg, int(state["bits"]), tuple(state["dims"]), dev, torch.Generator().manual_seed(0))
    img = state["image"]
    backbone = None
    if img["backbone"] is not None:
        from .backbones import build_backbone, load_backbone_state

        spec = dict(img["backbone"])
        backbone = build_backbone(spec["name"], image_size=int(spec["image_size"]),
                                  generator=torch.Generator().manual_seed(0))
        if img["finetuned"]:
            offset = img["offset"].to(torch.float32)
            m.networks["image"] = BackboneHead(backbone, offset, m.networks["image"])
            backbone = None
        else:
            load_backbone_state(backbone, img["backbone_state"])
            backbone = backbone.to(dev)
    own = {k: v for k, v in m.networks.state_dict().items() if k.split(".")[0] in ("image", "text")}
    missing = sorted(set(own) - set(state["networks"]))
    unexpected = sorted(set(state["networks"]) - set(own))
    if missing or unexpected:
        raise ValueError(f"{p}: the saved networks do not match {state['method']}'s with its config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    m.networks.load_state_dict(state["networks"], strict=False)
    m.networks.to(dev)
    return Encoder(m, image_offset=img["offset"].numpy(), text_offset=state["text"]["offset"].numpy(),
                   backbone=backbone, vectorizer=state["text"]["vectorizer"], batch=int(state.get("batch", IMAGE_BATCH)))


def encode_dataset(model: Any, dataset: Dataset, stats: Optional[Dict[str, int]] = None, *,
                   workers: int = 0, progress: bool = False) -> Dict[str, np.ndarray]:
    """Packed codes of the query and database items, both modalities, and their labels.

    ``model`` is an :class:`Encoder` or a method trained on ``dataset``
    (:func:`from_training` makes its encoder).

    Returns the ``codes_{bits}.npz`` arrays: ``query_image``, ``query_text``,
    ``db_image``, ``db_text`` (uint64, ``(n, ceil(bits/64))``) and
    ``query_labels``, ``db_labels`` ({0,1} uint8). Images of a dataset with raw
    images go through the encoder's backbone from their pixels, exactly as
    :meth:`Encoder.encode_image` encodes them later. Where ``stats`` is a dict,
    ``stats["zero_outputs"]`` counts the outputs that were exactly 0 (each
    became bit 1; METHODS pitfall 1).
    """
    encoder = model if isinstance(model, Encoder) else from_training(model, dataset)
    out: Dict[str, np.ndarray] = {}
    zeros = 0
    for part, rows in (("query", dataset.split.query), ("db", dataset.split.database)):
        if encoder.backbone is not None and dataset.images is not None:
            img = encoder.image_outputs(dataset.images, rows=rows, workers=workers, progress=progress)
        else:
            img = encoder.centred_outputs("image", dataset.image[rows])
        txt = encoder.centred_outputs("text", dataset.text[rows])
        for modality, real in (("image", img), ("text", txt)):
            zeros += int((real == 0).sum())
            out[f"{part}_{modality}"] = _pack(real)
        out[f"{part}_labels"] = np.ascontiguousarray(dataset.labels[rows], dtype=np.uint8)
    if stats is not None:
        stats["zero_outputs"] = zeros
    return out


__all__ = ["Encoder", "FORMAT", "VERSION", "encode_dataset", "from_training", "load_encoder"]
