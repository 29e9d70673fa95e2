"""Training zoo models: optimizers, schedules, L1/L2, early stopping, one loop for every task.

The loop is the same for every model; what differs per task lives in an objective
(`dlc.training.objectives`): cross-entropy and accuracy for classifiers, reconstruction error for
the autoencoder, the adversarial game for the GAN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlc import zoo
from dlc.errors import DlcError, first_line
from dlc.training import augment
from dlc.training.checkpoint import Checkpoint
from dlc.training.config import OWN_MODEL_TASKS, TrainConfig, check_names, with_recipe
from dlc.training.data import Splits, load_dataset
from dlc.training.optimizers import end_of_epoch, make_optimizer, make_scheduler


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float | None  # None for tasks without accuracy (reconstruction, GAN)
    val_loss: float
    val_accuracy: float | None
    lr: float = 0.0


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    history: list[EpochStats]
    best_epoch: int
    train_accuracy: float | None
    val_accuracy: float | None
    test_accuracy: float | None
    test_loss: float
    seconds: float
    stopped_early: bool
    task: str = "classify"
    transferred: dict[str, list[str]] | None = None  # --init-from: the weights copied and skipped

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.checkpoint.model, "dataset": self.checkpoint.dataset, "task": self.task,
            "train_accuracy": self.train_accuracy, "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy, "test_loss": self.test_loss, "best_epoch": self.best_epoch,
            "epochs_run": len(self.history), "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 2),
            "history": [e.__dict__ for e in self.history],
        }


class TrainingDivergedError(DlcError, ArithmeticError):
    """The loss became NaN or infinite; `result` holds the last good weights, if an epoch finished."""

    def __init__(self, message: str, result: TrainResult | None):
        super().__init__(message)
        self.result = result


def train(config: TrainConfig, on_epoch: Callable[[EpochStats], None] | None = None) -> TrainResult:
    """Trains `config.model`; keeps the weights of the best validation epoch (the last one for a GAN)."""
    import torch

    from dlc.training.objectives import make_objective
    from dlc.zoo.layers import Normalized

    start = time.perf_counter()
    config, spec = _model(config)
    config = with_recipe(config, spec)
    check_names(config)
    torch.manual_seed(config.seed)
    data = load_dataset(config.dataset or spec.dataset, seed=config.seed, task=spec.task)
    augment.check(config.augment, data.sample_shape)
    source = _resume_source(config)
    # a resumed run keeps the architecture and input normalization it was trained with
    args = source.model_args if source else zoo.resolve_args(spec, {**_data_args(spec, data), **config.model_args})
    model = zoo.create(config.model, args)
    transferred = _prepare(model, config, source)
    normalize = source.normalize if source else _normalization(config, data)
    net = Normalized(model, normalize["mean"], normalize["std"]) if normalize else model
    objective = make_objective(spec.task, model, config)
    if config.model not in zoo.names():
        _check_own_model(net, objective, data, config.model, spec.task)
    optimizer = make_optimizer(config, objective.parameters(model))
    if source:
        optimizer.load_state_dict(source.training_state["optimizer"])
    scheduler = make_scheduler(config, optimizer, math.ceil(len(data.x_train) / config.batch_size))
    history, best, best_state, steps = [], None, None, 0
    first = source.training_state["epoch"] + 1 if source else 1
    for epoch in range(first, config.epochs + 1):
        try:
            train_loss, train_acc, steps = _train_epoch(net, objective, optimizer, scheduler, data, config, epoch,
                                                        steps)
        except FloatingPointError as e:
            partial = None if best is None else _finish(config, spec, model, objective, best_state, args, data,
                                                        history, best, start, normalize)
            raise TrainingDivergedError(f"training {config.model} diverged: {e}; lower --lr"
                                        f"{' (the last good weights were kept)' if partial else ''}", partial) from e
        val_loss, val_acc = objective.evaluate(net, data.x_val, data.y_val)
        stats = EpochStats(epoch, train_loss, train_acc, val_loss, val_acc, optimizer.param_groups[0]["lr"])
        history.append(stats)
        if on_epoch:
            on_epoch(stats)
        end_of_epoch(scheduler, config, val_loss)
        if not objective.early_stopping or best is None or val_loss < best.val_loss:
            best, best_state = stats, {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif config.patience and epoch - best.epoch >= config.patience:
            break
        if config.max_steps and steps >= config.max_steps:
            break
    if best is None:
        raise DlcError(f"nothing to train: the run resumed at epoch {first} and --epochs is {config.epochs}; "
                       f"raise --epochs")
    result = _finish(config, spec, model, objective, best_state, args, data, history, best, start, normalize)
    result.transferred = transferred
    result.checkpoint.training_state = {"epoch": history[-1].epoch, "optimizer": optimizer.state_dict()}
    return result


def _model(config: TrainConfig) -> tuple[TrainConfig, zoo.ModelSpec]:
    """The model's spec, with --task for a user's own model (whose reference becomes absolute: the checkpoint
    finds its file from any folder)."""
    from dataclasses import replace

    from dlc.sources import canonical_reference

    spec = zoo.get(config.model)
    if config.model in zoo.names():
        if config.task and config.task != spec.task:
            raise DlcError(f"{config.model} is a {spec.task} model; --task is for your own model "
                           "(--model FILE.py:NAME)")
        return config, spec
    if (config.task or "classify") not in OWN_MODEL_TASKS:
        raise DlcError(f"--task {config.task!r} is not one of {', '.join(OWN_MODEL_TASKS)}")
    model = canonical_reference(config.model)
    return replace(config, model=model), replace(spec, name=model, builder=model, task=config.task or "classify")


def _check_own_model(net, objective, data: Splits, name: str, task: str) -> None:
    """One loss on two training samples: a user's model that cannot take the data fails here, in one line."""
    import torch

    x, y = torch.from_numpy(data.x_train[:2]), torch.from_numpy(data.y_train[:2])
    was_training = net.training
    try:
        with torch.no_grad():
            objective.loss(net.eval(), x, y)  # eval: batch-norm statistics stay as they are
    except Exception as e:  # the user's code: anything
        needs = {"classify": "one score per class", "regress": "the targets' shape", "reconstruct": "its input's shape"}
        raise DlcError(f"{name} cannot train on {data.name}: on a batch of inputs {list(x.shape)} (targets "
                       f"{list(y.shape)}) {first_line(e)}; its forward must take the data's samples and return "
                       f"{needs[task]} for --task {task}") from e
    finally:
        net.train(was_training)


