"""Generative models of the zoo: an autoencoder and a GAN, both on 1x8x8 images in [0, 1]."""

from __future__ import annotations

import math

from torch import nn


class Autoencoder(nn.Module):
    """A fully connected autoencoder: image → `code` numbers → image (sigmoid output)."""

    def __init__(self, input_shape, hidden, code):
        super().__init__()
        pixels = math.prod(input_shape)
        self.shape = tuple(input_shape)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU(), nn.Linear(hidden, code))
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, pixels), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x)).reshape(-1, *self.shape)


class GAN(nn.Module):
    """Generator and discriminator trained against each other; `forward` is the generator (what is exported).

    The generator maps a latent vector to an image; the discriminator scores images as real (logit > 0)
    or generated. Both are small MLPs with batch norm / leaky ReLU, the DCGAN habits at MLP scale.
    """

    def __init__(self, latent_shape, image_shape, hidden):
        super().__init__()
        pixels = math.prod(image_shape)
        self.image_shape = tuple(image_shape)
        self.generator = nn.Sequential(
            nn.Linear(latent_shape[0], hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * hidden), nn.BatchNorm1d(2 * hidden), nn.ReLU(),
            nn.Linear(2 * hidden, pixels), nn.Sigmoid())
        self.discriminator = nn.Sequential(
            nn.Flatten(), nn.Linear(pixels, 2 * hidden), nn.LeakyReLU(0.2),
            nn.Linear(2 * hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, z):
        return self.generator(z).reshape(-1, *self.image_shape)
