"""The index file format against its specification (``tests/format_oracle.py``,
written from ``docs/format.md``): files the core writes parse with the oracle,
files the oracle writes (valid, corrupt or forged) load or are refused as the
specification says, and round trips are exact on both backends. Also the
file-handling defects: a load racing a save, a FIFO, forged reserved bytes and
padding, and a next id of 2**63; the atomic writer; the package's import
graph.
"""
from __future__ import annotations

import ast
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

import format_oracle as fmt
import hamsearch as hs
from conftest import require_native
from hamsearch import _backend
from oracle import Reference, assert_knn_equal, assert_rank_equal, bits_from_codes, codes_from_bits


@pytest.fixture(autouse=True)
def _files_need_the_core(request: pytest.FixtureRequest) -> None:
    """Index files are read and written by the native core on both backends."""
    if request.node.originalname not in ("test_save_and_load_need_the_native_core",
                                         "test_package_import_graph_has_no_cycle"):
        require_native()


def _random_codes(rng: np.random.Generator, n: int, nbits: int) -> np.ndarray:
    return codes_from_bits(rng.integers(0, 2, size=(n, nbits), dtype=np.uint8))


# -- the core's files against the oracle --------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "mih"])
@pytest.mark.parametrize("nbits", [1, 64, 65, 200])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 100])
def test_saved_files_parse_with_the_oracle(tmp_path, be, rng, kind, nbits, n):
    idx = hs.MIHIndex(nbits, m=1 if nbits == 1 else None, backend=be) if kind == "mih" \
        else hs.FlatIndex(nbits, backend=be)
    codes = _random_codes(rng, n, nbits)
    ids = rng.permutation(5 * n + 1)[:n].astype(np.int64)
    idx.add(codes, ids=ids)
    gone = ids[::3]
    idx.remove(gone)
    keep = ~np.isin(ids, gone)
    path = tmp_path / "x.hsi"
    idx.save(path)
    raw = path.read_bytes()
    p = fmt.parse(raw)
    assert p.crc_ok and p.contents_ok
    assert p.kind_name == kind and p.nbits == nbits and p.m == (1 if kind == "mih" and nbits == 1 else 0)
    assert np.array_equal(p.ids, ids[keep]) and np.array_equal(p.codes, codes[keep])
    assert p.next_id == (int(ids.max()) + 1 if n else 0)
    # The oracle's own file from the same contents is the same file, byte for byte.
    assert raw == fmt.write(nbits, ids[keep], codes[keep], kind=fmt.KIND_MIH if kind == "mih" else fmt.KIND_FLAT,
                            m=p.m, next_id=p.next_id)


@pytest.mark.parametrize("mmap", [False, True])
def test_oracle_files_load_and_round_trip_bit_for_bit(tmp_path, be, rng, mmap):
    for nbits, n, kind, m in [(70, 40, fmt.KIND_MIH, 3), (64, 9, fmt.KIND_FLAT, 0), (256, 0, fmt.KIND_MIH, 0),
                              (3, 1, fmt.KIND_FLAT, 0)]:
        codes = _random_codes(rng, n, nbits)
        ids = rng.permutation(1000)[:n].astype(np.int64)
        raw = fmt.write(nbits, ids, codes, kind=kind, m=m, next_id=5000)
        src = tmp_path / f"oracle-{nbits}.hsi"
        src.write_bytes(raw)
        idx = hs.load(src, mmap=mmap, backend=be)
        assert isinstance(idx, hs.MIHIndex if kind == fmt.KIND_MIH else hs.FlatIndex)
        assert idx.mapped == (mmap and be == "native" and n > 0)
        assert np.array_equal(idx._store.ids(), ids)
        assert np.array_equal(np.asarray(idx._store.codes()).reshape(-1, codes.shape[1]), codes)
        ref = Reference(nbits)
        ref.add(bits_from_codes(codes, nbits), ids)
        q = _random_codes(rng, 3, nbits)
        qbits = bits_from_codes(q, nbits)
        assert_knn_equal(idx.query(q, 4), ref.knn(qbits, 4))
        assert_rank_equal(idx.rank(q), ref.rank(qbits))
        out = tmp_path / f"again-{nbits}.hsi"
        idx.save(out)
        assert out.read_bytes() == raw
        del idx