def _resume_source(config: TrainConfig) -> Checkpoint | None:
    """The checkpoint `--resume` continues, checked: same model, written by `dlc train`."""
    from dlc.training import checkpoint, transfer

    if not config.resume:
        return None
    source = checkpoint.load(config.resume)
    transfer.require_same_model(source, config.model, config.resume)
    if not source.training_state:
        raise DlcError(f"checkpoint {config.resume} has no training state to resume (it was not written by "
                       f"`dlc train`); use --init-from to start from its weights instead")
    return source


def _prepare(model, config: TrainConfig, source: Checkpoint | None) -> dict[str, list[str]] | None:
    """Resumed or transferred weights into `model`, then its head reset and layers frozen as asked.

    Returns what --init-from copied and skipped (None without it)."""
    from dlc.training import transfer

    if source:
        model.load_state_dict(source.state_dict)
    transferred = transfer.start_from(model, config.init_from, config.model) if config.init_from else None
    if config.new_head:
        transfer.reset_head(model)
    transfer.freeze(model, config.freeze)
    return transferred


def _normalization(config: TrainConfig, data: Splits) -> dict[str, list[float]] | None:
    from dlc.zoo.layers import channel_statistics

    if not config.normalize:
        return None
    if zoo.get(config.model).task == "generate":
        raise DlcError("--normalize standardizes a model's input; a GAN's input is its latent noise: leave it out")
    mean, std = channel_statistics(data.x_train)
    return {"mean": mean, "std": std}


