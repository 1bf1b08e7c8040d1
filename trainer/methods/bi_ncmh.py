"""Bi_NCMH: Deep Normalized Cross-Modal Hashing with Bi-Direction Relation
Reasoning (Sun, Latapie, Liu, Yan, CVPRW 2022), on features.

What follows the paper and what is this project's reconstruction (METHODS.md
section 2; the full paper text and the authors' code could not be obtained,
only the abstract and the workshop poster):

- **[paper]** the multi-level similarity with its two directions
  (:func:`multilevel_similarity`): for label rows sharing at least one class
  (the consistent direction) S_ij = (L − |y_i ⊕ y_j|)/L ∈ (0, 1]; for rows
  sharing none (the inconsistent direction) S_ij = −|y_i ⊕ y_j|/L ∈ [−1, 0).
- **[paper]** the L2 normalisation of both modalities' hash representations,
  h = g/‖g‖₂ (:class:`L2Normalize`), so that h_vᵀh_t ∈ [−1, 1] has the range
  of S and neither modality's magnitude dominates.
- **[inferred]** the networks: DCMH's thin variant on features (an image MLP,
  by default one linear layer; text → fc 8192 + ReLU → fc c), then the
  normalisation; a tanh before it is optional (``pre_activation``, default
  none).
- **[inferred]** the loss (:class:`BiNCMHLoss`), regressing the normalised
  inner products onto S, and its training: Adam at 1e−4, batch 128, DCMH's
  alternating image / text phases against stored output buffers, and a shared
  code matrix B = sign(H_v + H_t) updated once per epoch.
- **[inferred]** the codes: sign(h) per modality (= sign(g): normalising does
  not change signs; an exact 0 gives bit 1, the project's convention).

The loss, per image mini-batch P (|P| = b) against the n stored text outputs
H_t (the text phase swaps the roles)::

    L = (1/(b·n)) Σ_{i∈P, j} (h_v,iᵀ h_t,j − S_ij)²                      (inter)
      + w_intra · (1/(b·n)) Σ_{i∈P, j} (h_v,iᵀ h_v,j − S_ij)²            (intra, flag)
      + λ_q · (1/b) Σ_{i∈P} ‖h_v,i − b_i/√c‖²                           (quantization)

The inter and intra terms are means over pairs and the quantization term a
mean over items, so that λ_q weighs one item's distance to its code against
one pair's squared similarity error, whatever n and b are. The 1/√c puts the
unit-norm outputs and the codes on the same sphere (‖b_i/√c‖ = 1).

The paper's own loss text was not available (the abstract:
https://mlanthology.org/cvprw/2022/sun2022cvprw-deep), so every [inferred]
part above is a project default behind a config option.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, Literal, Optional, Sequence, Tuple

import torch
import torch.nn.functional as nnf
from torch import nn

from ..engine import HashMethod, Phase, TrainSet
from ._common import fit_standardize, mlp, to_signs, with_standardize


@dataclasses.dataclass(frozen=True)
class BiNCMHConfig:
    """Bi_NCMH's settings; every default is [inferred] (a project default) unless marked."""

    #: λ_q, weight of the quantization term (1/b) Σ_i ‖h_i − b_i/√c‖² [inferred]
    #: (METHODS.md: an unpublished value; sweep it).
    lambda_q: float = 0.1
    #: add the intra-modal terms (image–image, text–text) of the same squared
    #: form as the inter-modal one [inferred; off by default].
    intra: bool = False
    #: weight of the intra-modal terms when ``intra`` is on [inferred].
    intra_weight: float = 1.0
    #: Adam learning rate [inferred, unpublished].
    lr: float = 1e-4
    #: Adam weight decay [inferred].
    weight_decay: float = 0.0
    #: mini-batch size [inferred, unpublished].
    batch_size: int = 128
    #: hidden units of the text branch (DCMH's text network) [inferred].
    text_hidden: int = 8192
    #: hidden layers (ReLU) of the image MLP on features; () is DCMH's single
    #: fc layer on fc7 features, its "DCMH-I" regime [inferred].
    image_hidden: Tuple[int, ...] = ()
    #: std of the N(0, std²) initialisation of weights and biases (DCMH's) [inferred].
    init_std: float = 0.01
    #: activation before the L2 normalisation: none (METHODS.md's default; the
    #: paper does not say) or tanh [inferred].
    pre_activation: Literal["none", "tanh"] = "none"
    #: initial output buffers H_v, H_t: unit-normalised N(0, 1) rows (as
    #: DCMH's code draws its F and G) or the networks' initial outputs [inferred].
    buffer_init: Literal["normal", "network"] = "normal"
    #: input normalisation [project]: "none" feeds the features as they come;
    #: "standardize" divides each feature by its standard deviation over the
    #: training items (a fixed first layer kept in the checkpoint), for
    #: features on tiny scales (Wiki's L1-normalised histograms).
    input_norm: Literal["none", "standardize"] = "none"


