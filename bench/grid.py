"""The benchmark grid: which cases run, with what batch sizes and rounds.

Kept apart from the tests so that ``conftest.py`` (options, ordering) and
``bench_flat.py`` (the measurements) read the same definitions.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

# (library, backend): the searchers the suite knows. "hamsearch" is the
# engine under test; the others are peers.
HAMSEARCH_NATIVE = ("hamsearch", "native")
HAMSEARCH_NUMBA = ("hamsearch", "numba")
FAISS = ("faiss", "IndexBinaryFlat")
USEARCH = ("usearch", "exact")
NUMPY = ("numpy", "scan")
SEARCHERS: Tuple[Tuple[str, str], ...] = (HAMSEARCH_NATIVE, HAMSEARCH_NUMBA, FAISS, USEARCH, NUMPY)

# Grid profiles: "quick" (the CI smoke run: n = 10^5, small batches),
# "standard" (the whole suite in under 30 minutes on the 2-core reference
# machine: n = 10^5, 10^6 and 10^7, every searcher's batch held to a budget of
# query x code pairs) and "full" (batches of 1000 for the fast searchers at
# every n, and the slow builds the standard profile leaves out).
PROFILES = ("quick", "standard", "full")
DEFAULT_PROFILE = "standard"

# Batch sizes. Fast searchers get a fixed batch; slow ones a budget of
# query x code pairs per round, so that one round stays within a few seconds.
# The standard profile holds the fast searchers to FAST_PAIRS as well (1000
# queries up to 10^6 codes, 100 at 10^7): the same batch for every exact
# scan of a row. The batch size of every case is recorded in
# extra_info["nq"].
FULL_NQ = 1000
QUICK_NQ = 50
FAST_PAIRS = 1e9
PAIR_BUDGET: Dict[Tuple[str, str], float] = {
    # measured on the 2-core Zen 3 reference machine: about 3e7 pairs/s per thread
    USEARCH: 1e7,
    # about 5e7 pairs/s at 64 bits, 1.5e7 at 256 bits, plus argpartition
    NUMPY: 2e7,
    # about 4e8-8e8 pairs/s per thread: 500 queries at 10^6, 50 at 10^7
    HAMSEARCH_NUMBA: 5e8,
}
MIN_SLOW_NQ = 2
QUICK_SLOW_NQ = 10

# Rounds per case: a median of 3 batch rounds; more for the one-query cases,
# whose rounds take milliseconds.
BATCH_ROUNDS = 3
SINGLE_ROUNDS = 30
QUICK_SINGLE_ROUNDS = 10

SINGLE_QUERY_K = 10
LARGE_K = 1000

# hamsearch FlatIndex against faiss IndexBinaryFlat with their rounds
# interleaved (one batch of each a round, the order alternating), so that
# both see the same machine load: the figure the flat-scan targets are set in
# (k = 10, one thread, the fast batch).
PAIR_K = 10
PAIR_ROUNDS = 5

# The popcount compute bound: the scan's kernel alone (no selection) over one
# block of the scan's own size (128 KiB of codes, FlatIndex::block_rows), which
# stays in the L2 cache, so that memory never limits it: the comparison rate of
# a scan with nothing else to do, per width and threads.
COMPUTE_CACHE_BYTES = 128 * 1024
COMPUTE_NQ = 16384
QUICK_COMPUTE_NQ = 1024
COMPUTE_ROUNDS = 5


def adaptive_rounds(fn: Any, args: Tuple[Any, ...], nq: int, least: int, most: int, seconds: float) -> int:
    """Timed rounds for a case whose batch of ``nq`` queries is ``fn(*args)``:
    ``least``, or more (up to ``most``) where that many rounds would last
    less than ``seconds`` in all, so that a median of millisecond rounds is
    not three samples of timer noise. Makes one untimed call of one query
    (``args[0][:1]``) and, where it suggests a short batch, one of the batch;
    both double as the warm-up (thread pools, output pages)."""
    import time

    t0 = time.perf_counter()
    fn(args[0][:1], *args[1:])
    single = time.perf_counter() - t0
    if single * nq * least >= seconds:
        return least
    t0 = time.perf_counter()
    fn(*args)
    batch = max(time.perf_counter() - t0, 1e-6)
    return int(min(most, max(least, math.ceil(seconds / batch))))


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def quick_from_env() -> bool:
    """``HAMSEARCH_BENCH_QUICK=1``: the smoke-test grid (n = 10^5, small batches)."""
    return _env_flag("HAMSEARCH_BENCH_QUICK")


def check_profile(profile: str) -> str:
    """``profile`` if it names a grid profile; ValueError otherwise."""
    if profile not in PROFILES:
        raise ValueError(f"--hs-profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    return profile


def parse_ints(text: str, name: str) -> Tuple[int, ...]:
    """``"1e6,1e7"`` or ``"64,128"`` -> a tuple of ints (scientific notation allowed)."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{name}: expected comma-separated integers such as 1e6,1e7, got {part!r}") from None
        if value != int(value) or value < 1:
            raise ValueError(f"{name}: expected positive integers, got {part!r}")
        out.append(int(value))
    if not out:
        raise ValueError(f"{name}: expected at least one value, got {text!r}")
    return tuple(out)


