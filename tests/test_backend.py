"""Backend choice (HAMSEARCH_IMPLEMENTATION) and kernel levels (HAMSEARCH_ISA).

Environment variables are read at import, so each case runs in a fresh
interpreter (``sys.executable -c``), importing the same hamsearch as this
process, with the working directory in ``tmp_path``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import hamsearch as hs
from hamsearch import _backend
from conftest import require_native

ISA_LEVELS = ("scalar", "popcnt", "avx2", "avx512_vpopcntdq")
PACKAGE_PARENT = str(Path(hs.__file__).resolve().parent.parent)

# Makes the compiled module unimportable, as when the extension was never built.
HIDE_NATIVE = "import sys\nsys.modules['hamsearch._core'] = None\n"


def run_python(code: str, tmp_path: Path, **env_vars: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last."""
    env = {k: v for k, v in os.environ.items() if k not in ("HAMSEARCH_IMPLEMENTATION", "HAMSEARCH_ISA")}
    env.update(env_vars)
    env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no output; stderr:\n{proc.stderr}"
    return json.loads(lines[-1])


# Constructs an index with the default backend, recording every warning and
# any exception (from the import or from the constructor) as JSON.
CONSTRUCT = """
import json, warnings
out = {"backend": None, "error": None, "error_type": None, "is_import_error": False, "warnings": []}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        import hamsearch as hs
        idx = hs.FlatIndex(64%s)
        out["backend"] = idx.backend
        out["isa"] = hs.isa()
    except Exception as exc:
        out["error"] = str(exc)
        out["error_type"] = type(exc).__name__
        out["is_import_error"] = isinstance(exc, ImportError)
        out["is_value_error"] = isinstance(exc, ValueError)
out["warnings"] = [[w.category.__name__, str(w.message)] for w in caught]
try:
    import hamsearch._core
    out["core_error"] = None
except ImportError as exc:
    out["core_error"] = str(exc)
print(json.dumps(out))
"""


def construct(backend_kw: str = "") -> str:
    return CONSTRUCT % backend_kw


def test_env_numba_selects_numba(tmp_path):
    out = run_python(construct(), tmp_path, HAMSEARCH_IMPLEMENTATION="numba")
    assert out["error"] is None, out
    assert out["backend"] == "numba"
    assert not [w for w in out["warnings"] if w[0] == "RuntimeWarning"], out["warnings"]


@pytest.mark.parametrize("value", ["cuda", "python", "yes"])
def test_env_invalid_value_raises_value_error(tmp_path, value):
    out = run_python(construct(), tmp_path, HAMSEARCH_IMPLEMENTATION=value)
    assert out["backend"] is None, out
    assert out["is_value_error"], out
    assert "HAMSEARCH_IMPLEMENTATION" in out["error"]
    assert "expected" in out["error"] and value in out["error"]


@pytest.mark.parametrize("env", [{}, {"HAMSEARCH_IMPLEMENTATION": "auto"}], ids=["unset", "auto"])
def test_auto_falls_back_to_numba_with_the_import_error(tmp_path, env):
    out = run_python(HIDE_NATIVE + construct(), tmp_path, **env)
    assert out["error"] is None, out
    assert out["backend"] == "numba"
    assert out["core_error"], out  # the shim really hid the module
    runtime = [msg for cat, msg in out["warnings"] if cat == "RuntimeWarning"]
    assert runtime, out["warnings"]
    assert any(out["core_error"] in msg for msg in runtime), (out["core_error"], runtime)
    assert out["isa"] == "none"


def test_explicit_numba_does_not_warn_without_core(tmp_path):
    out = run_python(HIDE_NATIVE + construct(", backend='numba'"), tmp_path)
    assert out["error"] is None, out
    assert out["backend"] == "numba"
    assert not [w for w in out["warnings"] if w[0] == "RuntimeWarning"], out["warnings"]


def test_env_native_without_core_raises_import_error(tmp_path):
    out = run_python(HIDE_NATIVE + construct(), tmp_path, HAMSEARCH_IMPLEMENTATION="native")
    assert out["backend"] is None, out
    assert out["is_import_error"], out
    assert "hamsearch._core" in out["error"]


def test_explicit_native_without_core_raises_import_error(tmp_path):
    out = run_python(HIDE_NATIVE + construct(", backend='native'"), tmp_path, HAMSEARCH_IMPLEMENTATION="numba")
    assert out["backend"] is None, out
    assert out["is_import_error"], out
    assert "hamsearch._core" in out["error"]


def test_auto_uses_native_when_present(tmp_path):
    require_native()
    for env in ({}, {"HAMSEARCH_IMPLEMENTATION": "auto"}, {"HAMSEARCH_IMPLEMENTATION": "native"}):
        out = run_python(construct(), tmp_path, **env)
        assert out["error"] is None, out
        assert out["backend"] == "native", env
        assert out["core_error"] is None
        assert not out["warnings"], out["warnings"]
        assert out["isa"] in ISA_LEVELS


def test_env_numba_overrides_present_core(tmp_path):
    require_native()
    out = run_python(construct(), tmp_path, HAMSEARCH_IMPLEMENTATION="numba")
    assert out["backend"] == "numba"
    out = run_python(construct(", backend='native'"), tmp_path, HAMSEARCH_IMPLEMENTATION="numba")
    assert out["backend"] == "native"