def _finish(config, spec, model, objective, best_state, args, data: Splits, history, best, start,
            normalize) -> TrainResult:
    from dlc.sources import source_sha256
    from dlc.zoo.layers import Normalized

    model.load_state_dict(best_state)
    net = Normalized(model, normalize["mean"], normalize["std"]) if normalize else model
    _, train_acc = objective.evaluate(net, data.x_train, data.y_train)
    test_loss, test_acc = objective.evaluate(net, data.x_test, data.y_test)
    ckpt = Checkpoint(model=config.model, model_args=args, state_dict=model.state_dict(),
                      input_shape=list(spec.sample_shape(args)), dataset=data.name, preprocess=data.preprocess,
                      normalize=normalize, source_sha256=source_sha256(config.model))
    result = TrainResult(ckpt, history, best.epoch, train_acc, best.val_accuracy, test_acc, test_loss,
                         time.perf_counter() - start, stopped_early=len(history) < config.epochs, task=spec.task)
    ckpt.metrics = {k: v for k, v in result.summary().items() if k != "history"}
    return result


def _data_args(spec: zoo.ModelSpec, data: Splits) -> dict[str, Any]:
    """The model arguments the data set decides: input (or image) shape, number of classes."""
    found = {"num_classes": data.num_classes, "input_shape": list(data.sample_shape),
             "image_shape": list(data.sample_shape)}
    return {k: v for k, v in found.items() if k in spec.defaults and (k != "num_classes" or spec.task == "classify")}


def _train_epoch(model, objective, optimizer, scheduler, data: Splits, config: TrainConfig, epoch: int,
                 steps: int) -> tuple[float, float | None, int]:
    import torch

    from dlc.training.transfer import keep_frozen_in_eval

    model.train()
    keep_frozen_in_eval(getattr(model, "inner", model), config.freeze)
    # A fresh permutation per epoch, derived from the seed, keeps runs reproducible.
    order = np.random.default_rng(config.seed * 1000 + epoch).permutation(len(data.x_train))
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    total_loss, correct, seen = 0.0, 0, 0
    for i in range(0, len(order), config.batch_size):
        idx = order[i:i + config.batch_size]
        x = torch.from_numpy(data.x_train[idx])
        if config.augment:
            x = augment.augment(x, config.augment, generator)
        loss, right = objective.step(model, optimizer, x, torch.from_numpy(data.y_train[idx]))
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss is {loss} at epoch {epoch}, step {steps + 1}")
        if config.schedule == "onecycle":
            scheduler.step()
        total_loss += loss * len(idx)
        correct += right or 0
        seen += len(idx)
        steps += 1
        if config.max_steps and steps >= config.max_steps:
            break
    return total_loss / seen, (correct / seen if objective.has_accuracy else None), steps



def fine_tune(net, model, task: str, data: Splits, config: TrainConfig, epochs: int,
              on_epoch: Callable[[EpochStats], None] | None = None) -> EpochStats | None:
    """Trains `model` (inside `net`, its input normalization) for `epochs` more with `config`'s recipe.

    Keeps the weights of the best validation epoch, as `train` does; returns that epoch (None if
    `epochs` is 0). Pruning fine-tunes with this after each step."""
    from dlc.training.objectives import make_objective

    objective = make_objective(task, model, config)
    optimizer = make_optimizer(config, objective.parameters(model))
    scheduler = make_scheduler(config, optimizer, math.ceil(len(data.x_train) / config.batch_size))
    best, best_state, steps = None, None, 0
    for epoch in range(1, epochs + 1):
        train_loss, train_acc, steps = _train_epoch(net, objective, optimizer, scheduler, data, config, epoch, steps)
        val_loss, val_acc = objective.evaluate(net, data.x_val, data.y_val)
        stats = EpochStats(epoch, train_loss, train_acc, val_loss, val_acc, optimizer.param_groups[0]["lr"])
        if on_epoch:
            on_epoch(stats)
        end_of_epoch(scheduler, config, val_loss)
        if best is None or val_loss < best.val_loss:
            best, best_state = stats, {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    net.eval()
    return best
