import json

from tests.conftest import assert_one_line_error, invoke


def _doctor(runner, model, tmp_path):
    """Runs `dlc doctor MODEL --report`; returns its stdout and the JSON report."""
    report_path = tmp_path / "doctor.json"
    result = invoke(runner, "doctor", model, "--report", report_path)
    assert result.exit_code == 0, result.output
    return result.stdout, json.loads(report_path.read_text())


def test_exported_cnn_is_fully_supported(runner, onnx_model, tmp_path):
    stdout, report = _doctor(runner, onnx_model, tmp_path)
    assert "tvm: all ops supported" in stdout
    assert "onnxruntime: all ops supported" in stdout
    ops = {o["op"] for o in report["ops"]}
    assert {"Conv", "Relu", "MaxPool", "Gemm"} <= ops
    assert report["gaps"] == {"tvm": [], "onnxruntime": []}


def test_recurrent_ops_are_supported_after_lowering(runner, lstm_onnx, tmp_path):
    stdout, report = _doctor(runner, lstm_onnx, tmp_path)
    assert "tvm: all ops supported (LSTM after lowering by `dlc compile`)" in stdout
    assert "encoder/lstm" in stdout
    lstm = next(o for o in report["ops"] if o["op"] == "LSTM")
    assert lstm["supported"] == {"tvm": False, "onnxruntime": True} and lstm["lowering"] == "lower-recurrent"
    assert lstm["nodes"] == ["encoder/lstm"] and lstm["version"] == 14
    assert report["gaps_after_lowering"] == {"tvm": [], "onnxruntime": []}


def test_every_gap_is_listed_with_node_names(runner, unsupported_onnx, tmp_path):
    stdout, report = _doctor(runner, unsupported_onnx, tmp_path)
    assert "tvm: 1 unsupported op type(s): Det" in stdout and "stats/det" in stdout
    assert report["gaps"]["tvm"] == ["Det", "LSTM"] and report["gaps_after_lowering"]["tvm"] == ["Det"]


def test_custom_domain_op_is_a_gap_for_both(tmp_path):
    from onnx import TensorProto, helper

    from dlc.compiler.coverage import check_coverage

    node = helper.make_node("FancyOp", ["x"], ["y"], name="mystery", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    report = check_coverage(model)
    assert [g.qualified for g in report.gaps("tvm")] == ["com.example::FancyOp"]
    assert [g.qualified for g in report.gaps("onnxruntime")] == ["com.example::FancyOp"]


def test_doctor_on_a_non_onnx_file(runner, tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_text("hello")
    assert_one_line_error(invoke(runner, "doctor", junk), "not an ONNX model")
