"""The trainer on raw inputs: v7.3 releases, image folders with raw text,
frozen and end-to-end backbones, and the encoder a retrieval service loads.

Oracles: the run's own ``codes_{bits}.npz`` (the encoder must reproduce it
from the items it lists), the v7 copy of the same arrays (bit-identical codes),
and the random-code floor (learned codes on label-dependent pixels must clear
it by a margin). Images are tiny (32 px) so that the file runs in seconds.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")
pytest.importorskip("sklearn")
Image = pytest.importorskip("PIL.Image")
sio = pytest.importorskip("scipy.io")

from trainer import cli  # noqa: E402
from trainer import data as D  # noqa: E402
from trainer.encoder import load_encoder  # noqa: E402

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def _class_images(labels, size, rng):
    """(n, size, size, 3) uint8 images whose colour and stripes depend on the class."""
    n = labels.shape[0]
    cls = labels.argmax(1)
    palette = np.array([[220, 30, 30], [30, 200, 40], [40, 60, 230], [230, 220, 40], [200, 40, 210], [20, 210, 210]])
    img = np.empty((n, size, size, 3), dtype=np.float64)
    yy = np.arange(size)[:, None]
    for i in range(n):
        c = cls[i] % len(palette)
        stripes = ((yy + np.arange(size)[None, :] * (c % 3)) // (2 + c)) % 2
        img[i] = palette[c] * (0.55 + 0.45 * stripes[..., None])
    img += rng.normal(0, 25, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _texts(labels, rng):
    out = []
    for row in labels:
        c = int(row.argmax())
        words = [WORDS[c % len(WORDS)]] * 3 + list(rng.choice(["the", "a", "of", "news", "photo", "day"], 4))
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def _write_v73(path, variables):
    """A MATLAB v7.3 file as MATLAB writes it: a 512-byte user block, MATLAB_class
    attributes, and column-major axes (h5py sees each array transposed)."""
    classes = {np.dtype(np.uint8): b"uint8", np.dtype(np.float64): b"double"}
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, arr in variables.items():
            ds = f.create_dataset(name, data=np.ascontiguousarray(arr.T))
            ds.attrs["MATLAB_class"] = np.bytes_(classes[arr.dtype])
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Dec  7 12:00:00 2026 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116, b" ") + bytes(8) + b"\x00\x02IM")


def _release(n=60, size=24, seed=0):
    """IAll (H x W x 3 x N uint8), YAll (N x D), LAll (N x C) as the MIRFLICKR release lays them out."""
    rng = np.random.default_rng(seed)
    labels = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, n)]
    images = _class_images(labels, size, rng)  # (N, H, W, 3)
    text = (rng.random((n, 12)) < 0.2).astype(np.uint8)
    text[np.arange(n), labels.argmax(1)] = 1
    return {"IAll": np.ascontiguousarray(images.transpose(1, 2, 3, 0)), "YAll": text, "LAll": labels}


def _train(args, capsys=None):
    rc = cli.main(args + ["--quiet", "--no-plots", "--no-checkpoints", "--workers", "0"])
    assert rc == 0
    return rc


# ----------------------------------------------------------------------------- .mat releases


def test_v73_and_v7_releases_give_bit_identical_codes(tmp_path):
    variables = _release()
    _write_v73(tmp_path / "FLICKR-25K.mat", variables)
    sio.savemat(tmp_path / "flickr-v7.mat", variables)
    common = ["train", "--method", "dcgh", "--dataset", "mirflickr", "--image-backbone", "resnet18",
              "--image-size", "32", "--bits", "16", "--epochs", "1", "--n-query", "10", "--n-train", "40"]
    _train(common + ["--data", str(tmp_path / "FLICKR-25K.mat"), "--out", str(tmp_path / "a")])
    _train(common + ["--data", str(tmp_path / "flickr-v7.mat"), "--out", str(tmp_path / "b")])
    a, b = np.load(tmp_path / "a" / "codes_16.npz"), np.load(tmp_path / "b" / "codes_16.npz")
    for key in ("query_image", "query_text", "db_image", "db_text", "query_labels"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a["query_image"].shape == (10, 1)
    # The release's query rows, read from the MATLAB array, encode to the run's query codes.
    items = json.loads((tmp_path / "a" / "query_items.json").read_text())
    assert items["texts"] is None and items["images"][0] == f"FLICKR-25K.mat:IAll[{items['rows'][0]}]"
    pixels = np.ascontiguousarray(variables["IAll"][:, :, :, items["rows"]].transpose(3, 0, 1, 2))
    enc = load_encoder(tmp_path / "a" / "encoder_16.pt")
    np.testing.assert_array_equal(enc.encode_image(pixels), a["query_image"])
    np.testing.assert_array_equal(enc.encode_text(variables["YAll"][items["rows"]]), a["query_text"])


def test_v73_release_in_three_files_reads_images_lazily(tmp_path):
    variables = _release(n=30)
    folder = tmp_path / "mirflickr"
    folder.mkdir()
    _write_v73(folder / "mirflickr25k-iall.mat", {"IAll": variables["IAll"]})
    sio.savemat(folder / "mirflickr25k-yall.mat", {"YAll": variables["YAll"]})
    sio.savemat(folder / "mirflickr25k-lall.mat", {"LAll": variables["LAll"]})
    raw = D.load_raw("mirflickr", folder, n_query=5, n_train=10)
    assert raw.raw_images and len(raw.image) == 30
    # Image i of the source is the MATLAB array's IAll(:, :, :, i).
    np.testing.assert_array_equal(raw.image.read([7])[0], variables["IAll"][:, :, :, 7])
    np.testing.assert_array_equal(raw.labels, variables["LAll"])


def test_raw_images_without_a_backbone_say_what_to_pass(tmp_path):
    _write_v73(tmp_path / "f.mat", _release(n=30))
    with pytest.raises(D.DataError, match="image backbone.*--image-backbone"):
        D.load_dataset("mirflickr", tmp_path / "f.mat", n_query=5, n_train=10)
    assert cli.main(["train", "--method", "dcmh", "--dataset", "mirflickr", "--data", str(tmp_path / "f.mat"),
                     "--n-query", "5", "--n-train", "10", "--out", str(tmp_path / "o"), "--quiet"]) == 2


def test_mismatched_item_counts_are_an_error(tmp_path):
    v = _release(n=30)
    v["YAll"] = v["YAll"][:20]
    _write_v73(tmp_path / "f.mat", v)
    with pytest.raises(D.DataError, match="same number of items"):
        D.load_raw("mirflickr", tmp_path / "f.mat")


# ----------------------------------------------------------------------------- folders, end to end


def _folder(root, n_train=90, n_test=30, size=24, seed=0):
    """A Wiki-layout tree with label-dependent pixels and texts; one listed image missing."""
    rng = np.random.default_rng(seed)
    classes = ["red", "green", "blue"]
    n = n_train + n_test
    labels = np.eye(3, dtype=np.uint8)[np.arange(n) % 3]
    images = _class_images(labels, size, rng)
    texts = _texts(labels, rng)
    (root / "texts").mkdir(parents=True)
    for c in classes:
        (root / "images" / c).mkdir(parents=True)
    (root / "categories.list").write_text("\n".join(classes) + "\n")
    rows = {"train": [], "test": []}
    for i in range(n):
        part = "train" if i < n_train else "test"
        c = int(labels[i].argmax())
        rows[part].append(f"t{i}\t{i}\t{c + 1}")
        (root / "texts" / f"t{i}.txt").write_text(texts[i], encoding="utf-8")
        if i != 5:  # listed but missing: left out with a warning
            Image.fromarray(images[i]).save(root / "images" / classes[c] / f"{i}.jpg", format="PNG")
    (root / "trainset_txt_img_cat.list").write_text("\n".join(rows["train"]) + "\n")
    (root / "testset_txt_img_cat.list").write_text("\n".join(rows["test"]))
    return labels


def test_end_to_end_training_from_pixels_beats_the_random_floor(tmp_path):
    _folder(tmp_path / "set", n_train=60, n_test=24)
    _train(["train", "--method", "bi_ncmh", "--dataset", "folder", "--data", str(tmp_path / "set"),
            "--image-backbone", "resnet18", "--image-size", "32", "--finetune", "--bits", "16", "--epochs", "4",
            "--set", "batch_size=16", "--out", str(tmp_path / "run")])
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    image = res["inputs"]["image"]
    assert (image["kind"], image["regime"], image["weights"], image["backbone"]["name"]) == (
        "pixels", "end to end", None, "resnet18")
    assert res["split"] == {"query": 24, "database": 59, "train": 59, "val_fraction": 0.1}
    for e in res["results"]:
        # Three balanced classes: random codes score about 0.36; learned ones must clear that by far.
        assert e["map"] > e["map_random"] + 0.3, (e["direction"], e["map"], e["map_random"])
    # The backbone trained: its weights left the seeded initialisation the run started from.
    from trainer.backbones import build_backbone

    start = build_backbone("resnet18", image_size=32, generator=torch.Generator().manual_seed(0)).state_dict()
    trained = load_encoder(tmp_path / "run" / "encoder_16.pt").backbone.state_dict()
    assert not torch.equal(start["conv1.weight"], trained["conv1.weight"])


def test_encoder_reproduces_the_runs_codes_from_the_listed_items(tmp_path):
    _folder(tmp_path / "set", n_train=45, n_test=15)
    _train(["train", "--method", "dcmh", "--dataset", "folder", "--data", str(tmp_path / "set"),
            "--image-backbone", "resnet18", "--image-size", "32", "--bits", "16", "--epochs", "1",
            "--out", str(tmp_path / "run")])
    run = tmp_path / "run"
    enc = load_encoder(run / "encoder_16.pt")
    assert (enc.nbits, enc.image_input, enc.text_input) == (16, "pixels", "text")
    items = json.loads((run / "query_items.json").read_text(encoding="utf-8"))
    codes = np.load(run / "codes_16.npz")
    np.testing.assert_array_equal(enc.encode_image(items["images"]), codes["query_image"])
    np.testing.assert_array_equal(enc.encode_text(items["texts"]), codes["query_text"])
    # The same pixels as PIL images and as one uint8 array give the same codes.
    pil = [Image.open(p) for p in items["images"]]
    np.testing.assert_array_equal(enc.encode_image(pil), codes["query_image"])
    arr = np.stack([np.asarray(im.convert("RGB")) for im in pil])
    np.testing.assert_array_equal(enc.encode_image(arr), codes["query_image"])
    db = json.loads((run / "database_items.json").read_text(encoding="utf-8"))
    assert len(db["images"]) == codes["db_image"].shape[0] == 44  # one listed image is missing
    assert db["classes"][0] == ["red"]
    with pytest.raises(TypeError, match="list of strings"):
        enc.encode_text("one string")
    with pytest.raises(ValueError, match=r"\(n, H, W, 3\)"):
        enc.encode_image(np.zeros((2, 10), np.float32))


def test_encoder_of_a_features_run_centres_raw_features(tmp_path):
    _train(["train", "--method", "dcgh", "--dataset", "synthetic", "--synthetic", "n=400", "--synthetic",
            "n_query=40", "--synthetic", "n_train=200", "--bits", "32", "--epochs", "1", "--out", str(tmp_path)])
    enc = load_encoder(tmp_path / "encoder_32.pt")
    assert (enc.image_input, enc.text_input) == ("features", "features")
    raw = D.load_raw("synthetic", synthetic={"n": 400, "n_query": 40, "n_train": 200})
    codes = np.load(tmp_path / "codes_32.npz")
    q = raw.split.query
    np.testing.assert_array_equal(enc.encode_image(raw.image[q]), codes["query_image"])
    np.testing.assert_array_equal(enc.encode_text(torch.from_numpy(raw.text[q])), codes["query_text"])
    assert not (tmp_path / "query_items.json").exists()
    with pytest.raises(ValueError, match=r"\(n, 512\)"):
        enc.encode_image(raw.image[q][:, :10])


def test_load_encoder_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_encoder(tmp_path / "nothing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="hamsearch-encoder"):
        load_encoder(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable encoder"):
        load_encoder(tmp_path / "junk.pt")


def test_features_command_writes_the_npz_that_trains(tmp_path):
    _folder(tmp_path / "set", n_train=45, n_test=15)
    assert cli.main(["features", "--dataset", "folder", "--data", str(tmp_path / "set"), "--image-backbone",
                     "resnet18", "--image-size", "32", "--out", str(tmp_path / "f.npz"), "--quiet",
                     "--workers", "0"]) == 0
    ds = D.load_dataset("npz", tmp_path / "f.npz")
    assert ds.dims[0] == 512 and ds.split.query.size == 15 and ds.split.database.size == 44
    _train(["train", "--method", "dcgh", "--dataset", "npz", "--data", str(tmp_path / "f.npz"), "--bits", "16",
            "--epochs", "1", "--out", str(tmp_path / "run")])
    assert (tmp_path / "run" / "encoder_16.pt").is_file()


def test_strict_data_makes_a_missing_item_an_error(tmp_path):
    _folder(tmp_path / "set", n_train=15, n_test=6)
    assert cli.main(["features", "--dataset", "folder", "--data", str(tmp_path / "set"), "--image-backbone",
                     "resnet18", "--image-size", "32", "--strict-data", "--out", str(tmp_path / "f.npz"),
                     "--quiet"]) == 2


def test_finetune_needs_raw_images_and_an_iterative_method(tmp_path):
    assert cli.main(["train", "--method", "dcgh", "--dataset", "synthetic", "--finetune", "--bits", "16",
                     "--out", str(tmp_path / "a"), "--quiet"]) == 2
    _folder(tmp_path / "set", n_train=15, n_test=6)
    assert cli.main(["train", "--method", "cca_itq", "--dataset", "folder", "--data", str(tmp_path / "set"),
                     "--image-backbone", "resnet18", "--image-size", "32", "--finetune", "--bits", "16",
                     "--out", str(tmp_path / "b"), "--quiet", "--workers", "0"]) == 2


def test_paper_protocol_sizes():
    assert D.protocol_sizes("mirflickr", "dcmh", "dcmh") == (2000, 10000)
    assert D.protocol_sizes("mirflickr", "dcgh", "paper") == (5000, 10000)
    assert D.protocol_sizes("nuswide", "uchm", "paper") == (2100, 5000)
    assert D.protocol_sizes("nuswide", "bi_ncmh", "paper") == (2100, 10500)
    with pytest.raises(ValueError, match="protocol"):
        D.protocol_sizes("mirflickr", "dcmh", "mine")


def test_wiki_with_raw_texts_replaces_the_lda_topics():
    wiki = D.Path("../shared/data/wiki/wikiData.mat")
    raw_dir = D.Path("../shared/data/wiki/raw")
    if not (wiki.is_file() and raw_dir.is_dir()):
        pytest.skip("../shared/data/wiki is not here")
    ds = D.load_dataset("wiki", wiki, text_data=raw_dir, text_vocab=2000)
    assert ds.dims == (128, 2000, 10)
    assert ds.texts is not None and len(ds.texts) == 2866 and ds.vectorizer is not None
    # The vocabulary is fitted on the training texts only: every term occurs in one of them.
    train_text = " ".join(ds.texts[i] for i in ds.split.train).lower()
    assert all(term in train_text for term in ds.vectorizer["vocabulary"][:200])


def _pixel_dataset(n=48, size=24, seed=0):
    """A Dataset of raw images (ArrayImages) with a resnet18's frozen features, as prepare() builds it."""
    from trainer.backbones import build_backbone
    from trainer.images import ArrayImages

    rng = np.random.default_rng(seed)
    labels = np.eye(3, dtype=np.uint8)[np.arange(n) % 3]
    images = ArrayImages(_class_images(labels, size, rng))
    text = (rng.random((n, 6)) < 0.3).astype(np.float32)
    split = D.protocol_split(n, 8, 40, seed)
    raw = D.RawData("pixels", images, text, labels, split)
    backbone = build_backbone("resnet18", image_size=32, generator=torch.Generator().manual_seed(seed))
    return D.prepare(raw, backbone=backbone)


