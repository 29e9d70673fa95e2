from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console, parse_args


def export(
    source: Annotated[str, typer.Argument(help="A checkpoint from `dlc train`, or a zoo model name (untrained).")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="ONNX file to write "
                                                "[default: SOURCE with .onnx].")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or newer).")] = 18,
    dynamic_batch: Annotated[bool, typer.Option(help="Make the batch dimension symbolic.")] = False,
    batch: Annotated[int, typer.Option(min=1, help="Batch size baked in without --dynamic-batch.")] = 1,
    tolerance: Annotated[float | None, typer.Option(help="Max abs difference allowed between PyTorch and "
                                                          "ONNX Runtime [default: the model's own].")] = None,
    arg: Annotated[list[str] | None, typer.Option(help="Model argument KEY=VALUE for a zoo model name.")] = None,
    optimize: Annotated[bool, typer.Option(help="Let torch's exporter fold constants and batch norm; "
                                           "--no-optimize writes the graph as traced, for `dlc optimize`.")] = True,
    force: Annotated[bool, typer.Option(help="Overwrite an existing ONNX file.")] = False,
):
    """Export a model to ONNX and check ONNX Runtime's outputs against PyTorch's."""
    from dlc.exporters.pytorch import ExportConfig, export_checkpoint, resolve_source
    from dlc.fileio import beside, write_json

    ckpt = resolve_source(source, parse_args(arg))
    output = output or beside(source, ".onnx")
    config = ExportConfig(opset=opset, dynamic_batch=dynamic_batch, batch=batch, tolerance=tolerance, force=force,
                          optimize=optimize)
    with console.status(f"exporting {ckpt.model} to ONNX (opset {opset})"):
        report = export_checkpoint(ckpt, output, config)
    report_path = write_json(beside(output, ".export.json"), report.to_dict())
    inputs = ", ".join(str(s) for s in report.inputs)
    console.print(f"wrote {output} ({output.stat().st_size / 1024:.1f} KiB; inputs {inputs})")
    console.print(f"validated on ONNX Runtime vs PyTorch at batch {report.checked_batches}: "
                  f"max abs diff {report.max_abs_diff:.2e} (tolerance {report.tolerance:g})   report: {report_path}")

