"""trainer.folder: the Wiki archive layout on tiny trees written here (8x6
images in every format a real release mixes, a missing image, a truncated
JPEG, a stray-space file name, .txt and .xml texts, a missing text), and on the
real Web News and Wiki raw sets where ../shared/data has them.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from trainer import folder as F  # noqa: E402
from trainer.data import DataError, Split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HAMSEARCH_DATA", ROOT.parent / "shared" / "data"))
WEBNEWS = SHARED / "webnews"
WIKI_RAW = SHARED / "wiki" / "raw"

H, W = 6, 8
CLASSES = ["cats", "dogs", "birds"]


def _pixels(seed: int, smooth: bool = False) -> np.ndarray:
    if smooth:  # a gradient, so that JPEG stays close to it
        y, x = np.mgrid[0:H, 0:W]
        base = np.stack([60 + 10 * x, 80 + 12 * y, 100 + 5 * (x + y)], axis=-1) + seed
        return base.astype(np.uint8)
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")


XML_DOC = (
    '<document id="t2" name="Some_page" cat="3">\n<text>\n  Caf&eacute; &ndash; AT&T &amp; co. \n</text>\n'
    '<imageset>\n<image id="i2" name="x">../img/i2.jpg</image>\n</imageset>\n</document>'
)


def make_tree(root: Path, quirks: bool = True) -> dict:
    """A tiny tree; with ``quirks`` it holds every imperfection the loader handles.

    Returns the arrays written, by image id, and the expected rows.
    """
    img = root / "images"
    written = {
        "i1": _pixels(1, smooth=True),
        "i2": _pixels(2),
        "i4": _pixels(4),
        "i5": _pixels(5),
        "i6": _pixels(6)[..., 0],  # greyscale
        "i9": _pixels(9, smooth=True),
    }
    _write(root / "categories.list", "\n".join(CLASSES) + "\n")
    # training list: t3's image is missing; a blank line; the stray-space file i5
    _write(root / "trainset_txt_img_cat.list", "t1\ti1\t1\nt2\ti2\t2\nt3\ti3\t1\n\nt4\ti4\t3\nt5\ti5\t2\n")
    # test list: t7's JPEG is truncated, t8's text is missing; the last line lacks its newline
    _write(root / "testset_txt_img_cat.list", "t6\ti6\t3\nt7\ti7\t1\nt8\ti8\t2\nt9\ti9\t1")
    _write(img / "cats" / "i1.jpg", _encode(written["i1"], "JPEG", quality=95, subsampling=0))
    _write(img / "dogs" / "i2.jpg", _encode(written["i2"], "PNG"))  # a PNG named .jpg
    _write(img / "birds" / "i4.jpg", _encode(written["i4"], "BMP"))  # a BMP named .jpg
    _write(img / "dogs" / ("i5 .jpg" if quirks else "i5.jpg"), _encode(written["i5"], "PNG"))
    _write(img / "birds" / "i6.jpg", _encode(written["i6"], "PNG"))  # greyscale PNG
    jpeg7 = _encode(_pixels(7, smooth=True), "JPEG", quality=95, subsampling=0)
    _write(img / "cats" / "i7.jpg", jpeg7[: len(jpeg7) // 2] if quirks else jpeg7)
    _write(img / "dogs" / "i8.jpg", _encode(_pixels(8), "PNG"))
    _write(img / "cats" / "i9.jpg", _encode(written["i9"], "JPEG", quality=95, subsampling=0))
    _write(img / "dogs" / "i9.jpg", _encode(_pixels(99), "PNG"))  # the same id in another class's folder
    if not quirks:
        _write(img / "cats" / "i3.jpg", _encode(_pixels(3), "PNG"))
    texts = {f"t{k}": f"text number {k}" for k in (1, 3, 4, 5, 6, 7, 9)}
    if not quirks:
        texts["t8"] = "text number 8"
    for tid, s in texts.items():
        _write(root / "texts" / f"{tid}.txt", s + "\n")
    _write(root / "texts" / "t2.xml", XML_DOC)
    return written


def test_tiny_tree_rows_labels_texts_and_pixels(tmp_path, caplog):
    written = make_tree(tmp_path)
    with caplog.at_level(logging.INFO, logger="trainer.folder"):
        d = F.load_folder(tmp_path, workers=2)
    assert d.text_ids == ["t1", "t2", "t4", "t5", "t6", "t9"]
    assert d.image_ids == ["i1", "i2", "i4", "i5", "i6", "i9"]
    assert (d.n_train, d.n_test, d.n) == (4, 2, 6)
    assert d.class_names == CLASSES
    np.testing.assert_array_equal(d.labels.argmax(axis=1), [0, 1, 2, 1, 2, 0])
    assert d.labels.dtype == np.uint8 and d.labels.shape == (6, 3) and np.all(d.labels.sum(axis=1) == 1)
    np.testing.assert_array_equal(d.list_rows, [0, 1, 3, 4, 0, 3])
    assert d.texts[0] == "text number 1"
    assert d.texts[1] == "Café \u2013 AT&T & co."  # .xml: <text> content, entities decoded, stripped
    assert d.texts[5] == "text number 9"
    assert len(d.images) == 6 and isinstance(d.images, F.FileImages)

    imgs = d.images.read(range(6))
    for a in imgs:
        assert a.dtype == np.uint8 and a.shape == (H, W, 3) and a.flags.c_contiguous
    np.testing.assert_array_equal(imgs[1], written["i2"])  # PNG named .jpg, exactly
    np.testing.assert_array_equal(imgs[2], written["i4"])  # BMP named .jpg, exactly
    np.testing.assert_array_equal(imgs[3], written["i5"])  # the stray-space file
    np.testing.assert_array_equal(imgs[4], np.repeat(written["i6"][..., None], 3, axis=2))  # grey -> RGB
    for k, name in ((0, "i1"), (5, "i9")):  # JPEG: PIL's own decoding, and close to what was written
        path = d.images.paths[k]
        np.testing.assert_array_equal(imgs[k], np.asarray(Image.open(path).convert("RGB")))
        assert np.abs(imgs[k].astype(int) - written[name]).mean() < 8
    assert d.images.paths[5].endswith(os.path.join("cats", "i9.jpg"))  # the row's class folder only
    assert d.images.describe(3).endswith("i5 .jpg")

    assert [(s["list"], s["line"], s["text_id"]) for s in d.skipped] == [
        ("train", 3, "t3"), ("test", 2, "t7"), ("test", 3, "t8")
    ]
    reasons = [s["reason"] for s in d.skipped]
    assert reasons[0] == "image missing" and reasons[1].startswith("image unreadable") and reasons[2] == "text missing"
    assert d.renamed == [{
        "list": "train", "line": 6, "text_id": "t5", "image_id": "i5", "kind": "image",
        "expected": str(tmp_path / "images" / "dogs" / "i5.jpg"), "path": str(tmp_path / "images" / "dogs" / "i5 .jpg"),
    }]

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].name == "trainer.folder"
    msg = warnings[0].getMessage()
    assert "left out 3 of 9" in msg and "image missing: 1" in msg and "text missing: 1" in msg
    assert "i3.jpg" in msg and "i7.jpg" in msg and "t8" in msg
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and "1 listed files" in infos[0].getMessage()

    s = d.split
    assert isinstance(s, Split)
    s.check(d.n)
    np.testing.assert_array_equal(s.query, [4, 5])
    np.testing.assert_array_equal(s.database, [0, 1, 2, 3])
    np.testing.assert_array_equal(s.train, [0, 1, 2, 3])


def test_strict_raises_on_left_out_and_on_renamed(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(DataError, match=r"strict.*3 listed items.*1 files named with stray whitespace"):
        F.load_folder(tmp_path, strict=True)
    clean = tmp_path / "clean"
    make_tree(clean, quirks=False)
    d = F.load_folder(clean, strict=True)
    assert d.n == 9 and not d.skipped and not d.renamed
    (clean / "images" / "dogs" / "i5.jpg").rename(clean / "images" / "dogs" / "i5 .jpg")
    with pytest.raises(DataError, match="stray whitespace"):
        F.load_folder(clean, strict=True)
    d = F.load_folder(clean)  # not strict: used, recorded, no warning needed
    assert d.n == 9 and len(d.renamed) == 1


def test_exact_name_wins_over_stray_space(tmp_path):
    make_tree(tmp_path, quirks=False)
    _write(tmp_path / "images" / "dogs" / "i5 .jpg", _encode(_pixels(55), "PNG"))
    d = F.load_folder(tmp_path, strict=True)
    assert d.images.paths[d.image_ids.index("i5")].endswith("i5.jpg") and not d.renamed


def test_check_images_false_keeps_corrupt_file(tmp_path):
    make_tree(tmp_path)
    d = F.load_folder(tmp_path, check_images=False)
    assert "t7" in d.text_ids and len(d.skipped) == 2
    with pytest.raises(DataError, match="i7.jpg"):
        d.images.read([d.text_ids.index("t7")])


def test_workers_one_same_result(tmp_path):
    make_tree(tmp_path)
    a = F.load_folder(tmp_path, workers=1)
    b = F.load_folder(tmp_path, workers=8)
    assert a.text_ids == b.text_ids and a.images.paths == b.images.paths and a.skipped == b.skipped


def test_file_images_pickle_and_index_errors(tmp_path):
    make_tree(tmp_path)
    d = F.load_folder(tmp_path)
    clone = pickle.loads(pickle.dumps(d.images))
    assert clone.paths == d.images.paths
    for a, b in zip(clone.read([3, 0]), d.images.read([3, 0])):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(IndexError):
        d.images.read([len(d.images)])
    with pytest.raises(TypeError, match="single path"):
        F.FileImages(str(tmp_path / "x.jpg"))


def test_palette_rgba_and_not_an_image(tmp_path):
    rgba = np.dstack([_pixels(1), np.full((H, W), 128, np.uint8)])
    _write(tmp_path / "a.jpg", _encode(rgba, "PNG"))
    np.testing.assert_array_equal(F.decode_image(tmp_path / "a.jpg"), _pixels(1))  # alpha dropped
    pal = Image.fromarray(_pixels(2)).convert("P")
    pal.info["transparency"] = 0
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    _write(tmp_path / "p.jpg", buf.getvalue())
    out = F.decode_image(tmp_path / "p.jpg")  # no PIL warning (warnings are errors here)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    _write(tmp_path / "junk.jpg", b"not an image at all")
    with pytest.raises(OSError):
        F.decode_image(tmp_path / "junk.jpg")


def test_scandir_once_per_folder(tmp_path, monkeypatch):
    make_tree(tmp_path)
    calls = []
    real = os.scandir

    def counting(path):
        calls.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(F.os, "scandir", counting)
    F.load_folder(tmp_path)
    assert sorted(Path(c).name for c in calls) == sorted(["texts", *CLASSES])


def test_load_folder_texts_ignores_images(tmp_path):
    make_tree(tmp_path)
    t = F.load_folder_texts(tmp_path)
    assert not isinstance(t, F.FolderData)
    assert t.text_ids == ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t9"]
    assert t.n_train == 5 and [s["text_id"] for s in t.skipped] == ["t8"]
    np.testing.assert_array_equal(t.list_rows, [0, 1, 2, 3, 4, 0, 1, 3])
    import shutil

    shutil.rmtree(tmp_path / "images")
    assert F.load_folder_texts(tmp_path).n == 8
    with pytest.raises(FileNotFoundError, match="load_folder_texts"):
        F.load_folder(tmp_path)


@pytest.mark.parametrize(
    "edit, exc, pattern",
    [
        (lambda r: (r / "categories.list").unlink(), FileNotFoundError, "categories.list"),
        (lambda r: (r / "testset_txt_img_cat.list").unlink(), FileNotFoundError, "testset_txt_img_cat.list"),
        (lambda r: _write(r / "trainset_txt_img_cat.list", "t1\ti1\t1\nt2\ti2\n"), DataError,
         r"trainset_txt_img_cat.list, line 2: expected text_id<TAB>image_id<TAB>class"),
        (lambda r: _write(r / "trainset_txt_img_cat.list", "t1\ti1\t4\n"), DataError,
         r"line 1: expected a class id in 1..3"),
        (lambda r: _write(r / "trainset_txt_img_cat.list", "t1\ti1\tcats\n"), DataError, "integer class id"),
        (lambda r: _write(r / "categories.list", "cats\n\ndogs\nbirds\n"), DataError, "blank line"),
        (lambda r: _write(r / "testset_txt_img_cat.list", "t3\ti3\t1\nt8\ti8\t2\n"), DataError,
         "expected at least one test item"),
    ],
)
def test_errors(tmp_path, edit, exc, pattern, caplog):
    make_tree(tmp_path)
    edit(tmp_path)
    with caplog.at_level(logging.CRITICAL, logger="trainer.folder"), pytest.raises(exc, match=pattern):
        F.load_folder(tmp_path)


def test_missing_root_and_bad_workers(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        F.load_folder(tmp_path / "nowhere")
    make_tree(tmp_path)
    with pytest.raises(ValueError, match="workers"):
        F.load_folder(tmp_path, workers=0)


def test_extract_xml_text():
    assert F.extract_xml_text('<document><text a="1">x &lt; y &mdash; z & w</text></document>') == "x < y \u2014 z & w"
    assert F.extract_xml_text("<text><![CDATA[a &amp; b]]> &amp; c</text>") == "a &amp; b & c"
    with pytest.raises(ValueError, match="<text>"):
        F.extract_xml_text("<document>no text element</document>")


# ----------------------------------------------------------------------------- real data


@pytest.mark.skipif(not (WEBNEWS / "images").is_dir(), reason=f"Web News not present at {WEBNEWS}")
def test_real_webnews(caplog):
    with caplog.at_level(logging.INFO, logger="trainer.folder"):
        d = F.load_folder(WEBNEWS, workers=8)
    assert (d.n_train, d.n_test) == (1700 - 4, 500 - 3)
    assert len(d.renamed) == 3 and all(r["kind"] == "image" for r in d.renamed)
    assert sorted(Path(r["path"]).name for r in d.renamed) == ["1138 .jpg", "22 .jpg", "444 .jpg"]
    missing = {(s["list"], s["image_id"]) for s in d.skipped}
    assert missing == {("train", "72"), ("train", "162"), ("train", "1106"), ("train", "1180"),
                       ("test", "1729"), ("test", "1730"), ("test", "1784")}
    assert all(s["reason"] == "image missing" for s in d.skipped)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert d.labels.shape == (d.n, 10) and d.class_names[0] == "culture"
    cjk = sum(len(re.findall(r"[\u4e00-\u9fff]", t)) for t in d.texts)
    assert cjk > 0.5 * sum(len(t) for t in d.texts)  # Chinese captions
    for a in d.images.read([0, d.n - 1]):
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and max(a.shape[:2]) <= 256
    with pytest.raises(DataError, match="strict"):
        F.load_folder(WEBNEWS, strict=True, check_images=False)


@pytest.mark.skipif(not (WIKI_RAW / "texts").is_dir(), reason=f"Wiki raw texts not present at {WIKI_RAW}")
def test_real_wiki_raw_texts():
    with pytest.raises(FileNotFoundError, match="load_folder_texts"):
        F.load_folder(WIKI_RAW)
    t = F.load_folder_texts(WIKI_RAW, strict=True)
    assert (t.n_train, t.n_test) == (2173, 693) and not t.skipped
    assert t.labels.shape == (2866, 10) and len(t.class_names) == 10
    assert all(t.texts) and not any("&ndash;" in s or "<text" in s for s in t.texts)
    # a file an XML parser rejects (HTML entities) still gives its text
    bad = WIKI_RAW / "texts" / "00917ad8fb9b2fec80a568861b0f5580-1.xml"
    if bad.is_file():
        with pytest.raises(ET.ParseError):
            ET.parse(bad)
        s = t.texts[t.text_ids.index("00917ad8fb9b2fec80a568861b0f5580-1")]
        assert s.startswith("According to music critic") and "</text>" not in s
    mat = SHARED / "wiki" / "wikiData.mat"
    if mat.is_file():  # the lists' order is wikiData.mat's order, row for row
        sio = pytest.importorskip("scipy.io")
        m = sio.loadmat(str(mat))
        np.testing.assert_array_equal(t.labels[: t.n_train].argmax(1) + 1, m["L_tr"].ravel())
        np.testing.assert_array_equal(t.labels[t.n_train:].argmax(1) + 1, m["L_te"].ravel())