def test_backbone_gets_its_own_param_groups_at_its_learning_rate_scale():
    import copy

    from trainer import engine

    ds = _pixel_dataset()
    backbone = copy.deepcopy(ds.backbone)
    fr = engine.fit("dcgh", ds, 16, epochs=1, config={"batch_size": 16, "lr": 0.01}, backbone=backbone,
                    backbone_lr_scale=0.25, progress=False)
    ids = {id(p) for p in backbone.parameters()}
    groups = fr.method.net_opt.param_groups
    mine = [g for g in groups if g.get("lr_scale") == 0.25]
    assert len(mine) == 1 and {id(p) for p in mine[0]["params"]} == ids
    others = [g for g in groups if g is not mine[0]]
    assert others and all(id(p) not in ids for g in others for p in g["params"])
    # The warm-up cosine sets every group's rate; the backbone's stays a quarter of the heads'.
    assert mine[0]["lr"] == pytest.approx(0.25 * others[0]["lr"])


def test_end_to_end_codes_do_not_depend_on_the_decoding_workers():
    import copy

    from trainer import engine
    from trainer.encoder import encode_dataset

    ds = _pixel_dataset()
    codes = []
    for workers in (0, 2):
        fr = engine.fit("bi_ncmh", ds, 16, epochs=1, config={"batch_size": 16}, backbone=copy.deepcopy(ds.backbone),
                        workers=workers, progress=False)
        codes.append(encode_dataset(fr.method, ds, workers=workers))
    for key in ("query_image", "db_image", "query_text"):
        np.testing.assert_array_equal(codes[0][key], codes[1][key])


