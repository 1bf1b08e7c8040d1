"""``python -m trainer`` end to end on tiny runs: train, reproduce, evaluate,
the files they write, and the errors they give."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]

import hamsearch as hs
from hamsearch import metrics
from trainer import cli, plots
from trainer.methods import available_methods

TINY = ["--synthetic", "n=600", "--synthetic", "n_query=60", "--synthetic", "n_train=200",
        "--synthetic", "image_dim=32", "--synthetic", "text_dim=40"]
FAST = ["--set", "text_hidden=256", "--set", "batch_size=32"]


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    argv = ["train", "--method", "dcmh", "--dataset", "synthetic", "--bits", "8", "70", "--out", str(out),
            "--epochs", "3", "--seed", "1", "--device", "cpu", "--quiet", *TINY, *FAST]
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = cli.main(argv)
    assert rc == 0
    return out, buf.getvalue()


def test_train_prints_the_table(trained):
    _, printed = trained
    assert "| method | bits | I->T MAP | T->I MAP |" in printed
    rows = [line for line in printed.splitlines() if line.startswith("| DCMH")]
    assert [r.split("|")[2].strip() for r in rows] == ["8", "70"]


def test_train_writes_results_json(trained):
    out, _ = trained
    res = json.loads((out / "results.json").read_text())
    assert res["method"] == "dcmh" and res["dataset"] == "synthetic"
    assert res["config"]["text_hidden"] == 256 and res["epochs"] == 3 and res["seed"] == 1
    assert res["split"] == {"query": 60, "database": 540, "train": 200, "val_fraction": 0.1}
    entries = {(e["bits"], e["direction"]): e for e in res["results"]}
    assert set(entries) == {(8, "i2t"), (8, "t2i"), (70, "i2t"), (70, "t2i")}
    for e in entries.values():
        for key in ("map", "map_tie_aware", "map_random"):
            assert 0.0 <= e[key] <= 1.0
        assert len(e["pr"]["precision"]) == e["bits"] + 1
        assert 1 <= e["best_epoch"] <= 3
    assert (out / "table.md").read_text().startswith("| method | bits |")
    assert "dcmh, 8 bits" in (out / "train.log").read_text()


def test_codes_files_match_results(trained):
    out, _ = trained
    res = json.loads((out / "results.json").read_text())
    for bits, words in ((8, 1), (70, 2)):
        with np.load(out / f"codes_{bits}.npz", allow_pickle=False) as z:
            for key in ("query_image", "query_text", "db_image", "db_text"):
                assert z[key].dtype == np.uint64 and z[key].shape[1] == words
                hs.unpack(z[key], bits)  # pad bits zero
            ql, dl = z["query_labels"], z["db_labels"]
            assert ql.dtype == np.uint8 and set(np.unique(ql)) <= {0, 1} and ql.shape == (60, 24)
            assert dl.shape == (540, 24) and z["db_text"].shape[0] == 540
            assert str(z["method"]) == "dcmh" and int(z["nbits"]) == bits
            i2t = metrics.mean_average_precision(z["query_image"], z["db_text"], ql, dl, nbits=bits)
        want = next(e for e in res["results"] if e["bits"] == bits and e["direction"] == "i2t")
        assert i2t == pytest.approx(want["map"], abs=1e-12)
        assert (out / f"checkpoint_dcmh_{bits}.pt").exists()


def test_index_files_hold_the_database_codes(trained):
    out, _ = trained
    if not hasattr(hs.FlatIndex, "save"):
        pytest.skip("hamsearch.FlatIndex.save is not there yet")
    with np.load(out / "codes_70.npz", allow_pickle=False) as z:
        db_text = z["db_text"]
    idx = hs.load(str(out / "index_70_text.hsi"))
    assert len(idx) == db_text.shape[0] and idx.nbits == 70
    D, I = idx.query(db_text[:3], 1)
    np.testing.assert_array_equal(D[:, 0], 0)


def test_pngs_when_matplotlib_is_there(trained):
    pytest.importorskip("matplotlib")
    out, _ = trained
    for name in ("pr_8.png", "topn_8.png", "pr_70.png", "topn_70.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_saved_codes(trained, tmp_path, capsys):
    out, _ = trained
    assert cli.main(["evaluate", str(out), "--out", str(tmp_path), "--no-plots", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| dcmh | 8 |" in printed and "| dcmh | 70 |" in printed
    trained_res = json.loads((out / "results.json").read_text())
    again = json.loads((tmp_path / "results.json").read_text())
    key = lambda e: (e["bits"], e["direction"])  # noqa: E731
    for a, b in zip(sorted(trained_res["results"], key=key), sorted(again["results"], key=key)):
        assert key(a) == key(b)
        assert a["map"] == pytest.approx(b["map"], abs=1e-12)
        assert a["map_tie_aware"] == pytest.approx(b["map_tie_aware"], abs=1e-12)


def test_reproduce_every_method(tmp_path, capsys):
    rc = cli.main(["reproduce", "--dataset", "synthetic", "--out", str(tmp_path), "--bits", "8", "16",
                   "--epochs", "1", "--quiet", "--no-plots", "--no-checkpoints", *TINY])
    assert rc == 0
    printed = capsys.readouterr().out
    combined = json.loads((tmp_path / "results.json").read_text())
    assert [m["method"] for m in combined["methods"]] == available_methods()
    for m in available_methods():
        res = json.loads((tmp_path / m / "results.json").read_text())
        assert sorted({e["bits"] for e in res["results"]}) == [8, 16]
        assert (tmp_path / m / "codes_16.npz").exists()
    assert "| CCA+ITQ | 16 |" in printed and "| DCMH-I (features) | 8 |" in printed


def test_errors_exit_2(tmp_path, capsys):
    base = ["--dataset", "synthetic", "--bits", "8", "--out", str(tmp_path), "--epochs", "1", "--quiet", *TINY]
    assert cli.main(["train", "--method", "dcmh", *base, "--set", "gama=1"]) == 2
    assert "unknown config key" in capsys.readouterr().err
    assert cli.main(["train", "--method", "nope", *base]) == 2
    assert "expected one of" in capsys.readouterr().err
    assert cli.main(["train", "--method", "dcmh", "--dataset", "wiki", "--bits", "8", "--out", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
    assert cli.main(["train", "--method", "dcmh", "--dataset", "npz", "--data", str(tmp_path / "x.npz"),
                     "--bits", "8", "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--dataset", "synthetic"])  # argparse: --method and --out are required
    capsys.readouterr()


def test_index_files_skipped_without_save(tmp_path, monkeypatch, caplog):
    class NoSave:  # an engine without FlatIndex.save
        def __init__(self, nbits):
            raise AssertionError("must not be built")

    monkeypatch.setattr(hs, "FlatIndex", NoSave)
    codes = {"db_image": hs.pack(np.ones((3, 8), bool)), "db_text": hs.pack(np.ones((3, 8), bool))}
    with caplog.at_level(logging.INFO, logger="trainer"):
        assert cli._save_index_files(tmp_path, 8, codes) == []
    assert "no save()" in caplog.text and not list(tmp_path.iterdir())


def test_plots_skipped_without_matplotlib(tmp_path, monkeypatch, caplog):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(plots, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="trainer"):
        assert plots.pr_plot([("x", [0, 1], [1, 0])], tmp_path / "pr.png", "t") is None
    assert "matplotlib is not installed" in caplog.text and not (tmp_path / "pr.png").exists()


def test_python_dash_m_trainer():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "trainer", "methods"], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "dcmh" and "cca_itq" in proc.stdout