# -- defect: a load racing a save to the same path -----------------------------------------
def _race_indexes(be: str) -> List[Any]:
    """Self-consistent indexes of different sizes: every code of index v is v
    in each word, its ids are 1000 * v onwards, its size 1 + 13 * (v % 7)."""
    out = []
    for v in range(1, 9):
        n = 1 + 13 * (v % 7)
        idx = hs.FlatIndex(192, backend=be)
        idx.add(np.full((n, 3), v, dtype=np.uint64), ids=np.arange(n) + 1000 * v)
        out.append(idx)
    return out


def _consistent(idx: Any) -> str:
    ids = np.asarray(idx._store.ids())
    codes = np.asarray(idx._store.codes()).reshape(-1, 3)
    if ids.size == 0:
        return "empty index"
    v = int(codes[0, 0])
    n = 1 + 13 * (v % 7)
    if not (1 <= v <= 8 and ids.size == n and (codes == v).all() and np.array_equal(ids, np.arange(n) + 1000 * v)
            and idx._next_id == 1000 * v + n):
        return f"a mixed index: {ids.size} ids from {ids[:1]}, codes {np.unique(codes)[:4]}, next {idx._next_id}"
    return ""


@pytest.mark.parametrize("mmap", [False, True])
def test_load_racing_save_gets_one_whole_file(tmp_path, be, mmap):
    """One thread saves different indexes to one path in a loop while others
    load it: each load is one of the saved files, never a mix of two, and a
    valid file is never refused (load reads the descriptor it checked)."""
    indexes = _race_indexes("native" if _backend._native is not None else "numba")
    path = str(tmp_path / "race.hsi")
    indexes[0].save(path)
    stop = threading.Event()
    problems: List[str] = []
    loads = [0]
    lock = threading.Lock()
    budget = 3.0 if be == "native" else 1.5
    goal = 3000 if be == "native" else 300

    def saver() -> None:
        i = 0
        while not stop.is_set():
            indexes[i % len(indexes)].save(path)
            i += 1

    def loader() -> None:
        while not stop.is_set():
            try:
                got = hs.load(path, mmap=mmap, backend=be)
            except Exception as exc:  # a refused valid file
                with lock:
                    problems.append(f"{type(exc).__name__}: {exc}")
                continue
            bad = _consistent(got)
            del got
            with lock:
                loads[0] += 1
                if bad:
                    problems.append(bad)

    threads = [threading.Thread(target=saver, daemon=True)] + \
        [threading.Thread(target=loader, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline and loads[0] < goal and not problems:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a thread hung"
    assert not problems, f"{len(problems)} bad loads of {loads[0]}, first: {problems[0]}"
    assert loads[0] >= 50, f"only {loads[0]} loads ran"


# -- defect: a FIFO (or anything but a regular file) -------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("mmap", [False, True])
def test_load_refuses_a_fifo_without_blocking(tmp_path, be, mmap):
    fifo = str(tmp_path / "pipe.hsi")
    os.mkfifo(fifo)
    result: Dict[str, BaseException] = {}

    def attempt() -> None:
        try:
            hs.load(fifo, mmap=mmap, backend=be)
        except BaseException as exc:  # noqa: B902 - reported below
            result["error"] = exc

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        # Release the blocked open() so that the thread ends, then fail.
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        t.join(10)
        pytest.fail("hs.load blocked on a FIFO")
    err = result.get("error")
    assert isinstance(err, (ValueError, OSError)), f"expected a refusal, got {err!r}"
    assert "FIFO" in str(err) and fifo in str(err)


def test_load_of_other_non_regular_files(tmp_path, be):
    with pytest.raises(IsADirectoryError):
        hs.load(tmp_path, backend=be)
    if os.path.exists("/dev/null"):
        with pytest.raises((ValueError, OSError), match="character device"):
            hs.load("/dev/null", backend=be)


# -- defect: the reserved header bytes and the padding are zero ------------------------------
@pytest.fixture
def parts(rng):
    n, nbits = 30, 100  # 30 ids end at byte 368; the codes start at 384: 16 bytes of padding
    return nbits, np.arange(n, dtype=np.int64) * 2, _random_codes(rng, n, nbits)


@pytest.mark.parametrize("at", [0, 1, 15, 31])
@pytest.mark.parametrize("verify", [True, False])
def test_forged_reserved_header_bytes_are_refused(tmp_path, be, parts, at, verify):
    nbits, ids, codes = parts
    raw = fmt.write(nbits, ids, codes, reserved=bytes(at) + b"\x01")
    with pytest.raises(fmt.Invalid, match="reserved"):
        fmt.parse(raw)
    path = tmp_path / "reserved.hsi"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="reserved header bytes"):
        hs.load(path, backend=be, verify=verify)


@pytest.mark.parametrize("at", [0, 7, 15])
@pytest.mark.parametrize("mmap", [False, True])
def test_forged_padding_is_refused_by_verify(tmp_path, be, parts, at, mmap):
    nbits, ids, codes = parts
    raw = fmt.write(nbits, ids, codes, padding=bytes(at) + b"\x80")
    p = fmt.parse(raw)
    assert p.crc_ok and not p.contents_ok
    path = tmp_path / "padding.hsi"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match="padding"):
        hs.load(path, mmap=mmap, backend=be)
    # verify=False does not read the data: it loads the ids and codes as they are.
    idx = hs.load(path, mmap=mmap, backend=be, verify=False)
    assert np.array_equal(idx._store.ids(), ids)