# --------------------------------------------------------------------------- similarity


def multilevel_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """Bi_NCMH's multi-level similarity between label rows [paper].

    Parameters
    ----------
    labels_a : torch.Tensor
        ``(m, L)`` {0, 1} labels, floating point.
    labels_b : torch.Tensor
        ``(n, L)`` {0, 1} labels, same dtype.

    Returns
    -------
    torch.Tensor
        ``(m, n)``, ``labels_a``'s dtype. With d_ij = |y_i ⊕ y_j| the number
        of classes on which the rows disagree:

        - consistent direction (y_iᵀy_j > 0): S_ij = (L − d_ij)/L ∈ (0, 1];
          1 only for identical label sets;
        - inconsistent direction (y_iᵀy_j = 0): S_ij = −d_ij/L ∈ [−1, 0].

        An all-zero row shares no class with anything, so it falls in the
        inconsistent direction: against y_j it gives −|y_j|/L, and against
        another all-zero row 0 (the one case where S = 0).

    Raises
    ------
    ValueError
        For inputs that are not 2-D, not floating point, of different widths
        or dtypes, or not {0, 1}.
    """
    for name, lab in (("labels_a", labels_a), ("labels_b", labels_b)):
        if lab.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D (items, classes) tensor, got shape {tuple(lab.shape)}")
        if not lab.is_floating_point():
            raise ValueError(f"{name}: expected a floating-point tensor, got {lab.dtype}; use labels.float()")
        if not bool(((lab == 0) | (lab == 1)).all()):
            raise ValueError(f"{name}: expected {{0, 1}} labels, got other values")
    if labels_a.shape[1] != labels_b.shape[1]:
        raise ValueError(
            f"labels_b: expected {labels_a.shape[1]} classes (as labels_a), got {labels_b.shape[1]}"
        )
    if labels_a.dtype != labels_b.dtype:
        raise ValueError(f"labels_b: expected {labels_a.dtype} (as labels_a), got {labels_b.dtype}")
    return _multilevel(labels_a, labels_b)


def _multilevel(labels_a: torch.Tensor, labels_b: torch.Tensor,
                count_b: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`multilevel_similarity` without the checks (the training loop's
    path: its labels are checked once); ``count_b`` is ``labels_b.sum(1)``."""
    n_classes = labels_a.shape[1]
    shared = labels_a @ labels_b.T
    if count_b is None:
        count_b = labels_b.sum(1)
    # |y_i ⊕ y_j| = |y_i| + |y_j| − 2 y_iᵀy_j for {0, 1} rows.
    differ = labels_a.sum(1, keepdim=True) + count_b[None, :] - 2.0 * shared
    # L·[shared > 0] − d, over L: (L − d)/L in the consistent direction, −d/L
    # in the inconsistent one (+ 0.0 turns a −0 into 0).
    return ((shared > 0).to(differ.dtype) * n_classes - differ) / n_classes + 0.0


# --------------------------------------------------------------------------- networks and loss


class L2Normalize(nn.Module):
    """h = g/‖g‖₂ over the last dimension [paper].

    An all-zero g gives h = 0 and a zero gradient (no NaN). Unlike
    ``F.normalize``'s g/max(‖g‖, ε), there is no ε: the outputs of every
    other row are exactly unit-norm, and a zero row does not get a 1/ε
    gradient.
    """

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(g, dim=-1, keepdim=True)
        nonzero = norm > 0
        return torch.where(nonzero, g / torch.where(nonzero, norm, torch.ones_like(norm)), torch.zeros_like(g))


class BiNCMHLoss(nn.Module):
    """Bi_NCMH's mini-batch loss for one modality [inferred] (the other's is symmetric).

    ``forward(out, pos, own, other, codes, sim)``:

    - ``out`` (b, c): live, unit-normalised outputs of this modality's network;
    - ``pos`` (b,): the batch's positions among the n training items;
    - ``own`` (n, c): this modality's output buffer, whose rows ``pos`` hold
      the batch's outputs already (detached); read by the intra term only;
    - ``other`` (n, c): the other modality's output buffer;
    - ``codes`` (n, c): B in {−1, +1};
    - ``sim`` (b, n): the multi-level S of the batch rows.

    Returns::

        mean_{i∈batch, j} (out_i · other_j − S_ij)²
        + intra_weight · mean_{i∈batch, j} (out_i · own_j − S_ij)²      (when ``intra``)
        + λ_q · mean_{i∈batch} ‖out_i − B_i/√c‖²
    """

    def __init__(self, lambda_q: float, intra: bool = False, intra_weight: float = 1.0) -> None:
        super().__init__()
        self.lambda_q, self.intra, self.intra_weight = float(lambda_q), bool(intra), float(intra_weight)

    def terms(self, out: torch.Tensor, pos: torch.Tensor, own: torch.Tensor, other: torch.Tensor,
              codes: torch.Tensor, sim: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The unweighted terms, each already a mean (pairs or items)."""
        c = out.shape[1]
        result = {
            "inter": ((out @ other.T - sim) ** 2).mean(),
            "quantization": ((out - codes[pos] / math.sqrt(c)) ** 2).sum(1).mean(),
        }
        if self.intra:
            result["intra"] = ((out @ own.T - sim) ** 2).mean()
        return result

    def forward(self, out: torch.Tensor, pos: torch.Tensor, own: torch.Tensor, other: torch.Tensor,
                codes: torch.Tensor, sim: torch.Tensor) -> torch.Tensor:
        t = self.terms(out, pos, own, other, codes, sim)
        loss = t["inter"] + self.lambda_q * t["quantization"]
        if self.intra:
            loss = loss + self.intra_weight * t["intra"]
        return loss


