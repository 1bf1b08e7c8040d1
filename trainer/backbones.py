"""Image backbones for the trainer, in plain torch: CNN-F (DCMH's), ResNet-18/50, VGG-16, ViT-B/32.

Nothing is ever downloaded. :func:`build_backbone` starts a network from a
seeded random initialisation, or loads weights from a file the user names:

- ``resnet18``, ``resnet50``, ``vgg16``, ``vit_b_32``: a torch state dict in
  torchvision's layout (module and parameter names are torchvision's
  state-dict keys, BatchNorm statistics included), so the ImageNet files that
  torchvision publishes load as they are; their classifier keys (``fc.*``,
  ``classifier.6.*``, ``heads.*``) are accepted and ignored.
- ``cnnf``: MatConvNet's ``imagenet-vgg-f.mat`` (read as DCMH's released code
  reads it: the ``layers`` cell in order, each layer's ``weights{1}`` as
  ``H x W x Cin x Cout``, ``weights{2}`` the bias, and
  ``normalization.averageImage``), DCMH's ``vgg_net.mat`` (the same inside a
  ``net`` struct), or a torch state dict of :class:`CNNF`'s own layout.

``forward`` returns the features that cross-modal hashing uses, the
classifier dropped:

========== ======= ==========================================================
name       out_dim features
========== ======= ==========================================================
cnnf       4096    fc7 after its ReLU
resnet18   512     the global average pool
resnet50   2048    the global average pool
vgg16      4096    fc7 after its ReLU (torchvision's ``classifier[0..4]``;
                   its dropout is active in train mode only)
vit_b_32   768     the class token after the final LayerNorm
========== ======= ==========================================================

``preprocess`` turns a list of ``(H, W, 3)`` uint8 RGB arrays or PIL images
into the ``(n, 3, S, S)`` float32 batch ``forward`` expects: ImageNet
normalisation after a resize and centre crop for torchvision's networks; for
CNN-F, DCMH's 0..255 pixels minus the average image.
"""
from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
import torch.nn.functional as nnf
from PIL import Image
from torch import nn

log = logging.getLogger("trainer.backbones")

BACKBONES = ("cnnf", "resnet18", "resnet50", "vgg16", "vit_b_32")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# CNN-F's average image when no weights file gives one: the ImageNet mean
# pixel (R, G, B) on the 0..255 scale, the value the VGG/Caffe models use.
IMAGENET_MEAN_PIXEL = (123.68, 116.779, 103.939)

PathLike = Union[str, "os.PathLike[str]"]

# How many names an error message lists before "... (N more)".
_LIST_AT_MOST = 5


def _few(items: Sequence[Any]) -> str:
    head = ", ".join(str(x) for x in items[:_LIST_AT_MOST])
    more = len(items) - _LIST_AT_MOST
    return head + (f", ... ({more} more)" if more > 0 else "")


# --------------------------------------------------------------------------
# The common base
# --------------------------------------------------------------------------

class Backbone(nn.Module):
    """An image network that ends before its classifier.

    Attributes
    ----------
    name : str
        One of :data:`BACKBONES`.
    out_dim : int
        Width of the feature vector :meth:`forward` returns.
    image_size : int
        The square input side ``S``.
    """

    name: str = ""
    out_dim: int = 0
    # State-dict key prefixes of the ImageNet classifier, accepted and dropped on load.
    classifier_prefixes: Tuple[str, ...] = ()

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = int(image_size)

    # -- subclasses fill these in ------------------------------------------
    @classmethod
    def check_image_size(cls, image_size: int) -> None:
        """Raise ValueError if the architecture cannot take ``image_size``."""
        raise NotImplementedError

    def _init_random(self, gen: torch.Generator) -> None:
        raise NotImplementedError

    def _preprocess_one(self, img: Image.Image) -> np.ndarray:
        raise NotImplementedError

    def _adapt_state(self, state: Dict[str, torch.Tensor], source: str) -> Dict[str, torch.Tensor]:
        """Bring a foreign state dict to this module's layout (resizing, renamed keys)."""
        return state

    # -- shared ----------------------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        s = self.image_size
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(f"{self.name}.forward: expected an (n, 3, {s}, {s}) batch (see preprocess), "
                             f"got shape {tuple(x.shape)}")

    def preprocess(self, images: Iterable[Any]) -> torch.Tensor:
        """Images -> the float32 batch :meth:`forward` expects, on the CPU.

        Parameters
        ----------
        images : list of (H, W, 3) uint8 numpy arrays and/or PIL images
            RGB, any sizes. Greyscale ((H, W) or (H, W, 1)) and RGBA ((H, W, 4))
            arrays and PIL images of any mode are converted to RGB (alpha
            dropped).

        Returns
        -------
        torch.Tensor
            float32, ``(n, 3, S, S)``. Deterministic: the same images give the
            same bits.
        """
        out = [self._preprocess_one(_as_rgb(img, i)) for i, img in enumerate(images)]
        s = self.image_size
        if not out:
            return torch.zeros((0, 3, s, s), dtype=torch.float32)
        return torch.from_numpy(np.stack(out))

    def spec(self) -> Dict[str, Any]:
        """JSON-able description: name, sizes and what :meth:`preprocess` does."""
        return {"name": self.name, "image_size": self.image_size, "out_dim": self.out_dim}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, image_size={self.image_size}, out_dim={self.out_dim}"


