"""hamsearch.distributed.ShardedIndex on a local Ray: exact equality with the
numpy oracle and with FlatIndex over shard counts, widths, k (above 2048
too), radius and rank; ids and remove; save / load; validation that reads as
the other indexes'; and faults: a killed shard actor either comes back from
its file with nothing lost or raises ShardError naming the shard, never hangs.

Skipped where Ray is not installed (``pip install "hamsearch[distributed]"``).
"""
from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import hamsearch as hs  # noqa: E402
from hamsearch import distributed as hd  # noqa: E402
from oracle import (  # noqa: E402
    Reference,
    assert_knn_equal,
    assert_radius_equal,
    assert_rank_equal,
    codes_from_bits,
)
from oracle import distances as oracle_distances  # noqa: E402
from oracle import rank as oracle_rank  # noqa: E402

# Fractional CPUs let two indexes of three shards (and a restarting one)
# share the two CPUs of the test cluster; each shard searches with one thread.
CPUS = 0.25
# Far above any call here, far below a hang.
TIMEOUT = 60.0


@pytest.fixture(scope="module")
def cluster():
    started = not ray.is_initialized()
    if started:
        # Older Rays (2.9) leave log files of the processes they start open;
        # their ResourceWarnings are Ray's, not this package's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            gc.collect()
    yield
    if started:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            ray.shutdown()
            gc.collect()


@pytest.fixture
def make(cluster):
    """Builds ShardedIndexes (or loads them) and closes them after the test,
    so that their actors hand their CPUs back."""
    made = []

    def build(nbits, num_shards, kind="flat", **kw):
        kw.setdefault("num_cpus_per_shard", CPUS)
        kw.setdefault("timeout", TIMEOUT)
        idx = hd.ShardedIndex(nbits, num_shards, kind, **kw)
        made.append(idx)
        return idx

    def load(directory, **kw):
        kw.setdefault("num_cpus_per_shard", CPUS)
        kw.setdefault("timeout", TIMEOUT)
        idx = hd.load(directory, **kw)
        made.append(idx)
        return idx

    build.load = load
    yield build
    for idx in made:
        idx.close()


