"""Search on real binary data: MIRFLICKR-25K's tag vectors and label vectors.

``../shared/data/mirflickr25k`` (or ``$HAMSEARCH_DATA/mirflickr25k``) holds the
20,015 items' 1,386-tag bag-of-words and 24-label vectors, both {0,1}: real
binary codes with the structure synthetic ones lack (sparse rows, duplicated
rows, long runs of tied distances). Every result is compared with the numpy
oracle. Skipped where the files or scipy are absent.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest

import hamsearch as hs
from oracle import Reference, assert_knn_equal, assert_radius_equal, assert_rank_equal, codes_from_bits

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(os.environ.get("HAMSEARCH_DATA", ROOT.parent / "shared" / "data")) / "mirflickr25k"


def _load(name: str, variable: str) -> np.ndarray:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    sio = pytest.importorskip("scipy.io")
    return np.ascontiguousarray(sio.loadmat(str(path))[variable], dtype=np.uint8)


@pytest.fixture(scope="module")
def tags() -> np.ndarray:
    bits = _load("mirflickr25k-yall.mat", "YAll")
    assert bits.shape == (20015, 1386) and set(np.unique(bits)) <= {0, 1}
    return bits


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    bits = _load("mirflickr25k-lall.mat", "LAll")
    assert bits.shape == (20015, 24) and set(np.unique(bits)) <= {0, 1}
    return bits


def test_tag_vectors_1386_bits(backend, tags):
    # 22 words per code: the any-width kernels on sparse, real rows.
    nbits = tags.shape[1]
    rng = np.random.default_rng(1386)
    qrows = rng.choice(tags.shape[0], size=12, replace=False)
    idx = hs.FlatIndex(nbits, backend=backend)
    idx.add(hs.pack(tags))
    ref = Reference(nbits)
    ref.add(tags)
    q = tags[qrows]
    assert_knn_equal(idx.query(codes_from_bits(q), 25), ref.knn(q, 25))
    for r in (0, 3, 8):
        assert_radius_equal(idx.radius(codes_from_bits(q), r), ref.radius(q, r))
    assert_rank_equal(idx.rank(codes_from_bits(q[:4])), ref.rank(q[:4]))


def test_label_vectors_24_bits_with_shuffled_ids(backend, labels):
    # 24-bit label vectors repeat a lot: most results are ties, which must
    # come out by ascending id even when ids do not follow the rows.
    nbits = labels.shape[1]
    rng = np.random.default_rng(24)
    ids = rng.permutation(10 * labels.shape[0])[: labels.shape[0]]
    idx = hs.FlatIndex(nbits, backend=backend)
    idx.add(hs.pack(labels), ids=ids)
    ref = Reference(nbits)
    ref.add(labels, ids)
    q = labels[rng.choice(labels.shape[0], size=40, replace=False)]
    for threads in (1, 2):
        assert_knn_equal(idx.query(codes_from_bits(q), 100, threads=threads), ref.knn(q, 100))
        assert_radius_equal(idx.radius(codes_from_bits(q), 1, threads=threads), ref.radius(q, 1))
    assert_rank_equal(idx.rank(codes_from_bits(q[:5])), ref.rank(q[:5]))
