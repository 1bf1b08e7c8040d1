"""trainer.backbones against independent oracles.

- CNN-F from a synthetic MatConvNet ``imagenet-vgg-f.mat`` against a numpy
  forward pass written from MatConvNet's definitions, the file read by
  position as DCMH's released TensorFlow code reads it.
- torchvision's layout and features: ``tests/data/backbones/torchvision_layout.json``,
  written by torchvision itself (``make_torchvision_fixture.py`` beside it)
  with every weight set by a formula; the test sets the same formula here.
- Preprocessing against hand-worked values; save/load round trips; errors.
"""
from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

torch = pytest.importorskip("torch")
scipy_io = pytest.importorskip("scipy.io")

from trainer.backbones import (BACKBONES, IMAGENET_MEAN, IMAGENET_MEAN_PIXEL, IMAGENET_STD,
                               build_backbone, load_backbone_state)

DATA = Path(__file__).parent / "data" / "backbones"
FIXTURE = json.loads((DATA / "torchvision_layout.json").read_text())


def _load_formula_module():
    spec = importlib.util.spec_from_file_location("make_torchvision_fixture", DATA / "make_torchvision_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # torch only at import; torchvision is imported inside main()
    return mod


FORMULA = _load_formula_module()

# The smallest input each architecture takes, to keep the file fast.
SMALL = {"cnnf": 224, "resnet18": 32, "resnet50": 32, "vgg16": 32, "vit_b_32": 32}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """One intra-op thread for this file: the batches are tiny, and on a shared
    two-core machine OpenMP's spinning workers made a ResNet-50 forward 40x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed: int) -> "torch.Generator":
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------
# 1. CNN-F from MatConvNet's .mat vs a numpy forward pass
# --------------------------------------------------------------------------

# (name, H x W x Cin x Cout, stride, pad [top bottom left right], weight scale)
_MAT_CONVS = {
    "conv1": ((11, 11, 3, 64), 4, (0, 0, 0, 0), 0.02),
    "conv2": ((5, 5, 64, 256), 1, (2, 2, 2, 2), 0.02),
    "conv3": ((3, 3, 256, 256), 1, (1, 1, 1, 1), 0.04),
    "conv4": ((3, 3, 256, 256), 1, (1, 1, 1, 1), 0.04),
    "conv5": ((3, 3, 256, 256), 1, (1, 1, 1, 1), 0.04),
    "fc6": ((6, 6, 256, 4096), 1, (0, 0, 0, 0), 0.02),
    "fc7": ((1, 1, 4096, 4096), 1, (0, 0, 0, 0), 0.03),
    "fc8": ((1, 1, 4096, 10), 1, (0, 0, 0, 0), 0.01),
}
_MAT_POOLS = {"pool1": (0, 1, 0, 1), "pool2": (0, 0, 0, 0), "pool5": (0, 0, 0, 0)}
_MAT_ORDER = ("conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3",
              "conv4", "relu4", "conv5", "relu5", "pool5", "fc6", "relu6", "fc7", "relu7", "fc8", "prob")


def _write_vggf_mat(path: Path, rng: np.random.Generator) -> None:
    """A MatConvNet-beta ``imagenet-vgg-f.mat``: a ``layers`` cell of structs whose field
    order is the one DCMH's TensorFlow code indexes (conv: weights, pad, type, name,
    stride; pool: name, stride, pad, type, method, pool), and ``normalization``
    with ``averageImage`` first."""
    cell = np.empty((1, len(_MAT_ORDER)), dtype=object)
    for i, name in enumerate(_MAT_ORDER):
        if name in _MAT_CONVS:
            shape, stride, pad, scale = _MAT_CONVS[name]
            w = np.empty((1, 2), dtype=object)
            w[0, 0] = (rng.standard_normal(shape) * scale).astype(np.float32)
            w[0, 1] = (rng.standard_normal((1, shape[3])) * 0.1).astype(np.float32)
            layer = {"weights": w, "pad": np.array([pad], float), "type": "conv", "name": name,
                     "stride": np.array([[stride, stride]], float)}
        elif name.startswith("pool"):
            layer = {"name": name, "stride": np.array([[2.0, 2.0]]), "pad": np.array([_MAT_POOLS[name]], float),
                     "type": "pool", "method": "max", "pool": np.array([[3.0, 3.0]])}
        elif name.startswith("norm"):
            layer = {"name": name, "type": "lrn", "param": np.array([[5.0, 2.0, 1e-4, 0.75]])}
        else:
            layer = {"name": name, "type": "relu" if name.startswith("relu") else "softmax"}
        cell[0, i] = layer
    avg = rng.uniform(90.0, 140.0, (224, 224, 3)).astype(np.float32)
    scipy_io.savemat(str(path), {"layers": cell, "normalization": {
        "averageImage": avg, "keepAspect": 1.0, "border": np.array([[32.0, 32.0]]),
        "imageSize": np.array([[224.0, 224.0, 3.0]]), "interpolation": "bilinear"}})


def _np_conv(x: np.ndarray, k: np.ndarray, b: np.ndarray, pad, stride) -> np.ndarray:
    """MatConvNet's vl_nnconv on one (H, W, C) image: zero pad [t b l r], correlation
    (no kernel flip), y(i, j, o) = b(o) + sum_{u,v,c} k(u, v, c, o) x(s i + u, s j + v, c)."""
    t, bo, l, r = (int(p) for p in pad)
    s = int(stride[0])
    x = np.pad(x, ((t, bo), (l, r), (0, 0)))
    win = sliding_window_view(x, k.shape[:2], axis=(0, 1))[::s, ::s]  # (oh, ow, c, kh, kw)
    return np.tensordot(win, k.transpose(2, 0, 1, 3), axes=([2, 3, 4], [0, 1, 2])) + b.reshape(-1)


def _np_lrn(x: np.ndarray, n=5, kappa=2.0, alpha=1e-4, beta=0.75) -> np.ndarray:
    """vl_nnnormalize: y_k = x_k (kappa + alpha sum_{q in G(k)} x_q^2)^-beta,
    G(k) = [k - floor((n-1)/2), k + ceil((n-1)/2)] clipped to the channels."""
    out = np.empty_like(x)
    d = x.shape[2]
    for k in range(d):
        lo, hi = max(0, k - (n - 1) // 2), min(d - 1, k + n // 2)
        out[:, :, k] = x[:, :, k] * (kappa + alpha * np.sum(x[:, :, lo:hi + 1] ** 2, axis=2)) ** -beta
    return out


def _np_maxpool(x: np.ndarray, area, pad, stride) -> np.ndarray:
    t, bo, l, r = (int(p) for p in pad)
    x = np.pad(x, ((t, bo), (l, r), (0, 0)), constant_values=-np.inf)
    win = sliding_window_view(x, (int(area[0]), int(area[1])), axis=(0, 1))[::int(stride[0]), ::int(stride[1])]
    return win.max(axis=(3, 4))


def _np_cnnf_fc7(mat_path: Path, image: np.ndarray) -> np.ndarray:
    """fc7 (after ReLU) of CNN-F, reading the .mat by position as DCMH's code does."""
    data = scipy_io.loadmat(str(mat_path))
    weights = data["layers"][0]
    mean = data["normalization"][0][0][0]
    x = image.astype(np.float64) - mean.astype(np.float64)
    for i, name in enumerate(_MAT_ORDER[:19]):
        if name.startswith(("conv", "fc")):
            kernels, bias = weights[i][0][0][0][0]
            pad, stride = weights[i][0][0][1][0], weights[i][0][0][4][0]
            x = _np_conv(x, kernels.astype(np.float64), bias.astype(np.float64), pad, stride)
        elif name.startswith("relu"):
            x = np.maximum(x, 0.0)
        elif name.startswith("norm"):
            x = _np_lrn(x)
        elif name.startswith("pool"):
            stride, pad, area = weights[i][0][0][1][0], weights[i][0][0][2][0], weights[i][0][0][5][0]
            x = _np_maxpool(x, area, pad, stride)
    assert x.shape == (1, 1, 4096)
    return x.reshape(-1)