def _as_rgb(img: Any, i: int) -> Image.Image:
    """One input image as an RGB PIL image, or ValueError saying what was expected."""
    if isinstance(img, Image.Image):
        return img if img.mode == "RGB" else img.convert("RGB")
    if not isinstance(img, np.ndarray):
        raise ValueError(f"image {i}: expected an (H, W, 3) uint8 numpy array or a PIL image, "
                         f"got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ValueError(f"image {i}: expected uint8 pixels (0..255), got dtype {img.dtype}; "
                         "convert first, e.g. np.clip(x * 255, 0, 255).astype(np.uint8)")
    arr = img
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"image {i}: expected an (H, W, 3) RGB array (or (H, W) grey, (H, W, 4) RGBA), "
                         f"got shape {img.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image {i}: expected a non-empty image, got shape {img.shape}")
    # PIL does the grey -> RGB (replicate) and RGBA -> RGB (drop alpha) conversions.
    pil = Image.fromarray(np.ascontiguousarray(arr))
    return pil if pil.mode == "RGB" else pil.convert("RGB")


# --------------------------------------------------------------------------
# torchvision's networks
# --------------------------------------------------------------------------

class _TorchvisionBackbone(Backbone):
    """ImageNet preprocessing as torchvision's ``ImageClassification`` preset does it."""

    @property
    def resize_size(self) -> int:
        # torchvision resizes to 256 for a 224 crop; keep that ratio for other sizes.
        return round(self.image_size * 256 / 224)

    @classmethod
    def check_image_size(cls, image_size: int) -> None:
        if image_size < 32:
            raise ValueError(f"{cls.name}: expected image_size >= 32 (five stride-2 stages), got {image_size}")

    def _preprocess_one(self, img: Image.Image) -> np.ndarray:
        s, short = self.image_size, self.resize_size
        w, h = img.size
        # torchvision.transforms.Resize(int): the shorter side becomes `short`,
        # the longer one int(short * long / short_side) (truncated, not rounded).
        if w <= h:
            new_w, new_h = short, int(short * h / w)
        else:
            new_w, new_h = int(short * w / h), short
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), Image.BILINEAR)
        # CenterCrop rounds the offsets with Python's round (ties to even).
        top = round((new_h - s) / 2.0)
        left = round((new_w - s) / 2.0)
        arr = np.asarray(img)[top:top + s, left:left + s]
        # Same float32 operations, in the same order, as ToTensor + Normalize.
        x = arr.astype(np.float32) / np.float32(255.0)
        x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def spec(self) -> Dict[str, Any]:
        out = super().spec()
        out.update(resize_shorter=self.resize_size, interpolation="bilinear", center_crop=self.image_size,
                   scale=1.0 / 255.0, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))
        return out


@torch.no_grad()
def _init_convs_bns_like_torchvision(module: nn.Module, gen: torch.Generator) -> None:
    """torchvision's ResNet/VGG scheme, drawn from ``gen``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=gen)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()
            m.running_mean.zero_()
            m.running_var.fill_(1.0)
            m.num_batches_tracked.zero_()
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01, generator=gen)
            m.bias.zero_()


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, downsample: Optional[nn.Module]) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class _Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: Optional[nn.Module]) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(_TorchvisionBackbone):
    """torchvision's ResNet-18 / ResNet-50 up to the global average pool."""

    classifier_prefixes = ("fc.",)
    _block: Type[nn.Module] = _BasicBlock
    _depths: Tuple[int, ...] = (2, 2, 2, 2)

    def __init__(self, image_size: int = 224) -> None:
        super().__init__(image_size)
        block = self._block
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        cin = 64
        for i, (planes, depth) in enumerate(zip((64, 128, 256, 512), self._depths)):
            stride = 1 if i == 0 else 2
            blocks: List[nn.Module] = []
            for j in range(depth):
                s = stride if j == 0 else 1
                down = None
                if j == 0 and (s != 1 or cin != planes * block.expansion):
                    down = nn.Sequential(_conv1x1(cin, planes * block.expansion, s),
                                         nn.BatchNorm2d(planes * block.expansion))
                blocks.append(block(cin, planes, s, down))
                cin = planes * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_dim = cin

    def _init_random(self, gen: torch.Generator) -> None:
        _init_convs_bns_like_torchvision(self, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, S, S)`` float -> ``(n, out_dim)`` average-pooled features."""
        self._check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(nnf.adaptive_avg_pool2d(x, 1), 1)


class ResNet18(ResNet):
    name = "resnet18"
    out_dim = 512


class ResNet50(ResNet):
    name = "resnet50"
    out_dim = 2048
    _block = _Bottleneck
    _depths = (3, 4, 6, 3)


class VGG16(_TorchvisionBackbone):
    """torchvision's VGG-16 (configuration D, no BatchNorm) up to fc7's ReLU."""

    name = "vgg16"
    out_dim = 4096
    classifier_prefixes = ("classifier.6.",)
    _cfg = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, image_size: int = 224, dropout: float = 0.5) -> None:
        super().__init__(image_size)
        layers: List[nn.Module] = []
        cin = 3
        for v in self._cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(cin, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        # torchvision pools to 7x7 whatever the input size, so fc6 keeps its shape.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        # classifier[0..4] of torchvision's; [5] (dropout) and [6] (the 1000-way layer) dropped.
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                        nn.Linear(4096, 4096), nn.ReLU(inplace=True))

    def _init_random(self, gen: torch.Generator) -> None:
        _init_convs_bns_like_torchvision(self, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, S, S)`` float -> ``(n, 4096)`` fc7 features (after ReLU)."""
        self._check_input(x)
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


