from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlc.cli._common import bench_table, console


def quickstart(
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Where every output goes.")] = Path("dlc-quickstart"),
    epochs: Annotated[int, typer.Option(min=1, help="Maximum training epochs.")] = 30,
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per backend.")] = 200,
):
    """Train a CNN on the digits, export it, compile it with TVM, and benchmark all three backends."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from dlc.quickstart import STAGES, QuickstartConfig, run_quickstart

    columns = (TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        stages = progress.add_task("pipeline", total=len(STAGES), info="")
        epochs_bar = progress.add_task("epochs", total=epochs, info="")

        def on_stage(stage: str) -> None:
            progress.update(stages, completed=STAGES.index(stage), info=stage)
            if stage != "train":
                progress.update(epochs_bar, total=progress.tasks[epochs_bar].completed)

        def on_epoch(s) -> None:
            progress.update(epochs_bar, advance=1, info=f"loss {s.train_loss:.3f}  val acc {s.val_accuracy:.3f}")

        result = run_quickstart(QuickstartConfig(workdir=workdir, epochs=epochs, runs=runs), on_stage, on_epoch)
        progress.update(stages, completed=len(STAGES), info="done")
    console.print(bench_table(result.bench))
    console.print(_summary(result))
    console.print(f"outputs in {workdir}/ (model.pt, model.onnx, model.dlc/, quickstart.json); "
                  f"total {result.seconds:.1f} s")
    console.print(f"TVM above runs dlc's default schedules, untuned; tune it with: dlc compile {workdir}/model.onnx "
                  "--tune-minutes 3 --force")


def _summary(result) -> Table:
    latency = {r.backend: r.latency_ms["p50"] for r in result.bench.results}
    table = Table(title="quickstart summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("test accuracy (digits)", f"{result.train.test_accuracy:.2%}")
    table.add_row("ONNX model size", f"{result.export.path.stat().st_size / 1024:.1f} KiB")
    table.add_row("TVM library size", f"{result.compile.library_bytes / 1024:.1f} KiB")
    for backend, p50 in latency.items():
        table.add_row(f"p50 latency, {backend}", f"{p50:.4f} ms")
    table.add_row("max |TVM - ONNX Runtime| (golden)", f"{result.compile.max_abs_diff:.2e}")
    table.add_row("max |PyTorch - ONNX Runtime| (export)", f"{result.export.max_abs_diff:.2e}")
    return table
