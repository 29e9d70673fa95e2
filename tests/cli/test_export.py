import json

import numpy as np
import onnx
import onnxruntime as ort
import torch

from dlc.training import checkpoint
from tests.conftest import assert_one_line_error, invoke


def test_export_names_inputs_outputs_and_makes_batch_dynamic(onnx_model):
    model = onnx.load(onnx_model)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert {o.domain: o.version for o in model.opset_import}[""] == 18
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["dlc.model"] == "cnn"


def test_export_report_shows_small_difference(onnx_model):
    report = json.loads(onnx_model.with_suffix(".export.json").read_text())
    validation = report["validation"]
    assert validation["passed"] and validation["batches"] == [1, 3]
    assert validation["max_abs_diff"] <= validation["tolerance"] == 1e-4


def test_exported_model_agrees_with_pytorch_on_real_digits(onnx_model, trained_checkpoint):
    from dlc.training.data import load_dataset

    x = load_dataset("digits").x_test[:16]
    want = checkpoint.load(trained_checkpoint).build_module()(torch.from_numpy(x)).detach().numpy()
    got = ort.InferenceSession(str(onnx_model)).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_export_static_batch_and_opset(runner, trained_checkpoint, tmp_path):
    out = tmp_path / "b4.onnx"
    result = invoke(runner, "export", trained_checkpoint, "-o", out, "--batch", "4", "--opset", "20")
    assert result.exit_code == 0, result.output
    model = onnx.load(out)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert {o.domain: o.version for o in model.opset_import}[""] == 20


def test_export_untrained_zoo_model_by_name(runner, tmp_path):
    out = tmp_path / "mlp.onnx"
    result = invoke(runner, "export", "mlp", "-o", out, "--arg", "hidden=[32]")
    assert result.exit_code == 0, result.output
    gemms = [n for n in onnx.load(out).graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 2  # one hidden layer plus the head


def test_tolerance_failure_writes_nothing(runner, trained_checkpoint, tmp_path):
    out = tmp_path / "strict.onnx"
    result = invoke(runner, "export", trained_checkpoint, "-o", out, "--tolerance", "1e-12")
    assert_one_line_error(result, "tolerance", "nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_missing_checkpoint(runner, tmp_path):
    result = invoke(runner, "export", tmp_path / "nope.pt", "-o", tmp_path / "x.onnx")
    assert_one_line_error(result, "nope.pt", "dlc train")


def test_file_that_is_not_a_checkpoint(runner, tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("these are not weights")
    result = invoke(runner, "export", bogus, "-o", tmp_path / "x.onnx")
    assert_one_line_error(result, "not a dlc checkpoint", "dlc train")


def test_checkpoint_for_an_unknown_model(runner, trained_checkpoint, tmp_path):
    data = torch.load(trained_checkpoint, weights_only=True)
    data["model"] = "vision-transformer-9000"
    alien = tmp_path / "alien.pt"
    torch.save(data, alien)
    result = invoke(runner, "export", alien, "-o", tmp_path / "x.onnx")
    assert_one_line_error(result, "vision-transformer-9000", "cnn", "mlp")
    assert not (tmp_path / "x.onnx").exists()