def full_objective(Hv: torch.Tensor, Ht: torch.Tensor, B: torch.Tensor, S: torch.Tensor, lambda_q: float,
                   intra_weight: Optional[float] = None) -> torch.Tensor:
    """The objective over all n training items (rows: items), of which each
    mini-batch loss is the part that one modality's batch moves [inferred]::

        mean_ij (h_v,iᵀh_t,j − S_ij)² + λ_q mean_i (‖h_v,i − b_i/√c‖² + ‖h_t,i − b_i/√c‖²)
        [+ intra_weight (mean_ij (h_v,iᵀh_v,j − S_ij)² + mean_ij (h_t,iᵀh_t,j − S_ij)²)]
    """
    c = Hv.shape[1]
    target = B / math.sqrt(c)
    value = ((Hv @ Ht.T - S) ** 2).mean() + lambda_q * (
        ((Hv - target) ** 2).sum(1).mean() + ((Ht - target) ** 2).sum(1).mean()
    )
    if intra_weight is not None:
        value = value + intra_weight * (((Hv @ Hv.T - S) ** 2).mean() + ((Ht @ Ht.T - S) ** 2).mean())
    return value


# --------------------------------------------------------------------------- the method


class BiNCMH(HashMethod):
    """Bi_NCMH on features; see the module docstring for what is [paper] and what [inferred]."""

    name = "bi_ncmh"
    title = "Bi_NCMH (features)"
    Config = BiNCMHConfig
    supervised = True
    default_epochs = 100  # [inferred]: unpublished
    #: the backbone trains at the heads' rate, as in DCMH [inferred]
    backbone_lr_scale = 1.0
    #: [project] Chosen by validation MAP alone (the mean of I->T and T->I of
    #: the engine's 10% carve of the training items against the rest; never
    #: the test queries), seed 0, at 16 / 64 bits:
    #: - synthetic: must train its four code lengths in about 20 s on one core,
    #:   so a 512-unit text layer, Adam at 3e-3 and 16 epochs (1e-3, 1e-2 and
    #:   1024 or 2048 units were no better). λ_q 0.01 (0.859 / 0.899 after 20
    #:   epochs; 0.1: 0.852 / 0.891; 1: 0.736 / 0.822 after 12). The intra
    #:   terms, a tanh before the normalisation and buffers from the networks'
    #:   first outputs were within 0.01 and not better.
    #: - wiki: standardised inputs (L1-normalised histograms and topic
    #:   proportions); Adam 1e-3 (0.214 / 0.275 against 0.207 / 0.258 at 1e-4);
    #:   the intra terms on (at 1e-4: 0.238 / 0.274 against 0.207 / 0.258; with
    #:   an image hidden layer: 0.487 / 0.504 against 0.377 / 0.390); λ_q 0.1
    #:   (0.01: 0.220 / 0.251 against 0.253 / 0.293; 0.3: 0.445 / 0.478
    #:   against 0.508 / 0.515); a 1024-unit text layer (8192: 0.243 / 0.297,
    #:   at 8x the cost); an image hidden layer of 2048 units (0.508 / 0.532;
    #:   1024: 0.508 / 0.515; 512: 0.490 / 0.504; none: 0.253 / 0.293);
    #:   80 epochs (the best epochs fall at 61-80).
    presets = {
        "synthetic": {"lr": 3e-3, "text_hidden": 512, "lambda_q": 0.01, "epochs": 16},
        "wiki": {"lr": 1e-3, "input_norm": "standardize", "intra": True, "text_hidden": 1024,
                 "image_hidden": (2048,), "epochs": 80},
    }

    def build(self) -> None:
        cfg: BiNCMHConfig = self.config
        d_img, d_txt, _ = self.dims
        act = nn.Tanh() if cfg.pre_activation == "tanh" else None
        for modality, dim, hidden in (("image", d_img, cfg.image_hidden), ("text", d_txt, (cfg.text_hidden,))):
            net = mlp(dim, hidden, self.bits, self.generator, std=cfg.init_std, out=act)
            net.append(L2Normalize())
            self.networks[modality] = with_standardize(net, dim, cfg.input_norm == "standardize")
            self.losses[modality] = BiNCMHLoss(cfg.lambda_q, cfg.intra, cfg.intra_weight)

    def setup(self, train: TrainSet) -> None:
        cfg: BiNCMHConfig = self.config
        n, c = train.n, self.bits
        self.train_set = train
        self.labels = train.require_labels(self.name)
        if not bool(((self.labels == 0) | (self.labels == 1)).all()):
            raise ValueError(f"{self.name}: expected {{0, 1}} training labels, got other values")
        self.label_count = self.labels.sum(1)
        # The whole n×n S where it is small (up to 2^24 entries, 64 MiB in
        # float32): the batch then gathers its rows instead of recomputing them.
        self.S: Optional[torch.Tensor] = (
            _multilevel(self.labels, self.labels, self.label_count) if n * n <= 1 << 24 else None
        )
        fit_standardize(self.networks, train.image, train.text)
        if cfg.buffer_init == "normal":
            self.Hv = nnf.normalize(torch.randn(n, c, generator=self.generator), dim=1).to(self.device)
            self.Ht = nnf.normalize(torch.randn(n, c, generator=self.generator), dim=1).to(self.device)
        else:
            self.Hv = self.outputs("image", train.image).clone()
            self.Ht = self.outputs("text", train.text).clone()
        self.B = self._codes()
        self.opt_image, self.opt_text = (
            torch.optim.Adam(self.networks[m].parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            for m in ("image", "text")
        )

    def _codes(self) -> torch.Tensor:
        # b_i = sign(h_v,i + h_t,i) from the buffers, with 0 -> +1 [inferred].
        return to_signs(self.Hv + self.Ht)

    def _step_loss(self, modality: str, pos: torch.Tensor) -> torch.Tensor:
        train = self.train_set
        own, other = (self.Hv, self.Ht) if modality == "image" else (self.Ht, self.Hv)
        out = self.networks[modality](train.input(modality, pos))
        own[pos] = out.detach()  # the batch's rows of its buffer, as DCMH's code does
        sim = (self.S[pos] if self.S is not None
               else _multilevel(self.labels[pos], self.labels, self.label_count))
        return self.losses[modality](out, pos, own, other, self.B, sim)

    def phases(self, epoch: int, epochs: int) -> Sequence[Phase]:
        cfg: BiNCMHConfig = self.config
        iters = math.ceil(self.train_set.n / cfg.batch_size)  # ⌈n/b⌉ fresh random draws, as DCMH
        return [
            Phase("image", self.opt_image, lambda pos: self._step_loss("image", pos), iters, cfg.batch_size, "draw"),
            Phase("text", self.opt_text, lambda pos: self._step_loss("text", pos), iters, cfg.batch_size, "draw"),
        ]

    def end_epoch(self, epoch: int, epochs: int) -> Dict[str, float]:
        self.B = self._codes()  # once per epoch, after both networks
        return {}

    def objective(self) -> float:
        """:func:`full_objective` over the training buffers (O(n²); for monitoring small sets)."""
        cfg: BiNCMHConfig = self.config
        S = multilevel_similarity(self.labels, self.labels)
        return float(full_objective(self.Hv, self.Ht, self.B, S, cfg.lambda_q,
                                    cfg.intra_weight if cfg.intra else None))
