"""`dlc train --model FILE.py:NAME`: a user's own module trained like a zoo model, for each task, then exported
and benched from its checkpoint; and the ways that goes wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, run_dlc

NETS = '''
from torch import nn


def classifier():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def regressor():
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))


def autoencoder():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 64), nn.Unflatten(1, (1, 8, 8)))
'''


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("own-train")
    (path / "nets.py").write_text(NETS)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=600)
    np.savez(path / "linear.npz", x=x, y=y.astype(np.float32))
    return path


def _metrics(path):
    return json.loads(path.with_suffix(".metrics.json").read_text())


def test_an_own_classifier_trains_on_digits_then_exports_and_benches_from_its_checkpoint(folder):
    checkpoint = folder / "classifier.pt"
    result = run_dlc("train", "--model", "nets.py:classifier", "--epochs", "8", "-o", checkpoint, cwd=folder)
    assert result.returncode == 0, result.stderr
    assert _metrics(checkpoint)["test_accuracy"] > 0.8
    refused = run_dlc("export", checkpoint, "--dynamic-batch", cwd=folder.parent)  # from another folder
    assert_one_line_error(refused, "trained from your own model", "nets.py:classifier", "--allow-code")
    assert not checkpoint.with_suffix(".onnx").exists()
    assert run_dlc("export", checkpoint, "--dynamic-batch", "--allow-code", cwd=folder.parent).returncode == 0
    report = folder / "bench.json"
    bench = run_dlc("bench", checkpoint.with_suffix(".onnx"), "--checkpoint", checkpoint, "--runs", "5",
                    "--report", report, "--allow-code")
    assert bench.returncode == 0, bench.stderr
    rows = {r["backend"]: r for r in json.loads(report.read_text())["results"]}
    assert set(rows) == {"tvm", "onnxruntime", "pytorch"} and rows["pytorch"]["max_abs_diff"] < 1e-4


def test_an_own_regressor_learns_float_targets_and_an_own_autoencoder_its_input(folder):
    regressed = run_dlc("train", "--model", "nets.py:regressor", "--task", "regress", "--data", "linear.npz",
                        "--epochs", "30", "-o", "regressor.pt", cwd=folder)
    assert regressed.returncode == 0, regressed.stderr
    assert _metrics(folder / "regressor.pt")["test_loss"] < 0.5  # the targets' variance is 5.3
    reconstructed = run_dlc("train", "--model", "nets.py:autoencoder", "--task", "reconstruct", "--epochs", "5",
                            "-o", "autoencoder.pt", cwd=folder)
    assert reconstructed.returncode == 0, reconstructed.stderr
    assert run_dlc("export", "autoencoder.pt", cwd=folder, env={"DLC_ALLOW_CODE": "1"}).returncode == 0


def test_a_checkpoint_does_not_run_its_models_file_once_that_file_changed(folder, tmp_path):
    (tmp_path / "nets.py").write_text(NETS)
    trained = run_dlc("train", "--model", "nets.py:classifier", "--epochs", "1", "-o", "c.pt", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    (tmp_path / "nets.py").write_text(NETS + "\nprint('not the code it was trained with')\n")
    assert_one_line_error(run_dlc("export", "c.pt", "--allow-code", cwd=tmp_path),
                          "changed since the checkpoint was written", "was not run")
    assert not (tmp_path / "c.onnx").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--model", "nets.py:regressor"], ["cannot train on digits", "[2, 1, 8, 8]", "one score per class"]),
    (["--model", "nets.py:regressor", "--task", "regress"], ["regression trains on your own targets", "--data"]),
    (["--model", "nets.py:classifier", "--task", "generate"], ["--task 'generate' is not one of"]),
    (["--model", "cnn", "--task", "regress"], ["cnn is a classify model", "--task is for your own model"]),
    (["--model", "nets.py:nope"], ["defines no 'nope'", "classifier"]),
    (["--model", "nope"], ["unknown model 'nope'", "FILE.py:NAME"]),
])
def test_bad_own_training_input_is_one_line(folder, tmp_path, args, fragments):
    assert_one_line_error(run_dlc("train", *args, "--epochs", "1", "-o", tmp_path / "x.pt", cwd=folder), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_checking_a_package_references_hash_imports_nothing(tmp_path, monkeypatch):
    """A checkpoint naming `pkg.sub:x` must not run pkg/__init__.py just to find the file to hash."""
    from dlc.sources import source_sha256

    (tmp_path / "pkgx").mkdir()
    (tmp_path / "pkgx" / "__init__.py").write_text("raise SystemExit('pkgx/__init__.py ran')\n")
    (tmp_path / "pkgx" / "sub.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert source_sha256("pkgx.sub:x") is not None and source_sha256("pkgx.nope:x") is None