def test_cnnf_from_matconvnet_file_matches_numpy_forward(tmp_path):
    rng = np.random.default_rng(20170721)
    path = tmp_path / "imagenet-vgg-f.mat"
    _write_vggf_mat(path, rng)
    image = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)

    ref = _np_cnnf_fc7(path, image)
    net = build_backbone("cnnf", weights=path)
    with torch.no_grad():
        got = net(net.preprocess([image]))[0].double().numpy()

    assert (ref > 0).mean() > 0.2  # the weights keep a good share of fc7 alive
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # The average image travels as a buffer in the module's own state dict.
    avg = scipy_io.loadmat(str(path))["normalization"][0][0][0]
    np.testing.assert_array_equal(net.state_dict()["average_image"].numpy(), avg.transpose(2, 0, 1))


def test_cnnf_lrn_is_not_torchs_convention(tmp_path):
    """MatConvNet's alpha is not divided by the window (torch's LocalResponseNorm divides);
    the oracle's LRN must differ visibly from torch's with the same numbers, or test 1
    could not tell them apart."""
    x = np.random.default_rng(3).uniform(0, 60, (4, 4, 16))
    ours = _np_lrn(x)
    theirs = torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(
        torch.from_numpy(x.transpose(2, 0, 1))[None]).numpy()[0].transpose(1, 2, 0)
    assert np.abs(ours - theirs).max() > 0.1 * np.abs(ours).max()


