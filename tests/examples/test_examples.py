import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_pipeline_example(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "pipeline.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    accuracy = float(proc.stdout.split("TVM test accuracy ")[1].split("%")[0])
    assert accuracy > 90.0
    assert (tmp_path / "mlp.dlc" / "manifest.json").exists()


@pytest.mark.slow
def test_tuning_benchmark_writes_a_well_formed_report(tmp_path):
    import json

    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "benchmark_tuning.py"), "--model", "mlp", "--trials", "8",
                           "--runs", "20", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["p50_ms"]) == {"tvm_untuned", "tvm_tuned", "onnxruntime", "pytorch"}
    assert all(v > 0 for v in report["p50_ms"].values())
    assert report["tuning"]["trials_run"] >= 8 and report["tuning_seconds"] > 0


@pytest.mark.slow
def test_optimize_benchmark_writes_a_well_formed_report(tmp_path):
    import json

    out = tmp_path / "optimize.json"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "benchmark_optimize.py"), "--models", "cnn", "--runs", "5",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cnn = json.loads(out.read_text())["models"]["cnn"]
    assert set(cnn["variants"]) == {"traced", "torch-optimized", "dlc -O2"}
    traced, optimized = cnn["variants"]["traced"], cnn["variants"]["dlc -O2"]
    assert optimized["nodes"] < traced["nodes"] and optimized["file_bytes"] < traced["file_bytes"]
    assert optimized["tvm_p50_ms"] > 0 and optimized["onnxruntime_p50_ms"] > 0
    assert optimized["tvm_max_abs_diff_vs_onnxruntime"] <= 1e-4
    assert cnn["O2_effect"]["nodes"] == [traced["nodes"], optimized["nodes"]]
