from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import ALLOW_CODE_HELP, console, parse_args

TOLERANCE_HELP = "Max abs difference allowed between PyTorch and ONNX Runtime [default: the model's own, else 1e-4]."


def export(
    source: Annotated[str, typer.Argument(help="A checkpoint from `dlc train`; a zoo model name (untrained); your own "
                                                "model as FILE.py:NAME or PACKAGE.MODULE:NAME (a module, or a "
                                                "callable returning one or (module, example_inputs)); or a .pt2 "
                                                "file from torch.export.save.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="ONNX file to write "
                                                "[default: SOURCE with .onnx].")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (18 or newer).")] = 18,
    input: Annotated[list[str] | None, typer.Option(
        "--input", help="Your own model's example input NAME:SHAPE[:DTYPE], repeatable, e.g. "
                        "image:1x3x224x224:float32 (where the model gives no example, or to name its inputs).")] = None,
    dynamic: Annotated[list[str] | None, typer.Option(
        help="Symbolic dims of your own model's input NAME:AXIS=SYMBOL[,...], repeatable, e.g. "
             "tokens:0=batch,1=seq (a symbol shared by several inputs is one size).")] = None,
    weights: Annotated[Path | None, typer.Option(help="A state_dict (torch.save) to load into your own model, "
                                                      "loaded with weights_only.")] = None,
    dynamic_batch: Annotated[bool, typer.Option(help="Make a zoo model's batch dimension symbolic.")] = False,
    batch: Annotated[int, typer.Option(min=1, help="A zoo model's batch size, without --dynamic-batch.")] = 1,
    tolerance: Annotated[float | None, typer.Option(help=TOLERANCE_HELP)] = None,
    arg: Annotated[list[str] | None, typer.Option(help="Model argument KEY=VALUE for a zoo model name.")] = None,
    optimize: Annotated[bool, typer.Option(help="Let torch's exporter fold constants and batch norm; "
                                           "--no-optimize writes the graph as traced, for `dlc optimize`.")] = True,
    force: Annotated[bool, typer.Option(help="Overwrite an existing ONNX file.")] = False,
    allow_code: Annotated[bool, typer.Option(help=ALLOW_CODE_HELP)] = False,
):
    """Export a model to ONNX and check ONNX Runtime's outputs against PyTorch's."""
    from dlc.errors import DlcError
    from dlc.exporters.pytorch import ExportConfig, export_checkpoint, export_source, resolve_source
    from dlc.sources import default_output, is_module_reference
    from dlc.fileio import beside, write_json
    from dlc.training.checkpoint import permit_code

    permit_code(allow_code)
    config = ExportConfig(opset=opset, dynamic_batch=dynamic_batch, batch=batch, tolerance=tolerance, force=force,
                          optimize=optimize)
    if is_module_reference(source):
        if dynamic_batch or arg or batch != 1:
            raise DlcError("--dynamic-batch, --batch and --arg are for zoo models; for your own model give the "
                           "shapes with --input and symbolic dims with --dynamic NAME:0=batch")
        output = output or default_output(source)
        with console.status(f"exporting {source} to ONNX (opset {opset})"):
            report = export_source(source, output, config, inputs=input or (), dynamic=dynamic or (),
                                   weights=weights)
    else:
        if input or dynamic or weights:
            raise DlcError("--input, --dynamic and --weights are for your own model (FILE.py:NAME, "
                           "PACKAGE.MODULE:NAME or a .pt2 file); a zoo model or checkpoint takes --dynamic-batch "
                           "and --batch")
        ckpt = resolve_source(source, parse_args(arg))
        output = output or beside(source, ".onnx")
        with console.status(f"exporting {ckpt.model} to ONNX (opset {opset})"):
            report = export_checkpoint(ckpt, output, config)
    report_path = write_json(beside(output, ".export.json"), report.to_dict())
    inputs = ", ".join(str(s) for s in report.inputs)
    console.print(f"wrote {output} ({output.stat().st_size / 1024:.1f} KiB; inputs {inputs})")
    symbols = sorted({str(d) for s in report.inputs for d in s.shape if not isinstance(d, int)})
    where = f"at {'/'.join(symbols)} = {report.checked_batches}" if symbols else "on the example"
    console.print(f"validated on ONNX Runtime vs PyTorch {where}: max abs diff {report.max_abs_diff:.2e} "
                  f"(tolerance {report.tolerance:g})   report: {report_path}")
