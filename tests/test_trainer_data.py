"""trainer.data: the loaders on small files written here, the splits, the
synthetic default, and (where ../shared/data is present) the real files.

numpy and scipy only: these tests run without torch.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

from trainer import data as D

sio = pytest.importorskip("scipy.io")
SHARED = Path(os.environ.get("HAMSEARCH_DATA", ROOT.parent / "shared" / "data"))


def _arrays(n=40, dimg=6, dtxt=9, nlab=5, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, dimg)).astype(np.float32)
    text = (rng.random((n, dtxt)) < 0.3).astype(np.float32)
    labels = (rng.random((n, nlab)) < 0.4).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    return image, text, labels


# ----------------------------------------------------------------------------- npz


def test_npz_round_trip_and_seeded_split(tmp_path):
    image, text, labels = _arrays()
    path = tmp_path / "set.npz"
    D.save_npz(path, image, text, labels)
    ds = D.load_npz(path, seed=3, n_query=8, n_train=20)
    np.testing.assert_array_equal(ds.image, image)
    np.testing.assert_array_equal(ds.text, text)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.labels.dtype == np.uint8 and ds.image.dtype == np.float32
    s = ds.split
    assert (s.query.size, s.database.size, s.train.size) == (8, 32, 20)
    assert np.intersect1d(s.query, s.database).size == 0
    assert np.union1d(s.query, s.database).size == 40
    assert np.isin(s.train, s.database).all()
    again = D.load_npz(path, seed=3, n_query=8, n_train=20).split
    other = D.load_npz(path, seed=4, n_query=8, n_train=20).split
    np.testing.assert_array_equal(again.query, s.query)
    np.testing.assert_array_equal(again.train, s.train)
    assert not np.array_equal(other.query, s.query)


def test_npz_fixed_split_is_kept(tmp_path):
    image, text, labels = _arrays(n=12)
    split = D.Split(np.arange(3, dtype=np.int64), np.arange(3, 12, dtype=np.int64), np.arange(5, 10, dtype=np.int64))
    path = tmp_path / "fixed.npz"
    D.save_npz(path, image, text, labels, split=split)
    ds = D.load_npz(path, seed=99)
    np.testing.assert_array_equal(ds.split.query, [0, 1, 2])
    np.testing.assert_array_equal(ds.split.train, [5, 6, 7, 8, 9])


def test_npz_errors(tmp_path):
    image, text, labels = _arrays()
    with pytest.raises(FileNotFoundError, match="no such file"):
        D.load_npz(tmp_path / "absent.npz")
    np.savez(tmp_path / "no_text.npz", image=image, labels=labels)
    with pytest.raises(D.DataError, match="'text'"):
        D.load_npz(tmp_path / "no_text.npz")
    np.savez(tmp_path / "rows.npz", image=image, text=text[:-1], labels=labels)
    with pytest.raises(D.DataError, match="same number of rows"):
        D.load_npz(tmp_path / "rows.npz")
    bad = labels.astype(np.int64)
    bad[0, 0] = 2
    np.savez(tmp_path / "labels.npz", image=image, text=text, labels=bad)
    with pytest.raises(D.DataError, match=r"labels in \{0, 1\}"):
        D.load_npz(tmp_path / "labels.npz")
    np.savez(tmp_path / "nan.npz", image=np.full_like(image, np.nan), text=text, labels=labels)
    with pytest.raises(D.DataError, match="finite"):
        D.load_npz(tmp_path / "nan.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(D.DataError, match="not a readable"):
        D.load_npz(tmp_path / "junk.npz")
    D.save_npz(tmp_path / "ok.npz", image, text, labels)
    with pytest.raises(D.DataError, match="training items"):
        D.load_npz(tmp_path / "ok.npz", n_query=10, n_train=31)  # the database holds 30


# ----------------------------------------------------------------------------- .mat triplets


def test_mat_triplet_one_file_and_three_files(tmp_path):
    image, text, labels = _arrays(n=60)
    sio.savemat(tmp_path / "all.mat", {"IAll": image.astype(np.float64), "YAll": text.astype(np.uint8), "LAll": labels})
    ds = D.load_mat_triplet(tmp_path / "all.mat", name="mirflickr", seed=1, n_query=10, n_train=30)
    np.testing.assert_allclose(ds.image, image)
    np.testing.assert_array_equal(ds.labels, labels)
    assert (ds.split.query.size, ds.split.database.size, ds.split.train.size) == (10, 50, 30)

    folder = tmp_path / "mirflickr"
    folder.mkdir()
    sio.savemat(folder / "mirflickr25k-iall.mat", {"IAll": image})
    sio.savemat(folder / "mirflickr25k-yall.mat", {"YAll": text.astype(np.uint8)})
    sio.savemat(folder / "mirflickr25k-lall.mat", {"LAll": labels})
    ds2 = D.load_mat_triplet(folder, seed=1, n_query=10, n_train=30)
    np.testing.assert_array_equal(ds2.text, ds.text)
    np.testing.assert_array_equal(ds2.split.query, ds.split.query)


def test_mat_triplet_protocol_sizes(tmp_path):
    image, text, labels = _arrays(n=2600, dimg=3, dtxt=4, nlab=3)
    sio.savemat(tmp_path / "all.mat", {"IAll": image, "YAll": text, "LAll": labels})
    ds = D.load_mat_triplet(tmp_path / "all.mat", name="nuswide")
    # NUS-WIDE's 2,100 queries; its 10,500 training items do not fit, so the whole database trains.
    assert ds.split.query.size == 2100 and ds.split.train.size == 500


def test_mat_errors(tmp_path):
    image, text, labels = _arrays()
    sio.savemat(tmp_path / "two.mat", {"IAll": image, "LAll": labels})
    with pytest.raises(D.DataError, match="'YAll'"):
        D.load_mat_triplet(tmp_path / "two.mat")
    folder = tmp_path / "noimages"
    folder.mkdir()
    sio.savemat(folder / "x-yall.mat", {"YAll": text})
    sio.savemat(folder / "x-lall.mat", {"LAll": labels})
    with pytest.raises(D.DataError, match="image features"):
        D.load_mat_triplet(folder)
    with pytest.raises(FileNotFoundError):
        D.load_mat_triplet(tmp_path / "nowhere")
    sio.savemat(tmp_path / "rows.mat", {"IAll": image, "YAll": text[:5], "LAll": labels})
    with pytest.raises(D.DataError, match="same number of items"):
        D.load_mat_triplet(tmp_path / "rows.mat")
    sio.savemat(tmp_path / "scores.mat", {"IAll": image, "YAll": text, "LAll": labels * 0.5})
    with pytest.raises(D.DataError, match=r"\{0, 1\}"):
        D.load_mat_triplet(tmp_path / "scores.mat")


def test_mat_v73_header_without_hdf5_data_gets_a_clear_error(tmp_path):
    # The 128-byte header of an HDF5-based v7.3 file (version 0x0200 at byte 124), and no HDF5 after it.
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" ") + bytes(8) + b"\x00\x02IM"
    path = tmp_path / "v73.mat"
    path.write_bytes(header + bytes(512))
    with pytest.raises(D.DataError, match="v7.3"):
        D.read_mat(path)


# ----------------------------------------------------------------------------- wiki


def _write_wiki(path, ntr=30, nte=12, seed=0):
    rng = np.random.default_rng(seed)
    v = {
        "I_tr": rng.random((ntr, 8)), "T_tr": rng.random((ntr, 4)), "L_tr": rng.integers(1, 4, (ntr, 1)).astype(np.uint8),
        "I_te": rng.random((nte, 8)), "T_te": rng.random((nte, 4)), "L_te": rng.integers(1, 4, (nte, 1)).astype(np.uint8),
    }
    v["L_tr"][:3, 0] = [1, 2, 3]
    sio.savemat(path, v)
    return v


def test_wiki_layout_protocol_and_centring(tmp_path):
    v = _write_wiki(tmp_path / "wikiData.mat")
    ds = D.load_dataset("wiki", tmp_path / "wikiData.mat")
    assert ds.n == 42 and ds.dims == (8, 4, 3)
    np.testing.assert_array_equal(ds.split.query, np.arange(30, 42))  # test items are the queries
    np.testing.assert_array_equal(ds.split.database, np.arange(30))  # training items: database
    np.testing.assert_array_equal(ds.split.train, np.arange(30))  # ... and training set
    np.testing.assert_array_equal(ds.labels.sum(1), 1)
    np.testing.assert_array_equal(ds.labels[:30].argmax(1) + 1, v["L_tr"][:, 0])
    np.testing.assert_array_equal(ds.labels[30:].argmax(1) + 1, v["L_te"][:, 0])
    assert ds.centred
    np.testing.assert_allclose(ds.image[:30].mean(0), 0, atol=1e-6)  # centred on the training means
    np.testing.assert_allclose(ds.image[30:], v["I_te"] - v["I_tr"].mean(0), atol=1e-6)
    raw = D.load_wiki(tmp_path / "wikiData.mat")
    np.testing.assert_allclose(raw.text[:30], v["T_tr"], atol=1e-6)


def test_wiki_errors(tmp_path):
    v = _write_wiki(tmp_path / "w.mat")
    del v["T_te"]
    sio.savemat(tmp_path / "missing.mat", v)
    with pytest.raises(D.DataError, match="'T_te'"):
        D.load_wiki(tmp_path / "missing.mat")
    with pytest.raises(FileNotFoundError):
        D.load_wiki(tmp_path / "absent.mat")
    v = _write_wiki(tmp_path / "w.mat")
    v["T_te"] = v["T_te"][:, :3]
    sio.savemat(tmp_path / "width.mat", v)
    with pytest.raises(D.DataError, match="same text width"):
        D.load_wiki(tmp_path / "width.mat")


def test_one_hot_and_label_checks():
    np.testing.assert_array_equal(D.one_hot([[3], [1], [3]]), [[0, 1], [1, 0], [0, 1]])
    with pytest.raises(D.DataError, match="among"):
        D.one_hot([5], classes=np.array([1, 2]))
    with pytest.raises(D.DataError, match="one_hot"):
        D.as_labels(np.array([1, 0, 1]))
    assert D.as_labels(np.array([[True, False]])).dtype == np.uint8


def test_load_dataset_arguments(tmp_path):
    with pytest.raises(ValueError, match="expected one of"):
        D.load_dataset("imagenet")
    with pytest.raises(ValueError, match="--data"):
        D.load_dataset("wiki")
    with pytest.raises(ValueError, match="drop --data"):
        D.load_dataset("synthetic", tmp_path)
    with pytest.raises(ValueError, match="unknown config key"):
        D.load_dataset("synthetic", synthetic={"nn": 3})


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_shape_and_determinism():
    opts = dict(n=800, n_query=100, n_train=300, image_dim=32, text_dim=60)
    a = D.make_synthetic(5, **opts)
    b = D.make_synthetic(5, **opts)
    c = D.make_synthetic(6, **opts)
    for name in ("image", "text", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.split.query, b.split.query)
    assert not np.array_equal(a.labels, c.labels)
    assert a.labels.shape == (800, 24) and a.dims == (32, 60, 24)
    per_item = a.labels.sum(1)
    assert per_item.min() >= 1 and 3.0 < per_item.mean() < 4.6  # MIRFLICKR-25K: 3.78
    assert (a.image >= 0).all() and (a.image > 0).mean() > 0.3  # dense, non-negative
    assert set(np.unique(a.text)) <= {0.0, 1.0} and (a.text > 0).mean() < 0.15  # sparse bag of words
    assert a.text.sum(1).min() >= 1
    share = (a.labels.astype(float) @ a.labels.T.astype(float) > 0).mean()
    assert 0.4 < share < 0.75  # a random ranking's MAP floor, ~0.56 on MIRFLICKR-25K


# ----------------------------------------------------------------------------- real data


def test_real_wiki():
    path = SHARED / "wiki" / "wikiData.mat"
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    ds = D.load_dataset("wiki", path)
    assert ds.n == 2866 and ds.dims == (128, 10, 10)
    assert (ds.split.query.size, ds.split.database.size, ds.split.train.size) == (693, 2173, 2173)
    np.testing.assert_array_equal(ds.labels.sum(1), 1)
    np.testing.assert_allclose(ds.image[ds.split.train].mean(0), 0, atol=1e-6)


def test_real_mirflickr_without_images_is_a_clear_error():
    folder = SHARED / "mirflickr25k"
    if not (folder / "mirflickr25k-lall.mat").exists():
        pytest.skip(f"real data not found: {folder}")
    if list(folder.glob("*iall*.mat")):
        pytest.skip("image features present")
    with pytest.raises(D.DataError, match="image features"):
        D.load_dataset("mirflickr", folder)
