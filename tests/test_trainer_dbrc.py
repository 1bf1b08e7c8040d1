"""DBRC: the adaptive tanh layer, the reconstruction loss, and unsupervised training.

- ATanh (linear and non-linear scaling), its regulariser and its gradient
  against their formulas, computed here in numpy;
- each squared error and the whole loss against its formula on a tiny
  float64 batch, with unequal widths and weights so that a swap shows;
- the method's batch loss against a numpy forward pass through its own
  weights (the wiring: both codes into both decoders, standardised targets);
- finite gradients on a real batch; a short run on the synthetic set whose
  MAP clearly beats random codes;
- unsupervised means unsupervised: zeroed, shuffled and original labels give
  bit-identical codes under a seed;
- bit-identical codes under a seed; unknown config keys rejected; defaults
  as in METHODS.md section 3.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainer import engine

from trainer.encoder import encode_dataset
from trainer.cli import evaluate_codes
from trainer.methods import get_method
from trainer_checks import assert_label_free, assert_seeded_codes, t
from trainer.methods._common import Standardize
from trainer.methods.dbrc import ATanh, DBRC, DBRCLoss, Encoder, squared_error

FAST = dict(hidden=256)

pytestmark = pytest.mark.usefixtures("torch_one_thread")




# ----------------------------------------------------------------------------- ATanh


def test_atanh_linear_and_regulariser_match_formula():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 4)) * 2.0
    alpha = np.array([0.5, 1.0, 2.5, 4.0])
    layer = ATanh(4, "linear").double()
    with torch.no_grad():
        layer.alpha.copy_(t(alpha))
    np.testing.assert_allclose(layer(t(z)).detach().numpy(), np.tanh(alpha * z), rtol=1e-12)
    lam = 0.3
    np.testing.assert_allclose(float(layer.regularizer(lam).detach()), lam * np.sum(1.0 / alpha**2), rtol=1e-12)
    # dR/dα_k = −2λ/α_k³: R pushes α up, so the outputs towards ±1.
    a = layer.alpha
    layer.regularizer(lam).backward()
    np.testing.assert_allclose(a.grad.numpy(), -2 * lam / alpha**3, rtol=1e-12)
    assert layer.beta is None and sum(p.numel() for p in layer.parameters()) == 4


def test_atanh_nonlinear_matches_formula_and_is_odd_and_monotone():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((5, 3))
    alpha, beta = np.array([0.7, 1.3, 2.0]), np.array([0.0, 0.4, 1.5])
    layer = ATanh(3, "nonlinear").double()
    with torch.no_grad():
        layer.alpha.copy_(t(alpha))
        layer.beta.copy_(t(beta))
    expected = np.tanh(alpha * z + beta * z**3)
    np.testing.assert_allclose(layer(t(z)).detach().numpy(), expected, rtol=1e-12)
    grid = torch.linspace(-1, 1, 41, dtype=torch.float64)[:, None].repeat(1, 3)
    out = layer(grid).detach().numpy()
    np.testing.assert_allclose(out, -out[::-1], atol=1e-15)
    assert np.all(np.diff(out, axis=0) > 0)
    assert ATanh(3, "nonlinear", beta_init=0.25).beta.detach().tolist() == [0.25] * 3


def test_atanh_clamps_alpha_and_beta():
    layer = ATanh(3, "nonlinear", alpha_min=1e-3).double()
    with torch.no_grad():
        layer.alpha.copy_(torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64))
        layer.beta.copy_(torch.tensor([-0.5, 0.2, 0.0], dtype=torch.float64))
    z = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    # The forward pass already uses the clamped values ...
    np.testing.assert_allclose(layer(z).detach().numpy(), np.tanh([[1e-3, 1e-3 + 0.2, 2.0]]), rtol=1e-12)
    np.testing.assert_allclose(float(layer.regularizer(1.0).detach()), 2 / 1e-6 + 1 / 4.0, rtol=1e-12)
    # ... and project_ moves the parameters back into range.
    layer.project_()
    assert layer.alpha.detach().tolist() == [1e-3, 1e-3, 2.0]
    assert layer.beta.detach().tolist() == [0.0, 0.2, 0.0]
    with pytest.raises(ValueError, match="expected 'linear' or 'nonlinear'"):
        ATanh(3, "cubic")
    with pytest.raises(ValueError, match="alpha_min"):
        ATanh(3, alpha_init=1e-4, alpha_min=1e-3)


# ----------------------------------------------------------------------------- loss


def _batch(seed=0, b=5, dx=7, dy=3, c=4):
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal((b, dx)), rng.standard_normal((b, dy)) * 3.0
    h_x, h_y = np.tanh(rng.standard_normal((b, c))), np.tanh(rng.standard_normal((b, c)))
    x_from_x, x_from_y = rng.standard_normal((b, dx)), rng.standard_normal((b, dx))
    y_from_x, y_from_y = rng.standard_normal((b, dy)), rng.standard_normal((b, dy))
    return x, y, x_from_x, y_from_x, x_from_y, y_from_y, h_x, h_y


def _e(a, a_hat, reduction):
    # mean over items of the summed squares; "dimension" also divides by the width
    per_item = np.sum((a - a_hat) ** 2, axis=1)
    return per_item.mean() / (a.shape[1] if reduction == "dimension" else 1)


def test_squared_error_matches_formula():
    rng = np.random.default_rng(2)
    a, a_hat = rng.standard_normal((6, 9)), rng.standard_normal((6, 9))
    by_dim = float(squared_error(t(a), t(a_hat), "dimension"))
    by_item = float(squared_error(t(a), t(a_hat), "item"))
    np.testing.assert_allclose(by_dim, ((a - a_hat) ** 2).mean(), rtol=1e-12)  # = mean over items and dims
    np.testing.assert_allclose(by_item, ((a - a_hat) ** 2).sum() / 6, rtol=1e-12)
    with pytest.raises(ValueError, match="expected equal shapes"):
        squared_error(t(a), t(a_hat[:, :8]))
    with pytest.raises(ValueError, match="expected 'dimension' or 'item'"):
        squared_error(t(a), t(a_hat), "sum")


@pytest.mark.parametrize("reduction", ["dimension", "item"])
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_matches_formula(reduction, seed):
    x, y, x_from_x, y_from_x, x_from_y, y_from_y, h_x, h_y = _batch(seed)
    w, reg = 0.7, 0.123  # unequal, so a swapped weight shows
    intra = _e(x, x_from_x, reduction) + _e(y, y_from_y, reduction)
    inter = _e(y, y_from_x, reduction) + _e(x, x_from_y, reduction)
    agree = _e(h_x, h_y, reduction)
    args = [t(a) for a in (x, y, x_from_x, y_from_x, x_from_y, y_from_y, h_x, h_y)]
    terms = DBRCLoss(w, reduction).terms(*args)
    np.testing.assert_allclose([float(terms[k]) for k in ("intra", "inter", "agreement")], [intra, inter, agree],
                               rtol=1e-12)
    loss = DBRCLoss(w, reduction)(*args, torch.tensor(reg, dtype=torch.float64))
    assert loss.dtype == torch.float64
    np.testing.assert_allclose(float(loss), intra + inter + w * agree + reg, rtol=1e-12)
    # Without the agreement flag the term is left out.
    off = DBRCLoss(0.0, reduction)(*args, torch.tensor(reg, dtype=torch.float64))
    np.testing.assert_allclose(float(off), intra + inter + reg, rtol=1e-12)


def test_loss_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="expected 'dimension' or 'item'"):
        DBRCLoss(0.0, "mean")


def _np_mlp(seq, x):
    """Numpy forward of ``Linear, ReLU, Linear`` (float64)."""
    lin = [m for m in seq if isinstance(m, torch.nn.Linear)]
    w = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()) for m in lin]
    hidden = np.maximum(x @ w[0][0].T + w[0][1], 0.0)
    return hidden @ w[1][0].T + w[1][1]


@pytest.mark.parametrize("agreement", [False, True])
def test_method_batch_loss_matches_numpy_forward(small, agreement):
    # Independent numpy forward through the method's own weights: standardised
    # image target, text as given, both codes through both decoders, R(α) once.
    cfg = DBRC.make_config({"hidden": 32, "agreement": agreement, "agreement_weight": 0.6, "lambda_alpha": 0.05})
    m = DBRC(cfg, 6, small.dims, torch.device("cpu"), torch.Generator().manual_seed(0))
    tr = small.split.train
    train = engine.TrainSet(t(small.image[tr]), t(small.text[tr]), None, tr)
    m.setup(train)
    with torch.no_grad():
        m.encoder("image").hashing.alpha.copy_(torch.linspace(0.5, 2.0, 6))
        m.encoder("text").hashing.alpha.copy_(torch.linspace(3.0, 1.0, 6))
    pos = np.arange(0, 40, 3)
    x, y = small.image[tr][pos].astype(np.float64), small.text[tr][pos].astype(np.float64)
    mu, sd = small.image[tr].mean(0, dtype=np.float64), small.image[tr].std(0, ddof=1, dtype=np.float64)
    xs = (x - mu) / np.where(sd > 1e-8, sd, 1.0)
    a_x = np.linspace(0.5, 2.0, 6)
    a_y = np.linspace(3.0, 1.0, 6)
    h_x = np.tanh(a_x * _np_mlp(m.encoder("image").body, xs))
    h_y = np.tanh(a_y * _np_mlp(m.encoder("text").body, y))
    dx, dy = m.networks["decoder_image"], m.networks["decoder_text"]
    expected = (_e(xs, _np_mlp(dx, h_x), "dimension") + _e(y, _np_mlp(dy, h_y), "dimension")
                + _e(y, _np_mlp(dy, h_x), "dimension") + _e(xs, _np_mlp(dx, h_y), "dimension")
                + 0.05 * (np.sum(1 / a_x**2) + np.sum(1 / a_y**2)))
    if agreement:
        expected += 0.6 * _e(h_x, h_y, "dimension")
    got = float(m.batch_loss(t(small.image[tr][pos]), t(small.text[tr][pos])).detach())
    np.testing.assert_allclose(got, expected, rtol=2e-4)
    # The encoders the engine uses for codes are exactly these.
    np.testing.assert_allclose(m.outputs("image", t(small.image[tr][pos])).numpy(), h_x, rtol=1e-4, atol=1e-5)


def test_gradients_finite_on_a_real_batch(small):
    for scaling in ("linear", "nonlinear"):
        cfg = DBRC.make_config({**FAST, "scaling": scaling, "agreement": True})
        m = DBRC(cfg, 16, small.dims, torch.device("cpu"), torch.Generator().manual_seed(0))
        tr = small.split.train
        m.setup(engine.TrainSet(t(small.image[tr]), t(small.text[tr]), None, tr))
        (phase,) = m.phases(0, 1)
        assert phase.sampling == "epoch" and phase.iterations == 4 and phase.batch_size == 256
        m.optimizer.zero_grad()
        loss = phase.loss(torch.randperm(tr.size, generator=torch.Generator().manual_seed(1))[:256])
        assert torch.isfinite(loss) and float(loss.detach()) > 0
        loss.backward()
        for name, net in m.networks.items():
            grads = [p.grad for p in net.parameters()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads), name
            assert any(float(g.abs().max()) > 0 for g in grads), name
        for layer in m.hashing_layers():
            assert float(layer.alpha.grad.abs().min()) > 0
            if scaling == "nonlinear":
                assert layer.beta is not None and torch.isfinite(layer.beta.grad).all()


# ----------------------------------------------------------------------------- training


def test_short_run_beats_random_codes(small):
    # A smaller, faster-learning net than the defaults, so that 30 epochs take seconds.
    res = engine.fit("dbrc", small, 16, config={"hidden": 512, "lr": 3e-3}, epochs=30, seed=0, progress=False)
    assert res.best_val_map is None and res.val_rows.size == 0  # unsupervised: no validation, last epoch
    assert res.best_epoch == 29 and res.fit_rows.size == small.split.train.size
    codes = encode_dataset(res.method, small)
    for e in evaluate_codes(codes, 16, curves=False):
        assert e["map"] > e["map_random"] + 0.04, e
    last = res.history[-1]
    assert {"alpha_image", "alpha_text", "mean_abs_h_image", "mean_abs_h_text"} <= set(last)
    losses = [h["loss_reconstruction"] for h in res.history]
    assert losses[-1] < losses[0]


def test_labels_never_reach_training(small):
    res = engine.fit("dbrc", small, 24, config={"hidden": 64}, epochs=1, seed=0, progress=False)
    assert res.method.train_set.labels is None  # the method never got them
    assert_label_free("dbrc", small, config={"hidden": 64}, epochs=2)


def test_codes_bit_identical_under_a_seed(small):
    assert_seeded_codes("dbrc", small, config={"hidden": 64}, epochs=2)


def test_alpha_stays_above_its_floor_in_training(small):
    res = engine.fit("dbrc", small, 8, config={"hidden": 32, "scaling": "nonlinear", "alpha_min": 0.999,
                                               "alpha_init": 1.0, "alpha_lr_scale": 50.0},
                     epochs=2, seed=0, progress=False)
    for layer in res.method.hashing_layers():
        assert float(layer.alpha.detach().min()) >= 0.999 and float(layer.beta.detach().min()) >= 0.0


# ----------------------------------------------------------------------------- config


def test_config_rejects_unknown_keys_and_is_frozen():
    with pytest.raises(ValueError, match="unknown config key.*'nope'"):
        DBRC.make_config({"nope": 1})
    with pytest.raises(ValueError, match="expected one of"):
        DBRC.make_config({"scaling": "quadratic"})
    with pytest.raises(ValueError, match="expected one of"):
        DBRC.make_config({"reduction": "sum"})
    cfg = DBRC.make_config({"scaling": "nonlinear", "agreement": "true", "lambda_alpha": "0.01"})
    assert cfg.scaling == "nonlinear" and cfg.agreement is True and cfg.lambda_alpha == 0.01
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]


def test_defaults_follow_methods_md():
    cfg = DBRC.make_config()
    assert (cfg.scaling, cfg.alpha_init, cfg.alpha_min, cfg.lambda_alpha) == ("linear", 1.0, 1e-3, 1e-3)
    assert (cfg.hidden, cfg.lr, cfg.batch_size) == (1024, 1e-3, 256)
    assert (cfg.agreement, cfg.agreement_weight) == (False, 1.0)
    assert (cfg.image_norm, cfg.text_norm, cfg.reduction) == ("standardize", "none", "dimension")
    assert get_method("dbrc") is DBRC and DBRC.supervised is False and DBRC.title == "DBRC (features)"
    m = DBRC(cfg, 16, (7, 11, 3), torch.device("cpu"), torch.Generator().manual_seed(0))
    shapes = {}
    for name in ("image", "text"):
        enc = m.networks[name]
        assert isinstance(enc, Encoder) and isinstance(enc.hashing, ATanh)
        shapes[name] = [(l.in_features, l.out_features) for l in enc.body if isinstance(l, torch.nn.Linear)]
    for name in ("decoder_image", "decoder_text"):
        shapes[name] = [(l.in_features, l.out_features) for l in m.networks[name] if isinstance(l, torch.nn.Linear)]
    assert shapes == {"image": [(7, 1024), (1024, 16)], "text": [(11, 1024), (1024, 16)],
                      "decoder_image": [(16, 1024), (1024, 7)], "decoder_text": [(16, 1024), (1024, 11)]}
    assert isinstance(m.encoder("image").prep, Standardize)
    assert isinstance(m.encoder("text").prep, torch.nn.Identity)
    assert m.losses["reconstruction"].agreement_weight == 0.0
