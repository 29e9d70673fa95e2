from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console, parse_shapes, tuning_progress, tuning_summary


def tune(
    model: Annotated[Path, typer.Argument(help="ONNX model to tune.")],
    trials: Annotated[int, typer.Option(min=1, help="Records this model's kernels should hold in the target's "
                                                    "tuning database.")] = 200,
    minutes: Annotated[float | None, typer.Option(min=0.0, help="Stop after this many minutes.")] = None,
    target: Annotated[str, typer.Option(help="'host', a preset (see `dlc targets`) or a TVM JSON target.")] = "host",
    shape: Annotated[list[str] | None, typer.Option(help="Pin an input shape, NAME=D1,D2,... (repeatable).")] = None,
    tuning_db: Annotated[Path | None, typer.Option(help="Tuning database directory [default: "
                                                        "~/.cache/dlc/tuning/KEY, one per target].")] = None,
    tracker: Annotated[str | None, typer.Option(help="Measure on a device of this TVM RPC tracker, HOST:PORT "
                                                     "(with --key); default: measure here.")] = None,
    key: Annotated[str, typer.Option(help="The device key at the tracker.")] = "",
):
    """Tune a model with MetaSchedule into its tuning database; `dlc compile` then applies it."""
    from dlc.compiler.build import CompileConfig, TuningOptions, tune_model

    if tracker and not key:
        from dlc.errors import DlcError

        raise DlcError("--tracker needs --key, the device key boards registered with (e.g. raspberry-pi-4)")
    config = CompileConfig(target=target, shapes=parse_shapes(shape),
                           tuning=TuningOptions(trials=trials, minutes=minutes, database=tuning_db, tracker=tracker,
                                                key=key))
    start = time.perf_counter()
    with tuning_progress(f"tuning {model} for {target}", trials) as on_tuning:
        report = tune_model(model, config, on_tuning)
    console.print(tuning_summary(report, time.perf_counter() - start))
    console.print(f"apply it with: dlc compile {model} --target {target}")
