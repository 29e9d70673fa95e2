"""Training zoo models on a data set, with early stopping on validation loss."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlc import zoo
from dlc.checkpoint import Checkpoint
from dlc.data import Splits, load_dataset
from dlc.errors import UnknownNameError

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "cnn"
    model_args: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adam"
    weight_decay: float = 1e-4
    patience: int = 8  # epochs without a better validation loss before stopping; 0 = never
    seed: int = 0


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    history: list[EpochStats]
    best_epoch: int
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    seconds: float
    stopped_early: bool

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.checkpoint.model, "dataset": self.checkpoint.dataset,
            "train_accuracy": self.train_accuracy, "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy, "best_epoch": self.best_epoch,
            "epochs_run": len(self.history), "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 2),
            "history": [e.__dict__ for e in self.history],
        }


def train(config: TrainConfig, on_epoch: Callable[[EpochStats], None] | None = None) -> TrainResult:
    """Trains `config.model` on `config.dataset`; keeps the weights of the best validation epoch."""
    import torch

    start = time.perf_counter()
    spec = zoo.get(config.model)
    torch.manual_seed(config.seed)
    data = load_dataset(config.dataset, seed=config.seed)
    args = zoo.resolve_args(spec, {spec.input_shape_arg: list(data.sample_shape),
                                   "num_classes": data.num_classes, **config.model_args})
    model = zoo.create(config.model, args)
    optimizer = _optimizer(config, model.parameters())
    history, best, best_state = [], None, None
    for epoch in range(1, config.epochs + 1):
        train_loss, train_acc = _train_epoch(model, optimizer, data, config, epoch)
        val_loss, val_acc = evaluate(model, data.x_val, data.y_val)
        stats = EpochStats(epoch, train_loss, train_acc, val_loss, val_acc)
        history.append(stats)
        if on_epoch:
            on_epoch(stats)
        if best is None or val_loss < best.val_loss:
            best, best_state = stats, {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif config.patience and epoch - best.epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    return _result(config, model, args, data, history, best, time.perf_counter() - start)


def _result(config, model, args, data: Splits, history, best, seconds) -> TrainResult:
    _, train_acc = evaluate(model, data.x_train, data.y_train)
    _, test_acc = evaluate(model, data.x_test, data.y_test)
    ckpt = Checkpoint(model=config.model, model_args=args, state_dict=model.state_dict(),
                      input_shape=list(data.sample_shape), dataset=data.name,
                      preprocess=data.preprocess)
    result = TrainResult(ckpt, history, best.epoch, train_acc, best.val_accuracy, test_acc,
                         seconds, stopped_early=len(history) < config.epochs)
    ckpt.metrics = {k: v for k, v in result.summary().items() if k != "history"}
    return result


def _optimizer(config: TrainConfig, params):
    import torch

    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    raise UnknownNameError(f"unknown optimizer {config.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")


def _train_epoch(model, optimizer, data: Splits, config: TrainConfig, epoch: int) -> tuple[float, float]:
    import torch

    model.train()
    # A fresh permutation per epoch, derived from the seed, keeps runs reproducible.
    order = np.random.default_rng(config.seed * 1000 + epoch).permutation(len(data.x_train))
    total_loss, correct = 0.0, 0
    for i in range(0, len(order), config.batch_size):
        idx = order[i:i + config.batch_size]
        x, y = torch.from_numpy(data.x_train[idx]), torch.from_numpy(data.y_train[idx])
        optimizer.zero_grad()
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == y).sum().item()
    return total_loss / len(order), correct / len(order)


def evaluate(model, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` on (x, y)."""
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).item()
        accuracy = (logits.argmax(1).numpy() == y).mean().item()
    return loss, accuracy
