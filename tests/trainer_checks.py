"""Helpers shared by the trainer's method tests (imported as ``trainer_checks``).

``torch`` is imported lazily by the functions that need it, so that importing
this module costs nothing where the trainer extra is absent.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

#: A small synthetic set for method tests: short runs on it take seconds.
SMALL = dict(n=1500, n_query=200, n_train=800, image_dim=128, text_dim=200)
CODE_KEYS = ("query_image", "query_text", "db_image", "db_text")


def t(a: Any) -> Any:
    """A torch tensor sharing a contiguous copy of the numpy array ``a``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


def trained_codes(method: str, dataset: Any, bits: int, *, seed: int, epochs: int,
                  config: Optional[Mapping[str, Any]] = None) -> Dict[str, np.ndarray]:
    """Train ``method`` briefly and return the packed codes of every split and modality."""
    from trainer import engine
    from trainer.encoder import encode_dataset

    res = engine.fit(method, dataset, bits, config=dict(config or {}), epochs=epochs, seed=seed, progress=False)
    return encode_dataset(res.method, dataset)


def assert_seeded_codes(method: str, dataset: Any, *, epochs: int, bits: int = 24,
                        config: Optional[Mapping[str, Any]] = None) -> None:
    """The same seed gives bit-identical codes; another seed gives other codes."""
    a, b, c = (trained_codes(method, dataset, bits, seed=s, epochs=epochs, config=config) for s in (7, 7, 8))
    for key in CODE_KEYS:
        assert a[key].dtype == np.uint64 and a[key].shape[1] == (bits + 63) // 64
        np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a[k], c[k]) for k in ("db_image", "db_text"))


def assert_label_free(method: str, dataset: Any, *, epochs: int, bits: int = 24,
                      config: Optional[Mapping[str, Any]] = None) -> None:
    """An unsupervised method never reads labels: training on labels shuffled
    across rows, or on all-zero labels (``Dataset`` accepts them: {0,1}),
    gives codes bit-identical to training on the real ones under one seed."""
    import dataclasses

    rng = np.random.default_rng(8)
    shuffled = dataclasses.replace(dataset, labels=np.ascontiguousarray(dataset.labels[rng.permutation(dataset.n)]))
    zeroed = dataclasses.replace(dataset, labels=np.zeros_like(dataset.labels))
    assert not np.array_equal(shuffled.labels, dataset.labels) and not zeroed.labels.any()
    base = trained_codes(method, dataset, bits, seed=5, epochs=epochs, config=config)
    for variant in (shuffled, zeroed):
        got = trained_codes(method, variant, bits, seed=5, epochs=epochs, config=config)
        for key in CODE_KEYS:
            np.testing.assert_array_equal(got[key], base[key])


def assert_phase_gradients_finite(method: Any, n: int, gen: Any, batch: int = 64) -> None:
    """One batch of every phase of ``method``'s first epoch: a finite loss and
    finite gradients on every parameter of the phase's network, some non-zero."""
    import torch

    for phase in method.phases(0, 5):
        pos = torch.randperm(n, generator=gen)[:batch]
        phase.optimizer.zero_grad()
        loss = phase.loss(pos)
        loss.backward()
        assert torch.isfinite(loss)
        grads = [p.grad for p in method.networks[phase.name].parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(float(g.abs().max()) > 0 for g in grads)


def mirflickr_array(filename: str, variable: str) -> np.ndarray:
    """A variable of the real MIRFLICKR-25K files in ``../shared/data``; the
    test is skipped where they are absent."""
    from pathlib import Path

    import pytest

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "mirflickr25k" / filename
    if not path.exists():
        pytest.skip(f"{path} is absent")
    from trainer.data import read_mat

    return np.asarray(read_mat(path)[variable])
