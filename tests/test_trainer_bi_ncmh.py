"""Bi_NCMH: the multi-level similarity, the normalisation, the loss and a short run.

- the multi-level similarity on hand-worked label pairs and on the real
  MIRFLICKR-25K labels, against a numpy formula written out here;
- the L2 normalisation (unit rows, no NaN for an all-zero output);
- each loss term and the full objective against their formulas in numpy
  (float64, unequal weights), and the autograd gradient against its closed form;
- finite gradients on a real batch; a short run on the synthetic set whose
  MAP clearly beats random codes; bit-identical codes under a seed;
- unknown config keys rejected, defaults as METHODS.md gives them.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainer import engine

from trainer.encoder import encode_dataset
from trainer.cli import evaluate_codes
from trainer.data import read_mat
from trainer.methods import get_method
from trainer_checks import assert_phase_gradients_finite, assert_seeded_codes
from trainer.methods.bi_ncmh import BiNCMH, BiNCMHLoss, L2Normalize, full_objective, multilevel_similarity

ROOT = Path(__file__).resolve().parents[1]
LALL = ROOT.parent / "shared" / "data" / "mirflickr25k" / "mirflickr25k-lall.mat"

FAST = dict(text_hidden=512, batch_size=64, lr=3e-3)

pytestmark = pytest.mark.usefixtures("torch_one_thread")



def _rows(n_classes, *sets):
    """{0,1} float64 rows from 1-based class sets."""
    out = np.zeros((len(sets), n_classes))
    for r, classes in enumerate(sets):
        out[r, [k - 1 for k in classes]] = 1.0
    return torch.from_numpy(out)


def _oracle(a, b):
    """The multi-level S in numpy, from its definition: XOR count and overlap."""
    a, b = a.astype(bool), b.astype(bool)
    n_classes = a.shape[1]
    differ = np.logical_xor(a[:, None, :], b[None, :, :]).sum(-1)
    share = np.logical_and(a[:, None, :], b[None, :, :]).any(-1)
    return np.where(share, (n_classes - differ) / n_classes, -differ / n_classes)


# ----------------------------------------------------------------------------- similarity


def test_similarity_hand_cases():
    L = 24
    a = _rows(L, {1, 2}, {1}, {4, 7, 9}, set())
    b = _rows(L, {2, 3}, {2, 3}, {4, 7, 9}, {5, 6})
    S = multilevel_similarity(a, b).numpy()
    assert S[0, 0] == pytest.approx(22 / 24)  # consistent: they differ on classes 1 and 3
    assert S[1, 1] == pytest.approx(-3 / 24)  # inconsistent: they differ on 1, 2 and 3
    assert S[2, 2] == 1.0  # identical label sets
    # An all-zero row shares nothing: −|y_j|/L against any row, 0 against another empty one.
    np.testing.assert_allclose(S[3], [-2 / 24, -2 / 24, -3 / 24, -2 / 24])
    assert multilevel_similarity(_rows(L, set()), _rows(L, set())).item() == 0.0
    # A consistent pair is never below an inconsistent one: (0, 1] against [−1, 0].
    full = multilevel_similarity(_rows(4, {1, 2, 3, 4}), _rows(4, {1}, {2, 3, 4}, set()))
    np.testing.assert_allclose(full.numpy(), [[1 / 4, 3 / 4, -1.0]])
    assert S.dtype == np.float64 and S.shape == (4, 4)


def test_similarity_on_real_mirflickr_labels():
    if not LALL.exists():
        pytest.skip(f"{LALL} is absent")
    labels = np.asarray(read_mat(LALL)["LAll"])
    assert labels.shape == (20015, 24)
    rng = np.random.default_rng(0)
    a = labels[rng.choice(labels.shape[0], 300, replace=False)]
    b = labels[rng.choice(labels.shape[0], 1200, replace=False)]
    S = multilevel_similarity(torch.from_numpy(a.astype(np.float64)), torch.from_numpy(b.astype(np.float64)))
    expected = _oracle(a, b)
    np.testing.assert_allclose(S.numpy(), expected, rtol=0, atol=1e-15)
    share = (a.astype(np.int64) @ b.T.astype(np.int64)) > 0
    assert share.any() and (~share).any()  # both directions occur on the real labels
    assert np.all(S.numpy()[share] > 0) and np.all(S.numpy()[share] <= 1)
    assert np.all(S.numpy()[~share] < 0) and np.all(S.numpy()[~share] >= -1)  # no empty rows here
    # float32 (the trainer's dtype) agrees to float32 precision.
    S32 = multilevel_similarity(torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32)))
    np.testing.assert_allclose(S32.numpy(), expected, atol=1e-6)


def test_similarity_rejects_bad_input():
    good = _rows(5, {1})
    with pytest.raises(ValueError, match="expected 5 classes"):
        multilevel_similarity(good, _rows(6, {1}))
    with pytest.raises(ValueError, match=r"expected \{0, 1\} labels"):
        multilevel_similarity(good, good * 2)
    with pytest.raises(ValueError, match="expected a 2-D"):
        multilevel_similarity(good[0], good)
    with pytest.raises(ValueError, match="floating-point"):
        multilevel_similarity(good.long(), good)
    with pytest.raises(ValueError, match="expected torch.float64"):
        multilevel_similarity(good, good.float())


# ----------------------------------------------------------------------------- normalisation


def test_l2_normalisation_and_zero_output():
    g = torch.tensor([[3.0, -4.0, 0.0], [0.0, 0.0, 0.0], [1e-3, 0.0, 0.0]], requires_grad=True)
    h = L2Normalize()(g)
    np.testing.assert_allclose(h.detach().numpy(), [[0.6, -0.8, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], atol=1e-7)
    (h * torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert torch.isfinite(g.grad).all()
    np.testing.assert_array_equal(g.grad[1].numpy(), 0.0)  # an all-zero g: no NaN, no gradient
    # 0 stays bit 1 after the normalisation (METHODS pitfall 1).
    assert engine.sign_bits(h.detach())[1].all()


def test_network_outputs_are_unit_rows(small):
    cfg = BiNCMH.make_config({**FAST, "pre_activation": "tanh", "input_norm": "standardize", "image_hidden": (32,)})
    m = BiNCMH(cfg, 16, small.dims, torch.device("cpu"), torch.Generator().manual_seed(0))
    kinds = [type(mod).__name__ for mod in m.networks["image"]]
    assert kinds == ["Standardize", "Linear", "ReLU", "Linear", "Tanh", "L2Normalize"]
    default = BiNCMH(BiNCMH.make_config(FAST), 16, small.dims, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert [type(mod).__name__ for mod in default.networks["text"]] == ["Linear", "ReLU", "Linear", "L2Normalize"]
    for modality, x in (("image", small.image), ("text", small.text)):
        out = default.outputs(modality, torch.from_numpy(x[:50]))
        np.testing.assert_allclose(out.norm(dim=1).numpy(), 1.0, rtol=1e-5)


# ----------------------------------------------------------------------------- loss


def _tiny(seed=0, n=9, c=6, nlab=5, b=4):
    rng = np.random.default_rng(seed)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    Hv, Ht = unit(rng.standard_normal((n, c))), unit(rng.standard_normal((n, c)))
    B = np.where(Hv + Ht >= 0, 1.0, -1.0)
    labels = (rng.random((n, nlab)) < 0.35).astype(np.float64)
    pos = np.sort(rng.choice(n, b, replace=False))
    out = unit(rng.standard_normal((b, c)))
    return Hv, Ht, B, labels, pos, out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("intra", [False, True])
def test_batch_loss_matches_formula(seed, intra):
    lambda_q, w_intra = 0.3, 0.7  # unequal, so a swapped weight shows
    Hv, Ht, B, labels, pos, out = _tiny(seed)
    n, b, c = Hv.shape[0], pos.size, Hv.shape[1]
    own = Hv.copy()
    own[pos] = out  # the batch's rows of its buffer hold the live outputs
    S = _oracle(labels[pos], labels)
    inter = sum((out[i] @ Ht[j] - S[i, j]) ** 2 for i in range(b) for j in range(n)) / (b * n)
    intra_term = sum((out[i] @ own[j] - S[i, j]) ** 2 for i in range(b) for j in range(n)) / (b * n)
    quant = sum(np.sum((out[i] - B[pos[i]] / math.sqrt(c)) ** 2) for i in range(b)) / b
    expected = inter + lambda_q * quant + (w_intra * intra_term if intra else 0.0)

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    sim = multilevel_similarity(t(labels[pos]), t(labels))
    np.testing.assert_allclose(sim.numpy(), S, atol=1e-15)
    loss_fn = BiNCMHLoss(lambda_q, intra=intra, intra_weight=w_intra)
    loss = loss_fn(t(out), t(pos), t(own), t(Ht), t(B), sim)
    assert loss.dtype == torch.float64
    np.testing.assert_allclose(float(loss), expected, rtol=1e-12)
    terms = loss_fn.terms(t(out), t(pos), t(own), t(Ht), t(B), sim)
    assert set(terms) == ({"inter", "quantization", "intra"} if intra else {"inter", "quantization"})
    np.testing.assert_allclose([float(terms["inter"]), float(terms["quantization"])], [inter, quant], rtol=1e-12)
    if intra:
        np.testing.assert_allclose(float(terms["intra"]), intra_term, rtol=1e-12)


def test_gradient_matches_closed_form():
    # d/dh_i: (2/(b·n)) Σ_j (h_iᵀh_t,j − S_ij) h_t,j + λ_q (2/b)(h_i − b_i/√c)
    lambda_q = 0.3
    Hv, Ht, B, labels, pos, out = _tiny(3)
    n, b, c = Hv.shape[0], pos.size, Hv.shape[1]
    own = Hv.copy()
    own[pos] = out
    h = torch.tensor(out, requires_grad=True)
    t = torch.from_numpy
    sim = multilevel_similarity(t(labels[pos]), t(labels))
    BiNCMHLoss(lambda_q)(h, t(pos), t(own), t(Ht), t(B), sim).backward()
    S = _oracle(labels[pos], labels)
    expected = 2.0 / (b * n) * (out @ Ht.T - S) @ Ht + lambda_q * 2.0 / b * (out - B[pos] / math.sqrt(c))
    np.testing.assert_allclose(h.grad.numpy(), expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("intra_weight", [None, 0.7])
def test_full_objective_matches_formula(intra_weight):
    Hv, Ht, B, labels, _, _ = _tiny(4)
    n, c = Hv.shape
    S = _oracle(labels, labels)
    lambda_q = 0.3
    J = np.mean((Hv @ Ht.T - S) ** 2) + lambda_q * (
        np.sum((Hv - B / math.sqrt(c)) ** 2) / n + np.sum((Ht - B / math.sqrt(c)) ** 2) / n)
    if intra_weight is not None:
        J += intra_weight * (np.mean((Hv @ Hv.T - S) ** 2) + np.mean((Ht @ Ht.T - S) ** 2))
    t = torch.from_numpy
    got = full_objective(t(Hv), t(Ht), t(B), t(S), lambda_q, intra_weight)
    np.testing.assert_allclose(float(got), J, rtol=1e-12)


# ----------------------------------------------------------------------------- training


def _method(small, bits=16, **overrides):
    cfg = BiNCMH.make_config({**FAST, **overrides})
    gen = torch.Generator().manual_seed(0)
    m = BiNCMH(cfg, bits, small.dims, torch.device("cpu"), gen)
    tr = small.split.train
    train = engine.TrainSet(torch.from_numpy(small.image[tr]), torch.from_numpy(small.text[tr]),
                            torch.from_numpy(small.labels[tr].astype(np.float32)), tr)
    m.setup(train)
    return m, train, gen


@pytest.mark.parametrize("intra", [False, True])
def test_gradients_finite_on_a_real_batch(small, intra):
    m, train, gen = _method(small, intra=intra)
    assert isinstance(m.opt_image, torch.optim.Adam) and m.opt_image.param_groups[0]["lr"] == FAST["lr"]
    np.testing.assert_allclose(m.Hv.norm(dim=1).numpy(), 1.0, rtol=1e-5)  # buffers of unit rows
    assert_phase_gradients_finite(m, train.n, gen)
    assert m.Hv.shape == (train.n, 16) and m.objective() > 0
    # B = sign(H_v + H_t) from the buffers, 0 -> +1, after the epoch.
    m.Hv[0], m.Ht[0] = 0.0, 0.0
    m.end_epoch(0, 5)
    expected = np.where((m.Hv + m.Ht).numpy() >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(m.B.numpy(), expected)
    assert (m.B[0] == 1).all()


def test_rejects_labels_that_are_not_binary(small):
    cfg = BiNCMH.make_config(FAST)
    m = BiNCMH(cfg, 8, small.dims, torch.device("cpu"), torch.Generator().manual_seed(0))
    tr = small.split.train
    bad = torch.from_numpy(small.labels[tr].astype(np.float32) * 2)
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        m.setup(engine.TrainSet(torch.from_numpy(small.image[tr]), torch.from_numpy(small.text[tr]), bad, tr))


def test_short_run_beats_random_codes(small):
    res = engine.fit("bi_ncmh", small, 16, config=FAST, epochs=15, seed=0, progress=False)
    assert res.best_val_map is not None and res.val_rows.size > 0
    codes = encode_dataset(res.method, small)
    for e in evaluate_codes(codes, 16, curves=False):
        # Random codes score the label-sharing rate (~0.61 here); learned codes clearly more.
        assert e["map"] > e["map_random"] + 0.04, e


def test_codes_bit_identical_under_a_seed(small):
    assert_seeded_codes("bi_ncmh", small, config=FAST, epochs=2)


# ----------------------------------------------------------------------------- config


def test_config_rejects_unknown_keys_and_is_frozen(small):
    with pytest.raises(ValueError, match="unknown config key.*'nope'"):
        BiNCMH.make_config({"nope": 1})
    with pytest.raises(ValueError, match="expected one of"):
        BiNCMH.make_config({"pre_activation": "relu"})
    with pytest.raises(ValueError, match="expected a bool"):
        BiNCMH.make_config({"intra": "maybe"})
    cfg = BiNCMH.make_config({"lambda_q": "0.5", "intra": "true", "image_hidden": "64,32"})
    assert cfg.lambda_q == 0.5 and cfg.intra is True and cfg.image_hidden == (64, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lambda_q = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown config key"):
        engine.fit("bi_ncmh", small, 8, config={"lambdaq": 1}, progress=False)


def test_defaults_follow_methods_md():
    cfg = BiNCMH.make_config()
    assert (cfg.lambda_q, cfg.lr, cfg.batch_size) == (0.1, 1e-4, 128)
    assert cfg.intra is False and cfg.intra_weight == 1.0 and cfg.pre_activation == "none"
    assert (cfg.text_hidden, cfg.image_hidden, cfg.init_std) == (8192, (), 0.01)
    assert BiNCMH.supervised and BiNCMH.name == "bi_ncmh" and get_method("bi_ncmh") is BiNCMH
    assert BiNCMH.title == "Bi_NCMH (features)"
    for preset in BiNCMH.presets.values():  # presets name real keys only
        BiNCMH.make_config({k: v for k, v in preset.items() if k != "epochs"})
    m = BiNCMH(cfg, 16, (7, 11, 3), torch.device("cpu"), torch.Generator().manual_seed(0))
    text = [mod for mod in m.networks["text"] if isinstance(mod, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in text] == [(11, 8192), (8192, 16)]
    assert abs(float(text[0].weight.detach().std()) - 0.01) < 1e-3  # N(0, 0.01²)
