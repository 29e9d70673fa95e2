"""`dlc prune` end to end: the zoo ResNet on digits at half its channels, fine-tuned, within a point and under
40 % of the FLOPs; ONNX files pruned by channel and by magnitude; the gates; bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import assert_one_line_error, invoke, run_dlc


@pytest.fixture(scope="module")
def resnet(runner, tmp_path_factory):
    work = tmp_path_factory.mktemp("prune-resnet")
    assert invoke(runner, "train", "--model", "resnet", "--epochs", "5", "-o", work / "resnet.pt").exit_code == 0
    return work


def test_zoo_resnet_keeps_its_accuracy_at_half_the_channels(runner, resnet):
    result = invoke(runner, "prune", resnet / "resnet.pt", "--ratio", "0.5", "--max-drop", "0.01", "-o",
                    resnet / "half.pt")
    assert result.exit_code == 0, result.output
    report = json.loads((resnet / "half.prune.json").read_text())
    before, after = report["before"], report["after"]
    assert after["flops"] <= 0.40 * before["flops"], (before["flops"], after["flops"])
    assert before["metric"]["name"] == "top-1" and before["metric"]["samples"] == 270  # the test split
    assert before["metric"]["value"] - after["metric"]["value"] <= 0.01
    assert report["gates"]["max_drop"]["held"] and len(report["fine_tuning"]) == 5
    assert report["left_whole"] == {"head.2": "its outputs are the model's"}
    widths = {k: v for k, v in report["layers"].items() if k != "head.2"}
    assert all(v["kept"] == v["channels"] // 2 for v in widths.values()), widths
    # the checkpoint is narrower and exports as usual
    state = torch.load(resnet / "half.pt", weights_only=True)
    assert state["pruned"]["ratio"] == 0.5 and state["state_dict"]["features.0.weight"].shape[0] == 8
    assert invoke(runner, "export", resnet / "half.pt", "-o", resnet / "half.onnx").exit_code == 0
    onnx.checker.check_model(onnx.load(resnet / "half.onnx"), full_check=True)
    assert "top-1" in " ".join(result.output.split()) and "wrote" in result.output


def test_mobilenet_in_steps_with_channels_rounded_to_eight(runner, tmp_path):
    """Depthwise convolutions follow their group; every kept width is a multiple of 8."""
    ckpt = tmp_path / "mobilenet.pt"
    assert invoke(runner, "train", "--model", "mobilenet", "--epochs", "1", "--max-steps", "3", "-o",
                  ckpt).exit_code == 0
    result = invoke(runner, "prune", ckpt, "--ratio", "0.6", "--round-to", "8", "--steps", "2", "--epochs", "1",
                    "--importance", "bn", "-o", tmp_path / "small.pt")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "small.prune.json").read_text())
    assert len(report["fine_tuning"]) == 2 and {s["step"] for s in report["fine_tuning"]} == {1, 2}
    widths = {k: v["kept"] for k, v in report["layers"].items() if k != "head.3"}
    assert all(w % 8 == 0 for w in widths.values()), widths
    assert any(v["kept"] < v["channels"] for v in report["layers"].values())
    state = torch.load(tmp_path / "small.pt", weights_only=True)["state_dict"]
    depthwise = [k for k in state if k.endswith("body.3.weight")]
    assert depthwise and all(state[k].shape[1] == 1 for k in depthwise)
    assert invoke(runner, "export", tmp_path / "small.pt", "-o", tmp_path / "small.onnx").exit_code == 0


def test_an_onnx_model_pruned_by_channel_compiles_and_is_measured_on_tvm(runner, onnx_model, trained_checkpoint,
                                                                        tmp_path):
    out = tmp_path / "cnn.pruned.onnx"
    result = invoke(runner, "prune", onnx_model, "--checkpoint", trained_checkpoint, "--backend", "tvm",
                    "--runs", "20", "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "cnn.pruned.prune.json").read_text())
    assert report["before"]["latency_ms"]["backend"] == "tvm" and report["after"]["latency_ms"]["p50"] > 0
    assert report["after"]["parameters"] < 0.35 * report["before"]["parameters"]
    assert report["after"]["metric"]["name"] == "top-1" and report["gates"] == {}
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == [i.name for i in onnx.load(onnx_model).graph.input]


def test_the_gates_refuse_a_result_unless_forced(runner, onnx_model, trained_checkpoint, tmp_path):
    out = tmp_path / "never.onnx"
    args = ["prune", str(onnx_model), "--checkpoint", str(trained_checkpoint), "--ratio", "0.9", "--max-drop",
            "0.01", "--min-speedup", "1000", "--runs", "10", "-o", str(out)]
    refused = run_dlc(*args)
    assert_one_line_error(refused, "misses a gate", "over --max-drop 0.01", "under --min-speedup 1000",
                          "nothing was written")
    assert not out.exists() and not list(tmp_path.iterdir())
    forced = invoke(runner, *args, "--force")
    assert forced.exit_code == 0, forced.output
    gates = json.loads((tmp_path / "never.prune.json").read_text())["gates"]
    assert not gates["max_drop"]["held"] and not gates["min_speedup"]["held"]
    assert "MISSED" in forced.output


def test_without_labels_the_gate_compares_predictions_with_the_full_model(onnx_model, tmp_path):
    """An .npz without labels: the metric is top-1 agreement with the unpruned model, which pruning 90 % breaks."""
    from dlc.training.data import load_dataset

    np.savez(tmp_path / "x.npz", x=load_dataset("digits").x_test[:64])
    refused = run_dlc("prune", str(onnx_model), "--calibration", str(tmp_path / "x.npz"), "--ratio", "0.9",
                      "--max-drop", "0.05", "--runs", "5", "-o", str(tmp_path / "p.onnx"))
    assert_one_line_error(refused, "top-1 agreement went 100.00% →")
    assert not (tmp_path / "p.onnx").exists()


def test_magnitude_pruning_zeroes_weights_and_the_file_compresses(runner, onnx_model, tmp_path):
    out = tmp_path / "sparse.onnx"
    result = invoke(runner, "prune", onnx_model, "--method", "magnitude", "--ratio", "0.8", "--runs", "10", "-o",
                    out)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "sparse.prune.json").read_text())
    assert all(abs(v["sparsity"] - 0.8) < 0.01 for v in report["layers"].values()), report["layers"]
    before, after = report["before"], report["after"]
    assert after["parameters"] == before["parameters"]
    assert after["deflated_bytes"] < 0.5 * before["deflated_bytes"]
    weights = [onnx.numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer if t.name.endswith("weight")]
    assert weights and all(np.isclose((w == 0).mean(), 0.8, atol=0.01) for w in weights)


def test_the_python_api_prunes_an_onnx_model(onnx_model, tmp_path):
    import dlc

    report = dlc.prune(onnx_model, tmp_path / "api.onnx", ratio=0.25, round_to=4, runs=5)
    assert report.after["flops"] < report.before["flops"] and (tmp_path / "api.onnx").exists()
    with pytest.raises(dlc.errors.DlcError, match="has no option"):
        dlc.prune(onnx_model, tmp_path / "x.onnx", ratios=0.5)


def test_bad_input_is_one_line(runner, onnx_model, trained_checkpoint, tmp_path):
    out = str(tmp_path / "out.onnx")
    layers = ", ".join(n.name for n in onnx.load(onnx_model).graph.node if n.op_type in ("Conv", "Gemm"))
    cases = [
        (["--ratio", "1"], "--ratio must be in [0, 1)"),
        (["--ratio", "-0.1"], "--ratio must be in [0, 1)"),
        (["--ignore", "nosuch"], f"no prunable layer is named nosuch; the layers are: {layers}"),
        (["--layer-ratio", "node_linear"], "write NAME=RATIO"),
        (["--layer-ratio", "node_linear=1.5"], "--layer-ratio node_linear must be in [0, 1)"),
        (["--importance", "taylor"], "needs the PyTorch model"),
        (["--max-drop", "0.01"], "--max-drop needs a validation set"),
        (["--steps", "0"], "at least 1"),
        (["--epochs", "2"], "fine-tune a checkpoint between steps"),
        (["--global", "--layer-ratio", "node_linear=0.2"], "use one or the other"),
        (["--method", "magnitude", "--round-to", "8"], "keeps every channel"),
        (["--ratio", "0"], "removes no channel from the"),
    ]
    for extra, fragment in cases:
        assert_one_line_error(run_dlc("prune", str(onnx_model), "-o", out, *extra), fragment)
    assert_one_line_error(run_dlc("prune", str(onnx_model), "-o", str(tmp_path / "out.pt")), "writes .onnx")
    assert_one_line_error(run_dlc("prune", str(trained_checkpoint), "-o", out), "writes .pt or .pth")
    assert_one_line_error(run_dlc("prune", str(trained_checkpoint), "--method", "magnitude", "-o",
                                  str(tmp_path / "o.pt")), "`dlc export` the checkpoint")
    assert_one_line_error(run_dlc("prune", str(trained_checkpoint), "--checkpoint", str(trained_checkpoint), "-o",
                                  str(tmp_path / "o.pt")), "measured on its own data set's test split")
    assert_one_line_error(run_dlc("prune", str(tmp_path / "missing.onnx")), "missing.onnx")
    assert_one_line_error(run_dlc("prune", str(onnx_model), "-o", str(onnx_model), "--force"), "would overwrite")
    assert_one_line_error(run_dlc("prune", str(onnx_model), "-o", out, "--report", str(onnx_model)),
                          "would overwrite the model")
    (tmp_path / "taken.json").write_text("{}")
    assert_one_line_error(run_dlc("prune", str(onnx_model), "-o", out, "--report", str(tmp_path / "taken.json")),
                          "already exists")
    assert_one_line_error(run_dlc("prune", str(trained_checkpoint), "--lr", "nan", "-o", str(tmp_path / "o.pt")),
                          "--lr must be a positive number")
    assert_one_line_error(run_dlc("prune", str(trained_checkpoint), "--ratio", "0", "-o", str(tmp_path / "o.pt")),
                          "nothing was pruned: Torch-Pruning kept every channel")
    (tmp_path / "taken.json").unlink()
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".onnx", ".pt", ".json")]


def test_a_model_it_cannot_narrow_or_prune_says_so(runner, tmp_path):
    lstm = tmp_path / "lstm.pt"
    assert invoke(runner, "train", "--model", "lstm", "--epochs", "1", "--max-steps", "1", "-o", lstm).exit_code == 0
    assert_one_line_error(run_dlc("prune", str(lstm), "-o", str(tmp_path / "l.pt")), "has LSTM layers",
                          "--method magnitude")
    relu = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])]),
        opset_imports=[onnx.helper.make_opsetid("", 17)])
    onnx.save(relu, tmp_path / "relu.onnx")
    assert_one_line_error(run_dlc("prune", str(tmp_path / "relu.onnx"), "-o", str(tmp_path / "r.onnx")),
                          "nothing was pruned", "no Conv, Gemm or MatMul")


def test_an_exported_autoencoder_is_measured_by_reconstruction_error(runner, tmp_path):
    ckpt, model = tmp_path / "ae.pt", tmp_path / "ae.onnx"
    assert invoke(runner, "train", "--model", "autoencoder", "--epochs", "1", "--max-steps", "5", "-o",
                  ckpt).exit_code == 0
    assert invoke(runner, "export", ckpt, "-o", model).exit_code == 0
    from dlc.training.data import load_dataset

    data = load_dataset("digits", task="reconstruct")
    np.savez(tmp_path / "x.npz", x=data.x_test[:32], y=np.zeros(32, np.int64))  # labels mean nothing here
    result = invoke(runner, "prune", model, "--calibration", tmp_path / "x.npz", "--ratio", "0.25", "--runs", "5",
                    "-o", tmp_path / "small.onnx")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "small.prune.json").read_text())
    assert report["before"]["metric"]["name"] == "mse" and report["after"]["metric"]["samples"] == 32
