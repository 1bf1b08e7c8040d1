"""Write ``torchvision_layout.json``, torchvision's side of tests/test_trainer_backbones.py.

RUNS ONLY WHERE TORCHVISION IMPORTS. The project's environment cannot import
torchvision beside its torch, so the fixture comes from a side environment:

    python3 -m venv /work/venv-tv
    /work/venv-tv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/venv-tv/bin/python tests/data/backbones/make_torchvision_fixture.py

For each of resnet18, resnet50, vgg16 and vit_b_32 the fixture records the
state-dict keys and shapes (the ImageNet classifier's listed apart) and the
features torchvision's own model computes (classifier removed, eval mode) when
every parameter and buffer is set by :func:`formula_state` and the input is
:func:`formula_images`: the first 16 values of each feature vector, its sum
and the sum of its absolute values. ``vit_b_32_at_64`` is vit_b_32 built for
64-pixel images from the 224 formula weights through torchvision's
``interpolate_embeddings``, the oracle for our position-embedding resize.

The test imports :func:`formula_state` and :func:`formula_images` from this
file (they need torch only; torchvision is imported inside :func:`main`), so
both sides set the same numbers.
"""
from __future__ import annotations

import functools
import json
import math
import zlib
from pathlib import Path
from typing import Dict, Mapping, Tuple

import torch

OUT = Path(__file__).with_name("torchvision_layout.json")

# name -> (input size for the features, classifier key prefix)
MODELS = {"resnet18": (224, "fc."), "resnet50": (64, "fc."), "vgg16": (64, "classifier.6."),
          "vit_b_32": (224, "heads.")}
N_IMAGES = 2
N_FIRST = 16
# Preprocessing oracle: uint8 images of these (H, W), through torchvision's
# ImageClassification preset for these crop sizes.
PREPROCESS_SHAPES = [(37, 50), (103, 74), (300, 451), (64, 64)]
PREPROCESS_CROPS = [32, 224]
N_FIRST_PIXELS = 64

FORMULA = (
    "u(k; seed) = h((k + seed) mod 65537) with h(j) = fmix32((j * 0x9E3779B1) mod 2^32) / 2^31 - 1, "
    "fmix32 being murmur3's 32-bit finaliser: exact integer arithmetic, values in [-1, 1) that look random, "
    "repeating with the prime period 65537 (no kernel or row length is a multiple of it). k = 0..numel-1 "
    "over the tensor in row-major order, seed = crc32(key). Integer tensors: 7; running_var: 1 + 0.5 u^2; "
    "running_mean: 0.1 u; 1-D 'weight' (norm scales): 1 + 0.1 u; >=2-D '*weight': u sqrt(6 / fan_in) "
    "(He's variance 2 / fan_in) with fan_in = numel / shape[0]; anything else (biases, class_token, "
    "pos_embedding): 0.1 u. Computed in float64, then stored in the entry's dtype. Images: x[i, c, h, w] = "
    "1.5 u(k; 12345) with k the row-major index into the (n, 3, size, size) batch, float32."
)

PERIOD = 65537
_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2^32`` for int64 ``x`` < 2^32 without overflowing int64 (16-bit halves)."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _MASK32


@functools.lru_cache(maxsize=1)
def hash_table() -> torch.Tensor:
    """h(0..PERIOD-1), float64 in [-1, 1) (cached: callers only read it)."""
    x = (torch.arange(PERIOD, dtype=torch.int64) * 0x9E3779B1) & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    x = x ^ (x >> 16)
    return x.double() / 2.0 ** 31 - 1.0


