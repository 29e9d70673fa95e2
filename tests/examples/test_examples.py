import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _report(script: str, out: Path, *args: str, timeout: int = 600) -> tuple[dict, str]:
    """Runs examples/SCRIPT --out OUT ARGS; returns the JSON it wrote and its stdout."""
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args, "--out", str(out)], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


@pytest.mark.slow
def test_pipeline_example(tmp_path):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "pipeline.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    accuracy = float(proc.stdout.split("TVM test accuracy ")[1].split("%")[0])
    assert accuracy > 90.0
    assert (tmp_path / "mlp.dlc" / "manifest.json").exists()


@pytest.mark.slow
def test_compile_benchmark_writes_every_column_with_schedules_and_kernel_speeds(tmp_path):
    report, stdout = _report("benchmark_compile.py", tmp_path / "compile.json", "--models", "cnn", "--runs", "10",
                             "--tune-minutes", "0.2", timeout=900)
    cnn = report["models"]["cnn"]
    assert set(cnn["p50_ms"]) == {"tvm_before", "tvm_default", "tvm_tuned", "onnxruntime", "pytorch"}
    assert all(v > 0 for v in cnn["p50_ms"].values()) and cnn["vs_onnxruntime"]["onnxruntime"] == 1.0
    assert cnn["scheduled_flops_share"] >= 0.9 and cnn["schedules"].get("none", 0) == 0
    assert cnn["tuning"]["stopped_by"] == "time" and cnn["tuning"]["trials_run"] > 0
    assert set(cnn["compile_seconds"]) == {"before", "default", "tuned"}
    largest = cnn["largest_kernels"][0]
    assert largest["gflops"] > 0 and largest["ms"] > 0 and largest["mflops"] > 0
    # Kernel time and overhead come from different processes and runs: only their sum is exact.
    assert cnn["default_kernels_ms"] > 0
    assert cnn["default_kernels_ms"] + cnn["default_call_overhead_ms"] == pytest.approx(cnn["p50_ms"]["tvm_default"],
                                                                                       abs=2e-4)
    assert report["sgemm_peak_gflops"] > 0 and report["machine"]["vector_isa"]
    assert "| cnn |" in stdout


@pytest.mark.slow
def test_optimize_benchmark_writes_a_well_formed_report(tmp_path):
    report, _ = _report("benchmark_optimize.py", tmp_path / "optimize.json", "--models", "cnn", "--runs", "5")
    cnn = report["models"]["cnn"]
    assert set(cnn["variants"]) == {"traced", "torch-optimized", "dlc -O2"}
    traced, optimized = cnn["variants"]["traced"], cnn["variants"]["dlc -O2"]
    assert optimized["nodes"] < traced["nodes"] and optimized["file_bytes"] < traced["file_bytes"]
    assert optimized["tvm_p50_ms"] > 0 and optimized["onnxruntime_p50_ms"] > 0
    assert optimized["tvm_max_abs_diff_vs_onnxruntime"] <= 1e-4
    assert cnn["O2_effect"]["nodes"] == [traced["nodes"], optimized["nodes"]]


@pytest.mark.slow
def test_zoo_table_writes_a_row_per_model(tmp_path):
    report, stdout = _report("zoo_table.py", tmp_path / "zoo.json", "--models", "cnn,gru", "--max-steps", "3",
                             "--runs", "5")
    rows = report["models"]
    assert set(rows) == {"cnn", "gru"} and "| gru |" in stdout
    assert rows["gru"]["lowered"]["ops"] == {"gru": 1} and rows["cnn"]["lowered"] is None
    assert all(r["parameters"] > 0 and r["flops"] > 0 and r["p50_ms"]["tvm"] > 0 for r in rows.values())
    assert all(r["tvm_max_abs_diff"] <= 1e-4 for r in rows.values())


