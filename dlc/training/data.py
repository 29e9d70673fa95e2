"""Data sets that need no download, split reproducibly into train, validation and test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlc.errors import InvalidDataError, UnknownNameError

DATASETS = {
    "digits": "scikit-learn's handwritten digits: 1,797 8x8 grey images, 10 classes (ships with the package)",
    "sequences": "generated: 2,000 noisy 16-step, 4-feature sequences; the class is the frequency of a "
                 "sinusoid hidden in feature 0 among noise and a random-walk distractor (4 classes)",
}


@dataclass(frozen=True)
class Splits:
    """A data set split three ways; images are float32 NCHW, labels int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    preprocess: str  # how raw samples were turned into model inputs, for users of the model

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_dataset(name: str, seed: int = 0, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, task: str = "classify") -> Splits:
    """Loads data set `name` (a built-in name, or a path: .npz, .csv, image folder) and splits it.

    The split is seeded with `seed` and stratified by class, except for regression (float
    targets, which only files hold).
    """
    from pathlib import Path

    if task == "regress":
        from dlc.training.datafiles import load_arrays

        if name in DATASETS or not Path(name).exists():
            raise UnknownNameError(f"regression trains on your own targets: pass --data with an .npz (x, y float) "
                                   f"or a .csv (target last), not {name!r}")
        x, y, preprocess = load_arrays(Path(name), integer_labels=False)
        return _split(name, x, y, seed, val_fraction, test_fraction, preprocess, stratify=False)
    if name in DATASETS:
        x, y, preprocess = _load_digits() if name == "digits" else _generate_sequences()
    elif Path(name).exists():
        from dlc.training.datafiles import load_arrays

        x, y, preprocess = load_arrays(Path(name))
    else:
        raise UnknownNameError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}, or pass a path "
                               f"to an .npz, a .csv or an image folder")
    return _split(name, x, y, seed, val_fraction, test_fraction, preprocess)


def _load_digits() -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; scaling to [0, 1] keeps the input range what conv nets expect.
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return x, digits.target.astype(np.int64), "pixels / 16 (range 0..1), shape N x 1 x 8 x 8"


def _generate_sequences(count: int = 2000, steps: int = 16, features: int = 4, classes: int = 4):
    """The synthetic sequence task; fixed generator seed, so every run sees the same data."""
    rng = np.random.default_rng(1234)
    y = rng.integers(0, classes, count)
    t = np.arange(steps)
    phase = rng.uniform(0, 2 * np.pi, (count, 1))
    x = rng.normal(0, 0.4, (count, steps, features))
    x[:, :, 0] += np.sin(2 * np.pi * (y[:, None] + 1) * t / steps + phase)  # 1..4 cycles per sequence
    x[:, :, 1] += np.cumsum(rng.normal(0, 0.3, (count, steps)), axis=1)  # a drift that carries no label
    return x.astype(np.float32), y.astype(np.int64), "generated (no preprocessing), shape N x 16 x 4"


def _split(name, x, y, seed, val_fraction, test_fraction, preprocess, stratify: bool = True) -> Splits:
    from sklearn.model_selection import train_test_split

    try:
        x_rest, x_test, y_rest, y_test = train_test_split(
            x, y, test_size=test_fraction, random_state=seed, stratify=y if stratify else None)
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed,
            stratify=y_rest if stratify else None)
    except ValueError as e:  # too few samples of a class for a stratified three-way split
        raise InvalidDataError(f"data set {name!r} cannot be split into train/val/test by class ({e}); "
                                f"give every class at least 7 samples") from e
    return Splits(name, x_train, y_train, x_val, y_val, x_test, y_test,
                  int(y.max()) + 1 if stratify else 0, preprocess)
