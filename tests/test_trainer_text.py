"""trainer.text: TextVectorizer against scikit-learn's own fitted vectorizers
(the oracle), its plain-data state through JSON and torch, and the real Wiki raw
texts where ../shared/data has them.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

sk_text = pytest.importorskip("sklearn.feature_extraction.text")

from trainer.text import TextVectorizer, read_stopwords  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HAMSEARCH_DATA", ROOT.parent / "shared" / "data"))
WIKI_RAW = SHARED / "wiki" / "raw"

TRAIN = [
    "The cat sat on the mat, the cat purred.",
    "Dogs and cats: dogs bark, cats purr.",
    "A bird sang; the bird flew over the mat.",
    "Stock markets fell as the central bank raised rates.",
    "The bank of the river flooded after the rain.",
]
TEST = ["The cat and the zebra at the bank", "quantum chromodynamics", "", "DOGS dogs Dogs"]
CHINESE_TRAIN = ["彩色包衣的蔬菜种子", "展台上花花绿绿的蔬菜种子", "工作人员解释道"]
CHINESE_TEST = ["蔬菜种子很好", "完全不同"]


def oracle(kind, train, **params):
    """scikit-learn's vectorizer with the same settings, fitted on ``train``."""
    if kind == "tfidf":
        return sk_text.TfidfVectorizer(**params).fit(train)
    return sk_text.CountVectorizer(binary=True, **params).fit(train)


def dense32(sk, texts):
    return sk.transform(texts).astype(np.float32).toarray()


CASES = [
    ("tfidf", {}),
    ("bow", {}),
    ("tfidf", {"max_features": 7}),
    ("bow", {"ngram_range": (1, 2), "lowercase": False}),
    ("tfidf", {"stop_words": ["the", "and", "of"], "ngram_range": (1, 2)}),
    ("tfidf", {"analyzer": "char", "ngram_range": (1, 2)}),
    ("bow", {"analyzer": "char", "ngram_range": (2, 3), "max_features": 20}),
]


@pytest.mark.parametrize("kind, params", CASES)
def test_equals_sklearn_and_round_trips(kind, params):
    v = TextVectorizer(kind=kind, **params).fit(TRAIN)
    sk = oracle(kind, TRAIN, **params)
    assert v.vocabulary == list(sk.get_feature_names_out())
    want = dense32(sk, TEST)
    got = v.transform(TEST)
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.shape == (len(TEST), len(v.vocabulary))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(v.fit_transform(TRAIN), dense32(sk, TRAIN))
    again = TextVectorizer.from_state(json.loads(json.dumps(v.state())))
    np.testing.assert_array_equal(again.transform(TEST), want)
    assert again.vocabulary == v.vocabulary


def test_chinese_char_ngrams():
    v = TextVectorizer(kind="tfidf", analyzer="char").fit(CHINESE_TRAIN)
    assert v.ngram_range == (1, 2)
    assert {len(t) for t in v.vocabulary} == {1, 2}
    assert {"蔬", "蔬菜", "种子", "花花"} <= set(v.vocabulary) and "蔬菜种" not in v.vocabulary
    sk = oracle("tfidf", CHINESE_TRAIN, analyzer="char", ngram_range=(1, 2))
    np.testing.assert_array_equal(v.transform(CHINESE_TEST), dense32(sk, CHINESE_TEST))
    # words: a caption without spaces is one token, which is why char n-grams serve Chinese
    w = TextVectorizer(kind="bow").fit(CHINESE_TRAIN)
    assert w.vocabulary == sorted(CHINESE_TRAIN)


