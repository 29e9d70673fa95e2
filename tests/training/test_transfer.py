"""Transfer learning, resuming, input normalization, augmentation, curves and explanations."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from dlc.training import TrainConfig, checkpoint, train
from tests.conftest import assert_one_line_error, invoke
from tests.training.test_datafiles import _digits_subset


@pytest.fixture(scope="module")
def split_digits(tmp_path_factory):
    """Digits 0-4 to pretrain on, 5-9 (relabelled 0-4, 60 per class) to transfer to."""
    folder = tmp_path_factory.mktemp("transfer")
    for name, classes, count in (("source", [0, 1, 2, 3, 4], 120), ("target", [5, 6, 7, 8, 9], 60)):
        x, y = _digits_subset(classes, count)
        np.savez(folder / f"{name}.npz", x=x, y=y)
    return folder


def test_fine_tuning_keeps_frozen_weights_and_beats_a_head_trained_from_scratch(split_digits, tmp_path):
    source = train(TrainConfig(model="cnn", dataset=str(split_digits / "source.npz"), epochs=15))
    checkpoint.save(source.checkpoint, tmp_path / "source.pt")
    # only the new head trains, for the same steps: on the pretrained body, and on a random one
    common = dict(model="cnn", dataset=str(split_digits / "target.npz"), epochs=5, lr=1e-2, patience=0,
                  freeze=("features", "classifier.2"), new_head=True)
    tuned = train(TrainConfig(init_from=tmp_path / "source.pt", **common))
    scratch = train(TrainConfig(**common))

    before, after = source.checkpoint.state_dict, tuned.checkpoint.state_dict
    frozen = [k for k in before if k.startswith(("features.", "classifier.2."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # BN statistics included
    assert not torch.equal(before["classifier.4.weight"], after["classifier.4.weight"])
    print(f"head on pretrained body {tuned.test_accuracy:.1%}, head on random body {scratch.test_accuracy:.1%}")
    assert tuned.test_accuracy > scratch.test_accuracy + 0.05, (tuned.test_accuracy, scratch.test_accuracy)


def test_resume_continues_the_epochs_and_refuses_another_model(runner, tmp_path):
    first = tmp_path / "first.pt"
    assert invoke(runner, "train", "--model", "mlp", "--epochs", "2", "-o", first).exit_code == 0
    result = train(TrainConfig(model="mlp", epochs=4, resume=first))
    assert [h.epoch for h in result.history] == [3, 4]
    custom = tmp_path / "custom.pt"  # a run with its own architecture and normalization resumes as it was
    assert invoke(runner, "train", "--model", "mlp", "--epochs", "1", "--arg", "hidden=[32]", "--normalize",
                  "-o", custom).exit_code == 0
    resumed = train(TrainConfig(model="mlp", epochs=2, resume=custom))
    assert resumed.checkpoint.model_args["hidden"] == [32] and resumed.checkpoint.normalize is not None
    refused = invoke(runner, "train", "--model", "cnn", "--resume", first, "-o", tmp_path / "x.pt")
    assert_one_line_error(refused, "holds a 'mlp' model", "--model is 'cnn'")


def test_normalization_is_part_of_the_exported_model(runner, tmp_path):
    ckpt = tmp_path / "norm.pt"
    result = invoke(runner, "train", "--model", "cnn", "--epochs", "2", "--normalize", "--augment", "shift,rotate,flip",
                    "-o", ckpt)
    assert result.exit_code == 0, result.output
    loaded = checkpoint.load(ckpt)
    assert len(loaded.normalize["mean"]) == 1 and loaded.normalize["std"][0] > 0
    assert invoke(runner, "export", ckpt, "-o", tmp_path / "norm.onnx").exit_code == 0
    ops = [n.op_type for n in onnx.load(tmp_path / "norm.onnx").graph.node]
    assert ops[:2] == ["Sub", "Div"]  # (x - mean) / std before the first convolution
    assert (tmp_path / "norm.curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_augmentation_changes_images_but_keeps_their_shape():
    from dlc.training.augment import augment

    x = torch.rand(8, 1, 8, 8)
    y = augment(x, ("shift", "rotate", "flip"), torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)
    z = augment(x, ("shift", "rotate", "flip"), torch.Generator().manual_seed(0))
    assert torch.equal(y, z)  # seeded


def test_explain_writes_maps_whose_integrated_gradients_add_up(runner, trained_checkpoint, tmp_path):
    out = tmp_path / "why.png"
    result = invoke(runner, "explain", trained_checkpoint, "--index", "0,5", "--steps", "256", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    report = json.loads(out.with_suffix(".json").read_text())
    assert [r["index"] for r in report["inputs"]] == [0, 5]
    for r in report["inputs"]:
        assert r["completeness_error"] < 0.02 * max(1.0, abs(r["integrated_gradients_sum"]))
    assert_one_line_error(invoke(runner, "explain", trained_checkpoint, "--index", "99999", "-o", tmp_path / "x.png"),
                          "--index")


def test_explain_refuses_models_that_are_not_image_classifiers(runner, tmp_path):
    for model in ("autoencoder", "lstm"):
        ckpt = tmp_path / f"{model}.pt"
        assert invoke(runner, "train", "--model", model, "--max-steps", "1", "--epochs", "1", "-o", ckpt).exit_code == 0
        result = invoke(runner, "explain", ckpt, "-o", tmp_path / "x.png")
        assert_one_line_error(result, "dlc explain")
        assert not (tmp_path / "x.png").exists()


def test_init_from_says_what_it_copied_and_refuses_a_checkpoint_that_shares_nothing(runner, tmp_path):
    x, y = _digits_subset([0, 1, 2], 30)
    np.savez(tmp_path / "three.npz", x=x, y=y)
    source = tmp_path / "three.pt"
    assert invoke(runner, "train", "--model", "mlp", "--data", tmp_path / "three.npz", "--epochs", "1",
                  "--arg", "hidden=[32]", "-o", source).exit_code == 0
    same = invoke(runner, "train", "--model", "mlp", "--data", tmp_path / "three.npz", "--epochs", "1",
                  "--arg", "hidden=[32]", "--init-from", source, "-o", tmp_path / "same.pt")
    assert same.exit_code == 0 and "4 weights copied, 0 left to their fresh initialization" in same.stdout, same.output
    nothing = invoke(runner, "train", "--model", "mlp", "--epochs", "1", "--arg", "hidden=[48]",  # 10 classes
                     "--init-from", source, "-o", tmp_path / "x.pt")
    assert_one_line_error(nothing, "has no weight of the shape this model needs")
    assert not (tmp_path / "x.pt").exists()
