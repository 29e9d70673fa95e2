from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from dlc.cli._common import console


def doctor(
    model: Annotated[Path, typer.Argument(help="ONNX model to check.")],
    report: Annotated[Path | None, typer.Option(help="Also write the table as JSON here.")] = None,
):
    """List every op the model uses and whether TVM and ONNX Runtime support it."""
    from dlc.compiler.coverage import CHECKED_BACKENDS, check_coverage
    from dlc.fileio import write_json
    from dlc.onnxio import load_model

    coverage = check_coverage(load_model(model))
    table = Table(title=f"{model} — opsets {coverage.opsets}")
    for column in ("op", "version", "nodes", *CHECKED_BACKENDS, "unsupported at"):
        table.add_column(column, justify="right" if column in ("version", "nodes") else "left")
    for op in coverage.ops:
        marks = [_mark(op, b) for b in CHECKED_BACKENDS]
        where = ", ".join(op.nodes[:4]) + (" …" if len(op.nodes) > 4 else "") if not all(op.supported.values()) else ""
        table.add_row(op.qualified, str(op.version or "?"), str(len(op.nodes)), *marks, where)
    console.print(table)
    for backend in CHECKED_BACKENDS:
        gaps = coverage.gaps_after_lowering(backend)
        lowered = [op.qualified for op in coverage.gaps(backend) if op not in gaps]
        after = f" ({', '.join(lowered)} after lowering by `dlc compile`)" if lowered else ""
        console.print(f"{backend}: " + (f"all ops supported{after}" if not gaps else
                                        f"{len(gaps)} unsupported op type(s): {', '.join(g.qualified for g in gaps)}"))
    if report:
        write_json(report, coverage.to_dict())


def _mark(op, backend: str):
    if op.supported[backend]:
        return "yes"
    if backend == "tvm" and op.lowering:
        return Text(f"after {op.lowering}", style="yellow")
    return Text("NO", style="bold red")
