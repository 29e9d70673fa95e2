from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dlc import zoo
from dlc.cli._common import console, parse_args
from dlc.data import DATASETS
from dlc.training import OPTIMIZERS

ModelName = Enum("ModelName", {n: n for n in zoo.names()}, type=str)
DatasetName = Enum("DatasetName", {n: n for n in DATASETS}, type=str)
OptimizerName = Enum("OptimizerName", {n: n for n in OPTIMIZERS}, type=str)


def train(
    output: Annotated[Path, typer.Option("--output", "-o", help="Checkpoint to write.")] = Path("model.pt"),
    model: Annotated[ModelName, typer.Option(help="Zoo model to train.")] = "cnn",
    dataset: Annotated[DatasetName, typer.Option(help="Data set (no download needed).")] = "digits",
    epochs: Annotated[int, typer.Option(min=1, help="Maximum epochs.")] = 30,
    batch_size: Annotated[int, typer.Option(min=1, help="Mini-batch size.")] = 64,
    lr: Annotated[float, typer.Option(min=0.0, help="Learning rate.")] = 3e-3,
    optimizer: Annotated[OptimizerName, typer.Option(help="Optimizer.")] = "adam",
    weight_decay: Annotated[float, typer.Option(min=0.0, help="L2 weight decay.")] = 1e-4,
    patience: Annotated[int, typer.Option(min=0, help="Stop after this many epochs without a better "
                                                      "validation loss (0: never).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for the split, the initial weights and the batch order.")] = 0,
    arg: Annotated[list[str] | None, typer.Option(help="Model argument KEY=VALUE, repeatable "
                                                       "(e.g. --arg width=32).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing checkpoint.")] = False,
):
    """Train a zoo model and report train/validation/test accuracy."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dlc import checkpoint
    from dlc.fileio import check_output, write_json
    from dlc.training import TrainConfig, train as run_training

    check_output(output, force)
    config = TrainConfig(model=model.value, model_args=parse_args(arg), dataset=dataset.value, epochs=epochs,
                         batch_size=batch_size, lr=lr, optimizer=optimizer.value, weight_decay=weight_decay,
                         patience=patience, seed=seed)
    columns = (TextColumn("training {task.fields[model]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("train", total=epochs, model=config.model, stats="")
        result = run_training(config, on_epoch=lambda s: progress.update(
            task, advance=1, stats=f"loss {s.train_loss:.3f}  val acc {s.val_accuracy:.3f}"))
    checkpoint.save(result.checkpoint, output)
    metrics = write_json(output.with_suffix(".metrics.json"), result.summary())
    console.print(f"{config.model} on {config.dataset}: train {result.train_accuracy:.2%}, "
                  f"val {result.val_accuracy:.2%}, test {result.test_accuracy:.2%} "
                  f"(best epoch {result.best_epoch} of {len(result.history)}, {result.seconds:.1f} s)")
    console.print(f"checkpoint: {output}   metrics: {metrics}")
