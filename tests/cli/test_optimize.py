"""`dlc optimize`: the per-pass table and report, the optimized model compiling, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.parser
import pytest

from tests.conftest import assert_one_line_error, invoke, run_dlc


@pytest.fixture(scope="module")
def raw_cnn(tmp_path_factory, runner, trained_checkpoint):
    """The trained digits CNN exported as traced: batch norm, Constants and Expands still in it."""
    path = tmp_path_factory.mktemp("optimize") / "cnn-raw.onnx"
    result = invoke(runner, "export", trained_checkpoint, "-o", path, "--dynamic-batch", "--no-optimize")
    assert result.exit_code == 0, result.output
    return path


def test_optimize_prints_each_pass_and_writes_model_and_report(runner, raw_cnn, tmp_path):
    out = tmp_path / "cnn.opt.onnx"
    result = invoke(runner, "optimize", raw_cnn, "-O2", "-o", out)
    assert result.exit_code == 0, result.output
    assert "fuse-conv-bn" in result.output and "conv-bn=2" in result.output
    report = json.loads((tmp_path / "cnn.opt.optimize.json").read_text())
    assert report["pipeline"] == "-O2" and report["after"]["nodes"] < report["before"]["nodes"]
    assert "BatchNormalization" in report["before"]["ops"] and "BatchNormalization" not in report["after"]["ops"]
    assert {"name", "modified", "stats", "seconds", "nodes_before", "nodes_after", "max_abs_diff"} <= set(
        report["passes"][0])
    assert report["verification"]["sample_inputs"] == {"input": [2, 1, 8, 8]}
    assert all(p["max_abs_diff"] <= p["limit"] for p in report["passes"])


def test_compile_takes_the_optimized_model_as_it_is(runner, raw_cnn, tmp_path):
    out = tmp_path / "opt.onnx"
    assert invoke(runner, "optimize", raw_cnn, "-o", out).exit_code == 0
    result = invoke(runner, "compile", out, "-o", tmp_path / "opt.dlc")
    assert result.exit_code == 0, result.output


def test_explicit_pass_list_runs_only_those(runner, raw_cnn, tmp_path):
    out = tmp_path / "folded.onnx"
    result = invoke(runner, "optimize", raw_cnn, "--passes", "fold-constants,eliminate-dead-code", "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_name("folded.optimize.json").read_text())
    assert [p["name"] for p in report["passes"]] == ["fold-constants", "eliminate-dead-code"]
    assert "BatchNormalization" in report["after"]["ops"]


def test_float16_halves_the_weights(runner, raw_cnn, tmp_path):
    out = tmp_path / "half.onnx"
    result = invoke(runner, "optimize", raw_cnn, "--float16", "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_name("half.optimize.json").read_text())
    assert report["after"]["weight_bytes"] * 2 <= report["before"]["weight_bytes"]
    assert onnx.load(out).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_list_shows_every_pass(runner):
    from dlc.passes import REGISTRY

    result = invoke(runner, "optimize", "--list")
    assert result.exit_code == 0 and all(name in result.output for name in REGISTRY)


def test_unknown_pass_lists_the_valid_ones(raw_cnn, tmp_path):
    out = tmp_path / "x.onnx"
    result = run_dlc("optimize", raw_cnn, "--passes", "fold-constants,fuse-everything", "-o", out)
    assert_one_line_error(result, "unknown pass(es) 'fuse-everything'", "valid passes:", "fuse-conv-bn")
    assert not out.exists()


def test_checker_failure_is_reported_before_any_pass(tmp_path):
    model = onnx.parser.parse_model('<ir_version: 9, opset_import: ["" : 18]>'
                                    'g (float[2] x) => (float[2] y) { y = Relu(x) }')
    model.graph.node[0].op_type = "Rleu"
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    result = run_dlc("optimize", bad, "-o", tmp_path / "out.onnx")
    assert_one_line_error(result, "fails the ONNX checker", "Rleu")
    assert not (tmp_path / "out.onnx").exists()


def test_uninferable_shape_names_the_tensor(tmp_path):
    model = onnx.parser.parse_model('<ir_version: 9, opset_import: ["" : 18]>'
                                    'g (float[2,3] x, float[4] b) => (float[2,3] y) { r = Relu(x)  y = Add(r, b) }')
    path = tmp_path / "mismatch.onnx"
    onnx.save(model, path)
    result = run_dlc("optimize", path, "-o", tmp_path / "out.onnx")
    assert_one_line_error(result, "shape inference fails at node", "tensor 'y'", "Incompatible dimensions")
    assert not (tmp_path / "out.onnx").exists()


def test_a_pass_beyond_tolerance_writes_nothing(raw_cnn, tmp_path):
    out = tmp_path / "strict.onnx"
    result = run_dlc("optimize", raw_cnn, "--passes", "fold-constants", "--float16", "--atol", "0", "--rtol", "0",
                     "-o", out)
    assert_one_line_error(result, "pass 'to-float16' changed output 'logits'", "nothing was written")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_existing_output_needs_force(runner, raw_cnn, tmp_path):
    out = tmp_path / "exists.onnx"
    out.write_bytes(b"keep me")
    result = run_dlc("optimize", raw_cnn, "-o", out)
    assert_one_line_error(result, "--force")
    assert out.read_bytes() == b"keep me"


def test_sample_inputs_must_match_the_model(raw_cnn, tmp_path):
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, input=np.zeros((1, 3, 8, 8), np.float32))
    result = run_dlc("optimize", raw_cnn, "--inputs", inputs, "-o", tmp_path / "out.onnx")
    assert_one_line_error(result, "'input' has shape [1, 3, 8, 8]")


def test_level_out_of_range_is_a_usage_error(raw_cnn):
    assert_one_line_error(run_dlc("optimize", raw_cnn, "-O7"), "'-O'", "less than or equal to 3")
