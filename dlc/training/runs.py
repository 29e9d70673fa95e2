"""A training run's files: the checkpoint, its metrics as JSON and its curves as PNG, side by side.

`dlc train` and the Python API both write a run this way. A run that diverges after a good
epoch still writes the checkpoint of that epoch, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dlc.errors import DlcError
from dlc.fileio import beside, check_output, write_json
from dlc.training.config import TrainConfig
from dlc.training.loop import EpochStats, TrainingDivergedError, TrainResult, train


@dataclass
class RunFiles:
    result: TrainResult
    checkpoint: Path
    metrics: Path
    curves: Path


def train_to_files(config: TrainConfig, output: str | Path, force: bool = False,
                   on_epoch: Callable[[EpochStats], None] | None = None) -> RunFiles:
    """Trains and writes the checkpoint at `output`, with `.metrics.json` and `.curves.png` beside it."""
    from dlc.analysis.plots import save_training_curves
    from dlc.training import checkpoint

    output = Path(output)
    check_output(output, force)
    try:
        result = train(config, on_epoch=on_epoch)
    except TrainingDivergedError as e:
        if e.result is not None:
            checkpoint.save(e.result.checkpoint, output)
            raise DlcError(f"{e}: {output} holds them") from e
        raise
    checkpoint.save(result.checkpoint, output)
    metrics = write_json(beside(output, ".metrics.json"), result.summary())
    curves = save_training_curves(result.history, beside(output, ".curves.png"), config.model)
    return RunFiles(result, output, metrics, curves)
