"""DCGH (features): similarities, every loss term, the optimisers, a short run.

- the label cosine Λ, the "at least two labels" mask and the "shares no
  label" mask on hand-worked label rows and on the real MIRFLICKR-25K labels,
  against numpy formulas written out here;
- each loss term (proxy, p2p, n2n, both variance variants) and the weighted
  total against numpy on a tiny float64 batch, with unequal weights;
- the proxies' initialisation, the warm-up cosine schedule and one BertAdam
  step against their formulas; finite gradients on a real batch;
- a short run on a small synthetic set whose MAP clearly beats random codes;
- bit-identical codes under a seed; unknown config keys rejected; defaults as
  METHODS.md section 4 gives them.
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
from trainer_checks import assert_seeded_codes, t
from trainer.methods.dcgh import (
    DCGH, BertAdam, DCGHLoss, disjoint_mask, init_proxies, label_cosine, multi_label_mask, n2n_term,
    p2p_term, proxy_terms, variance_term, warmup_cosine,
)

ROOT = Path(__file__).resolve().parents[1]
LALL = ROOT.parent / "shared" / "data" / "mirflickr25k" / "mirflickr25k-lall.mat"

pytestmark = pytest.mark.usefixtures("torch_one_thread")




# ----------------------------------------------------------------------------- numpy oracles


def np_cos(a, b):
    """Row cosines; a zero row has cosine 0 with everything."""
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    return (a / np.where(na > 0, na, 1.0)) @ (b / np.where(nb > 0, nb, 1.0)).T


def np_proxy(out, P, Y):
    C = np_cos(out, P)
    pos, neg = Y == 1, Y == 0
    return (1 - C)[pos].sum() / pos.sum(), np.maximum(C, 0)[neg].sum() / neg.sum()


def np_p2p(u, v, Y):
    lam = np_cos(Y, Y)
    m = lam > 0
    return sum(np.maximum(lam - np_cos(a, b), 0)[m].sum() / m.sum() for a, b in ((u, u), (v, v), (u, v)))


def np_n2n(u, v, Y):
    keep = Y.sum(1) >= 2
    Yk, uk, vk = Y[keep], u[keep], v[keep]
    m = (Yk @ Yk.T) == 0
    if m.sum() == 0:
        return 0.0
    return sum(np.maximum(np_cos(a, b), 0)[m].sum() / m.sum() for a, b in ((uk, uk), (vk, vk), (uk, vk)))


def np_var_all(out, P, Y):
    z = np.where(Y == 1, 1 - np_cos(out, P), 0.0)
    return z.var(axis=1, ddof=1).mean()


def np_var_relevant(out, P, Y):
    z = 1 - np_cos(out, P)
    per_item = [z[i, Y[i] == 1].var() if Y[i].sum() > 1 else 0.0 for i in range(Y.shape[0])]
    return float(np.sum(per_item)) / Y.shape[0]


def _tiny(seed=0, b=7, c=6, nlab=5):
    rng = np.random.default_rng(seed)
    u = np.tanh(rng.standard_normal((b, c)))
    v = np.tanh(rng.standard_normal((b, c)))
    P = np.tanh(rng.standard_normal((nlab, c)))
    Y = np.array([
        [1, 1, 0, 0, 0],
        [0, 0, 1, 1, 0],  # multi-label, disjoint from row 0
        [1, 0, 0, 0, 0],  # single label: out of n2n
        [0, 0, 0, 1, 1],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 1, 0, 0, 1],
    ], dtype=np.float64)[:b]
    return u, v, P, Y


# ----------------------------------------------------------------------------- similarities

HAND = np.array([
    [1, 1, 0, 0],
    [1, 0, 0, 0],
    [0, 0, 1, 1],
    [1, 1, 1, 1],
    [0, 0, 0, 0],  # no label
], dtype=np.float64)


def test_label_cosine_and_masks_on_hand_worked_rows():
    r2 = 1 / math.sqrt(2)
    expected = np.array([
        [1, r2, 0, r2, 0],
        [r2, 1, 0, 0.5, 0],
        [0, 0, 1, r2, 0],
        [r2, 0.5, r2, 1, 0],
        [0, 0, 0, 0, 0],
    ])
    np.testing.assert_allclose(label_cosine(t(HAND), t(HAND)).numpy(), expected, atol=1e-15)
    np.testing.assert_array_equal(multi_label_mask(t(HAND)).numpy(), [True, False, True, True, False])
    disjoint = np.array([
        [0, 0, 1, 0, 1],
        [0, 0, 1, 0, 1],
        [1, 1, 0, 0, 1],
        [0, 0, 0, 0, 1],
        [1, 1, 1, 1, 1],
    ], dtype=bool)
    np.testing.assert_array_equal(disjoint_mask(t(HAND), t(HAND)).numpy(), disjoint)


def test_similarities_on_real_mirflickr_labels():
    if not LALL.exists():
        pytest.skip(f"{LALL} is absent")
    Y = np.asarray(read_mat(LALL)["LAll"], dtype=np.float64)
    assert Y.shape == (20015, 24)
    rows = np.sort(np.random.default_rng(0).choice(Y.shape[0], 1500, replace=False))
    Ys = Y[rows]
    inner = Ys @ Ys.T
    norms = np.sqrt(Ys.sum(1))  # {0,1} rows: ‖y‖² = number of labels
    lam = inner / np.outer(norms, norms)
    np.testing.assert_allclose(label_cosine(t(Ys), t(Ys)).numpy(), lam, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(multi_label_mask(t(Y)).numpy(), Y.sum(1) >= 2)
    np.testing.assert_array_equal(disjoint_mask(t(Ys), t(Ys)).numpy(), inner == 0)
    # Λ > 0 exactly where a pair shares a label (the p2p pairs), and only those.
    np.testing.assert_array_equal(label_cosine(t(Ys), t(Ys)).numpy() > 0, inner > 0)
    # The real set has both kinds of pairs in plenty.
    assert 0.3 < (inner == 0).mean() < 0.7 and 0.8 < (Y.sum(1) >= 2).mean() < 0.95


# ----------------------------------------------------------------------------- loss terms


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_loss_term_matches_its_formula(seed):
    u, v, P, Y = _tiny(seed)
    pos, neg = proxy_terms(t(u), t(P), t(Y))
    assert pos.dtype == torch.float64
    np.testing.assert_allclose([float(pos), float(neg)], np_proxy(u, P, Y), rtol=1e-12)
    np.testing.assert_allclose(float(p2p_term(t(u), t(v), t(Y))), np_p2p(u, v, Y), rtol=1e-12)
    n2n = np_n2n(u, v, Y)
    assert n2n > 0
    np.testing.assert_allclose(float(n2n_term(t(u), t(v), t(Y))), n2n, rtol=1e-12)
    np.testing.assert_allclose(float(variance_term(t(u), t(P), t(Y), "all")), np_var_all(u, P, Y), rtol=1e-12)
    np.testing.assert_allclose(float(variance_term(t(u), t(P), t(Y), "relevant")), np_var_relevant(u, P, Y),
                               rtol=1e-12)


@pytest.mark.parametrize("variance", ["all", "relevant"])
def test_total_loss_weights_each_term(variance):
    u, v, P, Y = _tiny(3)
    w_n2n, w_p2p, w_var = 0.7, 0.3, 1.9  # unequal, so a swapped weight shows
    var = np_var_all if variance == "all" else np_var_relevant
    pi, ni = np_proxy(u, P, Y)
    pt, nt = np_proxy(v, P, Y)
    expected = (pi + pt + ni + nt + w_n2n * np_n2n(u, v, Y) + w_p2p * np_p2p(u, v, Y)
                + w_var * (var(u, P, Y) + var(v, P, Y)))
    loss = DCGHLoss(t(P), w_n2n, w_p2p, w_var, variance)
    np.testing.assert_allclose(float(loss(t(u), t(v), t(Y)).detach()), expected, rtol=1e-12)
    terms = loss.terms(t(u), t(v), t(Y))
    np.testing.assert_allclose(float(terms["proxy_neg_text"].detach()), nt, rtol=1e-12)
    # The code's weights: 0.8 n2n, 0.05 p2p, 1 variance.
    code = DCGHLoss(t(P))
    expected_code = pi + pt + ni + nt + 0.8 * np_n2n(u, v, Y) + 0.05 * np_p2p(u, v, Y) + np_var_all(u, P, Y) \
        + np_var_all(v, P, Y)
    np.testing.assert_allclose(float(code(t(u), t(v), t(Y)).detach()), expected_code, rtol=1e-12)


def test_n2n_is_zero_without_multi_label_disjoint_pairs():
    u, v, _, _ = _tiny(4)
    one_hot = np.eye(5)[[0, 1, 2, 3, 4, 0, 1]]  # single-label data (Wiki): nobody has two labels
    assert float(n2n_term(t(u), t(v), t(one_hot))) == 0.0
    overlapping = np.array([[1, 1, 0, 0, 0], [0, 1, 1, 0, 0], [1, 0, 1, 0, 0], [1, 0, 0, 0, 0],
                            [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 1, 0, 0, 0]], dtype=np.float64)
    # Rows 0-2 hold two labels each but share one pairwise; the disjoint rows 3-6 hold one.
    assert float(n2n_term(t(u), t(v), t(overlapping))) == 0.0
    assert np_n2n(u, v, overlapping) == 0.0


def test_variance_variants_on_hand_worked_items():
    P = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    out = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    Y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]], dtype=np.float64)
    # z rows: 1 − cos on the relevant classes, 0 elsewhere.
    c = 1 - 1 / math.sqrt(2)
    z = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, c]])
    expected_all = np.mean([np.var(r, ddof=1) for r in z])
    np.testing.assert_allclose(float(variance_term(t(out), t(P), t(Y), "all")), expected_all, rtol=1e-12)
    # "relevant": item 0 has z = (0, 1) -> 1/4; item 1 has a single class -> 0;
    # item 2 has z = (1, c) -> (1 − c)²/4; summed and divided by the batch of 3.
    expected_rel = (0.25 + 0.0 + (1 - c) ** 2 / 4) / 3
    np.testing.assert_allclose(float(variance_term(t(out), t(P), t(Y), "relevant")), expected_rel, rtol=1e-12)
    single = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    assert float(variance_term(t(out), t(P), t(single), "relevant")) == 0.0
    assert float(variance_term(t(out), t(P), t(single), "all")) > 0  # the code's variant still pulls
    with pytest.raises(ValueError, match="expected 'all' or 'relevant'"):
        variance_term(t(out), t(P), t(Y), "some")  # type: ignore[arg-type]


def test_gradients_finite_on_a_real_batch(small):
    cfg = DCGH.make_config({"hidden": (32,)})
    gen = torch.Generator().manual_seed(0)
    m = DCGH(cfg, 16, small.dims, torch.device("cpu"), gen)
    tr = small.split.train
    train = engine.TrainSet(torch.from_numpy(small.image[tr]), torch.from_numpy(small.text[tr]),
                            torch.from_numpy(small.labels[tr].astype(np.float32)), tr)
    m.setup(train)
    (phase,) = m.phases(0, 3)
    assert phase.sampling == "epoch" and phase.iterations == math.ceil(train.n / 128)
    assert len(phase.optimizers) == 2 and phase.clip_grad_norm == 1.0
    # The clip covers the heads only, never the proxies.
    assert all(p is not m.proxies for p in phase.clip_params) and len(phase.clip_params) == len(m.net_params)
    pos = torch.randperm(train.n, generator=gen)[:128]
    loss = phase.loss(pos)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in m.networks.parameters()] + [m.proxies.grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert float(m.proxies.grad.abs().max()) > 0
    terms = m.losses["dcgh"].terms(m.networks["image"](train.image[pos]), m.networks["text"](train.text[pos]),
                                   train.labels[pos])
    assert all(torch.isfinite(v) for v in terms.values()) and float(terms["n2n"].detach()) > 0


# ----------------------------------------------------------------------------- initialisation and optimisers


def test_proxies_initialisation():
    gen = torch.Generator().manual_seed(0)
    p = init_proxies(24, 4096, gen, torch.float64)
    assert p.shape == (24, 4096) and float(p.abs().max()) < 1
    # Kaiming normal, fan-out: N(0, 2/L) for an (L, c) tensor, then tanh.
    raw = np.arctanh(p.numpy())
    assert abs(raw.std() - math.sqrt(2 / 24)) < 0.005 and abs(raw.mean()) < 0.005
    # proxy_seed >= 0 gives proxies that do not depend on the run's generator (the code's hypseed).
    a = DCGH(DCGH.make_config({"proxy_seed": 0}), 16, (5, 6, 3), torch.device("cpu"), torch.Generator().manual_seed(1))
    b = DCGH(DCGH.make_config({"proxy_seed": 0}), 16, (5, 6, 3), torch.device("cpu"), torch.Generator().manual_seed(2))
    c = DCGH(DCGH.make_config(), 16, (5, 6, 3), torch.device("cpu"), torch.Generator().manual_seed(2))
    assert torch.equal(a.proxies, b.proxies) and not torch.equal(b.proxies, c.proxies)
    assert a.proxies.shape == (3, 16)


def test_warmup_cosine_schedule(small):
    for x, w, expected in ((0.0, 0.1, 0.0), (0.05, 0.1, 0.5), (0.1, 0.1, 0.5 * (1 + math.cos(0.1 * math.pi))),
                           (0.5, 0.1, 0.5), (1.0, 0.1, 0.0)):
        assert warmup_cosine(x, w) == pytest.approx(expected, abs=1e-15)
    cfg = DCGH.make_config({"lr": 0.5})
    m = DCGH(cfg, 8, small.dims, torch.device("cpu"), torch.Generator().manual_seed(0))
    tr = small.split.train
    m.setup(engine.TrainSet(torch.from_numpy(small.image[tr]), torch.from_numpy(small.text[tr]),
                            torch.from_numpy(small.labels[tr].astype(np.float32)), tr))
    (phase,) = m.phases(0, 4)
    total = 4 * math.ceil(tr.size / 128)
    assert m.net_opt.param_groups[0]["lr"] == 0.0  # step 0 of the warm-up
    for step in range(1, 9):
        phase.after_step()
        assert m.net_opt.param_groups[0]["lr"] == pytest.approx(0.5 * warmup_cosine(step / total, 0.1))
    assert m.proxy_opt.param_groups[0]["lr"] == 0.02  # the proxies keep a constant rate


def test_bertadam_step_matches_formula():
    rng = np.random.default_rng(5)
    w0, g1, g2 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 4)) * 0.1
    b0, gb = rng.standard_normal(3), rng.standard_normal(3) * 0.1
    w, b = torch.tensor(w0, requires_grad=True), torch.tensor(b0, requires_grad=True)
    opt = BertAdam([w, b], lr=0.1, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2, max_grad_norm=1.0)
    mw, vw, mb, vb = np.zeros_like(w0), np.zeros_like(w0), np.zeros_like(b0), np.zeros_like(b0)
    ew, eb = w0.copy(), b0.copy()
    for gw in (g1, g2):
        w.grad, b.grad = torch.tensor(gw), torch.tensor(gb)
        opt.step()
        gwc = gw / max(1.0, np.linalg.norm(gw) / 1.0)  # each tensor clipped on its own
        gbc = gb / max(1.0, np.linalg.norm(gb))
        mw, vw = 0.9 * mw + 0.1 * gwc, 0.98 * vw + 0.02 * gwc ** 2
        mb, vb = 0.9 * mb + 0.1 * gbc, 0.98 * vb + 0.02 * gbc ** 2
        ew = ew - 0.1 * (mw / (np.sqrt(vw) + 1e-6) + 0.2 * ew)
        eb = eb - 0.1 * (mb / (np.sqrt(vb) + 1e-6) + 0.2 * eb)
    assert np.linalg.norm(g1) > 1  # the clip did act
    np.testing.assert_allclose(w.detach().numpy(), ew, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(b.detach().numpy(), eb, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- training


def test_short_run_beats_random_codes(small):
    res = engine.fit("dcgh", small, 16, epochs=8, seed=0, progress=False)
    assert res.best_val_map is not None and res.val_rows.size > 0
    assert not torch.equal(res.method.proxies.detach(),
                           DCGH(res.method.config, 16, small.dims, torch.device("cpu"),
                                torch.Generator().manual_seed(0)).proxies.detach())  # the proxies learn
    codes = encode_dataset(res.method, small)
    for e in evaluate_codes(codes, 16, curves=False):
        assert e["map"] > e["map_random"] + 0.08, e


@pytest.mark.parametrize("optimizer", ["adamw", "bertadam"])
def test_codes_bit_identical_under_a_seed(small, optimizer):
    assert_seeded_codes("dcgh", small, config={"optimizer": optimizer}, epochs=2)


def test_config_rejects_unknown_keys_and_follows_methods_md():
    with pytest.raises(ValueError, match="unknown config key.*'nope'"):
        DCGH.make_config({"nope": 1})
    with pytest.raises(ValueError, match="expected one of"):
        DCGH.make_config({"variance": "relevant_only"})
    with pytest.raises(ValueError, match="expected one of"):
        DCGH.make_config({"optimizer": "sgd"})
    cfg = DCGH.make_config()
    assert (cfg.n2n_weight, cfg.p2p_weight, cfg.variance_weight, cfg.variance) == (0.8, 0.05, 1.0, "all")
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay) == (1e-3, 0.9, 0.98, 1e-6, 0.2)
    assert (cfg.warmup, cfg.clip_grad_norm, cfg.batch_size, cfg.dropout, cfg.hidden) == (0.1, 1.0, 128, 0.2, ())
    assert (cfg.proxy_lr, cfg.proxy_momentum, cfg.proxy_weight_decay) == (0.02, 0.9, 5e-4)
    assert DCGH.default_epochs == 100 and DCGH.supervised and get_method("dcgh") is DCGH
    assert DCGH.name == "dcgh" and DCGH.title == "DCGH (features)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert DCGH.make_config({"hidden": "64,32"}).hidden == (64, 32)
    # The head: Linear -> Dropout(0.2) -> tanh, one per modality, L proxies of c entries.
    m = DCGH(cfg, 16, (7, 11, 3), torch.device("cpu"), torch.Generator().manual_seed(0))
    for modality, dim in (("image", 7), ("text", 11)):
        kinds = [type(mod).__name__ for mod in m.networks[modality]]
        assert kinds == ["Linear", "Dropout", "Tanh"]
        assert m.networks[modality][0].in_features == dim and m.networks[modality][1].p == 0.2
    assert m.proxies.shape == (3, 16)
    for name in ("synthetic", "wiki"):
        DCGH.make_config({k: v for k, v in DCGH.presets[name].items() if k != "epochs"})


def test_input_standardisation_and_hidden_layers(small):
    res = engine.fit("dcgh", small, 8, config={"hidden": (32,), "input_norm": "standardize"}, epochs=1, seed=0,
                     progress=False)
    image = res.method.networks["image"]
    assert [type(mod).__name__ for mod in image] == ["Standardize", "Linear", "ReLU", "Linear", "Dropout", "Tanh"]
    np.testing.assert_allclose(image[0].mean.numpy(), small.image[res.fit_rows].mean(0), rtol=1e-4, atol=1e-5)
    assert "0.scale" in res.method.networks["text"].state_dict()
