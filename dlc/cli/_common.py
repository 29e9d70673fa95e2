"""Helpers the command modules share: option parsing and the tables they print."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

from dlc.errors import DlcError

console = Console(highlight=False, markup=False)  # model and file names may contain [brackets]


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


def bench_table(report) -> Table:
    """One row per backend: latency percentiles, throughput, memory and output difference."""
    table = Table(title=f"{report.model} — inputs {report.inputs}, {report.config.runs} runs")
    for column in ("backend", "p50 ms", "p90 ms", "p99 ms", "inf/s", "peak MB", "max |diff|"):
        table.add_column(column, justify="left" if column == "backend" else "right", no_wrap=True)
    for r in report.results:
        diff = "reference" if r.backend == report.reference else f"{r.max_abs_diff:.1e}"
        table.add_row(r.backend, f"{r.latency_ms['p50']:.4f}", f"{r.latency_ms['p90']:.4f}",
                      f"{r.latency_ms['p99']:.4f}", f"{r.throughput_per_s:,.0f}", f"{r.peak_rss_mb:.0f}", diff)
    return table
