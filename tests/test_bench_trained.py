"""``bench.trained``: codes learned by the trainer as a benchmark data source.

Checked against numpy, independently of the code under test: the layout (dtype,
shape, contiguity, pad bits through bit masks and ``hamsearch.unpack``); that
the codes are learned, not random (the database's nearest-neighbour distances
against the exact expectation for uniform codes, and the T->I MAP over the
labels, regenerated or read from the ``.mat`` file, against uniform random
codes scored the same way); determinism and the cache (round trip, corrupt and
stale files recomputed, atomic writes); argument errors; and the Wiki split
against the file's own arrays. Training runs use ``quick=True``, small sets and
one torch thread. Torch-dependent tests skip where torch is missing; Wiki
tests skip where ``wikiData.mat`` is absent.
"""
from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` without `python -m`: the bench package lives at the root
    sys.path.insert(0, str(ROOT))

import hamsearch as hs  # noqa: E402
from bench import trained  # noqa: E402
from bench.peers import Unavailable  # noqa: E402

N, NQ = 3000, 200  # the synthetic set of the learned-structure checks
SMALL_N, SMALL_NQ = 400, 40  # the synthetic set of the cache checks


def _needs_trainer() -> Any:
    torch = pytest.importorskip("torch")
    pytest.importorskip("scipy")
    return torch


def _wiki_file() -> Path:
    path = trained.wiki_path()
    if not path.is_file():
        pytest.skip(f"Wiki data not found: {path}")
    return path


@pytest.fixture(scope="module")
def one_thread() -> Any:
    """Train on one torch thread (other work shares the machine); restored afterwards."""
    torch = _needs_trainer()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trained-cache")


@pytest.fixture(scope="module", params=[32, 64])
def synth(request: pytest.FixtureRequest, one_thread: Any, cache_dir: Path) -> trained.TrainedCodes:
    """Quick DCGH codes of a 3,000 + 200 synthetic set, written to the module's cache."""
    return trained.trained_codes("synthetic", request.param, n=N, nq=NQ, quick=True, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def small(one_thread: Any, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """A small set's codes and its good cache file, for the corruption checks."""
    d = tmp_path_factory.mktemp("small-cache")
    tc = trained.trained_codes("synthetic", 32, n=SMALL_N, nq=SMALL_NQ, quick=True, cache_dir=d)
    files = sorted(d.glob("*.npz"))
    assert len(files) == 1
    return {"codes": tc, "file": files[0]}


# ----------------------------------------------------------------------------- oracles


def _distances(queries: np.ndarray, db: np.ndarray) -> np.ndarray:
    """(nq, n) int64 Hamming distances: popcount of the XOR, summed over words."""
    return np.bitwise_count(queries[:, None, :] ^ db[None, :, :]).sum(axis=2, dtype=np.int64)


def _uniform_codes(rng: np.random.Generator, n: int, nbits: int) -> np.ndarray:
    words = (nbits + 63) // 64
    codes = rng.integers(0, 2**64, size=(n, words), dtype=np.uint64)
    if nbits % 64:
        codes[:, -1] &= np.uint64((1 << (nbits % 64)) - 1)
    return codes


def _expected_uniform_min(nbits: int, m: int) -> float:
    """E[min of m independent Binomial(nbits, 1/2)]: the mean distance from a
    uniform code to its nearest among m other uniform codes, exactly."""
    # E[min] = sum_{k >= 1} P(min >= k) = sum_{k >= 1} P(X >= k)^m, the tails in exact integers.
    total = 0.0
    for k in range(1, nbits + 1):
        tail = sum(math.comb(nbits, j) for j in range(k, nbits + 1)) / 2**nbits
        total += tail**m
    return total


def _mean_average_precision(dist: np.ndarray, relevant: np.ndarray) -> float:
    """MAP over the whole ranking, ranked by (distance, database row); queries
    with no relevant item are left out."""
    aps = []
    rows = np.arange(dist.shape[1])
    for d, rel in zip(dist, relevant):
        ranked = rel[np.lexsort((rows, d))]
        hits = np.flatnonzero(ranked)
        if hits.size:
            aps.append(np.mean(np.arange(1, hits.size + 1) / (hits + 1)))
    return float(np.mean(aps))


def _synthetic_labels(n: int, nq: int, seed: int = 0):
    """(query labels, database labels) of the synthetic call, regenerated from the trainer's data module."""
    from trainer.data import make_synthetic

    ds = make_synthetic(seed, n=n + nq, n_query=nq, n_train=min(2000, n))
    return ds.labels[ds.split.query], ds.labels[ds.split.database]


def _assert_layout(tc: trained.TrainedCodes, n: int, nq: int) -> None:
    words = (tc.nbits + 63) // 64
    for arr, rows in ((tc.codes, n), (tc.queries, nq)):
        assert isinstance(arr, np.ndarray)
        assert arr.dtype == np.uint64
        assert arr.shape == (rows, words)
        assert arr.flags.c_contiguous
        if tc.nbits % 64:
            assert not np.any(arr[:, -1] >> np.uint64(tc.nbits % 64)), "pad bits set"
        bits = hs.unpack(arr, tc.nbits)  # validates the pad bits on its own
        np.testing.assert_array_equal(hs.pack(bits), arr)


# ----------------------------------------------------------------------------- layout


def test_synthetic_layout(synth: trained.TrainedCodes) -> None:
    _assert_layout(synth, N, NQ)
    assert synth.source == "synthetic"
    assert synth.n == N and synth.nq == NQ
    assert synth.train_seconds > 0.0
    assert "\n" not in synth.description
    assert "DCGH" in synth.description and f"{synth.nbits} bits" in synth.description


def test_pad_bits_over_two_words(one_thread: Any) -> None:
    tc = trained.trained_codes("synthetic", 100, n=SMALL_N, nq=SMALL_NQ, quick=True)
    _assert_layout(tc, SMALL_N, SMALL_NQ)
    # The 36 used bits of the second word carry information (not all zero).
    assert np.any(tc.codes[:, 1])


# ----------------------------------------------------------------------------- learned, not random


def test_database_codes_are_clustered(synth: trained.TrainedCodes) -> None:
    # Each of the first 500 database codes against all the others: learned
    # codes have near duplicates (items with the same labels), uniform ones do not.
    sample = 500
    d = _distances(synth.codes[:sample], synth.codes)
    d[np.arange(sample), np.arange(sample)] = np.iinfo(np.int64).max
    nearest = d.min(axis=1).mean()
    uniform = _expected_uniform_min(synth.nbits, N - 1)
    assert nearest < 0.5 * uniform, (nearest, uniform)
    # ... and a numpy draw of uniform codes of the same shape agrees with the formula.
    u = _uniform_codes(np.random.default_rng([7, synth.nbits]), N, synth.nbits)
    du = _distances(u[:sample], u)
    du[np.arange(sample), np.arange(sample)] = np.iinfo(np.int64).max
    assert abs(du.min(axis=1).mean() - uniform) < 0.1 * uniform


def test_text_to_image_ranking_beats_random(synth: trained.TrainedCodes) -> None:
    ql, dl = _synthetic_labels(N, NQ)
    assert dl.shape[0] == synth.n and ql.shape[0] == synth.nq
    relevant = (ql.astype(np.int64) @ dl.T.astype(np.int64)) > 0  # sharing a label
    dist = _distances(synth.queries, synth.codes)
    rng = np.random.default_rng([11, synth.nbits])
    floor = _mean_average_precision(
        _distances(_uniform_codes(rng, NQ, synth.nbits), _uniform_codes(rng, N, synth.nbits)), relevant)
    learned = _mean_average_precision(dist, relevant)
    assert learned > floor + 0.1, (learned, floor)
    # The queries' nearest database codes are closer than uniform codes' would be.
    assert dist.min(axis=1).mean() < _expected_uniform_min(synth.nbits, N)


# ----------------------------------------------------------------------------- determinism and cache


def test_same_seed_same_codes_and_cache_round_trip(synth: trained.TrainedCodes, cache_dir: Path) -> None:
    name = f"trained-synthetic-b{synth.nbits}-n{N}-q{NQ}-s0-quick.npz"
    assert (cache_dir / name).is_file()
    assert not list(cache_dir.glob("*.tmp")), "a temporary file was left behind"
    fresh = trained.trained_codes("synthetic", synth.nbits, n=N, nq=NQ, quick=True)  # no cache
    assert fresh.train_seconds > 0.0
    np.testing.assert_array_equal(fresh.codes, synth.codes)
    np.testing.assert_array_equal(fresh.queries, synth.queries)
    again = trained.trained_codes("synthetic", synth.nbits, n=N, nq=NQ, quick=True, cache_dir=str(cache_dir))
    assert again.train_seconds == 0.0  # read from the cache
    np.testing.assert_array_equal(again.codes, synth.codes)
    np.testing.assert_array_equal(again.queries, synth.queries)
    assert again.description == synth.description
    _assert_layout(again, N, NQ)


def test_another_seed_other_codes(small: Dict[str, Any]) -> None:
    other = trained.trained_codes("synthetic", 32, n=SMALL_N, nq=SMALL_NQ, quick=True, seed=1)
    assert not np.array_equal(other.codes, small["codes"].codes)


def _rewrite(path: Path, **changes: Any) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _corrupt(kind: str, path: Path) -> None:
    with np.load(path, allow_pickle=False) as z:
        codes = z["codes"]
        key = str(z["key"][()])
    if kind == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(b"not an npz file at all")
    elif kind == "wrong_dtype":
        _rewrite(path, codes=codes.astype(np.uint32))
    elif kind == "wrong_shape":
        _rewrite(path, codes=np.ascontiguousarray(codes[:-1]))
    elif kind == "pad_bits":
        bad = codes.copy()
        bad[0, 0] |= np.uint64(1) << np.uint64(40)  # above bit 32
        _rewrite(path, codes=bad)
    elif kind == "stale_key":
        # Arrays that pass every check, under another training's key: not to be trusted.
        _rewrite(path, codes=np.zeros_like(codes), key=np.str_(key.replace('"epochs": 3', '"epochs": 4')))
    elif kind == "missing_array":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "queries"}
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["truncated", "garbage", "wrong_dtype", "wrong_shape", "pad_bits", "stale_key", "missing_array"]
)
def test_corrupt_cache_is_recomputed(kind: str, small: Dict[str, Any], tmp_path: Path) -> None:
    good: trained.TrainedCodes = small["codes"]
    path = tmp_path / small["file"].name
    shutil.copyfile(small["file"], path)
    _corrupt(kind, path)
    got = trained.trained_codes("synthetic", 32, n=SMALL_N, nq=SMALL_NQ, quick=True, cache_dir=tmp_path)
    assert got.train_seconds > 0.0, "the bad cache file was used"
    np.testing.assert_array_equal(got.codes, good.codes)
    np.testing.assert_array_equal(got.queries, good.queries)
    # The file was rewritten with the good codes, and is read back from now on.
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["codes"], good.codes)
    again = trained.trained_codes("synthetic", 32, n=SMALL_N, nq=SMALL_NQ, quick=True, cache_dir=tmp_path)
    assert again.train_seconds == 0.0
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_cache_key_depends_on_the_call(small: Dict[str, Any], tmp_path: Path) -> None:
    # quick and full runs, and other sizes, do not share a file.
    path = small["file"]
    assert path.name == f"trained-synthetic-b32-n{SMALL_N}-q{SMALL_NQ}-s0-quick.npz"
    with np.load(path, allow_pickle=False) as z:
        key = str(z["key"][()])
    for part in ('"method": "dcgh"', '"epochs": 3', '"torch": ', '"config": ', '"quick": true',
                 '"torch_threads": 1'):
        assert part in key, part


def test_other_thread_count_does_not_read_the_cache(small: Dict[str, Any], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The file was written on one thread; a two-thread call may compute other
    # codes, so it must train (stopped here before any work), not read the file.
    from trainer import engine

    class Stop(Exception):
        pass

    def fake_fit(*args: Any, **kwargs: Any) -> None:
        raise Stop

    shutil.copyfile(small["file"], tmp_path / small["file"].name)
    monkeypatch.setattr(engine, "fit", fake_fit)
    hit = trained.trained_codes("synthetic", 32, n=SMALL_N, nq=SMALL_NQ, quick=True, cache_dir=tmp_path, threads=1)
    assert hit.train_seconds == 0.0
    with pytest.raises(Stop):
        trained.trained_codes("synthetic", 32, n=SMALL_N, nq=SMALL_NQ, quick=True, cache_dir=tmp_path, threads=2)


# ----------------------------------------------------------------------------- threads


def test_threads_set_for_training_and_restored(one_thread: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    torch = one_thread
    from trainer import engine

    seen = []

    class Stop(Exception):
        pass

    def fake_fit(*args: Any, **kwargs: Any) -> None:
        seen.append(torch.get_num_threads())
        raise Stop

    monkeypatch.setattr(engine, "fit", fake_fit)
    with pytest.raises(Stop):
        trained.trained_codes("synthetic", 32, n=SMALL_N, nq=SMALL_NQ, quick=True, threads=2)
    assert seen == [2]
    assert torch.get_num_threads() == 1  # restored, even after an error
    with pytest.raises(Stop):
        trained.trained_codes("synthetic", 32, n=SMALL_N, nq=SMALL_NQ, quick=True)
    assert seen == [2, 1]  # threads=None leaves torch's setting alone


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, exc, name",
    [
        ({"source": "mirflickr"}, ValueError, "source"),
        ({"source": None}, ValueError, "source"),
        ({"nbits": 0}, ValueError, "nbits"),
        ({"nbits": -8}, ValueError, "nbits"),
        ({"nbits": (1 << 20) + 1}, ValueError, "nbits"),
        ({"nbits": 32.0}, TypeError, "nbits"),
        ({"nbits": "64"}, TypeError, "nbits"),
        ({"nbits": True}, TypeError, "nbits"),
        ({"n": 0}, ValueError, "n"),
        ({"n": 1.5}, TypeError, "n"),
        ({"nq": 0}, ValueError, "nq"),
        ({"nq": -3}, ValueError, "nq"),
        ({"nq": "10"}, TypeError, "nq"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 0.5}, TypeError, "seed"),
        ({"threads": 0}, ValueError, "threads"),
        ({"quick": "yes"}, TypeError, "quick"),
    ],
)
def test_bad_arguments(kwargs: Dict[str, Any], exc: type, name: str) -> None:
    # Checked before anything is imported or trained: no torch needed.
    args = {"source": "synthetic", "nbits": 32, "n": 100, "nq": 10, "quick": True}
    args.update(kwargs)
    source, nbits = args.pop("source"), args.pop("nbits")
    with pytest.raises(exc, match=rf"^{name}: expected"):
        trained.trained_codes(source, nbits, **args)


def test_numpy_integers_are_accepted(one_thread: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainer import engine

    class Stop(Exception):
        pass

    calls = []

    def fake_fit(cls: Any, dataset: Any, bits: Any, **kwargs: Any) -> None:
        calls.append((bits, dataset.split.database.size, dataset.split.query.size))
        raise Stop

    monkeypatch.setattr(engine, "fit", fake_fit)
    with pytest.raises(Stop):
        trained.trained_codes("synthetic", np.int64(16), n=np.int32(300), nq=np.uint16(20), quick=True)
    assert calls == [(16, 300, 20)]


def test_missing_torch_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(Unavailable, match=r"torch.*pip install -e \"\.\[train\]\""):
        trained.trained_codes("synthetic", 32, n=100, nq=10, quick=True)


def test_missing_wiki_is_unavailable(one_thread: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HAMSEARCH_DATA", str(tmp_path))
    assert trained.wiki_path() == tmp_path / "wiki" / "wikiData.mat"
    with pytest.raises(Unavailable, match=r"wikiData\.mat") as info:
        trained.trained_codes("wiki", 32, quick=True)
    assert "HAMSEARCH_DATA" in str(info.value)


def test_unavailable_is_an_exception() -> None:
    assert issubclass(Unavailable, Exception)


# ----------------------------------------------------------------------------- wiki


@pytest.fixture(scope="module")
def wiki(one_thread: Any, cache_dir: Path) -> Dict[str, Any]:
    path = _wiki_file()
    sio = pytest.importorskip("scipy.io")
    mat = sio.loadmat(str(path))
    tc = trained.trained_codes("wiki", 32, quick=True, cache_dir=cache_dir)
    return {"codes": tc, "mat": mat}


def test_wiki_split_matches_the_file(wiki: Dict[str, Any]) -> None:
    tc, mat = wiki["codes"], wiki["mat"]
    n_db, n_q = mat["I_tr"].shape[0], mat["T_te"].shape[0]
    assert (n_db, n_q) == (mat["L_tr"].shape[0], mat["L_te"].shape[0]) == (2173, 693)
    _assert_layout(tc, n_db, n_q)
    assert tc.source == "wiki" and "Wiki" in tc.description


def test_wiki_ranking_beats_random(wiki: Dict[str, Any]) -> None:
    tc, mat = wiki["codes"], wiki["mat"]
    relevant = mat["L_te"].ravel()[:, None] == mat["L_tr"].ravel()[None, :]  # same class
    learned = _mean_average_precision(_distances(tc.queries, tc.codes), relevant)
    rng = np.random.default_rng(23)
    floor = _mean_average_precision(
        _distances(_uniform_codes(rng, tc.nq, 32), _uniform_codes(rng, tc.n, 32)), relevant)
    assert learned > 1.5 * floor, (learned, floor)


def test_wiki_n_and_nq(wiki: Dict[str, Any], cache_dir: Path) -> None:
    tc = wiki["codes"]
    # Its own size is accepted, nq is ignored: the same call, so the same cache file.
    same = trained.trained_codes("wiki", 32, n=2173, nq=5, quick=True, cache_dir=cache_dir)
    assert same.train_seconds == 0.0
    np.testing.assert_array_equal(same.queries, tc.queries)
    assert (cache_dir / "trained-wiki-b32-n2173-q693-s0-quick.npz").is_file()
    with pytest.raises(ValueError, match=r"^n: .*2173"):
        trained.trained_codes("wiki", 32, n=1000, quick=True)
