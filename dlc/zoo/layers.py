"""Layers the zoo's models share."""

from __future__ import annotations

import torch
from torch import nn


class Normalized(nn.Module):
    """(x − mean) / std per channel (axis 1 of images, the last axis otherwise), then `inner`."""

    def __init__(self, inner: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x):
        shape = (1, -1, 1, 1) if x.ndim == 4 else (1,) * (x.ndim - 1) + (-1,)
        return self.inner((x - self.mean.reshape(shape)) / self.std.reshape(shape))


def channel_statistics(x) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a training set laid out as the models take it."""
    import numpy as np

    axes = (0, 2, 3) if x.ndim == 4 else tuple(range(x.ndim - 1))
    return x.mean(axis=axes).tolist(), np.maximum(x.std(axis=axes), 1e-6).tolist()
