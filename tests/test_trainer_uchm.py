"""UCHM (unsupervised, features): similarities, losses, generator, and training.

- S⁰ (mean of the image and text cosine matrices) on a hand-worked case, on
  random features with a zero row, in row blocks, and on the real
  MIRFLICKR-25K tags, against a numpy formula written out here;
- the rescaling to [−1, 1], the bit selection (hand-worked bits, the
  "relative" rule, and the identity of "confidence" and "sum"), the
  similarity and quantization losses and the generator's loss and head,
  each against numpy on a tiny float64 batch with unequal weights;
- finite gradients on a real batch; the generator learns S⁰;
- a short run on the synthetic set beats random codes both ways;
- unsupervised: shuffled or zeroed labels give bit-identical codes under a
  seed; unknown config keys rejected; defaults as in METHODS.md.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
TAGS = ROOT.parent / "shared" / "data" / "mirflickr25k" / "mirflickr25k-yall.mat"

from trainer import engine

from trainer.encoder import encode_dataset
from trainer.cli import evaluate_codes
from trainer.data import read_mat
from trainer.methods import get_method
from trainer_checks import assert_label_free, assert_seeded_codes, t
from trainer.methods.uchm import (
    UCHM, MIEGenerator, QuantizationLoss, SimilarityLoss, feature_similarity, generator_loss,
    rescale_similarity, select_bits,
)

FAST = dict(hidden=256, optimizer="adam", lr=3e-3, weight_decay=0.0, batch_size=128, generator_dim=64,
            generator_epochs=3, generator_batch=200)

pytestmark = pytest.mark.usefixtures("torch_one_thread")




def np_cosine(a: np.ndarray) -> np.ndarray:
    """Row cosines in numpy; a zero row has cosine 0 with everything."""
    norm = np.sqrt((a.astype(np.float64) ** 2).sum(axis=1))
    unit = a / np.where(norm > 0, norm, 1.0)[:, None]
    return unit @ unit.T


def np_sign(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, 1.0, -1.0)


# ----------------------------------------------------------------------------- S⁰


def test_feature_similarity_hand_worked():
    image = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    text = np.array([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    # image cosines: (0,1) 0, (0,2) and (1,2) 1/√2; text cosines: (0,1) 1, the rest 0.
    r = 0.5 / np.sqrt(2.0)
    expected = np.array([[1.0, 0.5, r], [0.5, 1.0, r], [r, r, 1.0]])
    np.testing.assert_allclose(feature_similarity(t(image), t(text)).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("chunk", [None, 1, 3, 64])
def test_feature_similarity_matches_numpy(chunk):
    rng = np.random.default_rng(0)
    image = rng.standard_normal((11, 6))
    text = (rng.random((11, 9)) < 0.3).astype(np.float64)
    text[4] = 0.0  # an item without tags
    expected = 0.5 * (np_cosine(image) + np_cosine(text))
    s = feature_similarity(t(image), t(text), chunk)
    assert s.dtype == torch.float64 and s.shape == (11, 11)
    np.testing.assert_allclose(s.numpy(), expected, rtol=1e-12, atol=1e-15)
    assert s[4, 4] == pytest.approx(0.5)  # text cosine 0 for the empty row
    with pytest.raises(ValueError, match="same items"):
        feature_similarity(t(image), t(text[:5]))


def test_feature_similarity_on_real_tags():
    if not TAGS.exists():
        pytest.skip(f"MIRFLICKR-25K tags not found at {TAGS}")
    tags = np.asarray(read_mat(TAGS)["YAll"][:300], dtype=np.float64)  # the real 0/1 tags, 1,386 words
    # The image modality is missing on disk: test the text cosine part on the
    # real tags (image = text gives exactly the text cosine), then the mean
    # with a random stand-in image modality.
    norm = np.sqrt((tags**2).sum(axis=1))
    cos_t = (tags @ tags.T) / np.outer(norm, norm)
    np.testing.assert_allclose(feature_similarity(t(tags), t(tags), 128).numpy(), cos_t, rtol=1e-10, atol=1e-12)
    image = np.random.default_rng(1).standard_normal((300, 40))
    expected = 0.5 * (np_cosine(image) + cos_t)
    np.testing.assert_allclose(feature_similarity(t(image), t(tags), 97).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_rescale_similarity():
    rng = np.random.default_rng(2)
    p = rng.uniform(-0.4, 0.8, (7, 7))
    np.testing.assert_allclose(rescale_similarity(t(p.copy()), "maxabs").numpy(), p / np.abs(p).max(), rtol=1e-12)
    mm = 2.0 * (p - p.min()) / (p.max() - p.min()) - 1.0
    out = rescale_similarity(t(p.copy()), "minmax").numpy()
    np.testing.assert_allclose(out, mm, rtol=1e-12, atol=1e-15)
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)
    for mode in ("maxabs", "minmax"):
        np.testing.assert_array_equal(rescale_similarity(torch.full((3, 3), 0.0 if mode == "maxabs" else 0.3,
                                                                    dtype=torch.float64), mode).numpy(), 0.0)
    with pytest.raises(ValueError, match="expected 'maxabs' or 'minmax'"):
        rescale_similarity(t(p), "scale")


# ----------------------------------------------------------------------------- bit selection


def test_select_bits_hand_worked():
    u = np.array([[0.9, -0.2, 0.5, -0.4, -0.3, 0.0]])
    v = np.array([[-0.3, -0.8, -0.5, 0.1, -0.3, -0.0]])
    # larger |.| wins: u, v, tie (opposite: +1), u, tie (same: -1), tie of zeros (+1).
    expected = np.array([[1.0, -1.0, 1.0, -1.0, -1.0, 1.0]])
    for rule in ("confidence", "sum"):
        np.testing.assert_array_equal(select_bits(t(u), t(v), rule).numpy(), expected)
    with pytest.raises(ValueError, match="expected 'confidence', 'sum' or 'relative'"):
        select_bits(t(u), t(v), "vote")
    with pytest.raises(ValueError, match="same shape"):
        select_bits(t(u), t(v[:, :3]), "confidence")


def test_confidence_selection_equals_sign_of_sum():
    # The sign of a sum is the sign of its larger-magnitude term: METHODS.md's
    # "confidence" default and the "sum" rule are one function (ties included).
    rng = np.random.default_rng(3)
    u = rng.uniform(-1, 1, (64, 32))
    v = rng.uniform(-1, 1, (64, 32))
    v[:, :4] = -u[:, :4]  # exact opposite ties
    v[:, 4:8] = u[:, 4:8]  # exact equal ties
    conf = np.where(np.abs(u) > np.abs(v), np_sign(u), np.where(np.abs(v) > np.abs(u), np_sign(v), np_sign(u + v)))
    np.testing.assert_array_equal(select_bits(t(u), t(v), "confidence").numpy(), conf)
    np.testing.assert_array_equal(conf, np_sign(u + v))
    np.testing.assert_array_equal(select_bits(t(u), t(v), "sum").numpy(), np_sign(u + v))


def test_relative_selection_matches_numpy():
    rng = np.random.default_rng(4)
    u = rng.uniform(-1, 1, (20, 6)) * 0.2  # a modality on a smaller scale
    v = rng.uniform(-1, 1, (20, 6))
    cu = np.abs(u) / np.abs(u).mean(axis=0)
    cv = np.abs(v) / np.abs(v).mean(axis=0)
    expected = np.where(cu > cv, np_sign(u), np.where(cv > cu, np_sign(v), np_sign(u + v)))
    got = select_bits(t(u), t(v), "relative").numpy()
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, np_sign(u + v))  # it differs where the scales differ


# ----------------------------------------------------------------------------- losses


def test_similarity_loss_matches_formula():
    rng = np.random.default_rng(5)
    b, c = 5, 4
    u, v = np.tanh(rng.standard_normal((b, c))), np.tanh(rng.standard_normal((b, c)))
    s = rng.uniform(-1, 1, (b, b))
    s = (s + s.T) / 2
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    ii = ((unit(u) @ unit(u).T - s) ** 2).mean()
    tt = ((unit(v) @ unit(v).T - s) ** 2).mean()
    it = ((unit(u) @ unit(v).T - s) ** 2).mean()
    w = (0.3, 1.7, 2.9)  # unequal, so a swapped weight shows
    loss = SimilarityLoss(*w)(t(u), t(v), t(s))
    assert loss.dtype == torch.float64
    np.testing.assert_allclose(float(loss), w[0] * ii + w[1] * tt + w[2] * it, rtol=1e-12)
    terms = SimilarityLoss(*w).terms(t(u), t(v), t(s))
    np.testing.assert_allclose([float(terms[k]) for k in ("image_image", "text_text", "image_text")], [ii, tt, it],
                               rtol=1e-12)


def test_quantization_loss_matches_formula():
    rng = np.random.default_rng(6)
    u, v = np.tanh(rng.standard_normal((5, 4))), np.tanh(rng.standard_normal((5, 4)))
    codes = np.where(np.abs(u) > np.abs(v), np_sign(u), np_sign(v))
    gamma = 0.37
    expected = gamma * (((u - codes) ** 2).sum() + ((v - codes) ** 2).sum()) / (5 * 4)
    np.testing.assert_allclose(float(QuantizationLoss(gamma)(t(u), t(v), t(codes))), expected, rtol=1e-12)
    # The unified codes are a fixed target: the gradient is 2γ(u − b)/(b·c).
    uu = torch.tensor(u, requires_grad=True)
    QuantizationLoss(gamma)(uu, t(v), t(codes)).backward()
    np.testing.assert_allclose(uu.grad.numpy(), 2 * gamma * (u - codes) / 20, rtol=1e-12)


@pytest.mark.parametrize("fusion", ["attention", "gated"])
def test_generator_head_and_loss(fusion):
    gen = torch.Generator().manual_seed(0)
    mie = MIEGenerator(9, 5, 8, 3, 2, fusion, gen).double()
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((6, 9)), rng.standard_normal((6, 5))
    with torch.no_grad():
        e = mie.embed(t(x), t(y)).numpy()
        p = mie(t(x), t(y)).numpy()
        w, beta = float(torch.nn.functional.softplus(mie.raw_scale)), float(mie.bias)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(p, np.tanh(w * e @ e.T + beta), rtol=1e-12)
    assert np.all(np.abs(p) < 1.0) and np.allclose(p, p.T)
    assert w == pytest.approx(3.0) and beta == 0.0
    s0 = 0.5 * (np_cosine(x) + np_cosine(y))
    np.testing.assert_allclose(float(generator_loss(t(p), t(s0))), ((p - s0) ** 2).mean(), rtol=1e-12)
    # Scale-free in each modality, as S⁰ is.
    with torch.no_grad():
        np.testing.assert_allclose(mie(t(3.0 * x), t(0.1 * y)).numpy(), p, rtol=1e-10)
    with pytest.raises(ValueError, match="expected fusion"):
        MIEGenerator(9, 5, 8, 3, 2, "none", gen)


# ----------------------------------------------------------------------------- training pieces


def _method(small, bits=16, **over):
    cfg = UCHM.make_config({**FAST, **over})
    m = UCHM(cfg, bits, small.dims, torch.device("cpu"), torch.Generator().manual_seed(0))
    tr = small.split.train
    return m, engine.TrainSet(t(small.image[tr]), t(small.text[tr]), None, tr)


def test_generator_learns_s0_and_s_mie_is_bounded(small):
    m, train = _method(small, generator_epochs=4)
    m.setup(train)
    hist = m.generator_history
    assert len(hist) == 4 and hist[-1] < 0.7 * hist[0]
    S = m.S
    assert S.shape == (train.n, train.n) and S.dtype == torch.float32
    assert float(S.abs().max()) == pytest.approx(1.0)
    assert torch.allclose(S, S.T, atol=1e-6)
    # Built in row blocks: the same matrix for any block size.
    blocked = dataclasses.replace(m.config, sim_chunk=77)
    m.config = blocked
    torch.testing.assert_close(m.similarity_matrix(train.image, train.text), S, rtol=0, atol=1e-6)
    # Training moves its pairs towards S⁰ (against the untrained generator's).
    s0 = feature_similarity(train.image, train.text)
    off = ~torch.eye(train.n, dtype=torch.bool)
    untrained, _ = _method(small, generator_epochs=0)
    untrained.setup(train)
    corr = [np.corrcoef(x.S[off].numpy(), s0[off].numpy())[0, 1] for x in (untrained, m)]
    assert corr[1] > corr[0] + 0.1 and corr[1] > 0.4, corr
    assert "generator" in m.extra_state()


def test_no_generator_uses_s0(small):
    m, train = _method(small, generator="none")
    m.setup(train)
    assert m.mie is None and m.generator_history == []
    torch.testing.assert_close(m.S, feature_similarity(train.image, train.text), rtol=0, atol=1e-6)


@pytest.mark.parametrize("over", [{}, {"generator": "gated", "bit_selection": "relative", "input_norm": "standardize"}])
def test_gradients_finite_on_a_real_batch(small, over):
    m, train = _method(small, **over)
    m.setup(train)
    (phase,) = m.phases(0, 3)
    assert phase.name == "hash" and phase.iterations == -(-train.n // 128)
    pos = torch.randperm(train.n, generator=torch.Generator().manual_seed(1))[:64]
    phase.optimizer.zero_grad()
    loss = phase.loss(pos)
    loss.backward()
    assert torch.isfinite(loss) and float(loss.detach()) > 0
    for modality in ("image", "text"):
        grads = [p.grad for p in m.networks[modality].parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(float(g.abs().max()) > 0 for g in grads)


def test_short_run_beats_random_codes(small):
    res = engine.fit("uchm", small, 32, config={**FAST, "generator_epochs": 6}, epochs=20, seed=0, progress=False)
    assert res.best_val_map is None and res.val_rows.size == 0  # unsupervised: the last epoch, no validation
    assert res.fit_rows.size == small.split.train.size
    codes = encode_dataset(res.method, small)
    for e in evaluate_codes(codes, 32, curves=False):
        # Random codes score the label-sharing rate (~0.61 here); measured +0.054 (I->T), +0.037 (T->I).
        assert e["map"] > e["map_random"] + 0.025, e


# ----------------------------------------------------------------------------- unsupervised, seeds


def test_labels_never_change_the_codes(small):
    # Unsupervised means unsupervised (issue item 6).
    assert_label_free("uchm", small, config={**FAST, "generator_epochs": 2}, epochs=2)


def test_codes_bit_identical_under_a_seed(small):
    assert_seeded_codes("uchm", small, config={**FAST, "generator_epochs": 2}, epochs=2)


# ----------------------------------------------------------------------------- config


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown config key.*'nope'"):
        UCHM.make_config({"nope": 1})
    with pytest.raises(ValueError, match="expected one of"):
        UCHM.make_config({"bit_selection": "vote"})
    with pytest.raises(ValueError, match="expected one of"):
        UCHM.make_config({"generator": "transformer"})
    with pytest.raises(ValueError, match="generator_heads: expected a divisor"):
        UCHM.make_config({"generator_dim": 10, "generator_heads": 3})
    with pytest.raises(ValueError, match="hidden: expected a positive integer"):
        UCHM.make_config({"hidden": 0})
    with pytest.raises(ValueError, match="gamma: expected a value >= 0"):
        UCHM.make_config({"gamma": -1})
    cfg = UCHM.make_config({"gamma": "0.5", "generator": "none"})
    assert cfg.gamma == 0.5 and cfg.generator == "none"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gamma = 2.0  # type: ignore[misc]


def test_defaults_follow_methods_md():
    cfg = UCHM.make_config()
    # METHODS.md section 5's project defaults [inferred].
    assert (cfg.generator, cfg.rescale, cfg.bit_selection) == ("attention", "maxabs", "confidence")
    assert (cfg.hidden, cfg.lambda_ii, cfg.lambda_tt, cfg.lambda_it) == (4096, 1.0, 1.0, 1.0)
    # The first author's related code (UCHTIM) as the guide to optimisation.
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == ("sgd", 0.002, 0.9, 5e-4, 96)
    assert UCHM.supervised is False and UCHM.name == "uchm" and UCHM.title == "UCHM (features)"
    assert get_method("uchm") is UCHM
    m = UCHM(cfg, 16, (7, 11, 3), torch.device("cpu"), torch.Generator().manual_seed(0))
    for modality, d in (("image", 7), ("text", 11)):
        kinds = [type(mod).__name__ for mod in m.networks[modality]]
        assert kinds == ["Linear", "ReLU", "Linear", "Tanh"]
        lin = [mod for mod in m.networks[modality] if isinstance(mod, torch.nn.Linear)]
        assert [(x.in_features, x.out_features) for x in lin] == [(d, 4096), (4096, 16)]
    assert set(UCHM.presets) == {"synthetic", "wiki"}
    for preset in UCHM.presets.values():
        UCHM.make_config({k: v for k, v in preset.items() if k != "epochs"})