# -- defect: a next id of 2**63 ---------------------------------------------------------------
@pytest.mark.parametrize("kind", ["flat", "mih"])
@pytest.mark.parametrize("mmap", [False, True])
def test_index_holding_the_largest_id_round_trips(tmp_path, be, rng, kind, mmap):
    top = 2**63 - 1
    idx = hs.MIHIndex(64, backend=be) if kind == "mih" else hs.FlatIndex(64, backend=be)
    ids = np.array([0, 5, top, 7], dtype=np.int64)
    codes = _random_codes(rng, 4, 64)
    idx.add(codes, ids=ids)
    path = tmp_path / "top.hsi"
    idx.save(path)
    raw = path.read_bytes()
    p = fmt.parse(raw)
    assert p.next_id == 2**63 and p.crc_ok and p.contents_ok
    got = hs.load(path, mmap=mmap, backend=be)
    assert np.array_equal(got._store.ids(), ids)
    assert np.array_equal(np.asarray(got._store.codes()).reshape(4, 1), codes)
    assert got._next_id == 2**63
    D, I = got.query(codes[2:3], 1)
    assert I.tolist() == [[top]] and D.tolist() == [[0]]
    got.save(tmp_path / "again.hsi")
    assert (tmp_path / "again.hsi").read_bytes() == raw


def test_next_id_limit_from_the_oracle(tmp_path, be, rng):
    codes = _random_codes(rng, 2, 64)
    path = tmp_path / "n.hsi"
    path.write_bytes(fmt.write(64, np.zeros(0, np.int64), np.zeros((0, 1), np.uint64), next_id=2**63))
    assert hs.load(path, backend=be)._next_id == 2**63
    path.write_bytes(fmt.write(64, np.array([1, 2**63 - 1]), codes, next_id=2**63))
    assert hs.load(path, backend=be)._store.ids().tolist() == [1, 2**63 - 1]
    for beyond in (2**63 + 1, 2**64 - 1):
        raw = fmt.write(64, np.array([1, 2]), codes, next_id=beyond)
        with pytest.raises(fmt.Invalid, match="next id"):
            fmt.parse(raw)
        path.write_bytes(raw)
        with pytest.raises(ValueError, match="next id"):
            hs.load(path, backend=be, verify=False)