def test_preset_of_another_data_set(tmp_path):
    from trainer.methods.dcgh import DCGH

    _train(["train", "--method", "dcgh", "--dataset", "synthetic", "--synthetic", "n=300", "--synthetic",
            "n_query=30", "--synthetic", "n_train=100", "--bits", "16", "--epochs", "1", "--preset", "wiki",
            "--out", str(tmp_path)])
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["preset"] == "wiki"
    assert res["config"]["lr"] == DCGH.presets["wiki"]["lr"] and res["config"]["input_norm"] == "standardize"


def test_reproduce_keeps_the_other_methods_when_one_diverges(tmp_path, monkeypatch):
    real = cli.run_method

    def run(method, *a, **kw):
        if method == "dcmh":
            raise FloatingPointError("image: the loss is inf; lower the learning rate")
        return real(method, *a, **kw)

    monkeypatch.setattr(cli, "run_method", run)
    rc = cli.main(["reproduce", "--methods", "dcmh", "cca_itq", "--synthetic", "n=300", "--synthetic", "n_query=30",
                   "--synthetic", "n_train=100", "--bits", "16", "--out", str(tmp_path), "--quiet", "--no-plots"])
    assert rc == 1
    res = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in res["methods"]] == ["cca_itq"] and "loss is inf" in res["failed"]["dcmh"]


def test_random_backbone_gets_batchnorm_statistics_of_the_training_images():
    ds = _pixel_dataset()
    bb = ds.backbone
    bn = bb.bn1
    # Estimated, not the initial mean 0 / variance 1, and over the training images only.
    assert int(bn.num_batches_tracked) == -(-ds.split.train.size // 64)
    x = bb.preprocess(ds.images.read(ds.split.train))
    with torch.no_grad():
        first = torch.nn.functional.conv2d(x, bb.conv1.weight, stride=2, padding=3)
    np.testing.assert_allclose(bn.running_mean.numpy(), first.mean(dim=(0, 2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    # Eval mode now computes what train mode computes on the same batch.
    bb.train()
    with torch.no_grad():
        train_mode = bb(x)
    bb.eval()
    with torch.no_grad():
        eval_mode = bb(x)
    assert float((eval_mode - train_mode).abs().mean() / train_mode.abs().mean()) < 0.1
