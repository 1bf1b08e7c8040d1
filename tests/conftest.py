"""Shared fixtures: every search test runs on the native core at every kernel
level this CPU supports, and once on the Numba backend.

``HAMSEARCH_IMPLEMENTATION=native`` turns a missing native core into a
failure instead of a skip, so that CI cannot silently test the fallback only.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from typing import Iterator, Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.configuration import set_hypothesis_home_dir

from hamsearch import _backend

# No example database, and Hypothesis's caches in a temporary directory:
# nothing is written to the working directory.
_HYPOTHESIS_HOME = tempfile.mkdtemp(prefix="hamsearch-tests-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME)
settings.register_profile(
    "hamsearch",
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("hamsearch")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_HYPOTHESIS_HOME, ignore_errors=True)


def native_required() -> bool:
    """True when the environment demands the compiled core."""
    return os.environ.get("HAMSEARCH_IMPLEMENTATION", "").strip().lower() == "native"


def require_native() -> None:
    """Skip (or fail, under HAMSEARCH_IMPLEMENTATION=native) without the native core."""
    if _backend._native is None:
        why = f"the native core hamsearch._core did not load: {_backend._native_error!r}"
        if native_required():
            pytest.fail(f"HAMSEARCH_IMPLEMENTATION=native but {why}")
        pytest.skip(why)


def _engine_params() -> list:
    levels = _backend.available_isas() if _backend._native is not None else ()
    native = [pytest.param(("native", lvl), id=f"native-{lvl}") for lvl in levels]
    if not native:
        native = [pytest.param(("native", None), id="native")]
    return native + [pytest.param(("numba", None), id="numba")]


@pytest.fixture(params=_engine_params())
def _engine(request: pytest.FixtureRequest) -> Iterator[Tuple[str, Optional[str]]]:
    name, level = request.param
    if name == "native":
        require_native()
        previous = _backend.set_isa(level)
        try:
            assert _backend.isa() == level
            yield name, level
        finally:
            _backend.set_isa(previous)
    else:
        yield name, None


@pytest.fixture
def backend(_engine: Tuple[str, Optional[str]]) -> str:
    """``"native"`` (once per kernel level, set for the test's duration) or ``"numba"``."""
    return _engine[0]


@pytest.fixture
def isa(_engine: Tuple[str, Optional[str]]) -> Optional[str]:
    """The native kernel level in force for this test; None for Numba."""
    return _engine[1]


def _file_backends() -> list:
    out = [pytest.param("numba", id="numba")]
    if _backend._native is not None:
        out.insert(0, pytest.param("native", id="native"))
    return out


@pytest.fixture(params=_file_backends())
def be(request: pytest.FixtureRequest) -> str:
    """``"native"`` (where the core is built) or ``"numba"``, once each, at
    the kernel level in force: for tests of what does not depend on it
    (index files)."""
    return request.param


@pytest.fixture
def native_backend() -> str:
    """For tests that need the native core itself."""
    require_native()
    return "native"


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test function's name: reproducible, the same
    data for every backend and kernel level, distinct between tests."""
    return np.random.default_rng(zlib.crc32(request.node.originalname.encode()))


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    """PyTorch on one thread for the test (the machine is shared; one thread
    also keeps trained codes bit-identical run to run). Imports torch only
    when a test asks for it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



@pytest.fixture(scope="session")
def small():
    """The small synthetic set of the trainer's method tests (``trainer_checks.SMALL``)."""
    from trainer.data import load_dataset
    from trainer_checks import SMALL

    return load_dataset("synthetic", seed=0, synthetic=SMALL)