def test_cnnf_mat_that_is_not_cnnf_is_refused(tmp_path):
    short = tmp_path / "short.mat"
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0] = {"name": "conv1", "type": "conv"}
    cell[0, 1] = {"name": "relu1", "type": "relu"}
    scipy_io.savemat(str(short), {"layers": cell})
    with pytest.raises(ValueError, match="at least 19 layers"):
        build_backbone("cnnf", weights=short)
    wrapped = tmp_path / "vgg_net.mat"  # DCMH's MATLAB release: the network inside a `net` struct
    scipy_io.savemat(str(wrapped), {"net": {"layers": cell}})
    with pytest.raises(ValueError, match="at least 19 layers"):
        build_backbone("cnnf", weights=wrapped)

    wrong = tmp_path / "wrong.mat"
    cell = np.empty((1, 19), dtype=object)
    for i in range(19):
        cell[0, i] = {"name": f"x{i}", "type": "relu"}
    w = np.empty((1, 2), dtype=object)
    w[0, 0] = np.zeros((3, 3, 3, 64), np.float32)
    w[0, 1] = np.zeros((1, 64), np.float32)
    cell[0, 0] = {"weights": w, "pad": 0.0, "type": "conv", "name": "conv1", "stride": 4.0}
    scipy_io.savemat(str(wrong), {"layers": cell})
    with pytest.raises(ValueError, match=r"conv1.*\(11, 11, 3, 64\)"):
        build_backbone("cnnf", weights=wrong)
    with pytest.raises(ValueError, match="MatConvNet's CNN-F only"):
        build_backbone("resnet18", weights=wrong, image_size=32)


# --------------------------------------------------------------------------
# 2. State-dict round trips
# --------------------------------------------------------------------------

def _perturbed(name: str) -> "torch.nn.Module":
    """A random backbone whose every float tensor (BatchNorm statistics and CNN-F's
    average image included) is moved off its initial value, so that a round trip
    that dropped any of them would show."""
    net = build_backbone(name, image_size=SMALL[name], generator=_gen(1))
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.mul_(1.01).add_(0.001)
            else:
                t.fill_(5)
    return net


@pytest.mark.parametrize("name", BACKBONES)
def test_state_dict_round_trip(name, tmp_path):
    net = _perturbed(name)
    path = tmp_path / f"{name}.pt"
    torch.save(net.state_dict(), path)
    again = build_backbone(name, weights=path, image_size=SMALL[name])
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((2, 3, SMALL[name], SMALL[name])).astype(np.float32))
    with torch.no_grad():
        want, got = net(x), again(x)
    # `net` was moved off any initialisation, so only the file can have made `again` equal.
    assert again.state_dict().keys() == net.state_dict().keys()
    for k, v in net.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
    assert torch.equal(got, want)
    assert got.shape == (2, again.out_dim) and again.name == name and not again.training
    del net, again  # VGG-16 is half a gigabyte a copy


