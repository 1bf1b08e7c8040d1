"""Raw text -> dense features, with a vocabulary fitted on the training texts only.

:class:`TextVectorizer` wraps scikit-learn's ``TfidfVectorizer`` (``kind="tfidf"``)
and ``CountVectorizer(binary=True)`` (``kind="bow"``, the field's {0,1} tag
vectors). Words (``analyzer="word"``, sklearn's default token pattern) or
character n-grams (``analyzer="char"``, default ``ngram_range=(1, 2)``) for
languages written without spaces, such as Web News's Chinese captions.

Fit it on the training texts only, so that no test word reaches the vocabulary
or the idf weights; then :meth:`TextVectorizer.transform` any texts. Its
:meth:`~TextVectorizer.state` is plain data (str, int, float, bool, None, lists
and dicts of them): it survives ``json.dumps`` and
``torch.save`` + ``torch.load(weights_only=True)``, so a checkpoint never pickles
a sklearn object. :meth:`TextVectorizer.from_state` rebuilds a vectorizer that
gives exactly what the fitted sklearn vectorizer gives: the fitted instance
itself transforms through the same rebuilt object (a fixed ``vocabulary`` and,
for tf-idf, the stored ``idf_``), so there is one code path.

``max_features=N`` keeps sklearn's choice: the N terms with the highest count
over the training texts (document frequency for ``bow``, whose counts are
{0,1}); the columns are then in sklearn's (alphabetical) order.

scikit-learn is imported on first use, so that importing this module needs only
numpy.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

#: The tag written into :meth:`TextVectorizer.state`, and the state's version.
STATE_FORMAT = "trainer.text.TextVectorizer"
STATE_VERSION = 1

KINDS = ("tfidf", "bow")
ANALYZERS = ("word", "char")

#: scikit-learn's default word pattern (two or more word characters), stored in
#: the state so that a change of sklearn's default cannot change old models.
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"

# sklearn TfidfVectorizer settings that this wrapper fixes (sklearn's defaults);
# they are stored in the state too.
_TFIDF_FIXED = {"norm": "l2", "use_idf": True, "smooth_idf": True, "sublinear_tf": False}


def _sklearn_text() -> Any:
    try:
        from sklearn.feature_extraction import text as sk_text
    except ImportError as exc:  # pragma: no cover - scikit-learn is installed with the trainer
        raise ImportError(f"TextVectorizer needs scikit-learn (pip install scikit-learn): {exc}") from exc
    return sk_text


def read_stopwords(path: Union[str, "Path"]) -> List[str]:
    """Stop words from a text file, one per line (UTF-8).

    Surrounding whitespace is stripped and blank lines are skipped (Wiki's
    ``stopwords.txt`` opens with a line holding a single space); duplicates are
    dropped, keeping the first.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    list of str
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"stop words: expected a text file, one word per line, got no such file: {p}")
    words: List[str] = []
    seen = set()
    with open(p, encoding="utf-8-sig") as f:
        for line in f:
            w = line.strip()
            if w and w not in seen:
                seen.add(w)
                words.append(w)
    return words