def n_label(n: int) -> str:
    """10**7 -> "1e7"; other sizes as plain digits."""
    exp = round(math.log10(n)) if n > 0 else 0
    return f"1e{exp}" if 10**exp == n else str(n)


@dataclass(frozen=True)
class Case:
    """One benchmark: a searcher on one data set with one (k, threads, nq)."""

    kind: str  # "knn" (batch), "single" (nq = 1), "floor" (memory read), "compute" (popcount bound)
    # or "pair" (hamsearch and faiss batches, rounds interleaved)
    library: str
    backend: str
    nbits: int
    n: int
    k: int
    threads: int
    nq: int
    rounds: int

    @property
    def data_key(self) -> Tuple[int, int]:
        return (self.nbits, self.n)

    @property
    def group(self) -> str:
        base = f"nbits={self.nbits} n={n_label(self.n)} k={self.k}"
        if self.kind in ("single", "floor"):
            return f"{base} nq=1 (bandwidth floor)"
        if self.kind == "compute":
            return f"nbits={self.nbits} compute bound (cache-resident scan)"
        if self.kind == "pair":
            return f"{base} hamsearch vs faiss (interleaved)"
        return base

    @property
    def id(self) -> str:
        if self.kind == "floor":
            return f"floor-read-b{self.nbits}-n{n_label(self.n)}-t{self.threads}"
        if self.kind == "compute":
            return f"floor-popcount-b{self.nbits}-n{self.n}-t{self.threads}"
        if self.kind == "pair":
            return f"pair-hamsearch-faiss-b{self.nbits}-n{n_label(self.n)}-k{self.k}-t{self.threads}-q{self.nq}"
        return (
            f"{self.library}-{self.backend}-b{self.nbits}-n{n_label(self.n)}"
            f"-k{self.k}-t{self.threads}-q{self.nq}"
        )


