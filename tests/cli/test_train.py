import json

import torch

from tests.conftest import assert_one_line_error, invoke


def test_checkpoint_loads_weights_only_with_model_name_and_args(trained_checkpoint):
    data = torch.load(trained_checkpoint, weights_only=True)
    assert data["format"] == "dlc-checkpoint"
    assert data["model"] == "cnn"
    assert data["model_args"]["input_shape"] == [1, 8, 8]
    assert data["model_args"]["num_classes"] == 10
    assert any(k.endswith("weight") for k in data["state_dict"])


def test_train_reports_three_accuracies_and_writes_metrics(runner, tmp_path):
    out = tmp_path / "mlp.pt"
    result = invoke(runner, "train", "--model", "mlp", "--epochs", "4", "--seed", "3", "-o", out)
    assert result.exit_code == 0, result.output
    assert "train" in result.stdout and "val" in result.stdout and "test" in result.stdout
    metrics = json.loads(out.with_suffix(".metrics.json").read_text())
    assert metrics["model"] == "mlp" and metrics["epochs_run"] == 4
    for split in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert 0.5 < metrics[split] <= 1.0  # 4 epochs of an MLP on digits is far above chance (0.1)
    assert len(metrics["history"]) == 4


def test_same_seed_gives_same_weights(tmp_path):
    from dlc.training import TrainConfig, train

    a = train(TrainConfig(model="mlp", epochs=2, seed=7)).checkpoint.state_dict
    b = train(TrainConfig(model="mlp", epochs=2, seed=7)).checkpoint.state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_model_lists_the_zoo(runner, tmp_path):
    result = invoke(runner, "train", "--model", "transformerxl", "-o", tmp_path / "x.pt")
    assert_one_line_error(result, "transformerxl", "cnn", "mlp")
    assert not (tmp_path / "x.pt").exists()


def test_unknown_model_argument_is_named(runner, tmp_path):
    result = invoke(runner, "train", "--arg", "depth=3", "--epochs", "1", "-o", tmp_path / "x.pt")
    assert_one_line_error(result, "depth", "width")


def test_existing_checkpoint_is_not_overwritten_without_force(runner, trained_checkpoint):
    before = trained_checkpoint.read_bytes()
    result = invoke(runner, "train", "--epochs", "1", "-o", trained_checkpoint)
    assert_one_line_error(result, "--force")
    assert trained_checkpoint.read_bytes() == before