# -- I/O errors ------------------------------------------------------------------------------
def test_io_errors_are_oserror_subclasses(tmp_path, be):
    with pytest.raises(FileNotFoundError) as info:
        hs.load(tmp_path / "missing.hsi", backend=be)
    assert info.value.filename == str(tmp_path / "missing.hsi")
    idx = hs.FlatIndex(8, backend=be)
    with pytest.raises(FileNotFoundError):
        idx.save(tmp_path / "no-such-dir" / "x.hsi")
    with pytest.raises(IsADirectoryError):
        idx.save(tmp_path)
    if os.geteuid() != 0:  # root may read anything
        locked = tmp_path / "locked.hsi"
        idx.save(locked)
        os.chmod(locked, 0)
        with pytest.raises(PermissionError):
            hs.load(locked, backend=be)


def test_load_does_not_write_the_file(tmp_path, be, parts):
    nbits, ids, codes = parts
    path = tmp_path / "ro.hsi"
    raw = fmt.write(nbits, ids, codes)
    path.write_bytes(raw)
    os.chmod(path, 0o444)
    for mmap in (False, True):
        idx = hs.load(path, mmap=mmap, backend=be)
        idx.add(codes[:1])
        idx.remove(ids[:3])
        del idx
    assert path.read_bytes() == raw


# -- without the native core ------------------------------------------------------------------
def test_save_and_load_need_the_native_core(tmp_path, monkeypatch, parts):
    nbits, ids, codes = parts
    path = tmp_path / "f.hsi"
    path.write_bytes(fmt.write(nbits, ids, codes))
    idx = hs.FlatIndex(nbits, backend="numba")
    idx.add(codes, ids=ids)
    monkeypatch.setattr(_backend, "_native", None)
    monkeypatch.setattr(_backend, "_native_error", ImportError("simulated: no _core"))
    from hamsearch import _files

    for call in (lambda: hs.load(path, backend="numba"), lambda: idx.save(tmp_path / "g.hsi"),
                 lambda: _files.write_atomic(str(tmp_path / "h"), b"x")):
        with pytest.raises(RuntimeError, match=r"native core hamsearch\._core.*simulated: no _core.*pip install"):
            call()
    assert sorted(os.listdir(tmp_path)) == ["f.hsi"]


# -- the atomic writer ------------------------------------------------------------------------
def test_write_atomic(tmp_path):
    from hamsearch._files import write_atomic

    path = str(tmp_path / "a.json")
    old = os.umask(0o027)
    try:
        write_atomic(path, b"first")
    finally:
        os.umask(old)
    assert Path(path).read_bytes() == b"first"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    write_atomic(path, memoryview(b"second, longer"))
    assert Path(path).read_bytes() == b"second, longer"
    write_atomic(path, b"")
    assert Path(path).read_bytes() == b""
    with pytest.raises(IsADirectoryError):
        write_atomic(str(tmp_path), b"x")
    with pytest.raises(FileNotFoundError):
        write_atomic(str(tmp_path / "nope" / "x"), b"x")
    with pytest.raises(TypeError):
        write_atomic(path, "text")  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == ["a.json"]  # no temporary file left


