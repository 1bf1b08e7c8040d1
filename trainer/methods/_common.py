"""Pieces shared by the method files: networks, input scaling, similarities.

A method file holds only what is particular to its method; anything two
methods use lives here (or in :mod:`trainer.engine`, for the loop).
"""
from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as nnf
from torch import nn

Init = Literal["normal", "default"]


def mlp(d_in: int, hidden: Sequence[int], d_out: int, gen: torch.Generator, *, init: Init = "normal",
        std: float = 0.01, dropout: float = 0.0, out: Optional[nn.Module] = None) -> nn.Sequential:
    """``d_in -> hidden... (ReLU) -> d_out``, then ``out`` (None: identity).

    ``init="normal"`` draws every weight and bias from N(0, std²) (DCMH's
    [paper][code] initialisation); ``"default"`` keeps PyTorch's (Kaiming
    uniform) but draws it from ``gen`` so that runs stay seeded.
    ``dropout`` > 0 puts a Dropout after the last linear layer (DCGH's head).
    """
    layers: list = []
    prev = d_in
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.ReLU()]
        prev = h
    layers.append(nn.Linear(prev, d_out))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    if out is not None:
        layers.append(out)
    net = nn.Sequential(*layers)
    for mod in net:
        if isinstance(mod, nn.Linear):
            init_linear(mod, gen, init=init, std=std)
    return net


@torch.no_grad()
def init_linear(layer: nn.Linear, gen: torch.Generator, *, init: Init = "normal", std: float = 0.01) -> nn.Linear:
    """(Re)initialise ``layer`` from ``gen``: N(0, std²) weights and biases
    (``"normal"``) or PyTorch's default Kaiming-uniform scheme (``"default"``)."""
    if init == "normal":
        nn.init.normal_(layer.weight, 0.0, std, generator=gen)
        nn.init.normal_(layer.bias, 0.0, std, generator=gen)
    else:
        nn.init.kaiming_uniform_(layer.weight, a=5 ** 0.5, generator=gen)
        bound = 1.0 / max(layer.in_features, 1) ** 0.5
        nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return layer


def linear(d_in: int, d_out: int, gen: torch.Generator, *, init: Init = "default", std: float = 0.01) -> nn.Linear:
    """One seeded ``nn.Linear(d_in, d_out)`` (see :func:`init_linear`)."""
    return init_linear(nn.Linear(d_in, d_out), gen, init=init, std=std)


class Standardize(nn.Module):
    """x -> (x - mean) / std with fixed statistics (buffers), set by :meth:`fit`."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, eps: float = 1e-8) -> None:
        self.mean.copy_(x.mean(dim=0))
        std = x.std(dim=0)
        self.scale.copy_(torch.where(std > eps, 1.0 / std.clamp_min(eps), torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale


def fit_standardize(networks: nn.ModuleDict, image: torch.Tensor, text: torch.Tensor) -> None:
    """Fit the :class:`Standardize` layer of the image and the text network,
    where a method's config gave them one, on the training features.

    Built into the networks by ``build()`` (so that a saved encoder rebuilds
    the same modules) and fitted here, in ``setup()``. The image network's own
    layers are looked up inside a backbone wrapper (end-to-end training).
    """
    from ..pixels import head_of

    for modality, x in (("image", image), ("text", text)):
        for mod in head_of(networks[modality]).modules():
            if isinstance(mod, Standardize):
                mod.fit(x)
                break


def with_standardize(net: nn.Sequential, dim: int, enabled: bool) -> nn.Sequential:
    """``net`` with an (unfitted) :class:`Standardize` of ``dim`` inputs in front, if ``enabled``."""
    if enabled:
        net.insert(0, Standardize(dim))
    return net


def cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Cosine similarity of every row of ``a`` with every row of ``b``: ``(len(a), len(b))``.

    A zero row has cosine 0 with everything (instead of NaN).
    """
    return nnf.normalize(a, dim=1, eps=eps) @ nnf.normalize(b, dim=1, eps=eps).T


def to_signs(x: torch.Tensor) -> torch.Tensor:
    """+1 where ``x >= 0``, else -1, in ``x``'s dtype (the project's sign: 0 -> +1)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


__all__ = ["Standardize", "cosine", "init_linear", "linear", "mlp", "fit_standardize", "to_signs", "with_standardize"]
