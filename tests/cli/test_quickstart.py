import json

import pytest

from tests.conftest import run_dlc


@pytest.mark.slow
def test_quickstart_end_to_end_as_a_user_runs_it(tmp_path):
    """The README's main command, as a real process: ≥95% digits accuracy, TVM ≈ ORT within 1e-4."""
    proc = run_dlc("quickstart", "--workdir", tmp_path / "qs", "--runs", "30")
    assert proc.returncode == 0, proc.stderr
    assert "quickstart summary" in proc.stdout
    summary = json.loads((tmp_path / "qs" / "quickstart.json").read_text())
    assert summary["train"]["test_accuracy"] >= 0.95
    assert summary["compile"]["max_abs_diff_vs_onnxruntime"] <= 1e-4
    assert summary["export"]["validation"]["max_abs_diff"] <= 1e-4
    backends = {r["backend"]: r for r in summary["bench"]["results"]}
    assert set(backends) == {"tvm", "onnxruntime", "pytorch"}
    assert all(r["max_abs_diff"] <= 1e-4 for r in backends.values())
    for name in ("model.pt", "model.onnx", "model.dlc/manifest.json", "model.dlc/model.so"):
        assert (tmp_path / "qs" / name).exists()