class _EncoderBlock(nn.Module):
    """torchvision's ViT encoder block (pre-LayerNorm attention, then MLP)."""

    def __init__(self, heads: int, hidden: int, mlp_dim: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(hidden, heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(hidden, eps=1e-6)
        # Indices 0 and 3 carry the weights, as in torchvision's MLPBlock.
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, hidden), nn.Dropout(dropout))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(inp)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + inp
        return x + self.mlp(self.ln_2(x))


class _Encoder(nn.Module):
    def __init__(self, seq_length: int, layers: int, heads: int, hidden: int, mlp_dim: int,
                 dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", _EncoderBlock(heads, hidden, mlp_dim, dropout, attention_dropout))
            for i in range(layers)))
        self.ln = nn.LayerNorm(hidden, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class ViTB32(_TorchvisionBackbone):
    """torchvision's ``vit_b_32`` up to the class token after the final LayerNorm.

    ``image_size`` must be a multiple of 32 (the patch side). Loading weights
    made for another size (ImageNet's are 224) interpolates the position
    embeddings of the patch grid bicubically, as torchvision's
    ``interpolate_embeddings`` does (``align_corners=True``; the class token's
    embedding is kept as it is), and says so in the log.
    """

    name = "vit_b_32"
    out_dim = 768
    classifier_prefixes = ("heads.",)
    patch_size = 32
    _layers, _heads, _mlp_dim = 12, 12, 3072

    def __init__(self, image_size: int = 224, dropout: float = 0.0, attention_dropout: float = 0.0) -> None:
        super().__init__(image_size)
        hidden = self.out_dim
        self.conv_proj = nn.Conv2d(3, hidden, kernel_size=self.patch_size, stride=self.patch_size)
        self.class_token = nn.Parameter(torch.empty(1, 1, hidden))
        seq_length = (image_size // self.patch_size) ** 2 + 1
        self.encoder = _Encoder(seq_length, self._layers, self._heads, hidden, self._mlp_dim,
                                dropout, attention_dropout)

    @classmethod
    def check_image_size(cls, image_size: int) -> None:
        if image_size < cls.patch_size or image_size % cls.patch_size:
            raise ValueError(f"vit_b_32: expected image_size a positive multiple of {cls.patch_size} "
                             f"(the patch side), got {image_size}")

    @torch.no_grad()
    def _init_random(self, gen: torch.Generator) -> None:
        # torchvision's scheme (VisionTransformer, MLPBlock, nn.MultiheadAttention).
        fan_in = 3 * self.patch_size ** 2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1.0 / fan_in), generator=gen)
        self.conv_proj.bias.zero_()
        self.class_token.zero_()
        nn.init.normal_(self.encoder.pos_embedding, std=0.02, generator=gen)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
            elif isinstance(m, nn.MultiheadAttention):
                nn.init.xavier_uniform_(m.in_proj_weight, generator=gen)
                m.in_proj_bias.zero_()
                nn.init.kaiming_uniform_(m.out_proj.weight, a=math.sqrt(5), generator=gen)
                m.out_proj.bias.zero_()
            elif isinstance(m, _EncoderBlock):
                for lin in (m.mlp[0], m.mlp[3]):
                    nn.init.xavier_uniform_(lin.weight, generator=gen)
                    nn.init.normal_(lin.bias, std=1e-6, generator=gen)

    def _adapt_state(self, state: Dict[str, torch.Tensor], source: str) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = OrderedDict()
        for k, v in state.items():
            # torchvision before 0.14 (and its first ViT weight files) named the MLP's
            # linear layers linear_1/linear_2; its loader renames them the same way.
            for old, new in ((".mlp.linear_1.", ".mlp.0."), (".mlp.linear_2.", ".mlp.3.")):
                if old in k:
                    k = k.replace(old, new)
            out[k] = v
        key = "encoder.pos_embedding"
        pos = out.get(key)
        want = self.encoder.pos_embedding.shape
        if isinstance(pos, torch.Tensor) and pos.dim() == 3 and pos.shape[0] == 1 and pos.shape[2] == want[2] \
                and pos.shape[1] != want[1]:
            out[key] = _interpolate_pos_embedding(pos, math.isqrt(want[1] - 1), source)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, S, S)`` float -> ``(n, 768)`` class-token features."""
        self._check_input(x)
        n = x.shape[0]
        x = self.conv_proj(x).reshape(n, self.out_dim, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return self.encoder(x)[:, 0]


def _interpolate_pos_embedding(pos: torch.Tensor, new_side: int, source: str) -> torch.Tensor:
    """``(1, 1 + g*g, D)`` -> ``(1, 1 + new_side**2, D)``: torchvision's ``interpolate_embeddings``."""
    grid = pos.shape[1] - 1
    side = math.isqrt(grid)
    if side * side != grid:
        raise ValueError(f"{source}: encoder.pos_embedding has {grid} patch positions, not a square grid; "
                         "cannot resize it to this image_size")
    d = pos.shape[2]
    img = pos[:, 1:, :].permute(0, 2, 1).reshape(1, d, side, side).float()
    img = nnf.interpolate(img, size=new_side, mode="bicubic", align_corners=True)
    img = img.reshape(1, d, new_side * new_side).permute(0, 2, 1).to(pos.dtype)
    log.info("%s: vit_b_32 position embeddings interpolated (bicubic) from a %dx%d to a %dx%d patch grid",
             source, side, side, new_side, new_side)
    return torch.cat([pos[:, :1, :], img], dim=1)


