"""What a training step minimizes, per task, and how a model is scored.

    classify     cross-entropy on the logits; accuracy
    reconstruct  mean squared error between the output and the input (autoencoder)
    regress      mean squared error between the output and float targets (a user's own model)
    generate     the GAN game: the discriminator learns real (1) vs generated (0), the generator
                 learns to be scored real (non-saturating loss); the generator is what is trained
                 by the main optimizer and exported, the discriminator has an optimizer of its own

An L1 penalty (`l1 · Σ|w|` over weight matrices and kernels) is added to the loss when asked.
"""

from __future__ import annotations

import numpy as np

from dlc.errors import UnknownNameError


class Classification:
    has_accuracy, early_stopping = True, True

    def __init__(self, l1: float = 0.0):
        self.l1 = l1

    def parameters(self, model):
        return model.parameters()

    def loss(self, model, x, y):
        import torch

        logits = model(x)
        return torch.nn.functional.cross_entropy(logits, y), int((logits.argmax(1) == y).sum())

    def step(self, model, optimizer, x, y) -> tuple[float, int | None]:
        optimizer.zero_grad()
        loss, correct = self.loss(model, x, y)
        (loss + self.l1 * l1_norm(model) if self.l1 else loss).backward()
        optimizer.step()
        return loss.item(), correct

    def evaluate(self, model, x: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
        import torch

        model.eval()
        with torch.no_grad():
            loss, correct = self.loss(model, torch.from_numpy(x), torch.from_numpy(y))
        return loss.item(), (correct / len(x) if self.has_accuracy else None)


class Reconstruction(Classification):
    has_accuracy = False

    def loss(self, model, x, y):
        import torch

        return torch.nn.functional.mse_loss(model(x), x), None


class Regression(Classification):
    """Mean squared error between the output and float targets `y` (an output of one value per sample matches a
    1-D `y`)."""

    has_accuracy = False

    def loss(self, model, x, y):
        import torch

        out = model(x)
        return torch.nn.functional.mse_loss(out.reshape(y.shape) if out.numel() == y.numel() else out, y), None


class Adversarial:
    has_accuracy, early_stopping = False, False

    def __init__(self, model, config):
        from dlc.training.optimizers import make_optimizer

        self.latent = model.generator[0].in_features
        self.d_optimizer = make_optimizer(config, model.discriminator.parameters())
        self.l1 = config.l1

    def parameters(self, model):
        return model.generator.parameters()

    def step(self, model, optimizer, x, y) -> tuple[float, None]:
        import torch
        from torch.nn.functional import binary_cross_entropy_with_logits as bce

        real = x
        fake = model(torch.randn(len(real), self.latent))
        ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
        self.d_optimizer.zero_grad()
        d_loss = bce(model.discriminator(real), ones) + bce(model.discriminator(fake.detach()), zeros)
        d_loss.backward()
        self.d_optimizer.step()
        optimizer.zero_grad()
        g_loss = bce(model.discriminator(fake), ones)
        (g_loss + self.l1 * l1_norm(model.generator) if self.l1 else g_loss).backward()
        optimizer.step()
        return g_loss.item(), None

    def evaluate(self, model, x: np.ndarray, y: np.ndarray) -> tuple[float, None]:
        """The discriminator's loss on held-out real images and as many fresh fakes."""
        import torch
        from torch.nn.functional import binary_cross_entropy_with_logits as bce

        model.eval()
        with torch.no_grad():
            real = torch.from_numpy(x)
            fake = model(torch.randn(len(real), self.latent, generator=torch.Generator().manual_seed(0)))
            loss = bce(model.discriminator(real), torch.ones(len(real), 1)) + \
                bce(model.discriminator(fake), torch.zeros(len(real), 1))
        return loss.item(), None


def make_objective(task: str, model, config):
    if task == "classify":
        return Classification(config.l1)
    if task == "reconstruct":
        return Reconstruction(config.l1)
    if task == "regress":
        return Regression(config.l1)
    if task == "generate":
        return Adversarial(model, config)
    raise UnknownNameError(f"unknown task {task!r}; choose one of: classify, regress, reconstruct, generate")


def l1_norm(module):
    """Σ|w| over weight matrices and kernels (biases and norm scales are left alone)."""
    return sum(p.abs().sum() for name, p in module.named_parameters() if p.ndim > 1 and p.requires_grad)
