"""DCMH (and the engine that trains it, and the CCA+ITQ baseline).

- the mini-batch loss against its formula, computed here in numpy;
- the autograd gradient against the paper's closed form, and finite
  gradients on real batches;
- the full objective J against its formula;
- a short run on the synthetic set whose MAP clearly beats random codes;
- bit-identical codes under a seed; the validation split inside the
  training items; 0 -> bit 1; unknown config keys rejected.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]

import hamsearch as hs
from trainer import engine
from trainer.encoder import encode_dataset
from trainer.cli import evaluate_codes
from trainer.data import load_dataset
from trainer.methods import available_methods, get_method
from trainer_checks import assert_phase_gradients_finite, assert_seeded_codes, mirflickr_array, SMALL, t
from trainer.methods.cca_itq import cca, itq
from trainer.methods.dcmh import DCMH, DCMHLoss, full_objective, lr_schedule, similarity

FAST = dict(text_hidden=1024, batch_size=64)


pytestmark = pytest.mark.usefixtures("torch_one_thread")



def _softplus(x):
    return np.logaddexp(0.0, x)


def _tiny(seed=0, n=9, c=5, nlab=4, b=4):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((n, c))
    G = rng.standard_normal((n, c))
    B = np.where(F + G >= 0, 1.0, -1.0)
    labels = (rng.random((n, nlab)) < 0.35).astype(np.float64)
    pos = np.sort(rng.choice(n, b, replace=False))
    out = rng.standard_normal((b, c)) * 2.0
    return F, G, B, labels, pos, out


def test_similarity_on_real_mirflickr_labels():
    labels = mirflickr_array("mirflickr25k-lall.mat", "LAll")
    assert labels.shape == (20015, 24)
    rng = np.random.default_rng(1)
    a = labels[rng.choice(labels.shape[0], 300, replace=False)].astype(bool)
    b = labels[rng.choice(labels.shape[0], 1000, replace=False)].astype(bool)
    # S_ij = 1 where some label is on in both rows: elementwise AND, any.
    expected = (a[:, None, :] & b[None, :, :]).any(axis=2).astype(np.float64)
    got = similarity(t(a.astype(np.float64)), t(b.astype(np.float64))).numpy()
    np.testing.assert_array_equal(got, expected)
    assert 0.3 < expected.mean() < 0.8  # about 56% of MIRFLICKR-25K pairs share a label


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_loss_matches_formula(seed):
    gamma, eta = 0.7, 1.3  # unequal, so a swapped weight shows
    F, G, B, labels, pos, out = _tiny(seed)
    n, b = F.shape[0], pos.size
    own = F.copy()
    own[pos] = out  # the batch's rows of the buffer hold the live outputs
    S = (labels[pos] @ labels.T > 0).astype(np.float64)
    theta = 0.5 * out @ G.T
    nll = (_softplus(theta) - S * theta).sum()
    quant = ((B[pos] - out) ** 2).sum()
    rest = np.delete(own, pos, axis=0).sum(0)
    balance = ((out.sum(0) + rest) ** 2).sum()
    expected = (nll + gamma * quant + eta * balance) / (n * b)

    sim = similarity(t(labels[pos]), t(labels))
    np.testing.assert_array_equal(sim.numpy(), S)
    loss = DCMHLoss(gamma, eta)(t(out), t(pos), t(own), t(G), t(B), sim)
    assert loss.dtype == torch.float64
    np.testing.assert_allclose(float(loss), expected, rtol=1e-12)
    terms = DCMHLoss(gamma, eta).terms(t(out), t(pos), t(own), t(G), t(B), sim)
    np.testing.assert_allclose([float(terms[k]) for k in ("nll", "quantization", "balance")], [nll, quant, balance], rtol=1e-12)


def test_gradient_matches_closed_form():
    # dJ/du_i = ½ Σ_j (σ(Θ_ij) − S_ij) v_j + 2γ(u_i − b_i) + 2η F·1, over n·b (METHODS §1).
    gamma, eta = 0.7, 1.3
    F, G, B, labels, pos, out = _tiny(3)
    n, b = F.shape[0], pos.size
    own = F.copy()
    own[pos] = out
    u = torch.tensor(out, requires_grad=True)
    t = torch.from_numpy
    sim = similarity(t(labels[pos]), t(labels))
    DCMHLoss(gamma, eta)(u, t(pos), t(own), t(G), t(B), sim).backward()
    S = sim.numpy()
    sig = 1.0 / (1.0 + np.exp(-0.5 * out @ G.T))
    expected = 0.5 * (sig - S) @ G + 2 * gamma * (out - B[pos]) + 2 * eta * own.sum(0)
    np.testing.assert_allclose(u.grad.numpy(), expected / (n * b), rtol=1e-10, atol=1e-14)


def test_full_objective_matches_formula():
    F, G, B, labels, _, _ = _tiny(4)
    S = (labels @ labels.T > 0).astype(np.float64)
    theta = 0.5 * F @ G.T
    J = (_softplus(theta) - S * theta).sum() + 0.5 * (((B - F) ** 2).sum() + ((B - G) ** 2).sum()) \
        + 2.0 * ((F.sum(0) ** 2).sum() + (G.sum(0) ** 2).sum())
    t = torch.from_numpy
    np.testing.assert_allclose(float(full_objective(t(F), t(G), t(B), t(S), 0.5, 2.0)), J, rtol=1e-12)


def test_gradients_finite_on_a_real_batch(small):
    cfg = DCMH.make_config({**FAST, "lr_start": 1.0})
    gen = torch.Generator().manual_seed(0)
    m = DCMH(cfg, 16, small.dims, torch.device("cpu"), gen)
    tr = small.split.train
    train = engine.TrainSet(torch.from_numpy(small.image[tr]), torch.from_numpy(small.text[tr]),
                            torch.from_numpy(small.labels[tr].astype(np.float32)), tr)
    m.setup(train)
    assert_phase_gradients_finite(m, train.n, gen)
    # The buffers hold one row per training item.
    assert m.F.shape == (train.n, 16)
    assert m.objective() > 0


def test_short_run_beats_random_codes(small):
    res = engine.fit("dcmh", small, 16, config=FAST, epochs=30, seed=0, progress=False)
    assert res.best_val_map is not None and res.val_rows.size > 0
    codes = encode_dataset(res.method, small)
    for e in evaluate_codes(codes, 16, curves=False):
        # Random codes score the label-sharing rate (~0.61 here); learned codes clearly more.
        assert e["map"] > e["map_random"] + 0.04, e
        assert abs(e["map_tie_aware"] - e["map"]) < 0.02
    val = [h["val_i2t"] + h["val_t2i"] for h in res.history if "val_i2t" in h]
    assert res.best_val_map == pytest.approx(max(val) / 2)


def test_codes_bit_identical_under_a_seed(small):
    assert_seeded_codes("dcmh", small, config={**FAST, "lr_start": 1.0}, epochs=3)


def test_validation_split_is_inside_training_items(small):
    fit_rows, val_rows = engine.carve_validation(small.split.train, 0.1, seed=0)
    assert val_rows.size == 80 and fit_rows.size == 720
    np.testing.assert_array_equal(np.union1d(fit_rows, val_rows), small.split.train)
    assert np.intersect1d(fit_rows, val_rows).size == 0
    assert np.intersect1d(val_rows, small.split.query).size == 0  # never the test queries
    none_fit, none_val = engine.carve_validation(small.split.train, 0.0, seed=0)
    assert none_val.size == 0 and none_fit.size == 800


def test_zero_output_is_bit_one():
    out = torch.tensor([[0.0, -0.0, -1e-30, 2.0]])
    np.testing.assert_array_equal(hs.unpack(engine.pack_outputs(out), 4), [[1, 1, 0, 1]])


def test_config_rejects_unknown_keys_and_is_frozen():
    with pytest.raises(ValueError, match="unknown config key.*'gama'"):
        DCMH.make_config({"gama": 1.0})
    with pytest.raises(ValueError, match="expected an int"):
        DCMH.make_config({"batch_size": "many"})
    with pytest.raises(ValueError, match="expected one of"):
        DCMH.make_config({"lr_schedule": "cosine"})
    cfg = DCMH.make_config({"gamma": "0.5", "image_hidden": "64,32"})
    assert cfg.gamma == 0.5 and cfg.image_hidden == (64, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gamma = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown config key"):
        engine.fit("dcmh", load_dataset("synthetic", synthetic=dict(SMALL, n=400, n_query=50, n_train=100)),
                   8, config={"etaa": 1}, progress=False)


def test_defaults_follow_the_paper():
    cfg = DCMH.make_config()
    assert (cfg.gamma, cfg.eta, cfg.batch_size, cfg.text_hidden, cfg.init_std) == (1.0, 1.0, 128, 8192, 0.01)
    assert cfg.lr_start == pytest.approx(10 ** -1.5) and cfg.momentum == 0.0 and cfg.image_hidden == ()
    assert DCMH.default_epochs == 500
    lr = lr_schedule(cfg, 5)
    assert lr[0] == pytest.approx(10 ** -1.5) and lr[-1] == pytest.approx(1e-6) and np.all(np.diff(lr) < 0)
    m = DCMH(cfg, 16, (7, 11, 3), torch.device("cpu"), torch.Generator().manual_seed(0))
    text = [mod for mod in m.networks["text"] if isinstance(mod, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in text] == [(11, 8192), (8192, 16)]
    assert abs(float(text[0].weight.detach().std()) - 0.01) < 1e-3  # N(0, 0.01²)
    assert available_methods()[0] == "dcmh" and "cca_itq" in available_methods() and get_method("dcmh") is DCMH
    with pytest.raises(ValueError, match="expected one of"):
        get_method("dcmh2")


# ----------------------------------------------------------------------------- CCA+ITQ


def test_cca_and_itq_properties():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((500, 3))
    x = np.hstack([z, rng.standard_normal((500, 4))]) @ rng.standard_normal((7, 7))
    y = np.hstack([z + 0.1 * rng.standard_normal((500, 3)), rng.standard_normal((500, 2))])
    x, y = x - x.mean(0), y - y.mean(0)
    a, b, rho = cca(x, y, 3, reg=1e-6)
    px, py = x @ a, y @ b
    np.testing.assert_allclose(px.std(0), 1.0, rtol=1e-3)
    corr = [np.corrcoef(px[:, k], py[:, k])[0, 1] for k in range(3)]
    np.testing.assert_allclose(corr, rho, atol=1e-3)
    assert rho[0] > 0.98 and np.all(np.diff(rho) <= 1e-12)
    r = itq(np.vstack([px, py]), 20, rng)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-10)


def test_cca_itq_beats_random_codes(small):
    res = engine.fit("cca_itq", small, 16, seed=0, progress=False)
    codes = encode_dataset(res.method, small)
    for e in evaluate_codes(codes, 16, curves=False):
        assert e["map"] > e["map_random"] + 0.01, e
    # More bits than canonical pairs (a 10-d text, as Wiki's): still codes of the asked length.
    narrow = dataclasses.replace(small, text=np.ascontiguousarray(small.text[:, :10]))
    res = engine.fit("cca_itq", narrow, 32, seed=0, progress=False)
    assert encode_dataset(res.method, narrow)["db_text"].shape == (small.split.database.size, 1)


def test_image_mlp_and_input_standardisation(small):
    res = engine.fit("dcmh", small, 8, config={**FAST, "image_hidden": (32,), "input_norm": "standardize"},
                     epochs=1, seed=0, progress=False)
    image = res.method.networks["image"]
    kinds = [type(mod).__name__ for mod in image]
    assert kinds == ["Standardize", "Linear", "ReLU", "Linear"]
    fit_rows = res.fit_rows
    np.testing.assert_allclose(image[0].mean.numpy(), small.image[fit_rows].mean(0), rtol=1e-4, atol=1e-5)
    assert "0.mean" in res.method.networks["text"].state_dict()  # the statistics travel with the weights


def test_device_is_explicit(small):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="cuda"):
        engine.fit("dcmh", small, 8, device="cuda", progress=False)