@dataclass
class BenchConfig:
    profile: str = DEFAULT_PROFILE
    ns: Tuple[int, ...] = (10**5, 10**6, 10**7)
    nbits: Tuple[int, ...] = (64, 128, 256)
    ks: Tuple[int, ...] = (1, 10, 100)
    threads: Tuple[int, ...] = (1, 2)
    nq: Optional[int] = None  # batch size of the fast searchers; None: FULL_NQ / QUICK_NQ
    seed: int = 20240601
    searchers: Tuple[Tuple[str, str], ...] = field(default=SEARCHERS)

    @classmethod
    def make(
        cls,
        *,
        quick: bool = False,
        profile: Optional[str] = None,
        ns: Optional[Sequence[int]] = None,
        nbits: Optional[Sequence[int]] = None,
        nq: Optional[int] = None,
    ) -> "BenchConfig":
        """The grid of ``profile`` (``quick=True`` means the quick profile),
        with ``ns``, ``nbits`` and the fast batch ``nq`` overriding its own."""
        if quick and profile not in (None, "quick"):
            raise ValueError(f"--hs-quick contradicts --hs-profile {profile}")
        cfg = cls(profile=check_profile("quick" if quick else profile or DEFAULT_PROFILE))
        if cfg.quick:
            cfg.ns = (10**5,)
        if ns:
            cfg.ns = tuple(sorted(set(ns)))
        if nbits:
            cfg.nbits = tuple(sorted(set(nbits)))
        cfg.nq = nq
        return cfg

    @property
    def quick(self) -> bool:
        return self.profile == "quick"

    @property
    def full(self) -> bool:
        return self.profile == "full"

    @property
    def fast_nq(self) -> int:
        if self.nq is not None:
            return self.nq
        return QUICK_NQ if self.quick else FULL_NQ

    def batch_nq(self, searcher: Tuple[str, str], n: int) -> int:
        """The batch size of ``searcher`` on ``n`` codes."""
        budget = PAIR_BUDGET.get(searcher)
        if budget is None:
            return self.budget_nq(n)
        if self.quick:
            return min(self.fast_nq, QUICK_SLOW_NQ)
        return int(min(self.fast_nq, max(MIN_SLOW_NQ, budget // n)))

    def budget_nq(self, n: int, pairs: float = FAST_PAIRS, least: int = MIN_SLOW_NQ) -> int:
        """A batch on ``n`` codes held to ``pairs`` query x code pairs (at
        least ``least`` queries, at most ``fast_nq``). The fast searchers'
        budget (``pairs`` = FAST_PAIRS) applies in the standard profile only,
        and not when ``--hs-nq`` names the batch; a slow searcher's smaller
        budget applies in the standard and full profiles. The quick profile
        takes ``fast_nq``."""
        if self.quick or (pairs >= FAST_PAIRS and (self.full or self.nq is not None)):
            return self.fast_nq
        return int(min(self.fast_nq, max(least, pairs // n)))

    @property
    def single_rounds(self) -> int:
        return QUICK_SINGLE_ROUNDS if self.quick else SINGLE_ROUNDS

    @property
    def max_nq(self) -> int:
        return max(self.fast_nq, 1)

    def cases(self) -> List[Case]:
        """Every case, ordered by data set so that each is generated once."""
        return list(self._cases())

    def _cases(self) -> Iterator[Case]:
        big_n = max(self.ns)
        compute_nq = QUICK_COMPUTE_NQ if self.quick else COMPUTE_NQ
        for nbits in self.nbits:
            n_cache = COMPUTE_CACHE_BYTES // (8 * ((nbits + 63) // 64))
            for threads in self.threads:
                yield Case("compute", "floor", "popcount", nbits, n_cache, 1, threads, compute_nq, COMPUTE_ROUNDS)
        for n in self.ns:
            for nbits in self.nbits:
                for k in self.ks:
                    for threads in self.threads:
                        for searcher in self.searchers:
                            if searcher == NUMPY and threads != 1:
                                continue  # numpy scans on one thread only
                            yield Case("knn", *searcher, nbits, n, k, threads,
                                       self.batch_nq(searcher, n), BATCH_ROUNDS)
                if 1 in self.threads and HAMSEARCH_NATIVE in self.searchers and FAISS in self.searchers:
                    yield Case("pair", "hamsearch", "native-vs-faiss", nbits, n, PAIR_K, 1,
                               self.batch_nq(HAMSEARCH_NATIVE, n), PAIR_ROUNDS)
                if n == big_n and nbits == min(self.nbits) and 1 in self.threads:
                    # Large k: the selection, not the scan, starts to matter.
                    for searcher in (HAMSEARCH_NATIVE, FAISS):
                        yield Case("knn", *searcher, nbits, n, LARGE_K, 1, self.fast_nq, BATCH_ROUNDS)
                if n == big_n:
                    # Latency of one query on every core against the memory-read floor,
                    # and that floor (the read bandwidth) on one and on every thread.
                    t = max(self.threads)
                    for searcher in (HAMSEARCH_NATIVE, FAISS):
                        yield Case("single", *searcher, nbits, n, SINGLE_QUERY_K, t, 1, self.single_rounds)
                    for ft in sorted(set(self.threads)):
                        yield Case("floor", "floor", "read", nbits, n, SINGLE_QUERY_K, ft, 1, self.single_rounds)


def _usage_error(message: str) -> Exception:
    import pytest

    return pytest.UsageError(message)


def bench_config(config: Any) -> BenchConfig:
    """The grid selected by the command line, built once per session."""
    cached = getattr(config, "_hamsearch_bench_config", None)
    if cached is None:
        quick = bool(config.getoption("--hs-quick")) or quick_from_env()
        profile = config.getoption("--hs-profile")
        ns = config.getoption("--hs-n")
        nbits = config.getoption("--hs-nbits")
        nq = config.getoption("--hs-nq")
        if nq is not None and nq < 1:
            raise _usage_error(f"--hs-nq: expected a positive batch size, got {nq}")
        try:
            cached = BenchConfig.make(
                quick=quick,
                profile=profile,
                ns=parse_ints(ns, "--hs-n") if ns else None,
                nbits=parse_ints(nbits, "--hs-nbits") if nbits else None,
                nq=nq,
            )
        except ValueError as exc:
            raise _usage_error(str(exc)) from None
        config._hamsearch_bench_config = cached  # type: ignore[attr-defined]
    return cached
