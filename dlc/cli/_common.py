"""Helpers the command modules share: option parsing and the tables they print."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from dlc.errors import DlcError

# Model and file names may contain [brackets]: no markup. Output to a pipe or a file is not
# wrapped at 80 columns (soft_wrap), and its tables get room (COLUMNS, if set, still rules).
console = Console(highlight=False, markup=False, soft_wrap=True,
                  width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)


def parse_shapes(values: list[str] | None) -> dict[str, list[int]]:
    """`["input=1,1,8,8"]` → `{"input": [1, 1, 8, 8]}`."""
    shapes = {}
    for value in values or []:
        name, sep, dims = value.partition("=")
        try:
            shapes[name] = [int(d) for d in dims.replace("x", ",").split(",")]
        except ValueError:
            sep = ""
        if not sep or not name or any(d <= 0 for d in shapes.get(name, [0])):
            raise DlcError(f"--shape {value!r} is not NAME=D1,D2,...; e.g. --shape input=1,1,8,8")
    return shapes


def parse_args(values: list[str] | None) -> dict[str, Any]:
    """`["width=32", "hidden=[64,32]"]` → `{"width": 32, "hidden": [64, 32]}` (JSON values, else strings)."""
    args = {}
    for value in values or []:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise DlcError(f"--arg {value!r} is not KEY=VALUE; e.g. --arg width=32")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args


@contextlib.contextmanager
def stage_progress():
    """Progress bars, one per stage: yields `update(stage, done, total)` (dlc quantize, dlc prune)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


@contextlib.contextmanager
def tuning_progress(title: str, trials: int):
    """A progress bar for MetaSchedule: yields the `on_tuning(done, total, best_ms)` callback."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from dlc.compiler.tuning import UNLIMITED

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(title, total=trials or None, best="")

        def on_tuning(done: int, total: int, best_ms: float | None) -> None:
            best = f"best kernels so far {best_ms:.4f} ms" if best_ms is not None else ""
            progress.update(task, description="tuning (MetaSchedule)", completed=done,
                            total=total if total < UNLIMITED else None, best=best)

        yield on_tuning


def tuning_summary(tuning: dict, seconds: float) -> str:
    seeded = f", {tuning['seeded']} of them default schedules measured as a start" if tuning.get("seeded") else ""
    stopped = ", stopped on the clock" if tuning.get("stopped_by") == "time" else ""
    return (f"tuning database {tuning['database']}: {tuning['records_after']} records for this model's kernels, "
            f"{tuning['trials_run']} trials run now{seeded}{stopped} ({seconds:.1f} s)")


def schedules_line(schedules: dict) -> str:
    """"kernels: 9 tiled reduction, 4 injective, 0 unscheduled — 100.0% of FLOPs in scheduled kernels"."""
    counts = schedules["kernels"]
    parts = [f"{n} {how.split(' (')[0]}" for how, n in sorted(counts.items(), key=lambda kv: -kv[1]) if how != "none"]
    parts.append(f"{counts.get('none', 0)} unscheduled")
    line = (f"kernels: {', '.join(parts)} — {100 * schedules['scheduled_flops_share']:.1f}% of FLOPs in scheduled "
            "kernels")
    arithmetic = schedules.get("arithmetic") or {}
    integer = {k: arithmetic[k] for k in ("int8", "int16") if arithmetic.get(k)}
    if integer:
        kinds = " + ".join(f"{n} on {k} operands" for k, n in integer.items())
        line += (f"; {sum(integer.values())} of {sum(arithmetic.values())} conv/matmul kernels compute in integers "
                 f"({kinds})")
    return line


def bench_table(report) -> Table:
    """One row per backend: latency percentiles (the median with its 95 % interval), throughput, memory, outliers
    and output difference."""
    table = Table(title=f"{report.model} — inputs {report.inputs}, {report.config.runs} runs")
    for column in ("backend", "p50 ms", "95% CI", "p99 ms", "inf/s", "peak MB", "outliers", "max |diff|"):
        table.add_column(column, justify="left" if column == "backend" else "right", no_wrap=True)
    for r in report.results:
        diff = ("reference" if r.backend == report.reference else
                "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}")
        latency = r.latency_ms
        interval = f"{latency['p50_ci95_low']:.4f}–{latency['p50_ci95_high']:.4f}"
        table.add_row(r.backend, f"{latency['p50']:.4f}", interval,
                      f"{latency['p99']:.4f}", f"{r.throughput_per_s:,.0f}",
                      "-" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}", str(latency["outliers"]), diff)
    return table


ALLOW_CODE_HELP = ("Let a checkpoint of your own model run that model's file to rebuild it (a checkpoint from "
                   "elsewhere may name any file: only if you trust it).")
