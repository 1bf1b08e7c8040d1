"""The one training loop, shared by every method.

A method (``trainer/methods/<name>.py``) is a :class:`HashMethod`: it builds its
networks (``self.networks["image"]`` and ``["text"]`` map features to ``bits``
real values), its losses (``nn.Module``) and a frozen config dataclass, and
describes each epoch as a list of :class:`Phase` objects (an optimizer, a loss
over a mini-batch of training positions, a number of iterations). The loop
here does everything else, once:

- the device (explicit; ``"cpu"`` by default, never a hard-coded GPU) and the
  seeds (python, numpy, torch, plus a ``torch.Generator`` for batches and
  initialisation), so that a run is deterministic under its seed;
- a validation split carved from the training items (never the test
  queries); the training proper uses the rest. Unsupervised methods
  (``supervised = False``) get neither labels (``TrainSet.labels`` is None)
  nor a label-based choice of epoch: they keep their last epoch, so that
  nothing in their training depends on the labels;
- mini-batches, the optimizer steps, a check that each loss is finite,
  progress bars (tqdm when installed) and logging;
- after each epoch, validation MAP (image->text and text->image, validation
  items as queries against the remaining training items) and a copy of the
  best epoch's weights, restored at the end and written as a checkpoint;
- encoding: sign of each branch's output, with 0 -> bit 1 (``x >= 0``), packed
  by :func:`hamsearch.pack`.

Methods with a closed-form fit (``iterative = False``, e.g. CCA+ITQ) implement
:meth:`HashMethod.fit` and skip the epochs.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import random
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
from torch import nn

from .config import config_dict, make_config
from .data import Dataset
from .pixels import training_mode

log = logging.getLogger(__name__)

try:  # optional: progress bars
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # pragma: no cover - depends on the environment
    _tqdm = None


# --------------------------------------------------------------------------- interface


@dataclasses.dataclass(frozen=True, eq=False)
class TrainSet:
    """The training items on the device: features, labels as float {0,1}
    (None for an unsupervised method: it never sees them), and their rows in
    the dataset.

    ``image`` and ``text`` are the features of the whole training set, for
    what a method computes over all of it (a standardisation, a similarity
    matrix, initial buffers). A mini-batch loss feeds its networks
    :meth:`input` instead: the same features, or in end-to-end training
    (``pixels`` set) the images themselves, decoded for the batch.
    """

    image: torch.Tensor
    text: torch.Tensor
    labels: Optional[torch.Tensor]
    rows: np.ndarray
    pixels: Optional[Any] = None  #: a :class:`trainer.pixels.Pixels` in end-to-end training

    def input(self, modality: str, pos: torch.Tensor) -> torch.Tensor:
        """The network input of the training items at positions ``pos``."""
        if modality == "image":
            return self.pixels[pos] if self.pixels is not None else self.image[pos]
        if modality == "text":
            return self.text[pos]
        raise ValueError(f"modality: expected 'image' or 'text', got {modality!r}")

    def require_labels(self, method: str) -> torch.Tensor:
        """The labels, or a clear error where the method was declared unsupervised."""
        if self.labels is None:
            raise ValueError(f"{method}: this training set carries no labels (the method is unsupervised)")
        return self.labels

    @property
    def n(self) -> int:
        return int(self.image.shape[0])


@dataclasses.dataclass(eq=False)
class Phase:
    """One optimisation phase of an epoch.

    ``loss(positions)`` gets a 1-D int64 tensor of training positions (0..n-1)
    on the device and returns a scalar loss; the loop runs ``iterations``
    optimizer steps. ``sampling="draw"`` draws a fresh random batch for every
    iteration (DCMH's code); ``"epoch"`` walks a shuffled partition.

    ``optimizer`` may be one optimizer or several stepped together (DCGH's
    network and class proxies). ``clip_grad_norm`` clips the global gradient
    norm of ``clip_params`` (default: every parameter of those optimizers)
    before the step; ``after_step`` runs after each step (a per-step
    learning-rate schedule).
    """

    name: str
    optimizer: Union[torch.optim.Optimizer, Sequence[torch.optim.Optimizer]]
    loss: Callable[[torch.Tensor], torch.Tensor]
    iterations: int
    batch_size: int
    sampling: str = "draw"
    clip_grad_norm: Optional[float] = None
    clip_params: Optional[Sequence[torch.Tensor]] = None
    after_step: Optional[Callable[[], None]] = None

    @property
    def optimizers(self) -> List[torch.optim.Optimizer]:
        opt = self.optimizer
        return [opt] if isinstance(opt, torch.optim.Optimizer) else list(opt)


class HashMethod:
    """Base class of a hashing method; see the module docstring.

    Subclasses set the class attributes and implement :meth:`build`, and
    either :meth:`phases` (and optionally :meth:`setup`, :meth:`end_epoch`) or,
    for a closed-form method, :meth:`fit`.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  #: the row name in tables
    Config: ClassVar[Type[Any]]
    supervised: ClassVar[bool] = True  #: False: labels are never read in training
    iterative: ClassVar[bool] = True
    default_epochs: ClassVar[int] = 1
    #: learning rate of an image backbone trained end to end, relative to the
    #: method's own (``--backbone-lr-scale`` overrides it): the backbone's
    #: parameters get param groups of their own with ``lr_scale`` set, which a
    #: method's learning-rate schedule multiplies in.
    backbone_lr_scale: ClassVar[float] = 1.0
    #: per-dataset settings [project]: config overrides plus an optional
    #: "epochs", applied under the caller's own overrides (``fit(preset=True)``).
    presets: ClassVar[Dict[str, Dict[str, Any]]] = {}

    def __init__(self, config: Any, bits: int, dims: Tuple[int, int, int], device: torch.device,
                 generator: torch.Generator) -> None:
        self.config = config
        self.bits = int(bits)
        self.dims = dims
        self.device = device
        self.generator = generator
        self.networks = nn.ModuleDict()
        self.losses = nn.ModuleDict()
        self.build()
        self.networks.to(device)
        self.losses.to(device)

    @classmethod
    def make_config(cls, overrides: Optional[Mapping[str, Any]] = None) -> Any:
        """The method's frozen config; an unknown key is a ValueError."""
        return make_config(cls.Config, overrides)

    # hooks ---------------------------------------------------------------
    def build(self) -> None:
        """Create ``self.networks["image"]``, ``["text"]`` and ``self.losses``."""
        raise NotImplementedError

    def setup(self, train: TrainSet) -> None:
        """Before the first epoch: buffers, optimizers."""

    def phases(self, epoch: int, epochs: int) -> Sequence[Phase]:
        """The optimisation phases of epoch ``epoch`` (0-based) of ``epochs``."""
        raise NotImplementedError

    def end_epoch(self, epoch: int, epochs: int) -> Dict[str, float]:
        """After the phases of an epoch (e.g. DCMH's B update); returns values to log."""
        return {}

    def fit(self, train: TrainSet) -> None:
        """Closed-form training (``iterative = False``)."""
        raise NotImplementedError

    def extra_state(self) -> Dict[str, Any]:
        """Anything besides the networks' weights worth keeping in the checkpoint."""
        return {}

    # encoding --------------------------------------------------------------
    @torch.no_grad()
    def outputs(self, modality: str, x: torch.Tensor, batch: int = 2048) -> torch.Tensor:
        """Real-valued outputs ``(n, bits)`` of one branch, in eval mode."""
        with training_mode(self.networks[modality], False) as net:
            outs = [net(x[i : i + batch].to(self.device)) for i in range(0, x.shape[0], batch)]
        return torch.cat(outs) if outs else torch.empty(0, self.bits, device=self.device)


# --------------------------------------------------------------------------- helpers


def settings(cls: Type[HashMethod], dataset_name: str, config: Optional[Mapping[str, Any]] = None,
             epochs: Optional[int] = None, preset: bool = True) -> Tuple[Any, int]:
    """The method's config and epoch count for a dataset: the defaults, then
    the dataset's preset (when ``preset``), then ``config`` and ``epochs``."""
    merged: Dict[str, Any] = dict(cls.presets.get(dataset_name, {})) if preset else {}
    n_epochs = int(merged.pop("epochs", cls.default_epochs))
    merged.update(config or {})
    if epochs is not None:
        n_epochs = int(epochs)
    return cls.make_config(merged), n_epochs


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``...; a CUDA request without CUDA is an error, not a fallback."""
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {dev} requested but torch.cuda.is_available() is False; use --device cpu")
    return dev


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (for any code that
    uses them); the loop itself draws from explicit generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def sign_bits(outputs: torch.Tensor) -> np.ndarray:
    """Bits of real outputs: 1 where the value is >= 0 (so 0 -> 1, never half a bit), as bool."""
    return (outputs >= 0).cpu().numpy()


def pack_outputs(outputs: torch.Tensor) -> np.ndarray:
    """Packed uint64 codes (``hamsearch.pack``) of real outputs, bit = output >= 0."""
    import hamsearch

    return hamsearch.pack(sign_bits(outputs))


def carve_validation(train_rows: np.ndarray, fraction: float, seed: int, minimum: int = 20) -> Tuple[np.ndarray, np.ndarray]:
    """Split the training rows into (fit, validation), seeded.

    ``fraction`` of them (at least ``minimum`` where there are 4x as many) are
    held out; 0 means no validation (the last epoch is kept).
    """
    n = train_rows.size
    if fraction <= 0 or n < 2 * minimum:
        return np.sort(train_rows), np.empty(0, dtype=np.int64)
    if fraction >= 0.5:
        raise ValueError(f"val_fraction: expected a value in [0, 0.5), got {fraction}")
    nval = max(int(round(fraction * n)), min(minimum, n // 4))
    rng = np.random.default_rng([seed, 0xA1])
    perm = rng.permutation(n)
    return np.sort(train_rows[perm[nval:]]), np.sort(train_rows[perm[:nval]])


def _progress(iterable: Any, total: int, desc: str, enabled: bool) -> Any:
    if enabled and _tqdm is not None:
        return _tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
    return iterable


# --------------------------------------------------------------------------- the loop


@dataclasses.dataclass(eq=False)
class FitResult:
    """A trained method (best epoch's weights loaded) and how it got there."""

    method: HashMethod
    bits: int
    epochs: int
    best_epoch: int
    best_val_map: Optional[float]
    history: List[Dict[str, float]]
    seconds: float
    val_rows: np.ndarray
    fit_rows: np.ndarray
    checkpoint: Optional[Path] = None


def _validation_map(method: HashMethod, image: Union[torch.Tensor, Callable[[], torch.Tensor]], text: torch.Tensor,
                    labels: np.ndarray, val_pos: np.ndarray, fit_pos: np.ndarray) -> Tuple[float, float]:
    """(I->T, T->I) MAP@all of the validation items against the fitted training items.

    ``image`` is the features, or (end-to-end training) a function giving the
    image network's outputs of every row from the pixels."""
    from hamsearch import metrics

    img = pack_outputs(image() if callable(image) else method.outputs("image", image))
    txt = pack_outputs(method.outputs("text", text))
    ql, dl = labels[val_pos], labels[fit_pos]
    i2t = metrics.mean_average_precision(img[val_pos], txt[fit_pos], ql, dl)
    t2i = metrics.mean_average_precision(txt[val_pos], img[fit_pos], ql, dl)
    return i2t, t2i


def _split_backbone_groups(optimizers: Sequence[torch.optim.Optimizer], backbone: nn.Module, scale: float,
                           done: set) -> None:
    """Give the backbone's parameters param groups of their own at ``scale``
    times the method's learning rate (``lr_scale`` in the group, for schedules)."""
    ids = {id(p) for p in backbone.parameters()}
    for opt in optimizers:
        if id(opt) in done:
            continue
        done.add(id(opt))
        for group in list(opt.param_groups):
            mine = [p for p in group["params"] if id(p) in ids]
            if not mine:
                continue
            group["params"] = [p for p in group["params"] if id(p) not in ids]
            extra = {k: v for k, v in group.items() if k != "params"}
            extra.update(params=mine, lr=group["lr"] * scale, lr_scale=scale)
            opt.add_param_group(extra)
            if not group["params"]:
                opt.param_groups.remove(group)


def fit(
    method: Union[str, Type[HashMethod]],
    dataset: Dataset,
    bits: int,
    *,
    config: Union[None, Mapping[str, Any], Any] = None,
    epochs: Optional[int] = None,
    seed: int = 0,
    device: Union[str, torch.device, None] = "cpu",
    val_fraction: float = 0.1,
    eval_every: int = 1,
    checkpoint_dir: Optional[Union[str, Path]] = None,
    progress: bool = True,
    preset: bool = True,
    backbone: Optional[nn.Module] = None,
    backbone_lr_scale: Optional[float] = None,
    workers: int = 0,
) -> FitResult:
    """Train ``method`` on ``dataset``'s training items for ``bits``-bit codes.

    Parameters
    ----------
    method : str or HashMethod subclass
        A registered name (:func:`trainer.methods.get_method`) or the class.
    dataset : Dataset
        Features should already be centred (``load_dataset`` does it).
    bits : int
        Code length.
    config : mapping or the method's Config instance, optional
        Overrides of the method's defaults (and of the dataset's preset); an
        unknown key is a ValueError. A Config instance is used as it is.
    epochs : int, optional
        Outer epochs (default: the preset's, else the method's ``default_epochs``).
    seed : int
        Seeds python, numpy and torch, the validation carve, the batches and
        the initialisation: the same seed gives bit-identical codes on the
        same machine, device and thread count.
    device : str or torch.device
        ``"cpu"`` (default), ``"cuda"``, ``"cuda:1"``...
    val_fraction : float
        Share of the training items held out to choose the epoch (0: keep the
        last epoch). Validation never touches the test queries.
    eval_every : int
        Validate every this many epochs (and after the last).
    checkpoint_dir : path, optional
        Where to write ``checkpoint_{method}_{bits}.pt`` with the best epoch's
        weights (they are always kept in memory and restored).
    progress : bool
        tqdm bars where tqdm is installed.
    preset : bool
        Apply the method's preset for ``dataset.name`` (:attr:`HashMethod.presets`).
    backbone : trainer.backbones.Backbone, optional
        End-to-end training: the image network becomes
        ``head(backbone(pixels) - offset)`` (:class:`trainer.pixels.BackboneHead`)
        and trains on the dataset's raw images (``dataset.images``) with the
        method's loss. ``dataset.image`` must hold this backbone's features
        (the starting point for what the method computes over the whole
        training set). Without it the method trains on ``dataset.image``.
    backbone_lr_scale : float, optional
        The backbone's learning rate relative to the method's (default: the
        method's :attr:`HashMethod.backbone_lr_scale`).
    workers : int
        Processes decoding the images of end-to-end training (0: in this one).
    """
    from .methods import get_method

    cls = get_method(method) if isinstance(method, str) else method
    if isinstance(config, cls.Config):
        cfg, n_epochs = config, settings(cls, dataset.name, None, epochs, preset)[1]
    else:
        cfg, n_epochs = settings(cls, dataset.name, config, epochs, preset)
    dev = resolve_device(device)
    if bits < 1:
        raise ValueError(f"bits: expected a positive code length, got {bits}")
    if n_epochs < 1:
        raise ValueError(f"epochs: expected at least 1, got {n_epochs}")
    seed_everything(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    # Validation chooses the epoch by MAP, which needs labels: an unsupervised
    # method keeps its last epoch instead, so its codes never depend on them.
    use_val = cls.iterative and cls.supervised
    if val_fraction and not use_val:
        log.info("%s: no validation split (%s); the last epoch is kept", cls.name,
                 "closed form" if not cls.iterative else "unsupervised: labels are not used in training")
    fit_rows, val_rows = carve_validation(dataset.split.train, val_fraction if use_val else 0.0, seed)
    rows = np.concatenate([fit_rows, val_rows])
    image = torch.from_numpy(dataset.image[rows]).to(dev)
    text = torch.from_numpy(dataset.text[rows]).to(dev)
    labels_np = dataset.labels[rows] if use_val else None
    nfit = fit_rows.size
    fit_pos, val_pos = np.arange(nfit), np.arange(nfit, rows.size)
    train = TrainSet(
        image=image[:nfit], text=text[:nfit],
        labels=(torch.from_numpy(dataset.labels[fit_rows].astype(np.float32)).to(dev)
                if cls.supervised else None),
        rows=fit_rows,
    )
    m = cls(cfg, bits, dataset.dims, dev, gen)
    pixels = None
    if backbone is not None:
        if not cls.iterative:
            raise ValueError(f"{cls.name}: a closed-form method cannot train a backbone end to end; "
                             "train it on the backbone's frozen features instead (drop --finetune)")
        if dataset.images is None:
            raise ValueError(f"{dataset.name}: end-to-end training needs raw images, and this dataset has only "
                             "features; drop --finetune")
        from .pixels import BackboneHead, Pixels, backbone_outputs

        offset = torch.from_numpy(np.asarray(dataset.image_offset if dataset.image_offset is not None
                                             else np.zeros(dataset.dims[0]), dtype=np.float32))
        backbone = backbone.to(dev)
        m.networks["image"] = BackboneHead(backbone, offset.to(dev), m.networks["image"])
        pixels = Pixels(dataset.images, fit_rows, backbone.preprocess, dev, workers)  # type: ignore[arg-type]
        train = dataclasses.replace(train, pixels=pixels)
    scale = float(cls.backbone_lr_scale if backbone_lr_scale is None else backbone_lr_scale)
    split_done: set = set()
    log.info("%s, %d bits on %s: %d training items (+%d validation), config %s",
             cls.name, bits, dev, nfit, val_rows.size, config_dict(cfg))
    t0 = time.perf_counter()
    history: List[Dict[str, float]] = []
    best_state: Optional[Dict[str, Any]] = None
    best_epoch, best_val = n_epochs - 1, None

    if not cls.iterative:  # closed form: nothing to choose, so no validation split either
        m.fit(train)
        n_epochs, best_epoch = 1, 0
    else:
        m.setup(train)
        bar = _progress(range(n_epochs), n_epochs, f"{cls.name} {bits} bits", progress)
        for epoch in bar:
            record: Dict[str, float] = {"epoch": float(epoch)}
            m.networks.train()
            for phase in m.phases(epoch, n_epochs):
                if backbone is not None:
                    _split_backbone_groups(phase.optimizers, backbone, scale, split_done)
                record[f"loss_{phase.name}"] = _run_phase(phase, nfit, gen, dev, pixels)
            record.update(m.end_epoch(epoch, n_epochs))
            last = epoch == n_epochs - 1
            if labels_np is not None and val_rows.size and (epoch % max(eval_every, 1) == 0 or last):
                image_in: Any = image
                if backbone is not None:  # the current backbone's outputs, from the pixels
                    image_in = functools.partial(backbone_outputs, m.networks["image"], dataset.images, rows,
                                                 device=dev, workers=workers)
                i2t, t2i = _validation_map(m, image_in, text, labels_np, val_pos, fit_pos)
                score = (i2t + t2i) / 2
                record.update(val_i2t=i2t, val_t2i=t2i)
                if best_val is None or score > best_val:
                    best_val, best_epoch = score, epoch
                    best_state = _snapshot(m)
            history.append(record)
            log.debug("epoch %d: %s", epoch, record)
            if _tqdm is not None and progress and hasattr(bar, "set_postfix"):
                bar.set_postfix({k: round(v, 4) for k, v in record.items() if k != "epoch"})
        if best_state is not None:
            _restore(m, best_state)
    seconds = time.perf_counter() - t0
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = Path(checkpoint_dir) / f"checkpoint_{cls.name}_{bits}.pt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "method": cls.name, "bits": bits, "dims": list(dataset.dims), "config": config_dict(cfg),
                "epoch": best_epoch, "val_map": best_val, "seed": seed,
                "networks": {k: v.detach().cpu() for k, v in m.networks.state_dict().items()},
                "extra": m.extra_state(),
            },
            ckpt,
        )
    log.info("%s, %d bits: best epoch %d of %d (validation MAP %s), %.1f s", cls.name, bits, best_epoch + 1,
             n_epochs, "n/a" if best_val is None else f"{best_val:.4f}", seconds)
    return FitResult(m, bits, n_epochs, best_epoch, best_val, history, seconds, val_rows, fit_rows, ckpt)


def _plan(phase: Phase, n: int, gen: torch.Generator) -> List[torch.Tensor]:
    """The positions of every iteration of ``phase``, drawn from ``gen``."""
    bs = min(phase.batch_size, n)
    plan: List[torch.Tensor] = []
    order: Optional[torch.Tensor] = None
    cursor = 0
    for _ in range(phase.iterations):
        if phase.sampling == "draw":
            pos = torch.randperm(n, generator=gen)[:bs]
        elif phase.sampling == "epoch":
            if order is None or cursor >= n:
                order, cursor = torch.randperm(n, generator=gen), 0
            pos = order[cursor : cursor + bs]
            cursor += bs
        else:
            raise ValueError(f"{phase.name}: expected sampling 'draw' or 'epoch', got {phase.sampling!r}")
        plan.append(pos)
    return plan


def _run_phase(phase: Phase, n: int, gen: torch.Generator, dev: torch.device, pixels: Any = None) -> float:
    """Run one phase; returns the mean loss over its iterations."""
    optimizers = phase.optimizers
    total = 0.0
    plan = _plan(phase, n, gen)
    if pixels is not None:
        pixels.plan(plan)  # the images of these batches are decoded ahead, if the phase reads them
    for pos in plan:
        pos = pos.to(dev)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss = phase.loss(pos)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{phase.name}: the loss is {loss.item()}; lower the learning rate (--set lr_start=...)"
            )
        loss.backward()
        if phase.clip_grad_norm is not None:
            params = (list(phase.clip_params) if phase.clip_params is not None
                      else [p for opt in optimizers for g in opt.param_groups for p in g["params"]])
            torch.nn.utils.clip_grad_norm_(params, phase.clip_grad_norm)
        for opt in optimizers:
            opt.step()
        if phase.after_step is not None:
            phase.after_step()
        total += float(loss.detach())
    return total / max(phase.iterations, 1)


def _snapshot(m: HashMethod) -> Dict[str, Any]:
    # The weights are all that encoding needs; training buffers stay as they are.
    return {"networks": {k: v.detach().clone() for k, v in m.networks.state_dict().items()}}


def _restore(m: HashMethod, state: Dict[str, Any]) -> None:
    m.networks.load_state_dict(state["networks"])


__all__ = [
    "FitResult", "HashMethod", "Phase", "TrainSet", "carve_validation",
    "fit", "pack_outputs", "resolve_device", "seed_everything", "settings",
    "sign_bits",
]