def test_load_backbone_state_restores_own_layout():
    net = _perturbed("resnet18")
    other = build_backbone("resnet18", image_size=32, generator=_gen(9))
    load_backbone_state(other, net.state_dict())
    x = torch.ones(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(other(x), net(x))
    state = dict(net.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # a restore is exact: no classifier keys
    with pytest.raises(ValueError, match=r"unexpected keys fc\.weight"):
        load_backbone_state(other, state)


def test_cnnf_average_image_resized_for_other_sizes(tmp_path):
    net = build_backbone("cnnf")
    expected = torch.tensor(IMAGENET_MEAN_PIXEL, dtype=torch.float32).view(3, 1, 1).expand(3, 224, 224)
    assert torch.equal(net.average_image, expected)  # random init: the ImageNet mean pixel
    path = tmp_path / "cnnf.pt"
    torch.save(net.state_dict(), path)
    big = build_backbone("cnnf", weights=path, image_size=227)
    assert big.average_image.shape == (3, 227, 227)
    np.testing.assert_allclose(big.average_image.numpy(), expected[:, :1, :1].expand(3, 227, 227).numpy(),
                               rtol=1e-6)


def test_random_init_is_seeded_and_leaves_global_rng_alone(caplog):
    before = torch.random.get_rng_state()
    with caplog.at_level(logging.INFO, logger="trainer.backbones"):
        a = build_backbone("resnet18", image_size=32, generator=_gen(4))
    b = build_backbone("resnet18", image_size=32, generator=_gen(4))
    c = build_backbone("resnet18", image_size=32, generator=_gen(5))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert "random initialisation" in caplog.text
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
        assert torch.isfinite(v.float()).all(), k
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


# --------------------------------------------------------------------------
# 3. torchvision's layout and features (fixture written by torchvision)
# --------------------------------------------------------------------------

def _formula_file(keys: List[Tuple[str, List[int]]], dtypes: Dict[str, "torch.dtype"], path: Path,
                  rename=None) -> Path:
    layout = {k: (tuple(shape), dtypes.get(k, torch.float32)) for k, shape in keys}
    state = FORMULA.formula_state(layout)
    if rename:
        state = {rename(k): v for k, v in state.items()}
    torch.save(state, path)
    return path


def _assert_features(y: "torch.Tensor", ref: dict) -> None:
    y = y.double().numpy()
    first, total, abs_total = np.array(ref["first"]), np.array(ref["sum"]), np.array(ref["abs_sum"])
    assert y.shape == (FIXTURE["n_images"], ref["out_dim"])
    for i in range(y.shape[0]):  # atol: relative to the image's mean |feature|
        np.testing.assert_allclose(y[i, :first.shape[1]], first[i], rtol=1e-4,
                                   atol=1e-4 * abs_total[i] / ref["out_dim"])
    assert np.all(np.abs(y.sum(axis=1) - total) <= 1e-4 * abs_total), (y.sum(axis=1), total)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "vgg16", "vit_b_32"])
def test_torchvision_layout_and_features(name, tmp_path):
    model = FIXTURE["models"][name]
    size = model["features"]["image_size"]
    dtypes = {k: torch.int64 for k, _ in model["keys"] if k.endswith("num_batches_tracked")}
    # torchvision's own state dict, ImageNet classifier included, as a file.
    path = _formula_file(model["keys"] + model["classifier_keys"], dtypes, tmp_path / f"{name}.pth")
    net = build_backbone(name, weights=path, image_size=size)
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == model["keys"]
    ours = dict(net.named_modules())
    for mod_name, settings in model["settings"].items():
        if mod_name == "classifier.5":  # the dropout after fc7, outside the backbone
            continue
        got = {k: getattr(ours[mod_name], k, None) for k in settings if k != "type"}
        assert type(ours[mod_name]).__name__ == settings["type"] and got == {
            k: v for k, v in settings.items() if k != "type"}, mod_name
    with torch.no_grad():
        y = net(FORMULA.formula_images(FIXTURE["n_images"], size))
    _assert_features(y, model["features"])
    if name == "vgg16":  # fc7's dropout: off in eval mode (checked above), on in train mode
        net.train()
        with torch.no_grad():
            assert not torch.equal(net(FORMULA.formula_images(FIXTURE["n_images"], size)), y)
    del net


