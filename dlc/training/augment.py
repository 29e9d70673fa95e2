"""Image augmentation applied to each training batch (NCHW float tensors), seeded.

    shift    translate by up to 1/8 of the side in x and y (zero fill): a random crop of a padded image
    rotate   rotate by up to ±15 degrees about the centre
    flip     mirror left-right with probability ½ (only where a mirrored sample keeps its label)
"""

from __future__ import annotations

import math

from dlc.errors import UnknownNameError

AUGMENTATIONS = ("shift", "rotate", "flip")


def check(names: tuple[str, ...], sample_shape: tuple[int, ...]) -> None:
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise UnknownNameError(f"unknown augmentation(s) {', '.join(unknown)}; choose from: {', '.join(AUGMENTATIONS)}")
    if names and len(sample_shape) != 3:
        raise UnknownNameError(f"augmentation needs images (C, H, W); this data has samples of shape "
                               f"{list(sample_shape)}: leave --augment out")


def augment(x, names: tuple[str, ...], generator):
    """The batch `x` with each named augmentation applied per sample, drawing from `generator`."""
    import torch
    import torch.nn.functional as F

    n = len(x)
    angle = torch.zeros(n)
    shift = torch.zeros(n, 2)
    if "rotate" in names:
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(15)
    if "shift" in names:
        shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.25  # affine grid units: ±1/8 of the side
    if "rotate" in names or "shift" in names:
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    if "flip" in names:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x
