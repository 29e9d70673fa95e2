"""`dlc inspect`: overview, per-layer FLOPs equal to hand-computed values, JSON, bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.conftest import assert_one_line_error, invoke, run_dlc
from tests.passes.helpers import parse, weights


@pytest.fixture(scope="module")
def conv_gemm(tmp_path_factory):
    """x[N,3,8,8] → Conv 16x3x3x3 (+bias, pad 1) → Flatten → Gemm 1024→10 (+bias)."""
    model = parse('<ir_version: 9, opset_import: ["" : 18]>' + """
        g (float[N,3,8,8] x) => (float[N,10] y) {
            c = Conv<pads = [1, 1, 1, 1]>(x, w, b)  f = Flatten(c)  y = Gemm<transB = 1>(f, w2, b2) }""",
                  w=weights(16, 3, 3, 3), b=weights(16), w2=weights(10, 1024), b2=weights(10))
    path = tmp_path_factory.mktemp("inspect") / "conv_gemm.onnx"
    onnx.save(model, path)
    return path


def _json(runner, *args):
    result = invoke(runner, "inspect", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_flops_of_conv_and_gemm_equal_the_hand_computed_values(runner, conv_gemm):
    report = _json(runner, conv_gemm)
    layers = {layer["op"]: layer for layer in report["layers"]}
    # Conv: 16 channels x 64 pixels x 27 weights = 27,648 MACs; FLOPs 2x that + 1,024 bias adds
    assert (layers["Conv"]["macs"], layers["Conv"]["flops"]) == (27_648, 56_320)
    # Gemm: 1 x 10 x 1024 = 10,240 MACs; FLOPs 2x that + 10 bias adds
    assert (layers["Gemm"]["macs"], layers["Gemm"]["flops"]) == (10_240, 20_490)
    assert report["total"] == {"macs": 37_888, "flops": 76_810, "uncounted_nodes": []}
    assert report["parameters"] == 16 * 27 + 16 + 10 * 1024 + 10
    assert report["shapes_used"] == {"x": [1, 3, 8, 8]} and report["opsets"] == {"ai.onnx": 18}


def test_shape_option_scales_the_count_with_the_batch(runner, conv_gemm):
    report = _json(runner, conv_gemm, "--shape", "x=4,3,8,8")
    assert report["total"]["macs"] == 4 * 37_888


def test_table_shows_overview_and_layers(runner, conv_gemm, tmp_path):
    out = tmp_path / "info.json"
    result = invoke(runner, "inspect", conv_gemm, "-o", out)
    assert result.exit_code == 0, result.output
    for fragment in ("ai.onnx 18", "x: float32[N,3,8,8]", "Conv 1", "10,698", "76,810", "layers by FLOPs"):
        assert fragment in result.output, fragment
    assert json.loads(out.read_text())["total"]["flops"] == 76_810


def test_inspect_the_exported_cnn(runner, onnx_model):
    report = _json(runner, onnx_model)
    assert report["metadata"]["dlc.model"] == "cnn" and report["total"]["flops"] > 0
    assert not report["total"]["uncounted_nodes"]
    assert np.isclose(sum(layer["flops"] for layer in report["layers"]), report["total"]["flops"])


def test_bad_inputs_are_one_line_errors(conv_gemm, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not onnx")
    assert_one_line_error(run_dlc("inspect", junk), "is not an ONNX model")
    assert_one_line_error(run_dlc("inspect", tmp_path / "missing.onnx"), "missing.onnx")
    assert_one_line_error(run_dlc("inspect", conv_gemm, "--shape", "y=1,10"), "unknown input(s) y")


def test_an_exported_model_names_dlc_and_its_version_as_producer(runner, onnx_model):
    from dlc.version import __version__

    result = invoke(runner, "inspect", onnx_model)
    assert result.exit_code == 0 and f"producer dlc {__version__}" in result.stdout, result.stdout
