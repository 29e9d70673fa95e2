"""What a training run is asked to do, and the recipe that fills what was left unset."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlc import zoo
from dlc.errors import UnknownNameError

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad")
OWN_MODEL_TASKS = ("classify", "regress", "reconstruct")
SCHEDULES = ("none", "step", "cosine", "onecycle", "plateau")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "cnn"  # a zoo name, or your own model as FILE.py:NAME or PACKAGE.MODULE:NAME
    model_args: dict[str, Any] = field(default_factory=dict)
    task: str | None = None  # your own model's: classify, regress or reconstruct (None: classify); a zoo model's
    # task is its own
    dataset: str | None = None  # None: the model's own (digits for images, sequences for sequence models)
    epochs: int | None = None  # None: the model's recipe, else 30
    batch_size: int = 64
    lr: float | None = None  # None: the model's recipe, else 3e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD and RMSprop
    schedule: str | None = None  # None: the model's recipe, else "none"
    weight_decay: float = 1e-4  # L2
    l1: float = 0.0  # L1 penalty on weight matrices and kernels, added to the loss
    patience: int = 8  # epochs without a better validation loss before stopping; 0 = never
    max_steps: int | None = None  # stop after this many optimizer steps (smoke tests, quick looks)
    seed: int = 0
    normalize: bool = False  # per-channel standardization from the training split, built into the model
    augment: tuple[str, ...] = ()  # image augmentations, see dlc.training.augment
    init_from: Path | None = None  # transfer learning: start from this checkpoint's weights
    freeze: tuple[str, ...] = ()  # layer names whose weights stay fixed
    new_head: bool = False  # re-initialize the last Linear layer before training
    resume: Path | None = None  # continue a run: this checkpoint's weights, optimizer state and epoch


_GENERAL_RECIPE = {"epochs": 30, "lr": 3e-3, "schedule": "none"}


def with_recipe(config: TrainConfig, spec: zoo.ModelSpec) -> TrainConfig:
    """Fills what the user left unset from the model's own recipe, then the general one."""
    import dataclasses

    filled = {k: spec.recipe.get(k, default) for k, default in _GENERAL_RECIPE.items() if getattr(config, k) is None}
    return dataclasses.replace(config, **filled)


def check_names(config: TrainConfig) -> None:
    for kind, value, valid in (("optimizer", config.optimizer, OPTIMIZERS), ("schedule", config.schedule, SCHEDULES)):
        if value not in valid:
            raise UnknownNameError(f"unknown {kind} {value!r}; choose one of: {', '.join(valid)}")