def test_vit_position_embeddings_interpolated_like_torchvision(tmp_path, caplog):
    """224 weights (with torchvision's legacy MLP key names) loaded for 64-pixel images
    equal torchvision's interpolate_embeddings + vit_b_32(image_size=64)."""
    model = FIXTURE["models"]["vit_b_32"]

    def legacy(k: str) -> str:
        return k.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2.")

    path = _formula_file(model["keys"] + model["classifier_keys"], {}, tmp_path / "vit224.pth", rename=legacy)
    with caplog.at_level(logging.INFO, logger="trainer.backbones"):
        net = build_backbone("vit_b_32", weights=path, image_size=64)
    assert "interpolated" in caplog.text
    assert net.encoder.pos_embedding.shape == (1, 5, 768)
    with torch.no_grad():
        y = net(FORMULA.formula_images(FIXTURE["n_images"], 64))
    _assert_features(y, FIXTURE["models"]["vit_b_32_at_64"]["features"])


# --------------------------------------------------------------------------
# 4. Preprocessing
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet32():
    return build_backbone("resnet18", image_size=32)


def _normalised(arr_hwc: np.ndarray) -> np.ndarray:
    """ToTensor + Normalize in float32, written out."""
    x = arr_hwc.astype(np.float32) / np.float32(255)
    x = (x - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return x.transpose(2, 0, 1)


def test_constant_image_gives_normalised_constant(resnet32):
    img = np.empty((50, 70, 3), np.uint8)
    img[:] = (10, 128, 250)
    x = resnet32.preprocess([img])
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
    for c, v in enumerate((10, 128, 250)):
        want = (np.float32(v) / np.float32(255) - np.float32(IMAGENET_MEAN[c])) / np.float32(IMAGENET_STD[c])
        assert torch.all(x[0, c] == torch.tensor(want)), c
        assert abs(float(want) - (v / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]) < 1e-6


def test_resize_and_centre_crop_geometry(resnet32):
    """S = 32: shorter side to round(32 * 256 / 224) = 37, centre crop 32 with offsets
    round((37 - 32) / 2) = 2 and round((50 - 32) / 2) = 9."""
    rng = np.random.default_rng(11)
    land = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)  # already 37 on its shorter side: no resize
    np.testing.assert_array_equal(resnet32.preprocess([land])[0].numpy(), _normalised(land[2:34, 9:41]))
    port = np.ascontiguousarray(land.transpose(1, 0, 2))  # 50 x 37: the crop offsets swap
    np.testing.assert_array_equal(resnet32.preprocess([port])[0].numpy(), _normalised(port[9:41, 2:34]))
    big = rng.integers(0, 256, (74, 100, 3), dtype=np.uint8)  # -> 37 x int(37 * 100 / 74) = 37 x 50
    small = np.asarray(Image.fromarray(big).resize((50, 37), Image.BILINEAR))
    np.testing.assert_array_equal(resnet32.preprocess([big])[0].numpy(), _normalised(small[2:34, 9:41]))
    tall = rng.integers(0, 256, (103, 74, 3), dtype=np.uint8)  # -> int(37 * 103 / 74) = int(51.5) = 51 x 37
    small = np.asarray(Image.fromarray(tall).resize((37, 51), Image.BILINEAR))  # crop rows round(9.5) = 10..
    np.testing.assert_array_equal(resnet32.preprocess([tall])[0].numpy(), _normalised(small[10:42, 2:34]))


@pytest.mark.parametrize("crop", [32, 224])
def test_preprocess_matches_torchvision_preset(crop):
    """torchvision's ImageClassification(crop_size=S, resize_size=round(S * 256 / 224)) on
    PIL images, recorded in the fixture: the same float32 bits (sums to 1e-9)."""
    pre = FIXTURE["preprocess"]
    net = build_backbone("vit_b_32", image_size=crop) if crop == 224 else build_backbone("resnet18", image_size=32)
    images = [FORMULA.formula_uint8_image(h, w, seed).numpy() for (h, w), seed in zip(pre["shapes"], pre["seeds"])]
    batch = net.preprocess(images)
    assert batch.shape == (len(images), 3, crop, crop)
    for i, want in enumerate(pre["crops"][str(crop)]):
        got = FORMULA.pixel_summary(batch[i])
        assert got["first"] == want["first"], i
        for key in ("sum", "abs_sum", "weighted_sum"):
            assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-9 * want["abs_sum"]), (i, key)


