"""Threaded stress: searches from several Python threads while one thread
adds and another removes, and saves while the index changes.

How a result is checked exactly: the writers apply their changes one at a
time (a test-level lock around "change the index, record its new state"),
so the index passes through a known sequence of states S0, S1, S2, ...; the
writer counts a change as begun before it calls the index. A reader notes
the last recorded state ``lo`` before its call and the number of changes
begun ``hi`` after it: the index it searched was in one of S[lo..hi], and the
result must equal the oracle (``oracle.py``) of one of those states, exactly.
A search that saw half of a change matches none of them: every batch added
holds codes next to the queries, and removals take such codes out again, so
the results of neighbouring states differ.

The tests also prove that they are not vacuous: enough calls were checked,
many of them overlapped a change (``hi > lo``), and some saw a state newer
than the one they started from. A thread that does not finish in time fails
the test (deadlock or livelock); any exception in a thread fails it too.

Run time is bounded: each stress test runs for a fixed wall-clock budget
(``HAMSEARCH_STRESS_SECONDS``, default 1.5 s native, a third of it on Numba),
and the number of changes is capped.
"""
from __future__ import annotations

import collections
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest

import hamsearch as hs
from hamsearch import _backend
from oracle import (
    bits_from_codes,
    distances,
    knn as oracle_knn,
    radius as oracle_radius,
    rank as oracle_rank,
)

SECONDS = float(os.environ.get("HAMSEARCH_STRESS_SECONDS", "1.5"))
JOIN_TIMEOUT = 60.0 + 10 * SECONDS  # far beyond any honest run: a thread still alive then is stuck
MAX_CHANGES = 300
MAX_CALLS = 400  # per reader: checking them against the oracle is the slow part

STATS: "collections.Counter[str]" = collections.Counter()


class _Report:
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if STATS:
            parts = ", ".join(f"{k} {v}" for k, v in sorted(STATS.items()))
            terminalreporter.write_line(f"concurrency: {parts}")


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Any:
    pm = request.config.pluginmanager
    if not any(isinstance(p, _Report) for p in pm.get_plugins()):
        pm.register(_Report(), "hamsearch-concurrency-report")
    yield


@pytest.fixture(params=["native", "numba"])
def be(request: pytest.FixtureRequest) -> str:
    if request.param == "native" and _backend._native is None:
        from conftest import require_native

        require_native()
    return request.param


def _budget(be: str) -> float:
    return SECONDS if be == "native" else SECONDS / 3


# -- the sequence of states ---------------------------------------------------------
@dataclass(frozen=True)
class State:
    codes: np.ndarray  # (n, W) uint64, insertion order
    ids: np.ndarray  # (n,) int64
    next_id: int


class History:
    """The states the index passed through, with what readers need: the last
    recorded state (a lower bound on what a search sees) and the changes
    begun (an upper bound)."""

    def __init__(self, first: State, nbits: int, queries: np.ndarray) -> None:
        self.states: List[State] = [first]
        self.begun = 0
        self.lock = threading.Lock()  # writers: one change (and its record) at a time
        self.nbits = nbits
        self.queries = queries
        self._qbits = bits_from_codes(queries, nbits)
        self._dist: Dict[int, np.ndarray] = {}

    def change(self, apply: Callable[[State], State]) -> None:
        """Runs one change: counts it begun, applies it, records the new state."""
        with self.lock:
            self.begun += 1
            new = apply(self.states[-1])
            self.states.append(new)

    def dist(self, s: int) -> np.ndarray:
        """(len(queries), n) distances of state s, by the oracle."""
        if s not in self._dist:
            st = self.states[s]
            self._dist[s] = distances(self._qbits, bits_from_codes(st.codes, self.nbits)) if st.ids.size else \
                np.zeros((len(self.queries), 0), dtype=np.int64)
        return self._dist[s]

    def expected(self, s: int, op: str, rows: np.ndarray, arg: Optional[int]) -> Any:
        d = self.dist(s)[rows]
        ids = self.states[s].ids
        if op == "query":
            return oracle_knn(d, ids, arg)
        if op == "radius":
            return oracle_radius(d, ids, arg)
        return oracle_rank(d, ids)[1]


def _same(got: Any, want: Any, op: str) -> bool:
    if op == "rank":
        return got.dtype == np.int64 and got.shape == want.shape and np.array_equal(got, want)
    if len(got) != len(want):
        return False
    return all(g.shape == w.shape and np.array_equal(g, w) for g, w in zip(got, want))


