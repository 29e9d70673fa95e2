"""Optimizers and learning-rate schedules, by name."""

from __future__ import annotations

from dlc.training.config import TrainConfig


def make_optimizer(config: TrainConfig, params):
    import torch

    params = [p for p in params if p.requires_grad]
    decay = config.weight_decay
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=decay)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.lr, momentum=config.momentum, weight_decay=decay)
    return torch.optim.Adagrad(params, lr=config.lr, weight_decay=decay)


def make_scheduler(config: TrainConfig, optimizer, steps_per_epoch: int):
    from torch.optim import lr_scheduler

    if config.schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, config.epochs // 3), gamma=0.1)
    if config.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "onecycle":
        cycles_momentum = "betas" in optimizer.defaults or optimizer.defaults.get("momentum", 0) > 0
        return lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, epochs=config.epochs,
                                       steps_per_epoch=steps_per_epoch, cycle_momentum=cycles_momentum)
    if config.schedule == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=max(1, config.patience // 3))
    return None


def end_of_epoch(scheduler, config: TrainConfig, val_loss: float) -> None:
    if config.schedule == "plateau":
        scheduler.step(val_loss)
    elif config.schedule in ("step", "cosine"):
        scheduler.step()
