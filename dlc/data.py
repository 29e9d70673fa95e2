"""Data sets that need no download, split reproducibly into train, validation and test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlc.errors import UnknownNameError

DATASETS = {
    "digits": "scikit-learn's handwritten digits: 1,797 8x8 grey images, 10 classes (ships with the package)",
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
                 test_fraction: float = 0.15) -> Splits:
    """Loads data set `name` and splits it, stratified by class, with `seed`."""
    if name not in DATASETS:
        raise UnknownNameError(f"unknown data set {name!r}; choose one of: {', '.join(DATASETS)}")
    x, y, preprocess = _load_digits()
    return _split(name, x, y, seed, val_fraction, test_fraction, preprocess)


def _load_digits() -> tuple[np.ndarray, np.ndarray, str]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; scaling to [0, 1] keeps the input range what conv nets expect.
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    return x, digits.target.astype(np.int64), "pixels / 16 (range 0..1), shape N x 1 x 8 x 8"


def _split(name, x, y, seed, val_fraction, test_fraction, preprocess) -> Splits:
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed, stratify=y_rest)
    return Splits(name, x_train, y_train, x_val, y_val, x_test, y_test,
                  int(y.max()) + 1, preprocess)