def test_hamsearch_never_imports_torch(tmp_path):
    code = """
    import json, sys
    import numpy as np
    import hamsearch as hs

    class T:
        def __array__(self, dtype=None, copy=None):
            return np.array([[0.5, -0.5]])

    codes = hs.pack(T())
    idx = hs.FlatIndex(2, backend="numba")
    print(json.dumps({"torch": "torch" in sys.modules, "codes": codes.tolist()}))
    """
    out = run_python(code, tmp_path)
    assert out == {"torch": False, "codes": [[1]]}


# --- kernel levels -------------------------------------------------------------------

ISA_PROBE = """
import json
import numpy as np
import hamsearch as hs
from hamsearch import _backend
idx = hs.FlatIndex(130, backend="native")
codes = np.array([[0, 0, 0], [2**64 - 1, 5, 3], [1, 0, 2]], dtype=np.uint64)
idx.add(codes)
D, I = idx.query(codes[:1], 3)
print(json.dumps({"isa": hs.isa(), "available": list(_backend.available_isas()),
                  "D": D.tolist(), "I": I.tolist()}))
"""


def test_hs_isa_names_a_level():
    require_native()
    level = hs.isa()
    assert level in ISA_LEVELS
    assert level in _backend.available_isas()
    if not os.environ.get("HAMSEARCH_ISA"):
        assert level == _backend.available_isas()[-1]


def test_available_isas_are_ordered_and_include_scalar():
    require_native()
    levels = _backend.available_isas()
    assert "scalar" in levels
    assert list(levels) == sorted(levels, key=ISA_LEVELS.index)
    assert len(set(levels)) == len(levels)


def test_env_isa_scalar(tmp_path):
    require_native()
    out = run_python(ISA_PROBE, tmp_path, HAMSEARCH_ISA="scalar")
    assert out["isa"] == "scalar"
    assert out["D"] == [[0, 2, 68]]
    assert out["I"] == [[0, 2, 1]]


@pytest.mark.parametrize("cap", ISA_LEVELS)
def test_env_isa_caps_the_level(tmp_path, cap):
    require_native()
    available = list(_backend.available_isas())
    out = run_python(ISA_PROBE, tmp_path, HAMSEARCH_ISA=cap)
    assert out["available"] == available  # the cap does not hide levels from available_isas
    allowed = [lvl for lvl in available if ISA_LEVELS.index(lvl) <= ISA_LEVELS.index(cap)]
    assert out["isa"] == allowed[-1]
    assert out["D"] == [[0, 2, 68]] and out["I"] == [[0, 2, 1]]


@pytest.mark.parametrize("value", ["sse2", "avx-512", "fastest"])
def test_env_isa_invalid_value_raises_value_error(tmp_path, value):
    require_native()
    code = """
    import json
    try:
        import hamsearch as hs
        hs.FlatIndex(64, backend="native")
        out = {"error": None, "isa": hs.isa()}
    except Exception as exc:
        out = {"error": str(exc), "is_value_error": isinstance(exc, ValueError)}
    print(json.dumps(out))
    """
    out = run_python(code, tmp_path, HAMSEARCH_ISA=value)
    assert out["error"] is not None, out
    assert out["is_value_error"], out
    assert "HAMSEARCH_ISA" in out["error"] and "expected" in out["error"]


def test_set_isa_switches_and_returns_previous():
    require_native()
    original = hs.isa()
    try:
        for level in _backend.available_isas():
            before = hs.isa()
            assert _backend.set_isa(level) == before
            assert hs.isa() == level
            # A search runs at this level and is right.
            idx = hs.FlatIndex(64, backend="native")
            idx.add(np.array([[0], [7], [2**63]], dtype=np.uint64))
            D, I = idx.query(np.array([[0]], dtype=np.uint64), 3)
            assert D.tolist() == [[0, 1, 3]] and I.tolist() == [[0, 2, 1]]
    finally:
        _backend.set_isa(original)
    assert hs.isa() == original


@pytest.mark.parametrize(
    "level, exc",
    [("avx1024", ValueError), ("", ValueError), ("SCALAR", ValueError), (2, TypeError), (None, TypeError)],
)
def test_set_isa_rejects_bad_levels(level, exc):
    require_native()
    before = hs.isa()
    with pytest.raises(exc, match="expected"):
        _backend.set_isa(level)
    assert hs.isa() == before


def test_set_isa_rejects_unsupported_level():
    require_native()
    missing = [lvl for lvl in ISA_LEVELS if lvl not in _backend.available_isas()]
    if not missing:
        pytest.skip("this CPU supports every kernel level")
    before = hs.isa()
    with pytest.raises(ValueError, match="not supported"):
        _backend.set_isa(missing[0])
    assert hs.isa() == before


def test_library_dir_names_a_missing_native_build(monkeypatch, tmp_path) -> None:
    # A package installed without its native build has headers but no library.
    import hamsearch

    monkeypatch.setattr(hamsearch, "_HERE", str(tmp_path))
    assert hamsearch.get_include() == str(tmp_path / "include")
    with pytest.raises(RuntimeError, match="static library is missing from .*lib"):
        hamsearch.get_library_dir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libhamsearch.a").write_bytes(b"!<arch>\n")
    assert hamsearch.get_library_dir() == str(tmp_path / "lib")