# --------------------------------------------------------------------------
# CNN-F (MatConvNet's imagenet-vgg-f, as DCMH uses it)
# --------------------------------------------------------------------------

# MatConvNet's vl_nnnormalize parameters [N kappa alpha beta] of imagenet-vgg-f
# (DCMH's TensorFlow code hard-codes the same: depth_radius 2, bias 2, alpha
# 1e-4, beta 0.75). MatConvNet does not divide alpha by N (Caffe and torch do).
CNNF_LRN = (5, 2.0, 1e-4, 0.75)
# MatConvNet pads are [top bottom left right]; pool1's bottom/right pad is how
# MatConvNet reproduces Caffe's ceil rounding (cnn_imagenet_init.m, vgg_f).
_CNNF_CONVS = (  # name, kernel, cin, cout, stride, pad
    ("conv1", 11, 3, 64, 4, 0), ("conv2", 5, 64, 256, 1, 2), ("conv3", 3, 256, 256, 1, 1),
    ("conv4", 3, 256, 256, 1, 1), ("conv5", 3, 256, 256, 1, 1), ("fc6", 6, 256, 4096, 1, 0),
    ("fc7", 1, 4096, 4096, 1, 0))
_CNNF_POOLS = {"pool1": (0, 1, 0, 1), "pool2": (0, 0, 0, 0), "pool5": (0, 0, 0, 0)}  # 3x3, stride 2, max
# The layer sequence DCMH's code walks (layers{1..19}; fc8 and prob follow and are ignored).
_CNNF_LAYERS = ("conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3",
                "conv4", "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7", "relu7")


def _lrn_matconvnet(x: torch.Tensor, n: int, kappa: float, alpha: float, beta: float) -> torch.Tensor:
    """vl_nnnormalize: ``x / (kappa + alpha * sum_{q in G(k)} x_q^2)^beta`` over channels,
    ``G(k) = [k - floor((n-1)/2), k + ceil((n-1)/2)]`` clipped to the channels."""
    before = (n - 1) // 2
    sq = nnf.pad(x * x, (0, 0, 0, 0, before, n - 1 - before))  # pads the channel dimension
    window = sq.unfold(1, n, 1).sum(dim=-1)
    return x / (kappa + alpha * window).pow(beta)


def _pool_out(size: int, pad: Tuple[int, int], k: int = 3, s: int = 2) -> int:
    return (size + pad[0] + pad[1] - k) // s + 1


def _cnnf_pool5_side(image_size: int) -> int:
    side = (image_size - 11) // 4 + 1
    side = _pool_out(side, _CNNF_POOLS["pool1"][:2])
    side = _pool_out(side, _CNNF_POOLS["pool2"][:2])  # conv2 keeps the size (pad 2)
    return _pool_out(side, _CNNF_POOLS["pool5"][:2])  # conv3..5 keep it (pad 1)