def fill(idx, flat, ref: Reference, rng: np.random.Generator, n: int = 400):
    """Default ids, then duplicate codes (ties), then custom shuffled ids
    above and below the next default id."""
    nbits = ref.nbits
    bits = rng.integers(0, 2, size=(n, nbits), dtype=np.uint8)
    bits[n // 2 : n // 2 + 30] = bits[:30]
    first = n // 2 + 50
    ids = idx.add(codes_from_bits(bits[:first]))
    np.testing.assert_array_equal(ids, ref.add(bits[:first]))
    np.testing.assert_array_equal(flat.add(codes_from_bits(bits[:first])), ids)
    custom = rng.permutation(5 * n)[: n - first] + first + 7  # some below, some above the next id
    custom[0] = 10 * n  # the largest id: the next default id follows it
    for target in (idx, flat):
        np.testing.assert_array_equal(target.add(codes_from_bits(bits[first:]), ids=custom), custom)
    ref.add(bits[first:], custom)


def queries(ref: Reference, rng: np.random.Generator, nq: int = 8):
    q = rng.integers(0, 2, size=(nq, ref.nbits), dtype=np.uint8)
    q[: nq // 2] = ref.bits[rng.choice(len(ref.ids), nq // 2, replace=False)]  # exact hits and ties
    return q, codes_from_bits(q)


def assert_same(idx, flat, ref: Reference, rng: np.random.Generator, ks=None) -> None:
    q, qc = queries(ref, rng)
    n = len(ref.ids)
    assert len(idx) == len(flat) == n
    for k in ks or (1, 10, n + 5):
        got = idx.query(qc, k)
        assert_knn_equal(got, ref.knn(q, k))
        assert_knn_equal(got, flat.query(qc, k))
    for r in (0, ref.nbits // 3, ref.nbits // 2):
        got = idx.radius(qc, r)
        assert_radius_equal(got, ref.radius(q, r))
        assert_radius_equal(got, flat.radius(qc, r))
    got = idx.rank(qc)
    assert_rank_equal(got, ref.rank(q))
    assert_rank_equal(got, flat.rank(qc))
    D, I = idx.rank(qc, with_distances=True)
    oD, oI = oracle_rank(oracle_distances(q, ref.bits), ref.ids)
    np.testing.assert_array_equal(I, oI)
    np.testing.assert_array_equal(D, oD)
    assert D.dtype == np.int32 and I.dtype == np.int64


# -- exactness -----------------------------------------------------------------
@pytest.mark.parametrize("num_shards", [1, 2, 3])
@pytest.mark.parametrize("nbits", [64, 100, 256])
def test_equal_to_oracle_and_flat(make, rng, num_shards, nbits):
    idx, flat, ref = make(nbits, num_shards), hs.FlatIndex(nbits), Reference(nbits)
    fill(idx, flat, ref, rng)
    assert sum(idx.shard_sizes) == len(ref.ids)
    if num_shards > 1:
        assert min(idx.shard_sizes) > 0  # the hash spreads the ids
    assert_same(idx, flat, ref, rng)
    # Removing, then adding with default ids, keeps them equal.
    gone = np.concatenate([ref.ids[::5], [-3, 10**12]])
    assert idx.remove(gone) == flat.remove(gone) == ref.remove(gone)
    bits = rng.integers(0, 2, size=(20, nbits), dtype=np.uint8)
    np.testing.assert_array_equal(idx.add(codes_from_bits(bits)), ref.add(bits))
    flat.add(codes_from_bits(bits))
    assert_same(idx, flat, ref, rng, ks=(3, len(ref.ids) + 5))


@pytest.mark.parametrize("num_shards,nbits,m", [(2, 64, None), (3, 128, 4)])
def test_mih_shards_equal_flat(make, rng, num_shards, nbits, m):
    idx, flat, ref = make(nbits, num_shards, "mih", m=m), hs.FlatIndex(nbits), Reference(nbits)
    assert idx.kind == "mih"
    fill(idx, flat, ref, rng)
    assert_same(idx, flat, ref, rng)


def test_k_above_2048(make, rng):
    nbits, n = 64, 3000
    idx, flat, ref = make(nbits, 2), hs.FlatIndex(nbits), Reference(nbits)
    bits = rng.integers(0, 2, size=(n, nbits), dtype=np.uint8)
    idx.add(codes_from_bits(bits))
    flat.add(codes_from_bits(bits))
    ref.add(bits)
    q, qc = queries(ref, rng, nq=4)
    for k in (2049, 2500, n + 5):
        got = idx.query(qc, k)
        assert_knn_equal(got, ref.knn(q, k))
        assert_knn_equal(got, flat.query(qc, k))
    D, I = idx.query(qc, n + 5)
    assert (I[:, n:] == -1).all() and (D[:, n:] == 2**31 - 1).all()


def test_huge_ids_merge_exactly(make, rng):
    """Ids too large for the one-key merge take the lexsort path: same answers."""
    nbits, n = 64, 300
    idx, flat, ref = make(nbits, 2), hs.FlatIndex(nbits), Reference(nbits)
    bits = rng.integers(0, 2, size=(n, nbits), dtype=np.uint8)
    bits[100:130] = bits[:30]
    ids = 2**62 + rng.choice(2**40, size=n, replace=False)
    for target in (idx, flat):
        target.add(codes_from_bits(bits), ids=ids)
    ref.add(bits, ids)
    assert hd._key_shift(nbits, ref.next_id) is None
    assert_same(idx, flat, ref, rng, ks=(1, 10, n + 5))


def test_empty_and_read_only_inputs(make, rng, tmp_path):
    idx = make(100, 3)
    assert idx.backend in ("native", "numba") and idx.threads == 1 and idx.num_shards == 3
    assert repr(idx) == "ShardedIndex(nbits=100, num_shards=3, kind='flat', n=0)"
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(idx)
    idx.save(tmp_path / "empty")
    back = make.load(tmp_path / "empty")
    assert len(back) == 0 and back.shard_sizes == [0, 0, 0]
    back.close()
    q = codes_from_bits(rng.integers(0, 2, size=(3, 100), dtype=np.uint8))
    D, I = idx.query(q, 4)
    assert D.shape == (3, 4) and (D == 2**31 - 1).all() and (I == -1).all()
    lims, D, I = idx.radius(q, 100)
    assert lims.tolist() == [0, 0, 0, 0] and D.size == I.size == 0
    assert idx.rank(q).shape == (3, 0)
    D, I = idx.rank(q, with_distances=True)
    assert D.shape == I.shape == (3, 0) and D.dtype == np.int32
    assert idx.add(np.zeros((0, 2), dtype=np.uint64)).shape == (0,)
    assert idx.remove([]) == 0 and idx.remove(5) == 0
    codes = codes_from_bits(rng.integers(0, 2, size=(50, 100), dtype=np.uint8))
    codes.flags.writeable = False
    q.flags.writeable = False
    idx.add(codes)
    flat = hs.FlatIndex(100)
    flat.add(codes)
    got = idx.query(q, 7)
    assert_knn_equal(got, flat.query(q, 7))
    assert got[0].flags.writeable and got[1].flags.writeable
    assert idx.query(q[:0], 3)[0].shape == (0, 3)


def test_ids_route_to_one_shard_and_clash(make, rng):
    idx, flat = make(64, 3), hs.FlatIndex(64)
    codes = codes_from_bits(rng.integers(0, 2, size=(300, 64), dtype=np.uint8))
    for target in (idx, flat):
        target.add(codes[:200])
        target.add(codes[200:], ids=np.arange(1000, 1100))
    np.testing.assert_array_equal(idx.add(codes[:3]), np.arange(1100, 1103))
    flat.add(codes[:3])
    # A clash is found on its shard before any shard adds anything.
    clash = np.array([5000, 5001, 150])
    with pytest.raises(ValueError) as got:
        idx.add(codes[:3], ids=clash)
    with pytest.raises(ValueError) as want:
        flat.add(codes[:3], ids=clash)
    assert str(got.value) == str(want.value)
    assert len(idx) == len(flat) == 303
    assert hd.route(np.arange(10**5), 3).tolist().count(0) in range(32000, 34700)
    shard = hd.route(np.array([150]), 3)[0]
    before = idx.shard_sizes
    assert idx.remove([150, 150, -1]) == 1
    after = idx.shard_sizes
    assert [b - a for a, b in zip(after, before)] == [int(s == shard) for s in range(3)]


# -- persistence ---------------------------------------------------------------
def test_save_load_round_trip(make, rng, tmp_path):
    nbits, S = 100, 3
    idx, flat, ref = make(nbits, S), hs.FlatIndex(nbits), Reference(nbits)
    fill(idx, flat, ref, rng, n=300)
    gone = ref.ids[::4]
    assert idx.remove(gone) == flat.remove(gone) == ref.remove(gone)
    d = tmp_path / "sharded"
    idx.save(d)
    manifest = json.loads((d / hd.MANIFEST_NAME).read_text())
    assert manifest["format"] == "hamsearch-sharded-index" and manifest["version"] == 1
    assert (manifest["nbits"], manifest["kind"], manifest["num_shards"]) == (nbits, "flat", S)
    assert manifest["next_id"] == ref.next_id and manifest["count"] == len(ref.ids)
    files = sorted(p.name for p in d.iterdir())
    assert files == sorted([hd.MANIFEST_NAME] + [sh["file"] for sh in manifest["shards"]])
    # Each shard file is an ordinary index file.
    shard0 = hs.load(d / manifest["shards"][0]["file"])
    assert len(shard0) == manifest["shards"][0]["count"] == idx.shard_sizes[0]
    for mmap in (False, True):
        back = make.load(d, mmap=mmap)
        assert (back.nbits, back.num_shards, back.kind) == (nbits, S, "flat")
        assert back.shard_sizes == idx.shard_sizes
        # The native core searches a mapped file in place; Numba copies it.
        assert all(info["mapped"] == (mmap and info["backend"] == "native") for info in back.shard_info())
        assert_same(back, flat, ref, rng, ks=(1, 10, len(ref.ids) + 5))
        if not mmap:
            back.close()  # its CPUs go to the next load
    # The next default id survives: the loaded index goes on as the original.
    bits = rng.integers(0, 2, size=(10, nbits), dtype=np.uint8)
    np.testing.assert_array_equal(back.add(codes_from_bits(bits)), ref.add(bits))
    flat.add(codes_from_bits(bits))
    assert_same(back, flat, ref, rng, ks=(5,))
    # Saving over it replaces every shard file.
    back.save(d)
    manifest2 = json.loads((d / hd.MANIFEST_NAME).read_text())
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [hd.MANIFEST_NAME] + [sh["file"] for sh in manifest2["shards"]])
    assert not set(sh["file"] for sh in manifest["shards"]) & set(sh["file"] for sh in manifest2["shards"])
    assert manifest2["count"] == len(ref.ids)


def test_load_fits_more_shards_than_cpus(make, rng, tmp_path):
    """A saved index with more shards than the cluster has CPUs (3 on the
    test cluster's 2) loads with the default num_cpus_per_shard: each shard
    gets an equal fraction of the CPUs, as Ray reports it inside the actor.
    An explicit value is still honoured, and still checked."""
    nbits, S = 64, 3
    total = ray.cluster_resources()["CPU"]
    assert S > total
    idx, flat = make(nbits, S), hs.FlatIndex(nbits)
    codes = codes_from_bits(rng.integers(0, 2, size=(300, nbits), dtype=np.uint8))
    idx.add(codes)
    flat.add(codes)
    d = tmp_path / "many"
    idx.save(d)
    idx.close()  # its CPUs go to the loads
    back = hd.load(d, timeout=TIMEOUT)
    try:
        cpus = [info["cpus"] for info in back.shard_info()]
        assert len(set(cpus)) == 1 and 0 < cpus[0] < 1 and S * cpus[0] <= total, cpus
        assert total - S * cpus[0] < 1e-3  # the whole cluster, less Ray's rounding
        assert back.threads == 1 and back.shard_sizes == idx.shard_sizes
        assert_knn_equal(back.query(codes[:5], 10), flat.query(codes[:5], 10))
    finally:
        back.close()
    with pytest.raises(ValueError, match="at most the cluster's 2 CPUs"):
        hd.load(d, num_cpus_per_shard=1, timeout=TIMEOUT)
    with pytest.raises(ValueError, match="num_cpus_per_shard: expected a number > 0"):
        hd.load(d, num_cpus_per_shard=0, timeout=TIMEOUT)
    back = make.load(d, num_cpus_per_shard=0.5)
    assert [info["cpus"] for info in back.shard_info()] == [0.5] * S
    assert_knn_equal(back.query(codes[:5], 10), flat.query(codes[:5], 10))
    back.close()
    # The constructor fits the cluster too when asked to (its default stays 1).
    fitted = make(nbits, S, num_cpus_per_shard=None)
    assert [info["cpus"] for info in fitted.shard_info()] == cpus

def test_mih_save_load_keeps_m(make, rng, tmp_path):
    idx, flat, ref = make(128, 2, "mih", m=4), hs.FlatIndex(128), Reference(128)
    fill(idx, flat, ref, rng, n=200)
    idx.save(tmp_path / "m")
    back = make.load(tmp_path / "m")
    assert back.kind == "mih"
    assert json.loads((tmp_path / "m" / hd.MANIFEST_NAME).read_text())["options"] == {"m": 4}
    assert_same(back, flat, ref, rng, ks=(10,))


def test_load_errors(make, rng, tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest"):
        hd.load(tmp_path)
    idx = make(64, 2)
    idx.add(codes_from_bits(rng.integers(0, 2, size=(40, 64), dtype=np.uint8)))
    d = tmp_path / "x"
    idx.save(d)
    manifest_path = d / hd.MANIFEST_NAME
    good = manifest_path.read_text()
    for edit, exc, fragment in [
        (lambda m: m.update(version=2), ValueError, "newer than this hamsearch reads"),
        (lambda m: m.update(format="other"), ValueError, "not a ShardedIndex manifest"),
        (lambda m: m.update(num_shards=3), ValueError, "expected a list of 3 shards"),
        (lambda m: m["shards"][0].update(file="../evil.hsidx"), ValueError, "file name inside the directory"),
        (lambda m: m["shards"][0].update(file="missing.hsidx"), FileNotFoundError, "is missing"),
        (lambda m: m["shards"].reverse(), ValueError, "expected the ids of shard 0 of 2"),
        (lambda m: m.update(next_id=3), ValueError, "below the manifest's next id"),
    ]:
        m = json.loads(good)
        edit(m)
        manifest_path.write_text(json.dumps(m))
        with pytest.raises(exc, match=fragment):
            make.load(d)
    manifest_path.write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        make.load(d)
    manifest_path.write_text(good)
    make.load(d)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="other files"):
        idx.save(other)


# -- validation reads as the other indexes' -------------------------------------------
def test_errors_read_like_flat_index(make):
    idx, flat = make(100, 2), hs.FlatIndex(100)
    good = np.zeros((3, 2), dtype=np.uint64)
    bad_pad = good.copy()
    bad_pad[1, 1] = np.uint64(1 << 40)
    cases = [
        lambda t: t.add(np.zeros((3, 2), dtype=np.uint8)),
        lambda t: t.add(np.zeros((3, 3), dtype=np.uint64)),
        lambda t: t.add(bad_pad),
        lambda t: t.add(good, ids=[1, 1, 2]),
        lambda t: t.add(good, ids=[-1, 0, 2]),
        lambda t: t.add(good, ids=[0.5, 1, 2]),
        lambda t: t.query(good, 0),
        lambda t: t.query(good, True),
        lambda t: t.query(np.zeros(2, dtype=np.uint64), 1),
        lambda t: t.radius(good, -1),
        lambda t: t.rank(np.zeros((3, 2), dtype=np.float64)),
        lambda t: t.query(good, 1, threads=0),
        lambda t: t.remove(np.zeros((2, 2), dtype=np.int64)),
        lambda t: t.remove([0.5]),
    ]
    for case in cases:
        with pytest.raises((TypeError, ValueError)) as want:
            case(flat)
        with pytest.raises(type(want.value)) as got:
            case(idx)
        assert str(got.value) == str(want.value)
    assert len(idx) == 0



def test_huge_k_is_the_value_error_of_flat_index(make, rng):
    """nq * k results that cannot fit in memory: FlatIndex's ValueError, word
    for word, before any shard is asked or any result allocated, whether the
    index is empty or not."""
    nbits, nq = 64, 3
    idx, flat = make(nbits, 2), hs.FlatIndex(nbits)
    q = codes_from_bits(rng.integers(0, 2, size=(nq, nbits), dtype=np.uint8))
    codes = codes_from_bits(rng.integers(0, 2, size=(50, nbits), dtype=np.uint8))
    for fill_first in (False, True):
        if fill_first:
            idx.add(codes)
            flat.add(codes)
        for k in (2**57, 2**62, 2**63 - 1):  # 16 bytes a result, nq * k * 16 over 2**62
            with pytest.raises(ValueError) as want:
                flat.query(q, k)
            with pytest.raises(ValueError) as got:
                idx.query(q, k)
            assert str(got.value) == str(want.value)
            assert f"nq = {nq}, k = {k}" in str(got.value)
    assert_knn_equal(idx.query(q, 5), flat.query(q, 5))

def test_verbs_are_every_index_s_with_the_call_s_deadline(make, rng, tmp_path):
    """The verbs are the shared ones (hamsearch._index._IndexBase), not
    copies; a change waits for another thread's change no longer than the
    call's timeout, searches do not wait for it, and a closed index refuses
    every verb."""
    for verb in ("add", "remove", "query", "radius", "rank"):
        assert getattr(hd.ShardedIndex, verb) is getattr(hs.FlatIndex, verb) is getattr(hs.MIHIndex, verb)
    idx = make(64, 2)
    codes = codes_from_bits(rng.integers(0, 2, size=(40, 64), dtype=np.uint8))
    idx.add(codes)
    held, done = threading.Event(), threading.Event()

    def hold():
        with idx._lock:  # another thread's add, remove or save, as long as it takes
            held.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        held.wait(30)
        idx.timeout = 0.3
        for change in (lambda: idx.add(codes[:2]), lambda: idx.remove([0]), lambda: idx.save(tmp_path / "s")):
            t0 = time.monotonic()
            with pytest.raises(hd.ShardError, match="waited the whole timeout of 0.3 s"):
                change()
            assert time.monotonic() - t0 < 5
        idx.timeout = TIMEOUT
        assert idx.query(codes[:3], 1)[1][:, 0].tolist() == [0, 1, 2]
    finally:
        done.set()
        holder.join()
    assert len(idx) == 40
    np.testing.assert_array_equal(idx.add(codes[:2]), [40, 41])
    idx.close()
    for verb in (lambda: idx.add(codes[:2]), lambda: idx.add(codes[:0]), lambda: idx.remove([]),
                 lambda: idx.query(codes[:1], 1), lambda: idx.radius(codes[:1], 3), lambda: idx.rank(codes[:1])):
        with pytest.raises(RuntimeError, match="the index is closed"):
            verb()


@pytest.mark.parametrize("args,kw,exc,fragment", [
    ((0, 2), {}, ValueError, "nbits: expected"),
    ((64, 0), {}, ValueError, "num_shards: expected an int >= 1, got 0"),
    ((64, 2.0), {}, TypeError, "num_shards: expected an int"),
    ((64, 2, "ivf"), {}, ValueError, "kind: expected 'flat' or 'mih', got 'ivf'"),
    ((64, 2), {"num_cpus_per_shard": 0}, ValueError, "num_cpus_per_shard: expected a number > 0"),
    ((64, 2), {"num_cpus_per_shard": 1.5}, ValueError, "whole number"),
    ((64, 2), {"num_cpus_per_shard": "1"}, TypeError, "num_cpus_per_shard"),
    ((64, 2), {"timeout": 0}, ValueError, "timeout: expected"),
    ((64, 2), {"m": 3}, TypeError, "unexpected keyword argument 'm'"),
    ((64, 2, "mih"), {"m": 65}, ValueError, "m: expected None or 1 <= m <= 64"),
    ((64, 2), {"backend": "gpu"}, ValueError, "backend: expected one of"),
    ((64, 2), {"threads": 0}, ValueError, "threads: expected None or an int >= 1"),
    ((64, 100), {}, ValueError, "at most the cluster's 2 CPUs"),
])
def test_constructor_errors(cluster, args, kw, exc, fragment):
    with pytest.raises(exc, match=fragment):
        hd.ShardedIndex(*args, **kw)


def test_ray_is_imported_only_here():
    code = ("import sys, hamsearch, hamsearch.distributed; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "hamsearch\[distributed\]"'):
        hd.ShardedIndex(64, 2)


# -- faults ------------------------------------------------------------------------
def _process_gone(pid: int) -> bool:
    """True once process ``pid`` has exited (a zombie counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def _kill(idx, s, restart=True, wait=False):
    """Kills shard ``s``'s actor and waits until its worker process has
    exited: ``ray.kill`` is asynchronous, and a call made before the kill
    lands is answered by the old actor. ``wait``: also until Ray has
    restarted it, so that the index meets the new actor only through its
    next call."""
    actor = idx.actors[s]
    pid = ray.get(actor.info.remote(), timeout=TIMEOUT)[3]["pid"]
    ray.kill(actor, no_restart=not restart)
    deadline = time.monotonic() + TIMEOUT
    while not _process_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _process_gone(pid), f"shard {s}'s worker (pid {pid}) still runs {TIMEOUT} s after ray.kill"
    while wait and time.monotonic() < deadline:
        try:
            ray.get(actor.info.remote(), timeout=TIMEOUT)
            return
        except ray.exceptions.RayActorError:
            time.sleep(0.05)


def test_killed_shard_restarts_from_its_file(make, rng, tmp_path):
    nbits = 64
    idx, flat, ref = make(nbits, 2), hs.FlatIndex(nbits), Reference(nbits)
    fill(idx, flat, ref, rng, n=300)
    idx.save(tmp_path / "s")
    q, qc = queries(ref, rng)
    want = flat.query(qc, 10)
    # Killed and restarted by Ray: the actor comes back empty (it was
    # created before the save) and the driver has it reload its file.
    _kill(idx, 0)
    assert_knn_equal(idx.query(qc, 10), want)
    assert idx.restarts == 1
    # Killed for good: a new actor is made from the file.
    _kill(idx, 1, restart=False)
    assert_knn_equal(idx.query(qc, 10), want)
    assert idx.restarts == 2
    # Restarted (empty) before the next call: its answer is refused, the
    # file reloaded and the call sent again.
    _kill(idx, 0, wait=True)
    assert_knn_equal(idx.query(qc, 10), want)
    assert idx.restarts == 3
    assert_same(idx, flat, ref, rng, ks=(7,))
    # A loaded index: the restarted actor's __init__ reloads its file itself,
    # whether the next call meets the restart or the restarted actor.
    back = make.load(tmp_path / "s")
    for s, wait in ((0, False), (1, True)):
        pid = back.shard_info()[s]["pid"]
        _kill(back, s, wait=wait)
        assert_knn_equal(back.query(qc, 10), want)
        assert back.shard_info()[s]["pid"] != pid
    assert back.restarts == 2
    # After a restart a shard may change again and be saved again.
    bits = rng.integers(0, 2, size=(5, nbits), dtype=np.uint8)
    back.add(codes_from_bits(bits))
    flat.add(codes_from_bits(bits))
    ref.add(bits)
    back.save(tmp_path / "s")
    _kill(back, 0)
    assert_same(back, flat, ref, rng, ks=(10,))


def test_dead_unsaved_shard_is_a_clear_error(make, rng):
    idx = make(64, 2)
    codes = codes_from_bits(rng.integers(0, 2, size=(200, 64), dtype=np.uint8))
    idx.add(codes)
    _kill(idx, 1)
    t0 = time.monotonic()
    with pytest.raises(hd.ShardError, match="shard 1 of 2") as err:
        idx.query(codes[:3], 5)
    assert err.value.shards == (1,)
    assert "never saved" in str(err.value)
    assert time.monotonic() - t0 < TIMEOUT / 2
    # And so is every later call: no silently partial answer.
    with pytest.raises(hd.ShardError, match="shard 1 of 2"):
        idx.query(codes[:3], 5)
    with pytest.raises(hd.ShardError, match="shard 1 of 2"):
        idx.add(codes[:3])
    other = make(64, 2)
    other.add(codes)
    _kill(other, 0, restart=False)
    with pytest.raises(hd.ShardError, match="shard 0 of 2: its actor died"):
        other.radius(codes[:3], 10)


def test_shard_changed_since_save_is_an_error(make, rng, tmp_path):
    idx = make(64, 2)
    codes = codes_from_bits(rng.integers(0, 2, size=(200, 64), dtype=np.uint8))
    idx.add(codes[:100])
    idx.save(tmp_path / "c")
    idx.add(codes[100:])  # both shards change
    _kill(idx, 0)
    with pytest.raises(hd.ShardError, match="shard 0 of 2.*changed since it was last saved"):
        idx.query(codes[:3], 5)


def test_timeout_is_a_shard_error_not_a_hang(make, rng):
    idx = make(256, 2)
    codes = codes_from_bits(rng.integers(0, 2, size=(20000, 256), dtype=np.uint8))
    idx.add(codes)
    idx.timeout = 1e-4
    with pytest.raises(hd.ShardError, match="did not answer within the timeout"):
        idx.rank(codes[:200])
    idx.timeout = TIMEOUT
    flat = hs.FlatIndex(256)
    flat.add(codes)
    assert_knn_equal(idx.query(codes[:5], 3), flat.query(codes[:5], 3))


def test_timeout_bounds_the_whole_call_restart_included(make, rng, tmp_path):
    """One deadline for the whole call: shard 0 is busy, is killed half way
    through the timeout, and its new actor cannot be placed (it asks for more
    CPUs than the cluster has), so the call ends at the timeout, not at the
    kill plus another timeout for the respawn and the resent call. The shard
    is not lost for that: once it can come back, it does."""
    nbits, T = 64, 6.0
    idx, flat = make(nbits, 2), hs.FlatIndex(nbits)
    codes = codes_from_bits(rng.integers(0, 2, size=(300, nbits), dtype=np.uint8))
    idx.add(codes)
    flat.add(codes)
    idx.save(tmp_path / "saved")
    # Keep shard 0 busy well past T / 2: queued searches of a big batch,
    # as many as take about 3 T on this machine.
    actor0 = idx.actors[0]
    big = np.repeat(codes, 2000, axis=0)
    t0 = time.monotonic()
    ray.get(actor0.query.remote(big, 1, 1))
    each = max(time.monotonic() - t0, 1e-3)
    busy = [actor0.query.remote(big, 1, 1) for _ in range(int(3 * T / each) + 1)]
    # A new actor for shard 0 asks for 1000 CPUs: it waits to be placed.
    real_spawn = idx._spawn
    idx._spawn = lambda s, path: hd.actor.spawn(  # type: ignore[method-assign]
        ray, kind=idx._kind, nbits=nbits, options=idx._options, shard=s, num_shards=2, path=path,
        mmap=False, verify=True, num_cpus=1000, max_restarts=0)
    idx.timeout = T
    killer = threading.Timer(T / 2, lambda: ray.kill(actor0, no_restart=True))
    t0 = time.monotonic()
    killer.start()
    try:
        with pytest.raises(hd.ShardError, match="shard 0 of 2 did not answer within the timeout of 6 s") as err:
            idx.query(codes[:3], 5)
        elapsed = time.monotonic() - t0
    finally:
        killer.join()
        del idx._spawn  # the real spawn again
    assert idx._spawn == real_spawn
    assert err.value.shards == (0,)
    # Before: the kill at T / 2, then a full T for the respawn: 1.5 T.
    assert T - 0.5 <= elapsed < T + 2.0, elapsed
    with pytest.raises(ray.exceptions.RayActorError):  # the last queued search died with the actor
        ray.get(busy[-1])
    # The unplaceable actor gone: the shard comes back whole from its file.
    ray.kill(idx.actors[0], no_restart=True)
    idx.timeout = TIMEOUT
    assert_knn_equal(idx.query(codes[:5], 7), flat.query(codes[:5], 7))
    assert idx.restarts >= 1