def test_failed_write_leaves_the_old_file(tmp_path):
    """A write that fails (the file size limit) raises OSError and leaves the
    old file and no temporary file."""
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "keep.bin"
    path.write_bytes(b"old")
    code = textwrap.dedent(f"""
        import resource, signal
        from hamsearch._files import write_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_atomic({str(path)!r}, bytes(100000))
        except OSError as exc:
            print("OSError", exc.errno)
        """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(hs.__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("OSError"), res.stdout + res.stderr
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["keep.bin"]


# -- the import graph -------------------------------------------------------------------------
def _package_imports() -> Dict[str, set]:
    """Module name -> the package modules it imports anywhere (top level or in
    a function), from the source by ``ast``."""
    pkg = Path(hs.__file__).parent
    names = {p.stem for p in pkg.glob("*.py")}
    graph: Dict[str, set] = {}
    for p in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 or (node.level == 0 and (node.module or "").split(".")[0] == "hamsearch"):
                    parts = (node.module or "").split(".")
                    mod = parts[0] if node.level == 1 else (parts[1] if len(parts) > 1 else "")
                    if mod:
                        deps.add(mod)
                    else:  # from . import a, b
                        deps.update(a.name for a in node.names if a.name in names)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    parts = a.name.split(".")
                    if parts[0] == "hamsearch" and len(parts) > 1:
                        deps.add(parts[1])
        graph[p.stem] = {d for d in deps if d in names and d != p.stem}
    return graph


def test_package_import_graph_has_no_cycle():
    graph = _package_imports()
    assert "flat" not in graph["_io"] and "mih" not in graph["_io"] and "_index" not in graph["_io"]
    state: Dict[str, int] = {}
    path: List[str] = []

    def visit(u: str) -> None:
        state[u] = 1
        path.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(v):] + [v]))
            if v not in state:
                visit(v)
        path.pop()
        state[u] = 2

    for u in sorted(graph):
        if u not in state:
            visit(u)


# -- the C++ API alone ----------------------------------------------------------------------
def test_cpp_program_saves_and_loads_with_the_format_api(tmp_path, rng):
    """tests/native/format_harness.cpp, built from csrc/ without the binding:
    its files parse with the oracle, and it reads the oracle's files."""
    import errno
    import shutil
    import subprocess
    import zlib

    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    root = Path(hs.__file__).resolve().parent.parent
    sources = [str(p) for p in sorted((root / "csrc").glob("*.cpp")) if p.name != "binding.cpp"]
    exe = tmp_path / "format_harness"
    build = subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
                            "-pthread", f"-I{root / 'csrc'}", f"-I{root / 'hamsearch' / 'include'}",
                            str(root / "tests" / "native" / "format_harness.cpp"),
                            *sources, "-o", str(exe)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    ids = np.array([9, 4, 17], dtype=np.int64)
    codes = _random_codes(rng, 3, 130)
    (tmp_path / "oracle.hsi").write_bytes(fmt.write(130, ids, codes, kind=fmt.KIND_MIH, m=3, next_id=40))
    corrupt = bytearray(fmt.write(130, ids, codes))
    corrupt[-1] ^= 1
    (tmp_path / "corrupt.hsi").write_bytes(bytes(corrupt))
    res = subprocess.run([str(exe), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "oracle kind 2 nbits 130 count 3 next 40 m 3"
    assert out[1] == "oracle ids 9 4 17"
    assert out[2] == "oracle codes " + " ".join(str(int(c)) for c in codes.ravel())
    assert out[3] == f"FormatError {tmp_path / 'corrupt.hsi'}: data checksum mismatch: the ids or codes are corrupt"
    assert out[4].startswith(f"FileError {errno.ENOENT} {tmp_path / 'missing.hsi'}: ")
    assert out[5] == f"crc32 of 123456789: {zlib.crc32(b'123456789'):08x}"
    flat = fmt.parse((tmp_path / "cpp-flat.hsi").read_bytes())
    assert (flat.kind, flat.nbits, flat.next_id, flat.m, flat.crc_ok, flat.contents_ok) == (1, 100, 21, 0, True, True)
    assert flat.ids.tolist() == [10, 3, 7, 20, 1]
    assert flat.codes.ravel().tolist() == [1, 2, 3, 4, 5, 0xFFFFFFFFF, 7, 8, 9, 10]
    mih = fmt.parse((tmp_path / "cpp-mih.hsi").read_bytes())
    assert (mih.kind, mih.nbits, mih.next_id, mih.m, mih.crc_ok, mih.contents_ok) == (2, 130, 99, 3, True, True)
    assert mih.ids.tolist() == [5, 6, 7]
    assert mih.codes.ravel().tolist() == [(i % 4) if i % 3 == 2 else 1000 + i for i in range(9)]