class CNNF(Backbone):
    """CNN-F (Chatfield et al. 2014; MatConvNet's imagenet-vgg-f) up to fc7's ReLU, as in DCMH.

    conv1 64x11x11 stride 4, ReLU, LRN, 3x3/2 max-pool (pad [0 1 0 1]);
    conv2 256x5x5 pad 2, ReLU, LRN, 3x3/2 max-pool; conv3..5 256x3x3 pad 1
    with ReLU; 3x3/2 max-pool; fc6 4096, ReLU; fc7 4096, ReLU. No dropout
    (the released network has none and DCMH adds none).

    fc6 is a linear layer over the flattened ``(256, 6, 6)`` map (torch's
    C, H, W order): ``fc6.weight[o, c*36 + h*6 + w]`` is MatConvNet's
    ``weights{1}(h, w, c, o)``. ``image_size`` must leave a 6x6 map after
    pool5 (223..254; DCMH uses 224).

    The buffer ``average_image`` ``(3, S, S)`` (0..255 scale, RGB) is what
    :meth:`preprocess` subtracts; it travels in the state dict. With random
    weights it is the constant ImageNet mean pixel (123.68, 116.779, 103.939).
    """

    name = "cnnf"
    out_dim = 4096
    classifier_prefixes = ("fc8.",)
    average_image: torch.Tensor

    def __init__(self, image_size: int = 224) -> None:
        super().__init__(image_size)
        for name, k, cin, cout, stride, pad in _CNNF_CONVS[:5]:
            self.add_module(name, nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=pad))
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.register_buffer("average_image", torch.empty(3, image_size, image_size))

    @classmethod
    def check_image_size(cls, image_size: int) -> None:
        if _cnnf_pool5_side(image_size) != 6:
            ok = [s for s in range(200, 300) if _cnnf_pool5_side(s) == 6]
            raise ValueError(f"cnnf: expected an image_size that leaves a 6x6 map for fc6, i.e. "
                             f"{ok[0]}..{ok[-1]} (DCMH uses 224), got {image_size}")

    @torch.no_grad()
    def _init_random(self, gen: torch.Generator) -> None:
        # MatConvNet's own from-scratch scheme for vgg-f (cnn_imagenet_init,
        # 'gaussian'): N(0, 0.01^2) weights, zero biases.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01, generator=gen)
                m.bias.zero_()
        self.average_image.copy_(torch.tensor(IMAGENET_MEAN_PIXEL).view(3, 1, 1).expand_as(self.average_image))

    def _adapt_state(self, state: Dict[str, torch.Tensor], source: str) -> Dict[str, torch.Tensor]:
        avg = state.get("average_image")
        s = self.image_size
        if isinstance(avg, torch.Tensor) and avg.dim() == 3 and avg.shape[0] == 3 and tuple(avg.shape[1:]) != (s, s):
            state = OrderedDict(state)
            state["average_image"] = torch.from_numpy(
                _resize_average_image(avg.float().numpy().transpose(1, 2, 0), s, source))
        return state

    def _preprocess_one(self, img: Image.Image) -> np.ndarray:
        s = self.image_size
        if img.size != (s, s):
            img = img.resize((s, s), Image.BILINEAR)
        return np.ascontiguousarray(np.asarray(img).astype(np.float32).transpose(2, 0, 1))

    def preprocess(self, images: Iterable[Any]) -> torch.Tensor:
        """Images -> ``(n, 3, S, S)`` float32 on the CPU: resized to S x S (PIL
        bilinear; DCMH's 224x224 images pass unchanged), 0..255, minus
        ``average_image``. See :meth:`Backbone.preprocess` for the inputs."""
        x = super().preprocess(images)
        return x - self.average_image.detach().to("cpu", torch.float32)

    def spec(self) -> Dict[str, Any]:
        out = super().spec()
        s = self.image_size
        out.update(resize=[s, s], interpolation="bilinear", scale=1.0, subtract="average_image buffer (3, S, S)")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, S, S)`` float (0..255 minus the average image) -> ``(n, 4096)`` fc7 features."""
        self._check_input(x)
        lrn = CNNF_LRN
        # Pool padding is -inf, as MatConvNet's max pooling ignores the padded cells.
        x = _lrn_matconvnet(nnf.relu(self.conv1(x)), *lrn)
        x = nnf.max_pool2d(_pad_mcn(x, _CNNF_POOLS["pool1"]), 3, 2)
        x = _lrn_matconvnet(nnf.relu(self.conv2(x)), *lrn)
        x = nnf.max_pool2d(_pad_mcn(x, _CNNF_POOLS["pool2"]), 3, 2)
        x = nnf.relu(self.conv5(nnf.relu(self.conv4(nnf.relu(self.conv3(x))))))
        x = nnf.max_pool2d(_pad_mcn(x, _CNNF_POOLS["pool5"]), 3, 2)
        x = nnf.relu(self.fc6(torch.flatten(x, 1)))
        return nnf.relu(self.fc7(x))


def _pad_mcn(x: torch.Tensor, pad_tblr: Tuple[int, int, int, int]) -> torch.Tensor:
    """MatConvNet's [top bottom left right] pad, with -inf (max pooling)."""
    t, b, l, r = pad_tblr
    if not any(pad_tblr):
        return x
    return nnf.pad(x, (l, r, t, b), value=float("-inf"))