@dataclass
class Threads:
    """Starts threads that record their exceptions, and joins them with a timeout."""

    errors: List[str] = field(default_factory=list)
    threads: List[threading.Thread] = field(default_factory=list)

    def start(self, name: str, fn: Callable[[], None]) -> None:
        def run() -> None:
            try:
                fn()
            except BaseException:  # noqa: BLE001 - reported by join_all
                self.errors.append(f"{name}:\n{traceback.format_exc()}")

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        t.start()

    def join_all(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stop.set()
        hung = [t.name for t in self.threads if t.is_alive()]
        assert not hung, f"threads still running after {JOIN_TIMEOUT:.0f} s (deadlock?): {hung}"
        assert not self.errors, "exceptions in threads:\n" + "\n".join(self.errors)


# -- data ------------------------------------------------------------------------------
NBITS = 100  # two words, with pad bits
W = 2


def _mask(codes: np.ndarray) -> np.ndarray:
    codes[:, -1] &= np.uint64((1 << (NBITS % 64)) - 1)
    return codes


def _random_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    return _mask(rng.integers(0, 2**64, size=(n, W), dtype=np.uint64, endpoint=False))


def _near(rng: np.random.Generator, queries: np.ndarray, n: int) -> np.ndarray:
    """Codes within a few bits of random queries: they enter the k nearest."""
    rows = queries[rng.integers(0, len(queries), size=n)].copy()
    for i in range(n):
        for _ in range(int(rng.integers(0, 3))):
            b = int(rng.integers(0, NBITS))
            rows[i, b // 64] ^= np.uint64(1) << np.uint64(b % 64)
    return rows


def _make(kind: str, be: str) -> Any:
    if kind == "mih":
        idx = hs.MIHIndex(NBITS, backend=be)
        # Probe the tables for most queries rather than giving up on the scan at once.
        idx._store.scan_fraction = 4.0
        return idx
    return hs.FlatIndex(NBITS, backend=be)


def _setup(kind: str, be: str, seed: int, n0: int) -> Tuple[Any, History, np.random.Generator]:
    rng = np.random.default_rng(seed)
    idx = _make(kind, be)
    queries = _random_codes(rng, 12)
    start = np.concatenate([_random_codes(rng, n0 - 40), _near(rng, queries, 40)])
    ids = idx.add(start)
    hist = History(State(start, ids, int(ids[-1]) + 1), NBITS, queries)
    # Compile / build everything once before the clock starts: r = 10 goes
    # to MIH's scan before any probe at this size, r = 0 probes the tables.
    idx.query(queries[:2], k=3)
    idx.radius(queries[:2], r=10)
    idx.radius(queries[:2], r=0)
    idx.rank(queries[:2])
    return idx, hist, rng


def _adder(idx: Any, hist: History, seed: int, stop: threading.Event, deadline: float) -> None:
    rng = np.random.default_rng(seed)
    while not stop.is_set() and time.monotonic() < deadline and hist.begun < MAX_CHANGES:
        n = int(rng.integers(2, 7))
        codes = np.concatenate([_near(rng, hist.queries, n - 1), _random_codes(rng, 1)])
        custom = rng.random() < 0.3

        def apply(st: State) -> State:
            if custom:  # fresh ids, descending: row order is then not id order
                ids = np.arange(st.next_id + n - 1, st.next_id - 1, -1, dtype=np.int64) + 7
                got = idx.add(codes, ids=ids)
            else:
                got = idx.add(codes)
                ids = np.arange(st.next_id, st.next_id + n, dtype=np.int64)
            assert np.array_equal(got, ids)
            return State(np.concatenate([st.codes, codes]), np.concatenate([st.ids, ids]),
                         max(st.next_id, int(ids.max()) + 1))

        hist.change(apply)
        time.sleep(float(rng.random()) * 0.002)


def _remover(idx: Any, hist: History, seed: int, stop: threading.Event, deadline: float) -> None:
    rng = np.random.default_rng(seed)
    while not stop.is_set() and time.monotonic() < deadline and hist.begun < MAX_CHANGES:
        def apply(st: State) -> State:
            # Mostly the newest codes (next to the queries), plus one id not there.
            n = st.ids.size
            pick = st.ids[n - 1 - rng.integers(0, min(n, 40), size=int(rng.integers(1, 4)))] if n else st.ids
            gone = np.concatenate([pick, [st.next_id + 10**6]])
            removed = idx.remove(gone)
            keep = ~np.isin(st.ids, gone)
            assert removed == int((~keep).sum())
            return State(st.codes[keep], st.ids[keep], st.next_id)

        hist.change(apply)
        time.sleep(float(rng.random()) * 0.003)


@dataclass
class Call:
    op: str
    rows: np.ndarray
    arg: Optional[int]
    lo: int
    hi: int
    result: Any


def _reader(idx: Any, hist: History, seed: int, stop: threading.Event, deadline: float,
            calls: List[Call]) -> None:
    rng = np.random.default_rng(seed)
    while not stop.is_set() and time.monotonic() < deadline:
        op = ("query", "query", "radius", "rank")[int(rng.integers(0, 4))]
        rows = np.sort(rng.choice(len(hist.queries), size=int(rng.integers(1, 5)), replace=False))
        q = np.ascontiguousarray(hist.queries[rows])
        threads = int(rng.integers(1, 3))
        lo = len(hist.states) - 1
        if op == "query":
            arg: Optional[int] = int(rng.integers(1, 12))
            res = idx.query(q, k=arg, threads=threads)
        elif op == "radius":
            arg = int(rng.integers(0, 8))
            res = idx.radius(q, r=arg, threads=threads)
        else:
            arg = None
            res = idx.rank(q, threads=threads)
        hi = hist.begun
        calls.append(Call(op, rows, arg, lo, hi, res))
        if len(calls) >= MAX_CALLS:
            return
        time.sleep(float(rng.random()) * 0.003)  # leave the writers room; the check is what costs


class MixedBatchError(AssertionError):
    """Each query of a batch saw a whole state, but not all the same one."""


def _rows_of(c: Call) -> List[Tuple[np.ndarray, Any]]:
    """A call split into one call per query row: (rows, result)."""
    out = []
    for j in range(len(c.rows)):
        if c.op == "rank":
            got: Any = c.result[j : j + 1]
        elif c.op == "query":
            got = (c.result[0][j : j + 1], c.result[1][j : j + 1])
        else:
            lims, D, I = c.result
            a, b = int(lims[j]), int(lims[j + 1])
            got = (np.array([0, b - a], dtype=lims.dtype), D[a:b], I[a:b])
        out.append((c.rows[j : j + 1], got))
    return out


def _verify(hist: History, calls: List[Call], min_calls: int, min_overlap: int) -> Tuple[int, int]:
    """Every call against the states it may have seen; (overlapped, newer).
    A call none of whose candidate states explains it fails at once if one
    of its queries matches none of them either (a torn read); if each query
    matches one but not the same one, MixedBatchError is raised at the end."""
    overlapped = newer = 0
    mixed = []
    for c in calls:
        assert 0 <= c.lo <= c.hi < len(hist.states)
        states = range(c.lo, c.hi + 1)
        match = next((s for s in states if _same(c.result, hist.expected(s, c.op, c.rows, c.arg), c.op)), None)
        if match is None:
            per_row = [[s for s in states if _same(got, hist.expected(s, c.op, rows, c.arg), c.op)]
                       for rows, got in _rows_of(c)]
            if all(per_row):
                mixed.append(f"{c.op}(rows={c.rows.tolist()}, arg={c.arg}): queries saw states {per_row}")
                continue
            raise AssertionError(
                f"{c.op}(rows={c.rows.tolist()}, arg={c.arg}) matches none of the states {c.lo}..{c.hi} it may "
                f"have seen, nor do its queries one by one ({per_row}): a torn read\n got: {c.result}\n"
                f" want (state {c.lo}): {hist.expected(c.lo, c.op, c.rows, c.arg)}")
        overlapped += c.hi > c.lo
        newer += match > c.lo
    assert len(calls) >= min_calls, f"only {len(calls)} searches ran"
    assert overlapped >= min_overlap, f"only {overlapped} of {len(calls)} searches overlapped a change"
    assert len(hist.states) >= 10, f"only {len(hist.states) - 1} changes were made"
    if mixed:
        raise MixedBatchError(f"{len(mixed)} of {len(calls)} batches mixed states, e.g. " + "; ".join(mixed[:3]))
    return overlapped, newer


@pytest.mark.parametrize("be,kind", [
    pytest.param("native", "flat", id="native-flat"),
    pytest.param("native", "mih", id="native-mih"),
    pytest.param("numba", "flat", id="numba-flat"),
    pytest.param("numba", "mih", id="numba-mih"),
])
def test_searches_see_whole_changes(be: str, kind: str) -> None:
    """Three readers (query, radius, rank) while one thread adds and another
    removes: every result is exactly that of one state the index passed through."""
    if be == "native" and _backend._native is None:
        from conftest import require_native

        require_native()
    idx, hist, rng = _setup(kind, be, seed=11 if kind == "flat" else 12, n0=1500)
    stop = threading.Event()
    deadline = time.monotonic() + _budget(be)
    pool = Threads()
    calls: List[List[Call]] = [[] for _ in range(3)]
    pool.start("adder", lambda: _adder(idx, hist, 1, stop, deadline))
    pool.start("remover", lambda: _remover(idx, hist, 2, stop, deadline))
    for i in range(3):
        pool.start(f"reader-{i}", lambda i=i: _reader(idx, hist, 10 + i, stop, deadline, calls[i]))
    pool.join_all(stop)
    flat_calls = [c for cs in calls for c in cs]
    native = be == "native"
    overlapped, newer = _verify(hist, flat_calls, min_calls=60 if native else 15, min_overlap=10 if native else 3)
    assert newer >= 1, "no search saw a state newer than the one it started from: the threads did not overlap"
    # The index ends in the last state.
    last = hist.states[-1]
    np.testing.assert_array_equal(idx._store.ids(), last.ids)
    np.testing.assert_array_equal(np.asarray(idx._store.codes()).reshape(-1, W), last.codes)
    STATS[f"searches checked ({be})"] += len(flat_calls)
    STATS[f"overlapping a change ({be})"] += overlapped
    STATS[f"seeing a newer state ({be})"] += newer
    STATS[f"changes ({be})"] += len(hist.states) - 1


@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_save_during_changes_writes_one_state(kind: str, be: str, tmp_path: Any) -> None:
    """idx.save while the index changes: every file loads (copied and mapped)
    and holds exactly one state the index passed through, with its next id."""
    idx, hist, rng = _setup(kind, be, seed=21 if kind == "flat" else 22, n0=600)
    stop = threading.Event()
    deadline = time.monotonic() + _budget(be)
    pool = Threads()
    saves: List[Tuple[str, int, int]] = []

    def saver() -> None:
        i = 0
        while not stop.is_set() and time.monotonic() < deadline and i < 40:
            path = str(tmp_path / f"s{i}.hsi")
            lo = len(hist.states) - 1
            idx.save(path)
            saves.append((path, lo, hist.begun))
            i += 1

    pool.start("adder", lambda: _adder(idx, hist, 3, stop, deadline))
    pool.start("remover", lambda: _remover(idx, hist, 4, stop, deadline))
    pool.start("saver", saver)
    pool.join_all(stop)
    assert len(saves) >= 3, f"only {len(saves)} saves ran"
    overlapped = 0
    for j, (path, lo, hi) in enumerate(saves):
        loaded = hs.load(path, mmap=bool(j % 2), backend=be)
        ids = loaded._store.ids()
        codes = np.asarray(loaded._store.codes()).reshape(-1, W)
        match = [s for s in range(lo, hi + 1)
                 if np.array_equal(ids, hist.states[s].ids) and np.array_equal(codes, hist.states[s].codes)
                 and loaded._next_id == hist.states[s].next_id]
        assert match, f"{path} holds none of the states {lo}..{hi} (n={ids.size})"
        s = match[0]
        assert_searches_like(loaded, hist, s)
        overlapped += hi > lo
        del loaded
    assert overlapped >= 1, "no save overlapped a change"
    STATS[f"saves checked ({be})"] += len(saves)
    STATS[f"saves overlapping a change ({be})"] += overlapped


def assert_searches_like(idx: Any, hist: History, s: int) -> None:
    rows = np.arange(3)
    q = hist.queries[rows]
    for op, arg in (("query", 5), ("radius", 6), ("rank", None)):
        got = idx.query(q, k=arg) if op == "query" else idx.radius(q, r=arg) if op == "radius" else idx.rank(q)
        assert _same(got, hist.expected(s, op, rows, arg), op), (op, s)


def test_concurrent_adds_hand_out_distinct_ids(be: str) -> None:
    """Default ids from four threads adding at once: never the same id twice,
    and together exactly 0..n-1, each with its own codes."""
    idx = hs.FlatIndex(64, backend=be)
    per_thread, batches = 5, 40 if be == "native" else 15
    got: List[List[Tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(4)]
    stop = threading.Event()
    pool = Threads()

    def add(t: int) -> None:
        rng = np.random.default_rng(t)
        for _ in range(batches):
            codes = rng.integers(0, 2**64, size=(per_thread, 1), dtype=np.uint64, endpoint=False)
            got[t].append((idx.add(codes), codes))

    for t in range(4):
        pool.start(f"adder-{t}", lambda t=t: add(t))
    pool.join_all(stop)
    ids = np.concatenate([i for g in got for i, _ in g])
    np.testing.assert_array_equal(np.sort(ids), np.arange(4 * batches * per_thread))
    stored = dict(zip(idx._store.ids().tolist(), np.asarray(idx._store.codes())[:, 0].tolist()))
    for g in got:
        for i, c in g:
            assert [stored[x] for x in i.tolist()] == c[:, 0].tolist()
    STATS[f"concurrent adds ({be})"] += 4 * batches