def _as_texts(texts: Any, where: str) -> List[str]:
    """``texts`` as a list of str; TypeError for a single string or non-string items."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(
            f"{where}: expected a sequence of strings, got a single {type(texts).__name__}; wrap it in a list"
        )
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"{where}: expected a sequence of strings, got {type(texts).__name__}") from None
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"{where}: expected strings, got {type(t).__name__} at index {i}")
    return items


def _check_ngram_range(ngram_range: Any, where: str) -> Tuple[int, int]:
    if not isinstance(ngram_range, (tuple, list)) or len(ngram_range) != 2:
        raise TypeError(f"{where}: expected a pair (min_n, max_n), got {ngram_range!r}")
    lo, hi = ngram_range
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)):
        raise TypeError(f"{where}: expected integers (min_n, max_n), got {ngram_range!r}")
    if not 1 <= lo <= hi:
        raise ValueError(f"{where}: expected 1 <= min_n <= max_n, got {ngram_range!r}")
    return int(lo), int(hi)


class TextVectorizer:
    """Texts -> ``(n, V)`` float32 features over a vocabulary fitted on training texts.

    Parameters
    ----------
    kind : {"tfidf", "bow"}
        ``"tfidf"``: sklearn's tf-idf (raw counts times smoothed idf, rows
        L2-normalised). ``"bow"``: {0, 1} presence of each term.
    analyzer : {"word", "char"}
        Word tokens (sklearn's token pattern, two or more word characters) or
        character n-grams (spaces included, as sklearn's ``"char"``).
    max_features : int or None
        Keep the ``max_features`` most frequent terms of the training texts;
        None keeps them all.
    ngram_range : (int, int) or None
        Lengths of the n-grams; None means ``(1, 1)`` for words and ``(1, 2)``
        for characters.
    lowercase : bool
        Lowercase the texts before tokenizing.
    stop_words : list of str or None
        Words to drop (word analyzer only), used as given (see
        :func:`read_stopwords`).

    Attributes
    ----------
    vocabulary : list of str
        The term of each output column (after :meth:`fit`).
    """

    def __init__(
        self,
        kind: str = "tfidf",
        analyzer: str = "word",
        max_features: Optional[int] = None,
        ngram_range: Optional[Tuple[int, int]] = None,
        lowercase: bool = True,
        stop_words: Optional[Sequence[str]] = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {list(KINDS)}, got {kind!r}")
        if analyzer not in ANALYZERS:
            raise ValueError(f"analyzer: expected one of {list(ANALYZERS)}, got {analyzer!r}")
        if max_features is not None:
            if not isinstance(max_features, (int, np.integer)) or isinstance(max_features, bool):
                raise TypeError(f"max_features: expected a positive int or None, got {type(max_features).__name__}")
            if max_features < 1:
                raise ValueError(f"max_features: expected a positive int or None, got {max_features}")
            max_features = int(max_features)
        if ngram_range is None:
            ngram_range = (1, 2) if analyzer == "char" else (1, 1)
        ngram_range = _check_ngram_range(ngram_range, "ngram_range")
        if not isinstance(lowercase, (bool, np.bool_)):
            raise TypeError(f"lowercase: expected a bool, got {type(lowercase).__name__}")
        if stop_words is not None:
            if analyzer != "word":
                raise ValueError(
                    f"stop_words: expected None with analyzer={analyzer!r} (stop words apply to words only), "
                    f"got {len(list(stop_words))} words"
                )
            stop_words = _as_texts(stop_words, "stop_words")
        self.kind = kind
        self.analyzer = analyzer
        self.max_features = max_features
        self.ngram_range = ngram_range
        self.lowercase = bool(lowercase)
        self.stop_words: Optional[List[str]] = stop_words
        self.token_pattern = DEFAULT_TOKEN_PATTERN
        self._vocabulary: Optional[List[str]] = None
        self._idf: Optional[List[float]] = None
        self._sk: Any = None  # the sklearn vectorizer that transforms (fixed vocabulary)

    # ------------------------------------------------------------------ fitting

    def _sklearn_params(self) -> Dict[str, Any]:
        params: Dict[str, Any] = {
            "analyzer": self.analyzer,
            "ngram_range": tuple(self.ngram_range),
            "lowercase": self.lowercase,
        }
        if self.analyzer == "word":
            params["token_pattern"] = self.token_pattern
            params["stop_words"] = None if self.stop_words is None else list(self.stop_words)
        return params

    def fit(self, texts: Sequence[str]) -> "TextVectorizer":
        """Fit the vocabulary (and idf) on the training texts.

        Parameters
        ----------
        texts : sequence of str
            The training texts, and only those.

        Returns
        -------
        TextVectorizer
            ``self``.

        Raises
        ------
        TypeError
            A single string, or an item that is not a string.
        ValueError
            No texts, or no term at all in them (e.g. every text empty or made
            only of stop words).
        """
        items = _as_texts(texts, "fit")
        if not items:
            raise ValueError("fit: expected at least one training text, got none")
        sk_text = _sklearn_text()
        params = self._sklearn_params()
        if self.kind == "tfidf":
            sk = sk_text.TfidfVectorizer(max_features=self.max_features, dtype=np.float64, **params, **_TFIDF_FIXED)
        else:
            sk = sk_text.CountVectorizer(max_features=self.max_features, binary=True, **params)
        try:
            sk.fit(items)
        except ValueError as exc:
            if "empty vocabulary" in str(exc):
                raise ValueError(
                    f"fit: expected at least one {self.analyzer} term in the {len(items)} training texts, got an "
                    f"empty vocabulary (are the texts empty, or only stop words / single characters? "
                    f"for text without spaces use analyzer='char')"
                ) from None
            raise
        self._vocabulary = [str(t) for t in sk.get_feature_names_out()]
        self._idf = [float(v) for v in sk.idf_] if self.kind == "tfidf" else None
        self._sk = self._build()
        return self

    def _build(self) -> Any:
        """The sklearn vectorizer with this fitted vocabulary (and idf) fixed."""
        sk_text = _sklearn_text()
        vocab = {t: i for i, t in enumerate(self._vocabulary or ())}
        params = self._sklearn_params()
        if self.kind == "tfidf":
            sk = sk_text.TfidfVectorizer(vocabulary=vocab, dtype=np.float64, **params, **_TFIDF_FIXED)
            sk.idf_ = np.asarray(self._idf, dtype=np.float64)
        else:
            sk = sk_text.CountVectorizer(vocabulary=vocab, binary=True, **params)
        return sk

    def _require_fitted(self, what: str) -> None:
        if self._vocabulary is None:
            raise ValueError(f"{what}: this TextVectorizer is not fitted; call fit(training_texts) first")

    @property
    def vocabulary(self) -> List[str]:
        """The term of each output column (a copy)."""
        self._require_fitted("vocabulary")
        return list(self._vocabulary or ())

    @property
    def dim(self) -> int:
        """The number of output columns V."""
        self._require_fitted("dim")
        return len(self._vocabulary or ())

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Features of ``texts`` over the fitted vocabulary.

        Parameters
        ----------
        texts : sequence of str

        Returns
        -------
        np.ndarray
            ``(n, V)`` float32, C-contiguous: tf-idf rows (L2-normalised, zero
            for a text with no known term) or {0, 1} presence. Terms not in the
            vocabulary are ignored.
        """
        self._require_fitted("transform")
        items = _as_texts(texts, "transform")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = self._sk.transform(items)
        return np.ascontiguousarray(x.astype(np.float32).toarray())

    def fit_transform(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`fit` on ``texts``, then :meth:`transform` them."""
        items = _as_texts(texts, "fit_transform")
        return self.fit(items).transform(items)

    # ------------------------------------------------------------------ state

    def state(self) -> Dict[str, Any]:
        """Everything :meth:`from_state` needs, as plain data.

        Returns
        -------
        dict
            str, int, float, bool, None and lists / dicts of them only: safe
            for ``json.dumps`` and ``torch.load(weights_only=True)``. ``idf`` is
            a list of float (None for ``bow``); floats survive JSON exactly.
        """
        self._require_fitted("state")
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "kind": self.kind,
            "analyzer": self.analyzer,
            "ngram_range": list(self.ngram_range),
            "lowercase": self.lowercase,
            "stop_words": None if self.stop_words is None else list(self.stop_words),
            "max_features": self.max_features,
            "token_pattern": self.token_pattern,
            "tfidf": dict(_TFIDF_FIXED) if self.kind == "tfidf" else None,
            "vocabulary": list(self._vocabulary or []),
            "idf": None if self._idf is None else list(self._idf),
        }

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "TextVectorizer":
        """A fitted vectorizer from :meth:`state`'s dict (after JSON or torch round trips).

        Raises
        ------
        ValueError
            A dict that is not a valid state: wrong format tag or version,
            missing or unknown keys, values of the wrong type, duplicate terms,
            an idf of the wrong length or with non-finite values.
        """
        def bad(msg: str) -> ValueError:
            return ValueError(f"TextVectorizer state: {msg}")

        if not isinstance(state, dict):
            raise bad(f"expected a dict, got {type(state).__name__}")
        keys = {"format", "version", "kind", "analyzer", "ngram_range", "lowercase", "stop_words",
                "max_features", "token_pattern", "tfidf", "vocabulary", "idf"}
        missing, unknown = keys - set(state), set(state) - keys
        if missing or unknown:
            raise bad(f"expected keys {sorted(keys)}, missing {sorted(missing)}, unknown {sorted(map(str, unknown))}")
        if state["format"] != STATE_FORMAT:
            raise bad(f"expected format {STATE_FORMAT!r}, got {state['format']!r}")
        if state["version"] != STATE_VERSION or isinstance(state["version"], bool):
            raise bad(f"expected version {STATE_VERSION}, got {state['version']!r}")
        ngram = state["ngram_range"]
        try:
            obj = cls(
                kind=state["kind"],
                analyzer=state["analyzer"],
                max_features=state["max_features"],
                ngram_range=tuple(ngram) if isinstance(ngram, (list, tuple)) else ngram,
                lowercase=state["lowercase"],
                stop_words=state["stop_words"],
            )
        except (TypeError, ValueError) as exc:
            raise bad(str(exc)) from None
        pattern = state["token_pattern"]
        if not isinstance(pattern, str):
            raise bad(f"expected token_pattern to be a str, got {type(pattern).__name__}")
        obj.token_pattern = pattern
        want_tfidf = dict(_TFIDF_FIXED) if obj.kind == "tfidf" else None
        if state["tfidf"] != want_tfidf:
            raise bad(f"expected tfidf settings {want_tfidf!r} for kind {obj.kind!r}, got {state['tfidf']!r}")
        vocab = state["vocabulary"]
        if not isinstance(vocab, (list, tuple)) or not all(isinstance(t, str) for t in vocab):
            raise bad("expected vocabulary to be a list of str")
        if not vocab:
            raise bad("expected a non-empty vocabulary, got none")
        if len(set(vocab)) != len(vocab):
            raise bad(f"expected distinct vocabulary terms, got {len(vocab) - len(set(vocab))} duplicates")
        if obj.max_features is not None and len(vocab) > obj.max_features:
            raise bad(f"expected at most max_features={obj.max_features} terms, got {len(vocab)}")
        idf = state["idf"]
        if obj.kind == "bow":
            if idf is not None:
                raise bad("expected idf None for kind 'bow'")
        else:
            if not isinstance(idf, (list, tuple)) or len(idf) != len(vocab):
                got = f"length {len(idf)}" if isinstance(idf, (list, tuple)) else type(idf).__name__
                raise bad(f"expected idf to be a list of {len(vocab)} floats (one per term), got {got}")
            if not all(isinstance(v, (float, int)) and not isinstance(v, bool) and math.isfinite(v) for v in idf):
                raise bad("expected finite float idf values")
            obj._idf = [float(v) for v in idf]
        obj._vocabulary = [str(t) for t in vocab]
        obj._sk = obj._build()
        return obj

    def __repr__(self) -> str:
        fitted = f"{len(self._vocabulary)} terms" if self._vocabulary is not None else "not fitted"
        return (
            f"TextVectorizer(kind={self.kind!r}, analyzer={self.analyzer!r}, ngram_range={self.ngram_range}, "
            f"max_features={self.max_features}; {fitted})"
        )


__all__ = ["STATE_FORMAT", "STATE_VERSION", "TextVectorizer", "read_stopwords"]
