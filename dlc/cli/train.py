from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dlc import zoo
from dlc.cli._common import console, parse_args
from dlc.training import OPTIMIZERS, SCHEDULES
from dlc.training.data import DATASETS

DatasetName = Enum("DatasetName", {n: n for n in DATASETS}, type=str)
OptimizerName = Enum("OptimizerName", {n: n for n in OPTIMIZERS}, type=str)
ScheduleName = Enum("ScheduleName", {n: n for n in SCHEDULES}, type=str)


def train(
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint to write.")] = Path("model.pt"),
    model: Annotated[str, typer.Option(help=f"Zoo model to train ({', '.join(zoo.names())}), or your own: "
                                            "FILE.py:NAME or PACKAGE.MODULE:NAME (a module, or a callable "
                                            "returning one).")] = "cnn",
    task: Annotated[str | None, typer.Option(help="Your own model's task: classify (cross-entropy on integer "
                                                  "labels), regress (mean squared error to float targets, from "
                                                  "--data) or reconstruct (to its input) [default: classify].",
                                             show_default=False)] = None,
    dataset: Annotated[DatasetName | None, typer.Option(help="Data set (no download needed) [default: the "
                                                        "model's own: digits, or sequences for lstm/gru/transformer].",
                                                        show_default=False)] = None,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum epochs [default: the model's recipe, "
                                                   "else 30].", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Mini-batch size.")] = 64,
    lr: Annotated[float | None, typer.Option(min=0.0, help="Learning rate [default: the model's recipe, "
                                                "else 0.003].", show_default=False)] = None,
    optimizer: Annotated[OptimizerName, typer.Option(help="Optimizer.")] = "adam",
    momentum: Annotated[float, typer.Option(min=0.0, help="Momentum for sgd and rmsprop.")] = 0.9,
    schedule: Annotated[ScheduleName | None, typer.Option(help="Learning-rate schedule [default: the model's "
                                                          "recipe, else none].", show_default=False)] = None,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="L2 weight decay.")] = 1e-4,
    l1: Annotated[float, typer.Option(min=0.0, help="L1 penalty on weights, added to the loss.")] = 0.0,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after this many optimizer steps.")] = None,
    patience: Annotated[int, typer.Option(min=0, help="Stop after this many epochs without a better "
                                                      "validation loss (0: never).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for the split, the initial weights and the batch order.")] = 0,
    data: Annotated[Path | None, typer.Option(help="Train on a file instead: .npz (x, y), .csv (label last) or "
                                                   "an image folder (one subfolder per class).")] = None,
    normalize: Annotated[bool, typer.Option(help="Standardize inputs per channel (statistics of the training "
                                                 "split, built into the model and its export).")] = False,
    augment: Annotated[str | None, typer.Option(help="Image augmentations, comma-separated: shift, rotate, "
                                                     "flip.")] = None,
    init_from: Annotated[Path | None, typer.Option(help="Transfer learning: start from this checkpoint's "
                                                        "weights (same model).")] = None,
    freeze: Annotated[str | None, typer.Option(help="Comma-separated layer names to keep fixed, e.g. "
                                                    "features.")] = None,
    new_head: Annotated[bool, typer.Option(help="Re-initialize the last Linear layer before training.")] = False,
    resume: Annotated[Path | None, typer.Option(help="Continue a run from this checkpoint (weights, optimizer "
                                                     "state, epoch) up to --epochs.")] = None,
    arg: Annotated[list[str] | None, typer.Option(help="Model argument KEY=VALUE, repeatable "
                                                       "(e.g. --arg width=32).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing checkpoint.")] = False,
):
    """Train a zoo model or your own and report train/validation/test accuracy (or loss)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dlc.errors import DlcError
    from dlc.training import TrainConfig, with_recipe
    from dlc.training.runs import train_to_files

    if data and dataset:
        raise DlcError("pass either --dataset or --data, not both")
    config = TrainConfig(model=model, model_args=parse_args(arg), task=task,
                         dataset=str(data) if data else dataset.value if dataset else None,
                         epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer.value, momentum=momentum,
                         schedule=schedule.value if schedule else None, weight_decay=weight_decay, l1=l1,
                         max_steps=max_steps, patience=patience, seed=seed, normalize=normalize,
                         augment=_names(augment), init_from=init_from, freeze=_names(freeze), new_head=new_head,
                         resume=resume)
    columns = (TextColumn("training {task.fields[model]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        total = with_recipe(config, zoo.get(config.model)).epochs
        bar = progress.add_task("train", total=total, model=config.model, stats="")
        run = train_to_files(config, output, force, on_epoch=lambda s: progress.update(bar, completed=s.epoch,
                                                                                        stats=_epoch_line(s)))
    result = run.result
    if result.test_accuracy is not None:
        scores = (f"train {result.train_accuracy:.2%}, val {result.val_accuracy:.2%}, "
                  f"test {result.test_accuracy:.2%}")
    else:
        scores = f"test loss {result.test_loss:.4f}"
    console.print(f"{config.model} on {result.checkpoint.dataset}: {scores} "
                  f"(best epoch {result.best_epoch} of {len(result.history)}, {result.seconds:.1f} s)")
    if result.transferred:
        copied, skipped = result.transferred["copied"], result.transferred["skipped"]
        console.print(f"started from {config.init_from}: {len(copied)} weights copied, {len(skipped)} left to their "
                      f"fresh initialization" + (f" ({', '.join(skipped[:6])}{', ...' if len(skipped) > 6 else ''})"
                                                 if skipped else ""))
    console.print(f"checkpoint: {run.checkpoint}   metrics: {run.metrics}   curves: {run.curves}")


def _names(value: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in value.split(",") if n.strip()) if value else ()


def _epoch_line(stats) -> str:
    accuracy = f"  val acc {stats.val_accuracy:.3f}" if stats.val_accuracy is not None else ""
    return f"loss {stats.train_loss:.3f}  val loss {stats.val_loss:.3f}{accuracy}"