def _resize_average_image(avg_hwc: np.ndarray, size: int, source: str) -> np.ndarray:
    """An (H, W, 3) average image -> (3, size, size) float32, PIL bilinear per channel
    (the resampler preprocess uses on the images)."""
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(avg_hwc[:, :, c], dtype=np.float32), mode="F")
                        .resize((size, size), Image.BILINEAR)) for c in range(3)]
    log.info("%s: cnnf average image resized from %dx%d to %dx%d", source, avg_hwc.shape[0], avg_hwc.shape[1],
             size, size)
    return np.stack(chans).astype(np.float32)


def _mat_field(rec: Any, name: str) -> Any:
    names = getattr(getattr(rec, "dtype", None), "names", None) or ()
    return rec[name] if name in names else None


def _mat_str(value: Any) -> Optional[str]:
    if value is None:
        return None
    arr = np.asarray(value).reshape(-1)
    return str(arr[0]) if arr.size else ""


def _mat_ints(value: Any, n: int, what: str) -> Tuple[int, ...]:
    """MatConvNet writes a scalar for "the same on every side"; expand to n values."""
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        raise ValueError(f"{what}: expected 1 or {n} values, got {arr.tolist()}")
    return tuple(int(v) for v in arr)


def _read_vggf_mat(path: str, image_size: int) -> Dict[str, torch.Tensor]:
    """imagenet-vgg-f.mat (or DCMH's vgg_net.mat) -> a :class:`CNNF` state dict.

    The layers are taken by position, as DCMH's code does; each one's type,
    kernel shape, stride, pad and (for LRN) parameters are checked against the
    fixed CNN-F architecture so that a different network fails loudly.
    """
    import scipy.io  # only the .mat path needs scipy

    try:
        data = scipy.io.loadmat(path)  # struct_as_record=True: DCMH's indexing works on it
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
        raise ValueError(f"{path}: a MATLAB v7.3 (HDF5) file; expected MatConvNet's v5 .mat "
                         "(re-save with save(..., '-v7'))") from exc
    except Exception as exc:  # scipy raises ValueError/TypeError/OSError for non-MAT input
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc
    root: Mapping[str, Any] = data
    if "layers" not in data and "net" in data:  # DCMH's MATLAB release: vgg_net.mat holds `net`
        root = {k: data["net"][0, 0][k] for k in data["net"].dtype.names or ()}
    if "layers" not in root:
        raise ValueError(f"{path}: expected MatConvNet's `layers` cell (or a `net` struct holding it), "
                         f"found variables {sorted(k for k in data if not k.startswith('__'))}")
    layers = np.asarray(root["layers"]).reshape(-1)
    if layers.size < len(_CNNF_LAYERS):
        raise ValueError(f"{path}: expected at least {len(_CNNF_LAYERS)} layers (conv1 .. relu7), "
                         f"got {layers.size}")

    state: Dict[str, torch.Tensor] = OrderedDict()
    convs = {c[0]: c for c in _CNNF_CONVS}
    side = image_size
    for i, lname in enumerate(_CNNF_LAYERS):
        rec = np.asarray(layers[i]).reshape(-1)[0]
        where = f"{path}: layers{{{i + 1}}} ({lname})"
        kind = _mat_str(_mat_field(rec, "type"))
        expected_kind = {"con": "conv", "rel": "relu", "nor": "lrn", "poo": "pool", "fc6": "conv",
                         "fc7": "conv"}[lname[:3]]
        if kind is not None and kind != expected_kind and not (expected_kind == "lrn" and kind == "normalize"):
            raise ValueError(f"{where}: expected a {expected_kind!r} layer, got type {kind!r}")
        if lname in convs:
            _, k, cin, cout, stride, pad = convs[lname]
            w = _mat_field(rec, "weights")
            if w is not None:
                w = np.asarray(w).reshape(-1)
                kernel, bias = np.asarray(w[0]), np.asarray(w[1])
            else:  # MatConvNet before beta-10 stored filters/biases
                kernel, bias = np.asarray(_mat_field(rec, "filters")), np.asarray(_mat_field(rec, "biases"))
            if kernel.shape != (k, k, cin, cout) or bias.size != cout:
                raise ValueError(f"{where}: expected weights{{1}} of shape {(k, k, cin, cout)} (H x W x Cin x Cout) "
                                 f"and {cout} biases, got {kernel.shape} and {bias.size}")
            got_stride = _mat_ints(_mat_field(rec, "stride"), 2, f"{where} stride")
            got_pad = _mat_ints(_mat_field(rec, "pad"), 4, f"{where} pad")
            if got_stride != (stride, stride) or got_pad != (pad,) * 4:
                raise ValueError(f"{where}: expected stride {stride} and pad {pad}, got stride {list(got_stride)} "
                                 f"and pad {list(got_pad)}")
            # MatConvNet and torch both correlate (no kernel flip); only the axes move.
            kernel = np.asarray(kernel, dtype=np.float32)
            if lname == "fc6":
                weight = kernel.transpose(3, 2, 0, 1).reshape(cout, -1)  # (o, c, h, w) flattened
            elif lname == "fc7":
                weight = kernel.reshape(cin, cout).T
            else:
                weight = kernel.transpose(3, 2, 0, 1)
                side = (side + 2 * pad - k) // stride + 1
            state[f"{lname}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
            state[f"{lname}.bias"] = torch.from_numpy(np.asarray(bias, dtype=np.float32).reshape(-1).copy())
        elif lname.startswith("norm"):
            param = _mat_field(rec, "param")
            got = np.asarray(param, dtype=np.float64).reshape(-1) if param is not None else np.zeros(0)
            if got.size != 4 or not np.allclose(got, CNNF_LRN, rtol=1e-5, atol=0):
                raise ValueError(f"{where}: expected LRN param [N kappa alpha beta] = {list(CNNF_LRN)}, "
                                 f"got {got.tolist()}")
        elif lname.startswith("pool"):
            size = _mat_ints(_mat_field(rec, "pool"), 2, f"{where} pool")
            stride = _mat_ints(_mat_field(rec, "stride"), 2, f"{where} stride")
            pad = _mat_ints(_mat_field(rec, "pad"), 4, f"{where} pad")
            method = _mat_str(_mat_field(rec, "method"))
            ours = _CNNF_POOLS[lname]
            # A different bottom/right pad is harmless when it gives the same
            # number of windows (the extra cells are -inf and never reached).
            same = (size == (3, 3) and stride == (2, 2) and method in (None, "max")
                    and pad[0] == ours[0] and pad[2] == ours[2]
                    and _pool_out(side, pad[:2]) == _pool_out(side, ours[:2])
                    and _pool_out(side, pad[2:]) == _pool_out(side, ours[2:]))
            if not same:
                raise ValueError(f"{where}: expected a 3x3 stride-2 max pool with pad {list(ours)} "
                                 f"[top bottom left right], got pool {list(size)}, stride {list(stride)}, "
                                 f"pad {list(pad)}, method {method!r}")
            side = _pool_out(side, ours[:2])

    norm = root.get("normalization")
    if norm is None and "meta" in root:
        meta = np.asarray(root["meta"]).reshape(-1)[0]
        norm = _mat_field(meta, "normalization")
    avg = _mat_field(np.asarray(norm).reshape(-1)[0], "averageImage") if norm is not None else None
    if avg is None:
        raise ValueError(f"{path}: expected normalization.averageImage (or meta.normalization.averageImage)")
    avg = np.asarray(avg, dtype=np.float32)
    if avg.size == 3:  # newer MatConvNet files keep only the mean pixel
        state["average_image"] = torch.from_numpy(avg.reshape(3, 1, 1).repeat(image_size, 1).repeat(image_size, 2))
    elif avg.ndim == 3 and avg.shape[2] == 3:
        if avg.shape[:2] == (image_size, image_size):
            state["average_image"] = torch.from_numpy(np.ascontiguousarray(avg.transpose(2, 0, 1)))
        else:
            state["average_image"] = torch.from_numpy(_resize_average_image(avg, image_size, path))
    else:
        raise ValueError(f"{path}: expected averageImage of shape (H, W, 3) or 3 values, got {avg.shape}")
    return state


# --------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------

_CLASSES: Dict[str, Type[Backbone]] = {"cnnf": CNNF, "resnet18": ResNet18, "resnet50": ResNet50,
                                       "vgg16": VGG16, "vit_b_32": ViTB32}


def _check_state(net: Backbone, state: Any, source: str, *, drop_classifier: bool) -> Dict[str, torch.Tensor]:
    """``state`` as this network's exact layout, or ValueError naming what differs."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__
        raise ValueError(f"{source}: expected a state dict (names -> tensors) for {net.name}, got {kind}"
                         + (f" with keys {_few(list(state))}" if isinstance(state, Mapping) else "")
                         + "; a training checkpoint must be unpacked to its backbone state dict first")
    state = OrderedDict(state)
    if drop_classifier:
        state = OrderedDict((k, v) for k, v in state.items() if not k.startswith(net.classifier_prefixes))
        state = net._adapt_state(state, source)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes {_few(wrong)}")
        layout = "torchvision's" if net.name != "cnnf" else "CNNF's"
        raise ValueError(f"{source}: not a {net.name} state dict for image_size {net.image_size} "
                         f"(expected {layout} layout, {len(own)} tensors): " + "; ".join(parts))
    return state


def load_backbone_state(backbone: Backbone, state: Mapping[str, torch.Tensor]) -> None:
    """Restore a saved backbone: ``backbone.load_state_dict`` of its own layout.

    Parameters
    ----------
    backbone : Backbone
        Built with the same name and image_size as the saved one.
    state : mapping of str to torch.Tensor
        ``saved_backbone.state_dict()`` (no classifier keys, no renaming).

    Raises
    ------
    ValueError
        Keys or shapes differ; the message names the first few.
    """
    checked = _check_state(backbone, state, "backbone state", drop_classifier=False)
    backbone.load_state_dict(checked, strict=True)


def build_backbone(name: str, *, weights: Optional[PathLike] = None, image_size: int = 224,
                   generator: Optional[torch.Generator] = None) -> Backbone:
    """Build one of :data:`BACKBONES`, random or from a weights file (never downloaded).

    Parameters
    ----------
    name : str
        ``"cnnf"``, ``"resnet18"``, ``"resnet50"``, ``"vgg16"`` or ``"vit_b_32"``.
    weights : path, optional
        None: a random initialisation (each architecture's usual scheme),
        drawn from ``generator``, and said so in the log. Otherwise a torch
        state dict (``.pt``/``.pth``, read with ``weights_only=True``) in
        torchvision's layout (CNN-F: :class:`CNNF`'s own layout), classifier
        keys ignored; for ``cnnf`` also MatConvNet's ``imagenet-vgg-f.mat``.
    image_size : int
        The square input side. vit_b_32: a multiple of 32; cnnf: 223..254;
        the others: at least 32.
    generator : torch.Generator, optional
        Source of the random initialisation; None: ``torch.Generator()``
        seeded with 0. The global torch RNG is never touched.

    Returns
    -------
    Backbone
        On the CPU, in eval mode.

    Raises
    ------
    ValueError
        Unknown name, unusable image_size, a state dict with missing,
        unexpected or wrongly shaped tensors (the first few named), a .mat
        that is not CNN-F.
    FileNotFoundError
        ``weights`` names no file.
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown backbone {name!r}: expected one of {', '.join(BACKBONES)}")
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f"{name}: expected an int image_size, got {image_size!r}")
    image_size = int(image_size)
    cls = _CLASSES[name]
    cls.check_image_size(image_size)
    path = None
    if weights is not None:
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{name} weights: no such file {path!r} (weights are never downloaded; "
                                    "name a local state dict" + (" or imagenet-vgg-f.mat" if name == "cnnf" else "")
                                    + ")")
        if path.lower().endswith(".mat") and name != "cnnf":
            raise ValueError(f"{name} weights {path!r}: .mat files hold MatConvNet's CNN-F only; "
                             "expected a torch state dict in torchvision's layout")

    # Built on the meta device: no memory, no draw from the global RNG and no
    # wasted default initialisation; every tensor is then set below.
    with torch.device("meta"):
        net = cls(image_size=image_size)

    if path is None:
        net = net.to_empty(device="cpu")
        with torch.no_grad():
            for t in list(net.parameters()) + list(net.buffers()):
                t.zero_()  # nothing is left uninitialised, whatever _init_random covers
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        net._init_random(gen)
        log.info("backbone %s (image_size %d): random initialisation, no weights file", name, image_size)
    else:
        if path.lower().endswith(".mat"):
            state: Any = _read_vggf_mat(path, image_size)
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # unpickling errors come in many types
                raise ValueError(f"{path}: not a torch state dict readable with weights_only=True ({exc})") from exc
        checked = _check_state(net, state, path, drop_classifier=True)
        own = net.state_dict()
        # The loaded tensors become the module's (assign=True): no second copy of
        # VGG's half gigabyte; a half-precision file is widened to the module's dtype.
        checked = OrderedDict((k, v.to(own[k].dtype).contiguous()) for k, v in checked.items())
        net.load_state_dict(checked, strict=True, assign=True)
        left = [k for k, v in net.state_dict().items() if v.is_meta]
        if left:  # strict=True makes this unreachable; a guard against silent garbage
            raise RuntimeError(f"{name}: tensors left unset after loading {path}: {_few(left)}")
        log.info("backbone %s (image_size %d): weights from %s", name, image_size, path)
    net.weights_source = path  # None: random initialisation (trainer.data.prepare calibrates its BatchNorm)
    return net.eval()


__all__ = ["BACKBONES", "Backbone", "CNNF", "IMAGENET_MEAN", "IMAGENET_MEAN_PIXEL", "IMAGENET_STD", "ResNet",
           "VGG16", "ViTB32", "build_backbone", "load_backbone_state"]
