"""Image classifiers of the zoo. Every model takes NCHW float32 input."""

from __future__ import annotations

import math

from torch import nn


class MLP(nn.Sequential):
    """Flatten, then `hidden` fully connected layers with ReLU and dropout, then a linear head."""

    def __init__(self, input_shape, hidden, num_classes, dropout):
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


class CNN(nn.Module):
    """Two 3x3 conv blocks (conv, batch norm, ReLU), a 2x2 max-pool and a two-layer head."""

    def __init__(self, input_shape, width, num_classes, dropout):
        super().__init__()
        channels, height, width_px = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 2 * width * (height // 2) * (width_px // 2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(flat, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