def test_grey_rgba_and_pil_inputs_become_rgb(resnet32):
    rng = np.random.default_rng(12)
    grey = rng.integers(0, 256, (40, 45), dtype=np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, rng.integers(0, 256, (40, 45, 1), dtype=np.uint8)], axis=2)
    batch = resnet32.preprocess([rgb, grey, grey[:, :, None], rgba, Image.fromarray(rgb), Image.fromarray(grey)])
    assert batch.shape == (6, 3, 32, 32)
    for i in range(1, 6):
        assert torch.equal(batch[i], batch[0]), i
    assert resnet32.preprocess([]).shape == (0, 3, 32, 32)


def test_bad_images_raise(resnet32):
    with pytest.raises(ValueError, match="uint8"):
        resnet32.preprocess([np.zeros((40, 40, 3), np.float32)])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        resnet32.preprocess([np.zeros((40, 40, 2), np.uint8)])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        resnet32.preprocess([np.zeros((40,), np.uint8)])
    with pytest.raises(ValueError, match="image 1"):
        resnet32.preprocess([np.zeros((40, 40, 3), np.uint8), "photo.jpg"])
    with pytest.raises(ValueError, match=r"\(n, 3, 32, 32\)"):
        resnet32(torch.zeros(1, 3, 40, 40))


def test_cnnf_preprocess_subtracts_the_average_image():
    net = build_backbone("cnnf")
    rng = np.random.default_rng(13)
    avg = torch.from_numpy(rng.uniform(0, 255, (3, 224, 224)).astype(np.float32))
    net.average_image.copy_(avg)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = net.preprocess([img])
    np.testing.assert_array_equal(x[0].numpy(), img.astype(np.float32).transpose(2, 0, 1) - avg.numpy())
    other = rng.integers(0, 256, (100, 130, 3), dtype=np.uint8)  # resized to 224 x 224 first
    resized = np.asarray(Image.fromarray(other).resize((224, 224), Image.BILINEAR))
    np.testing.assert_array_equal(net.preprocess([other])[0].numpy(),
                                  resized.astype(np.float32).transpose(2, 0, 1) - avg.numpy())


@pytest.mark.parametrize("name", ["cnnf", "vit_b_32"])
def test_spec_is_json(name):
    net = build_backbone(name, image_size=SMALL[name])
    spec = json.loads(json.dumps(net.spec()))
    assert spec["name"] == name and spec["image_size"] == SMALL[name]
    if name == "vit_b_32":
        assert spec["mean"] == list(IMAGENET_MEAN) and spec["std"] == list(IMAGENET_STD)
        assert spec["resize_shorter"] == 37 and spec["center_crop"] == 32


# --------------------------------------------------------------------------
# 5. Bad names, sizes and weights
# --------------------------------------------------------------------------

def test_unknown_name_and_bad_sizes():
    with pytest.raises(ValueError, match="unknown backbone 'alexnet'.*resnet18"):
        build_backbone("alexnet")
    with pytest.raises(ValueError, match="multiple of 32"):
        build_backbone("vit_b_32", image_size=100)
    with pytest.raises(ValueError, match=r"223\.\.254"):
        build_backbone("cnnf", image_size=200)
    with pytest.raises(ValueError, match=">= 32"):
        build_backbone("resnet50", image_size=16)
    with pytest.raises(ValueError, match="int image_size"):
        build_backbone("resnet18", image_size=32.0)


def test_bad_weight_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file.*never downloaded"):
        build_backbone("resnet18", weights=tmp_path / "resnet18.pth")
    good = build_backbone("resnet18", image_size=32).state_dict()

    def attempt(state, match):
        path = tmp_path / "w.pt"
        torch.save(state, path)
        with pytest.raises(ValueError, match=match):
            build_backbone("resnet18", weights=path, image_size=32)

    wrong = dict(good, **{"conv1.weight": torch.zeros(64, 3, 3, 3)})
    attempt(wrong, r"wrong shapes conv1\.weight: expected \(64, 3, 7, 7\), got \(64, 3, 3, 3\)")
    missing = {k: v for k, v in good.items() if k != "layer1.0.bn1.running_var"}
    attempt(missing, r"missing keys layer1\.0\.bn1\.running_var")
    attempt(dict(good, extra=torch.zeros(1)), "unexpected keys extra")
    attempt({"epoch": 3, "model": good}, "expected a state dict")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a torch state dict"):
        build_backbone("resnet18", weights=garbage, image_size=32)