def _tiled(values: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``values[(k + seed) % PERIOD]`` for k = 0..n-1, by tiling (a gather of n indices
    would cost seconds for VGG's 100M-weight fc6)."""
    start = seed % PERIOD
    rolled = torch.cat([values[start:], values[:start]])
    return rolled.repeat(-(-n // PERIOD))[:n]


def formula_tensor(key: str, shape: Tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The deterministic value of one state-dict entry (see ``FORMULA``)."""
    shape = tuple(int(d) for d in shape)
    if not dtype.is_floating_point:
        return torch.full(shape, 7, dtype=dtype)
    n = math.prod(shape)
    u = hash_table()
    leaf = key.rsplit(".", 1)[-1]
    # The transform is applied to the PERIOD table values, then tiled: the same
    # numbers as transforming every element, for a fraction of the work.
    if leaf == "running_var":
        v = 1.0 + 0.5 * u * u
    elif leaf == "running_mean":
        v = 0.1 * u
    elif len(shape) == 1 and leaf == "weight":
        v = 1.0 + 0.1 * u
    elif len(shape) >= 2 and leaf.endswith("weight"):
        v = u * math.sqrt(6.0 / (n // shape[0]))
    else:
        v = 0.1 * u
    return _tiled(v.to(dtype), n, zlib.crc32(key.encode())).reshape(shape)


def formula_state(layout: Mapping[str, Tuple[Tuple[int, ...], torch.dtype]]) -> Dict[str, torch.Tensor]:
    """``{key: (shape, dtype)}`` -> ``{key: formula_tensor}``."""
    return {k: formula_tensor(k, shape, dtype) for k, (shape, dtype) in layout.items()}


def formula_images(n: int, size: int) -> torch.Tensor:
    """``(n, 3, size, size)`` float32 network input (already normalised)."""
    return _tiled((1.5 * hash_table()).float(), n * 3 * size * size, 12345).reshape(n, 3, size, size)


def formula_uint8_image(h: int, w: int, seed: int) -> torch.Tensor:
    """An ``(h, w, 3)`` uint8 RGB image: floor(128 (u(k; seed) + 1)), k row-major."""
    u = _tiled(hash_table(), h * w * 3, seed)
    return torch.floor((u + 1.0) * 128.0).clamp(0, 255).to(torch.uint8).reshape(h, w, 3)


def pixel_summary(x: torch.Tensor) -> dict:
    """What the fixture keeps of one preprocessed ``(3, S, S)`` image."""
    flat = x.reshape(-1).double()
    weights = (torch.arange(flat.numel()) % 7 - 3).double()
    return {"first": flat[:N_FIRST_PIXELS].tolist(), "sum": float(flat.sum()),
            "abs_sum": float(flat.abs().sum()), "weighted_sum": float((flat * weights).sum())}


def _norm_and_dropout_settings(model: torch.nn.Module) -> dict:
    """Hyper-parameters that the formula features barely see (eps, momentum, dropout, heads)."""
    from torch import nn

    out = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            out[name] = {"type": type(m).__name__, "eps": m.eps,
                         "momentum": getattr(m, "momentum", None)}
        elif isinstance(m, nn.Dropout):
            out[name] = {"type": "Dropout", "p": m.p}
        elif isinstance(m, nn.MultiheadAttention):
            out[name] = {"type": "MultiheadAttention", "num_heads": m.num_heads, "dropout": m.dropout,
                         "batch_first": m.batch_first}
    return out


def _features(model: torch.nn.Module, size: int) -> dict:
    with torch.no_grad():
        y = model(formula_images(N_IMAGES, size)).double()
    return {"image_size": size, "out_dim": int(y.shape[1]), "first": y[:, :N_FIRST].tolist(),
            "sum": y.sum(dim=1).tolist(), "abs_sum": y.abs().sum(dim=1).tolist()}


def _layout(model: torch.nn.Module) -> Dict[str, Tuple[Tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def main() -> None:
    import torchvision
    from torch import nn
    from torchvision.models import resnet18, resnet50, vgg16, vit_b_32
    from torchvision.models.vision_transformer import interpolate_embeddings

    ctors = {"resnet18": resnet18, "resnet50": resnet50, "vgg16": vgg16, "vit_b_32": vit_b_32}
    out: dict = {"torch": torch.__version__, "torchvision": torchvision.__version__, "formula": FORMULA,
                 "n_images": N_IMAGES, "models": {}}
    for name, (size, prefix) in MODELS.items():
        torch.manual_seed(0)
        model = ctors[name](weights=None).eval()
        layout = _layout(model)
        state = formula_state(layout)
        model.load_state_dict(state)
        entry = {
            "settings": _norm_and_dropout_settings(model),
            "keys": [[k, list(shape)] for k, (shape, _) in layout.items() if not k.startswith(prefix)],
            "classifier_keys": [[k, list(shape)] for k, (shape, _) in layout.items() if k.startswith(prefix)],
        }
        if name.startswith("resnet"):
            model.fc = nn.Identity()
        elif name == "vgg16":
            model.classifier = model.classifier[:5]  # fc6, ReLU, Dropout, fc7, ReLU
        else:
            model.heads = nn.Identity()
        entry["features"] = _features(model.eval(), size)
        out["models"][name] = entry
        if name == "vit_b_32":
            small = vit_b_32(weights=None, image_size=64).eval()
            small.load_state_dict(interpolate_embeddings(64, 32, state))
            small.heads = nn.Identity()
            out["models"]["vit_b_32_at_64"] = {"features": _features(small.eval(), 64)}
        print(name, "done")
    from PIL import Image
    from torchvision.transforms._presets import ImageClassification

    pre: dict = {"shapes": PREPROCESS_SHAPES, "seeds": list(range(100, 100 + len(PREPROCESS_SHAPES))), "crops": {}}
    for crop in PREPROCESS_CROPS:
        preset = ImageClassification(crop_size=crop, resize_size=round(crop * 256 / 224))
        pre["crops"][str(crop)] = [
            pixel_summary(preset(Image.fromarray(formula_uint8_image(h, w, seed).numpy())))
            for (h, w), seed in zip(PREPROCESS_SHAPES, pre["seeds"])]
    out["preprocess"] = pre
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
