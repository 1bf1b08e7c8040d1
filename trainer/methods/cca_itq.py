"""CCA+ITQ: the classic shallow, unsupervised cross-modal baseline.

Canonical correlation analysis (Hotelling 1936) between the centred image and
text features of the training pairs gives one projection per modality into a
shared ``c``-dimensional space; iterative quantization (Gong, Lazebnik, Gordo
and Perronnin, "Iterative Quantization", TPAMI 2013) then learns one
orthogonal rotation of that space, over both modalities' projected training
items together, that minimises the quantization error ‖B − V R‖². Codes are
sign(V R) per modality (0 -> bit 1). Labels are never read.

It is here for scale: what a linear, label-free method reaches on the same
features and split. Choices of this trainer [project]: the ridge term of the
covariances (``reg`` times the mean variance), and where ``c`` exceeds the
number of canonical pairs ``k = min(d_image, d_text, c)`` (Wiki's 10-d text
at 16+ bits), the k canonical directions are lifted to ``c`` dimensions by a
fixed seeded random orthonormal map before ITQ (the extra bits then combine
the same k directions differently).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Tuple, cast

import numpy as np
import torch
from torch import nn

from ..engine import HashMethod, TrainSet


@dataclasses.dataclass(frozen=True)
class CCAITQConfig:
    #: ridge on each covariance, relative to its mean eigenvalue [project].
    reg: float = 1e-3
    #: ITQ iterations (Gong et al. use 50) [paper: ITQ].
    itq_iters: int = 50
    #: weight each canonical direction by its correlation raised to this power
    #: before ITQ (0: unweighted) [project].
    corr_power: float = 0.0


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, w.max() * 1e-12)
    return (v / np.sqrt(w)) @ v.T


def _ridge(c: np.ndarray, reg: float) -> np.ndarray:
    return c + reg * (np.trace(c) / c.shape[0] + 1e-12) * np.eye(c.shape[0])


def cca(x: np.ndarray, y: np.ndarray, k: int, reg: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regularised CCA of centred ``x`` (n, dx) and ``y`` (n, dy).

    Returns ``(A, B, rho)``: projections (dx, k) and (dy, k) whose outputs
    ``x @ A`` and ``y @ B`` have unit variance and correlations ``rho`` (k,),
    in decreasing order.
    """
    n = x.shape[0]
    cxx = _ridge(x.T @ x / n, reg)
    cyy = _ridge(y.T @ y / n, reg)
    cxy = x.T @ y / n
    wx, wy = _inv_sqrt(cxx), _inv_sqrt(cyy)
    u, s, vt = np.linalg.svd(wx @ cxy @ wy, full_matrices=False)
    return wx @ u[:, :k], wy @ vt.T[:, :k], s[:k]


def itq(v: np.ndarray, iters: int, rng: np.random.Generator) -> np.ndarray:
    """ITQ's rotation R (c, c) for data ``v`` (n, c): alternate B = sign(V R)
    and the orthogonal Procrustes solution R = argmin ‖B − V R‖."""
    c = v.shape[1]
    r, _ = np.linalg.qr(rng.standard_normal((c, c)))
    for _ in range(iters):
        b = np.where(v @ r >= 0, 1.0, -1.0)
        u, _, wt = np.linalg.svd(v.T @ b)
        r = u @ wt
    return r


class CCAITQ(HashMethod):
    """CCA + ITQ (unsupervised, closed form); see the module docstring."""

    name = "cca_itq"
    title = "CCA+ITQ"
    Config = CCAITQConfig
    supervised = False
    iterative = False
    default_epochs = 1

    def build(self) -> None:
        d_img, d_txt, _ = self.dims
        self.networks["image"] = nn.Linear(d_img, self.bits)
        self.networks["text"] = nn.Linear(d_txt, self.bits)
        for net in self.networks.values():
            net.requires_grad_(False)

    def fit(self, train: TrainSet) -> None:
        cfg: CCAITQConfig = self.config
        x = train.image.detach().cpu().double().numpy()
        y = train.text.detach().cpu().double().numpy()
        mx, my = x.mean(axis=0), y.mean(axis=0)
        x, y = x - mx, y - my
        c = self.bits
        k = min(c, x.shape[1], y.shape[1], x.shape[0] - 1)
        a, b, rho = cca(x, y, k, cfg.reg)
        if cfg.corr_power:
            weight = np.maximum(rho, 0.0) ** cfg.corr_power
            a, b = a * weight, b * weight
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        rng = np.random.default_rng(seed)
        if k < c:  # lift to c dimensions by a fixed random orthonormal map [project]
            q, _ = np.linalg.qr(rng.standard_normal((c, k)))
            a, b = a @ q.T, b @ q.T
        v = np.concatenate([x @ a, y @ b])
        r = itq(v, cfg.itq_iters, rng)
        self.rho = rho
        for modality, proj, mean in (("image", a @ r, mx), ("text", b @ r, my)):
            net = cast(nn.Linear, self.networks[modality])
            with torch.no_grad():
                net.weight.copy_(torch.from_numpy(proj.T.copy()))
                net.bias.copy_(torch.from_numpy(-(mean @ proj)))

    def extra_state(self) -> Dict[str, object]:
        return {"canonical_correlations": getattr(self, "rho", np.empty(0)).tolist()}
