"""Training: one loop for every zoo model and task, and what it needs.

    config       TrainConfig, the per-model recipes, the optimizer and schedule names
    loop         train(): epochs, early stopping, divergence, the best weights kept
    optimizers   optimizers and learning-rate schedules by name
    objectives   what a step minimizes per task (classify, reconstruct, generate)
    data         the data sets (digits, sequences, files) and the seeded split
    datafiles    .npz, .csv and image folders
    augment      image augmentations
    transfer     starting from another checkpoint, freezing, a new head
    checkpoint   the checkpoint file (loaded weights-only)
    runs         a run's files: checkpoint, metrics JSON, curves PNG

Nothing here imports torch at module level: `dlc --help` lists the choices without it.
"""

from dlc.training.config import OPTIMIZERS, SCHEDULES, TrainConfig, with_recipe
from dlc.training.loop import EpochStats, TrainingDivergedError, TrainResult, train

__all__ = ["OPTIMIZERS", "SCHEDULES", "EpochStats", "TrainConfig", "TrainResult", "TrainingDivergedError", "train",
           "with_recipe"]