def test_bow_is_presence():
    v = TextVectorizer(kind="bow").fit(["alpha alpha alpha beta", "beta gamma"])
    x = v.transform(["alpha alpha alpha alpha beta", "gamma", "nothing known"])
    assert set(np.unique(x).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(x, [[1, 1, 0], [0, 0, 1], [0, 0, 0]])


def test_tfidf_rows_unit_norm_or_zero():
    x = TextVectorizer().fit(TRAIN).transform(TEST)
    norms = np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(norms[[0, 3]], 1.0, rtol=1e-6)
    assert norms[1] == 0 and norms[2] == 0  # no known term, empty text


@pytest.mark.parametrize("kind", ["tfidf", "bow"])
def test_max_features_keeps_most_frequent(kind):
    # counts (and document frequencies) 5 > 4 > 3 > 2 > 1: no tie at the cut
    docs = [" ".join(w for w, k in (("alpha", 5), ("beta", 4), ("gamma", 3), ("delta", 2), ("omega", 1)) if i < k)
            for i in range(5)]
    v = TextVectorizer(kind=kind, max_features=3).fit(docs)
    assert sorted(v.vocabulary) == ["alpha", "beta", "gamma"]
    assert len(TextVectorizer(kind=kind, max_features=100).fit(docs).vocabulary) == 5


def test_fit_on_training_texts_only():
    v = TextVectorizer().fit(TRAIN)
    assert "zebra" not in v.vocabulary and "quantum" not in v.vocabulary
    before = v.state()
    x = v.transform(["zebra quantum"])
    assert not x.any()
    assert v.state() == before  # transforming test texts changes nothing
    # the idf comes from the training texts only
    sk = oracle("tfidf", TRAIN)
    np.testing.assert_array_equal(np.asarray(v.state()["idf"]), sk.idf_)


def test_state_is_plain_data_json_and_torch():
    torch = pytest.importorskip("torch")
    for v in (TextVectorizer().fit(TRAIN), TextVectorizer(kind="bow", analyzer="char").fit(CHINESE_TRAIN)):
        state = v.state()

        def plain(o):
            if isinstance(o, dict):
                return all(isinstance(k, str) and plain(x) for k, x in o.items())
            if isinstance(o, list):
                return all(plain(x) for x in o)
            return o is None or type(o) in (str, int, float, bool)

        assert plain(state)
        assert json.loads(json.dumps(state)) == state
        buf = io.BytesIO()
        torch.save({"text": state}, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=True)["text"]
        assert loaded == state
        texts = TEST if v.analyzer == "word" else CHINESE_TEST
        np.testing.assert_array_equal(TextVectorizer.from_state(loaded).transform(texts), v.transform(texts))


def test_input_errors():
    with pytest.raises(ValueError, match="empty vocabulary"):
        TextVectorizer().fit(["", "   ", "a"])  # sklearn's words need two characters
    with pytest.raises(ValueError, match="empty vocabulary"):
        TextVectorizer(stop_words=["only", "stop"]).fit(["only stop", "stop"])
    with pytest.raises(ValueError, match="at least one training text"):
        TextVectorizer().fit([])
    with pytest.raises(TypeError, match="single str"):
        TextVectorizer().fit("one string")
    with pytest.raises(TypeError, match="int at index 1"):
        TextVectorizer().fit(["fine text", 3])
    with pytest.raises(TypeError, match="bytes at index 0"):
        TextVectorizer().fit([b"bytes"])
    with pytest.raises(TypeError, match="NoneType"):
        TextVectorizer().fit(TRAIN).transform(["ok", None])
    with pytest.raises(ValueError, match="not fitted"):
        TextVectorizer().transform(["x"])
    with pytest.raises(ValueError, match="not fitted"):
        TextVectorizer().state()
    assert TextVectorizer().fit(TRAIN).transform([]).shape[0] == 0


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"kind": "lda"}, ValueError),
        ({"analyzer": "char_wb"}, ValueError),
        ({"max_features": 0}, ValueError),
        ({"max_features": 2.5}, TypeError),
        ({"ngram_range": (2, 1)}, ValueError),
        ({"ngram_range": 2}, TypeError),
        ({"analyzer": "char", "stop_words": ["the"]}, ValueError),
        ({"stop_words": "english"}, TypeError),
        ({"lowercase": "yes"}, TypeError),
    ],
)
def test_bad_settings(kwargs, exc):
    with pytest.raises(exc):
        TextVectorizer(**kwargs)


def _broken(**changes):
    state = TextVectorizer().fit(TRAIN).state()
    for k, v in changes.items():
        if v is KeyError:
            del state[k]
        else:
            state[k] = v
    return state


@pytest.mark.parametrize(
    "state, pattern",
    [
        ([1, 2], "expected a dict"),
        (_broken(format="other"), "format"),
        (_broken(version=2), "version"),
        (_broken(idf=KeyError), "missing"),
        (_broken(extra=1), "unknown"),
        (_broken(kind="lda"), "kind"),
        (_broken(vocabulary=["cat", "cat"]), "distinct"),
        (_broken(vocabulary=[]), "non-empty"),
        (_broken(vocabulary=[1, 2]), "list of str"),
        (_broken(idf=[1.0]), "one per term"),
        (_broken(idf=None), "one per term"),
        (_broken(kind="bow"), "tfidf settings"),
        (_broken(ngram_range=[1]), "ngram_range"),
        (_broken(max_features=2), "at most max_features"),
    ],
)
def test_from_state_rejects_bad_states(state, pattern):
    with pytest.raises(ValueError, match=pattern):
        TextVectorizer.from_state(state)


def test_from_state_rejects_non_finite_idf():
    state = _broken()
    state["idf"] = list(state["idf"])
    state["idf"][0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        TextVectorizer.from_state(state)


def test_read_stopwords(tmp_path):
    p = tmp_path / "stop.txt"
    p.write_text(" \nthe\n  and \n\nthe\nof", encoding="utf-8")
    assert read_stopwords(p) == ["the", "and", "of"]
    with pytest.raises(FileNotFoundError):
        read_stopwords(tmp_path / "none.txt")


@pytest.mark.skipif(not (WIKI_RAW / "texts").is_dir(), reason=f"Wiki raw texts not present at {WIKI_RAW}")
def test_real_wiki_tfidf_with_its_stop_words():
    from trainer.folder import load_folder_texts

    stop = read_stopwords(WIKI_RAW / "stopwords.txt")
    assert "the" in stop and "" not in stop and len(stop) > 300
    t = load_folder_texts(WIKI_RAW)
    train, test = t.texts[: t.n_train], t.texts[t.n_train:]
    v = TextVectorizer(kind="tfidf", max_features=5000, stop_words=stop).fit(train)
    assert len(v.vocabulary) == 5000 and not set(v.vocabulary) & set(stop)
    sk = oracle("tfidf", train, max_features=5000, stop_words=stop)
    np.testing.assert_array_equal(TextVectorizer.from_state(v.state()).transform(test), dense32(sk, test))
