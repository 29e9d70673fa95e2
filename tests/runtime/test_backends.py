"""The backend registry: one table decides what each backend opens, benchmarks and serves."""

import json
import shutil
from pathlib import Path

import pytest

from dlc.errors import BackendUnavailableError, UnknownNameError
from dlc.runtime.backends import BACKENDS, default_backends, open_session, serving_backend
from tests.conftest import assert_one_line_error, run_dlc


def test_the_default_benchmark_needs_a_checkpoint_for_pytorch():
    assert default_backends(has_checkpoint=False) == ("tvm", "onnxruntime")
    assert default_backends(has_checkpoint=True) == ("tvm", "onnxruntime", "pytorch")


def test_serve_picks_the_backend_by_file_kind():
    assert serving_backend(Path("m.dlc")) == "tvm" and serving_backend(Path("m.onnx")) == "onnxruntime"
    assert serving_backend(Path("m.pt")) is None


def test_unknown_backend_lists_the_known_ones(onnx_model):
    with pytest.raises(UnknownNameError, match=", ".join(BACKENDS)):
        open_session("tensorrt", onnx_model)


def test_tvm_runs_artifacts_and_says_how_to_get_one_from_an_onnx_file(onnx_model, artifact):
    with pytest.raises(BackendUnavailableError, match="dlc compile"):
        open_session("tvm", onnx_model)
    assert open_session("tvm", artifact).backend == "tvm"


def test_a_runtime_only_tvm_benches_an_artifact_without_the_compiler_library(artifact, tmp_path):
    """What a deployment machine has: TVM's runtime alone (no LLVM), as TVM_USE_RUNTIME_LIB=1 loads it."""
    result = run_dlc("bench", artifact, "--backends", "tvm,onnxruntime", "--runs", "5", "--report", tmp_path / "r.json",
                     env={"TVM_USE_RUNTIME_LIB": "1"})
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    tvm = next(r for r in report["results"] if r["backend"] == "tvm")
    assert tvm["max_abs_diff"] < 1e-4 and report["machine"]["cpu"].endswith(("avx512f)", "avx2)", "asimd)", "scalar)"))


def test_a_runtime_only_tvm_refuses_an_artifact_that_does_not_record_its_cpu_features(artifact, tmp_path):
    old = tmp_path / "old.dlc"
    shutil.copytree(artifact, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["cpu_features"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    bench = ("bench", old, "--backends", "tvm", "--runs", "1", "--report", tmp_path / "r.json")
    assert_one_line_error(run_dlc(*bench, env={"TVM_USE_RUNTIME_LIB": "1"}), "does not record its CPU features",
                          "runtime-only", "recompile")
    assert run_dlc(*bench).returncode == 0  # with the compiler, LLVM reads them


def test_a_manifest_with_malformed_cpu_features_is_refused(artifact, tmp_path):
    bad = tmp_path / "bad.dlc"
    shutil.copytree(artifact, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["cpu_features"] = "avx2"
    (bad / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(run_dlc("bench", bad, "--backends", "tvm", "--runs", "1", "--report", tmp_path / "r.json"),
                          "invalid 'cpu_features'")
