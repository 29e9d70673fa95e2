"""Training data from .npz, .csv and image folders, and their bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dlc.errors import InvalidDataError
from dlc.training.data import load_dataset
from tests.conftest import assert_one_line_error, invoke


def _digits_subset(classes, per_class=40):
    data = load_dataset("digits")
    keep = np.concatenate([np.flatnonzero(data.y_train == c)[:per_class] for c in classes])
    return data.x_train[keep], np.searchsorted(classes, data.y_train[keep])


def test_npz_and_csv_train_through_the_cli(runner, tmp_path):
    x, y = _digits_subset([0, 1, 2])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([x.reshape(len(x), -1), y]), delimiter=",",
               header=",".join([f"p{i}" for i in range(64)] + ["label"]), comments="")
    for path, model in ((tmp_path / "d.npz", "cnn"), (tmp_path / "d.csv", "mlp")):
        out = tmp_path / f"{path.suffix[1:]}.pt"
        result = invoke(runner, "train", "--model", model, "--data", path, "--epochs", "5", "-o", out)
        assert result.exit_code == 0, result.output
        assert "test" in result.stdout and out.exists()
    assert load_dataset(str(tmp_path / "d.csv")).sample_shape == (64,)


def test_image_folder_classes_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (6, 5), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    data = load_dataset(str(tmp_path))
    assert data.sample_shape == (1, 6, 5) and data.num_classes == 2
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert "classes cat, dog" in data.preprocess


def test_bad_data_names_the_problem(runner, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidDataError, match="0 class folder"):
        load_dataset(str(tmp_path / "empty"))
    folder = tmp_path / "broken"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / label / "ok.png")
    (folder / "b" / "bad.png").write_bytes(b"not a png")
    result = invoke(runner, "train", "--data", folder, "-o", tmp_path / "x.pt")
    assert_one_line_error(result, "cannot read image", "bad.png")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 2)))
    assert_one_line_error(invoke(runner, "train", "--data", tmp_path / "nolabels.npz", "-o", tmp_path / "x.pt"),
                          "needs arrays 'x' and 'y'")
    assert_one_line_error(invoke(runner, "train", "--data", tmp_path / "nowhere.npz", "-o", tmp_path / "x.pt"),
                          "nowhere.npz")
    assert not (tmp_path / "x.pt").exists()