@pytest.mark.slow
def test_serve_benchmark_writes_throughput_and_latency_per_concurrency(tmp_path):
    report, _ = _report("benchmark_serve.py", tmp_path / "serve.json", "--requests", "40", "--concurrency", "1,4")
    assert set(report["results"]) == {"direct", "serve", "serve_batching"}
    for rows in report["results"].values():
        assert set(rows) == {"1", "4"}
        assert all(r["throughput_per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] for r in rows.values())
    assert set(report["ratios"]) == {"serve_vs_direct_at_1", "serve_vs_direct_at_4", "batching_gain_at_1",
                                     "batching_gain_at_4"}


@pytest.mark.slow
def test_serving_under_load_and_faults_answers_every_good_request_right(tmp_path):
    report, _ = _report("serve_faults.py", tmp_path / "faults.json", "--clients", "40", "--seconds", "15",
                        timeout=600)
    assert all(report["sent"][kind] > 0 for kind in ("good", "malformed", "slow")), report["sent"]
    assert report["wrong_answers"] == 0 and report["hung"] == 0 and report["unexpected"] == [], report
    assert report["metrics_agree"] and report["answered_after"], report


def test_cuda_benchmark_compiles_for_the_gpu_here_and_runs_only_where_one_is(tmp_path):
    from dlc.target import cuda_present

    models = tmp_path / "models"
    prepare = subprocess.run([sys.executable, str(EXAMPLES / "benchmark_cuda.py"), "prepare", "--models", "mlp",
                              "--out", str(models)], capture_output=True, text=True, timeout=600)
    assert prepare.returncode == 0, prepare.stderr[-3000:]
    manifest = json.loads((models / "mlp.dlc" / "manifest.json").read_text())
    assert manifest["target"]["name"] == "cuda-sm90" and manifest["target"]["device"] == "cuda"
    assert json.loads((models / "models.json").read_text()) == {"mlp": ["mlp", {}]}
    run = subprocess.run([sys.executable, str(EXAMPLES / "benchmark_cuda.py"), "run", str(models), "--runs", "5",
                          "--out", str(tmp_path / "cuda.json")], capture_output=True, text=True, timeout=600)
    if cuda_present():
        assert run.returncode == 0 and json.loads((tmp_path / "cuda.json").read_text())["models"]["mlp"]["verified"]
    else:
        assert run.returncode == 1 and "no CUDA GPU" in run.stderr and not (tmp_path / "cuda.json").exists()


def test_dynamic_benchmark_times_one_dynamic_artifact_against_static_ones(tmp_path):
    report, stdout = _report("benchmark_dynamic.py", tmp_path / "dynamic.json", "--models", "mlp", "--batches", "1,3",
                             "--max-batch", "4", "--runs", "5")
    mlp = report["models"]["mlp"]
    assert mlp["batch_symbol"] == "batch" and set(mlp["p50_ms"]) == {"1", "3"}
    for cell in mlp["p50_ms"].values():
        assert cell["static"] > 0 and cell["dynamic"] > 0
        assert cell["ratio"] == pytest.approx(cell["dynamic"] / cell["static"], rel=1e-2)
    assert "dynamic/static" in stdout


def test_quantize_benchmark_puts_float_and_int8_side_by_side(tmp_path):
    report, stdout = _report("benchmark_quantize.py", tmp_path / "quantize.json", "--models", "cnn", "--runs", "5")
    cnn = report["models"]["cnn"]
    assert set(cnn["p50_ms"]) == {"tvm_float32", "tvm_int8", "onnxruntime_float32", "onnxruntime_int8"}
    assert all(v > 0 for v in cnn["p50_ms"].values())
    assert cnn["int8_speedup"]["tvm"] == pytest.approx(cnn["p50_ms"]["tvm_float32"] / cnn["p50_ms"]["tvm_int8"],
                                                       rel=1e-2)
    assert sum(cnn["int8_kernels"].values()) == 4 and set(cnn["int8_kernels"]) <= {"int8", "int16"}
    assert cnn["file_bytes"]["int8"] < 0.35 * cnn["file_bytes"]["float32"]
    assert "| cnn |" in stdout and report["machine"]["cpu"]


def test_prune_benchmark_times_full_and_pruned_models_on_both_backends(tmp_path):
    report, stdout = _report("benchmark_prune.py", tmp_path / "prune.json", "--models", "cnn", "--runs", "5")
    cnn = report["models"]["cnn"]
    assert set(cnn["p50_ms"]) == {"onnxruntime", "tvm_default"}
    assert all(v > 0 for cell in cnn["p50_ms"].values() for v in cell.values())
    assert cnn["speedup"]["onnxruntime"] == pytest.approx(
        cnn["p50_ms"]["onnxruntime"]["full"] / cnn["p50_ms"]["onnxruntime"]["pruned"], rel=1e-2)
    assert cnn["flops_share"] < 0.35 and cnn["parameters"]["pruned"] < cnn["parameters"]["full"]
    assert "| cnn |" in stdout and report["machine"]["cpu"]
