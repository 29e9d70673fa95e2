import json

import numpy as np

from tests.conftest import assert_one_line_error, invoke

LATENCY_KEYS = {"mean", "std", "min", "p50", "p90", "p99", "max", "p50_ci95_low", "p50_ci95_high", "n", "outliers"}


def test_three_backends_side_by_side(runner, artifact, trained_checkpoint, tmp_path):
    report_path = tmp_path / "bench.json"
    result = invoke(runner, "bench", artifact, "--checkpoint", trained_checkpoint, "--runs", "20",
                    "--warmup", "2", "--report", report_path)
    assert result.exit_code == 0, result.output
    for backend in ("tvm", "onnxruntime", "pytorch"):
        assert backend in result.stdout
    report = json.loads(report_path.read_text())
    assert report["reference"] == "onnxruntime"
    assert report["inputs"] == {"input": [1, 1, 8, 8]}
    assert report["machine"]["logical_cores"] >= 1 and report["machine"]["governor"]
    assert len(report["machine"]["load_average"]) == 3
    results = {r["backend"]: r for r in report["results"]}
    assert set(results) == {"tvm", "onnxruntime", "pytorch"}
    for r in results.values():
        assert set(r["latency_ms"]) == LATENCY_KEYS
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["p50_ci95_low"] <= lat["p50"] <= lat["p50_ci95_high"] and lat["n"] == 20 == len(r["samples_ms"])
        assert r["warmup"]["runs"] >= 2  # at least --warmup, then until two windows agree
        assert r["throughput_per_s"] > 0 and r["peak_rss_mb"] > 10
        assert r["max_abs_diff"] <= 1e-4
    assert results["onnxruntime"]["max_abs_diff"] == 0.0


def test_bench_an_onnx_file_compiles_tvm_in_memory(runner, onnx_model, tmp_path):
    report_path = tmp_path / "onnx.json"
    result = invoke(runner, "bench", onnx_model, "--runs", "5", "--warmup", "1", "--threads", "1",
                    "--report", report_path)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert [r["backend"] for r in report["results"]] == ["tvm", "onnxruntime"]
    assert report["config"]["threads"] == 1
    assert report["results"][0]["max_abs_diff"] <= 1e-4


def test_user_inputs_from_npz(runner, artifact, tmp_path):
    from dlc.training.data import load_dataset

    inputs = tmp_path / "digit.npz"
    np.savez(inputs, input=load_dataset("digits").x_test[:1])
    result = invoke(runner, "bench", artifact, "--inputs", inputs, "--runs", "3", "--warmup", "0",
                    "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output


def _bad_inputs(runner, artifact, tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return invoke(runner, "bench", artifact, "--inputs", path, "--runs", "1", "--report", tmp_path / "r.json")


def test_wrong_input_shape(runner, artifact, tmp_path):
    result = _bad_inputs(runner, artifact, tmp_path, input=np.zeros((1, 64), np.float32))
    assert_one_line_error(result, "'input' has shape [1, 64], expected [1, 1, 8, 8]")
    assert not (tmp_path / "r.json").exists()


def test_wrong_input_dtype(runner, artifact, tmp_path):
    result = _bad_inputs(runner, artifact, tmp_path, input=np.zeros((1, 1, 8, 8), np.float64))
    assert_one_line_error(result, "dtype float64, expected float32")


def test_wrong_input_name_reports_missing_and_extra(runner, artifact, tmp_path):
    result = _bad_inputs(runner, artifact, tmp_path, image=np.zeros((1, 1, 8, 8), np.float32))
    assert_one_line_error(result, "missing input 'input'", "'image' is not an input")


def test_pytorch_backend_needs_a_checkpoint(runner, artifact, tmp_path):
    result = invoke(runner, "bench", artifact, "--backends", "pytorch", "--report", tmp_path / "r.json")
    assert_one_line_error(result, "--checkpoint")


def test_unknown_backend(runner, artifact, tmp_path):
    result = invoke(runner, "bench", artifact, "--backends", "tvm,tensorrt", "--report", tmp_path / "r.json")
    assert_one_line_error(result, "tensorrt", "onnxruntime")


def test_missing_model(runner, tmp_path):
    result = invoke(runner, "bench", tmp_path / "gone.dlc")
    assert_one_line_error(result, "gone.dlc")
