"""Images through a backbone: batched decoding in worker processes, feature
extraction, and the image network of end-to-end training.

- :func:`map_images` runs a network over images of an
  :class:`~trainer.images.ImageSource`, a batch at a time, with decoding and
  preprocessing in ``workers`` processes (a ``torch`` DataLoader) so that the
  network never waits for JPEG decoding. Results do not depend on ``workers``:
  the batches are the same, only who decodes them changes.
- :class:`BackboneHead` is the image network of a method with a backbone:
  ``head(backbone(pixels) - offset)``, where ``offset`` is the training items'
  mean feature (the centring every dataset gets). Given a 2-D input it takes
  it as features that are already centred and runs the head alone, so that
  whatever a method does with the features of the whole training set (fitting
  a standardisation, building a similarity matrix, initial buffers) works
  unchanged in end-to-end training, on the features of the backbone as it was
  at the start.
- :class:`Pixels` is the image input of end-to-end training: the pixels of the
  training items at the positions a loss asks for, decoded ahead by workers
  along the phase's plan of batches (:meth:`Pixels.plan`).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .images import ImageSource

log = logging.getLogger(__name__)

#: Images per batch through a backbone (feature extraction, encoding, validation).
IMAGE_BATCH = 64


class _Batches(torch.utils.data.Dataset):
    """Batch ``j`` of a fixed list of row batches, decoded and preprocessed."""

    def __init__(self, source: ImageSource, batches: Sequence[np.ndarray], preprocess: Callable[[List[np.ndarray]], torch.Tensor]) -> None:
        self.source = source
        self.batches = list(batches)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, j: int) -> torch.Tensor:
        return self.preprocess(self.source.read(self.batches[j]))


def _loader(source: ImageSource, batches: Sequence[np.ndarray], preprocess: Callable[..., torch.Tensor],
            workers: int) -> Iterator[torch.Tensor]:
    data = _Batches(source, batches, preprocess)
    if workers <= 0 or len(batches) <= 1:
        return (data[j] for j in range(len(data)))
    loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False, num_workers=int(workers),
                                         persistent_workers=False, prefetch_factor=2)
    return iter(loader)


@contextlib.contextmanager
def training_mode(net: nn.Module, training: bool) -> Iterator[nn.Module]:
    """``net`` in train (``True``) or eval mode for the block, then back to its own."""
    was = net.training
    net.train(training)
    try:
        yield net
    finally:
        net.train(was)


def row_batches(rows: np.ndarray, batch: int = IMAGE_BATCH) -> List[np.ndarray]:
    rows = np.asarray(rows, dtype=np.int64)
    return [rows[a : a + batch] for a in range(0, rows.size, batch)]


@torch.no_grad()
def map_images(net: Callable[[torch.Tensor], torch.Tensor], source: ImageSource, rows: np.ndarray,
               preprocess: Callable[..., torch.Tensor], *, device: torch.device, batch: int = IMAGE_BATCH,
               workers: int = 0, progress: bool = False, desc: str = "images") -> torch.Tensor:
    """``net`` over the images ``rows`` of ``source``, in batches of ``batch``:
    a ``(len(rows), d)`` tensor on ``device``, in the order of ``rows``."""
    batches = row_batches(rows, batch)
    outs: List[torch.Tensor] = []
    it: Any = _loader(source, batches, preprocess, workers)
    if progress:
        try:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(batches), desc=desc, leave=False, dynamic_ncols=True)
        except ImportError:  # pragma: no cover - tqdm is in the train extra
            pass
    for x in it:
        outs.append(net(x.to(device)))
    if not outs:
        raise ValueError("map_images: expected at least one image row, got none")
    return torch.cat(outs)


@torch.no_grad()
def extract_features(backbone: nn.Module, source: ImageSource, rows: Optional[np.ndarray] = None, *,
                     device: torch.device, workers: int = 0, progress: bool = False,
                     batch: int = IMAGE_BATCH) -> np.ndarray:
    """The frozen backbone's features of ``rows`` (default: every image), float32 numpy."""
    rows = np.arange(len(source), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    with training_mode(backbone, False):
        feats = map_images(backbone, source, rows, backbone.preprocess, device=device, batch=batch,  # type: ignore[arg-type]
                           workers=workers, progress=progress, desc=f"{getattr(backbone, 'name', 'backbone')} features")
    return np.ascontiguousarray(feats.cpu().numpy(), dtype=np.float32)


@torch.no_grad()
def calibrate_batchnorm(backbone: nn.Module, source: ImageSource, rows: np.ndarray, *, device: torch.device,
                        workers: int = 0, batch: int = IMAGE_BATCH) -> int:
    """Estimate the BatchNorm running statistics of ``backbone`` over the images
    ``rows`` (a cumulative average over batches in train mode, no gradient).

    A backbone from random initialisation has the statistics of nothing (mean
    0, variance 1), so in eval mode (frozen features, validation, encoding) it
    computes something else than in train mode (end-to-end training), by a
    factor of 5 in the features of a ResNet-18 on Web News. Returns the number
    of BatchNorm layers calibrated (0: nothing to do).
    """
    bns = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    try:
        with training_mode(backbone, True):
            for x in _loader(source, row_batches(rows, batch), backbone.preprocess, workers):  # type: ignore[arg-type]
                backbone(x.to(device))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
    return len(bns)


class BackboneHead(nn.Module):
    """``head(backbone(pixels) - offset)``; a 2-D input (centred features) goes to the head alone."""

    offset: torch.Tensor

    def __init__(self, backbone: nn.Module, offset: torch.Tensor, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("offset", offset.detach().clone().to(torch.float32))
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = self.backbone(x) - self.offset
        return self.head(x)


def backbone_outputs(net: BackboneHead, source: ImageSource, rows: np.ndarray, *, device: torch.device,
                     batch: int = IMAGE_BATCH, workers: int = 0, progress: bool = False,
                     desc: str = "images") -> torch.Tensor:
    """The outputs of an image network with a backbone over the images ``rows``, in eval mode."""
    with training_mode(net, False):
        return map_images(net, source, rows, net.backbone.preprocess, device=device,  # type: ignore[arg-type]
                          batch=batch, workers=workers, progress=progress, desc=desc)


def head_of(net: nn.Module) -> nn.Module:
    """The method's own network inside a :class:`BackboneHead` (or ``net`` itself)."""
    return net.head if isinstance(net, BackboneHead) else net


class Pixels:
    """Training images as the image network's input in end-to-end training.

    ``pixels[pos]`` (``pos``: positions among the training rows, a 1-D tensor)
    is the preprocessed ``(len(pos), 3, S, S)`` batch on the device. Along a
    phase's plan (:meth:`plan`) the batches are decoded ahead by ``workers``
    processes, started on the phase's first request, so a phase that never
    reads images (DCMH's text phase) decodes nothing.
    """

    def __init__(self, source: ImageSource, rows: np.ndarray, preprocess: Callable[..., torch.Tensor],
                 device: torch.device, workers: int = 0) -> None:
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)
        self.preprocess = preprocess
        self.device = device
        self.workers = int(workers)
        self._plan: List[np.ndarray] = []
        self._next = 0
        self._it: Optional[Iterator[torch.Tensor]] = None

    def plan(self, batches: Sequence[torch.Tensor]) -> None:
        """The positions each iteration of the coming phase will ask for, in order."""
        self._plan = [b.detach().cpu().numpy().astype(np.int64) for b in batches]
        self._next = 0
        self._it = None

    def __getitem__(self, pos: torch.Tensor) -> torch.Tensor:
        want = np.asarray(pos.detach().cpu().numpy(), dtype=np.int64).reshape(-1)
        if self._next < len(self._plan) and np.array_equal(self._plan[self._next], want):
            if self._it is None:
                rest = [self.rows[p] for p in self._plan[self._next :]]
                self._it = _loader(self.source, rest, self.preprocess, self.workers)
            self._next += 1
            return next(self._it).to(self.device)
        # Off the plan: decode here (and drop the read-ahead, which is now out of step).
        self._plan, self._it = [], None
        return self.preprocess(self.source.read(self.rows[want])).to(self.device)


__all__ = ["BackboneHead", "IMAGE_BATCH", "Pixels", "backbone_outputs", "calibrate_batchnorm", "extract_features",
           "head_of", "map_images", "row_batches", "training_mode"]
