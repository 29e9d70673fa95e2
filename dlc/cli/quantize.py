from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlc.cli._common import console, stage_progress


class Mode(str, Enum):
    static = "static"
    dynamic = "dynamic"
    float16 = "float16"


class Method(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


def quantize(
    model: Annotated[Path | None, typer.Argument(help="ONNX model to quantize.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="ONNX file to write "
                                                "[default: MODEL with .int8.onnx, or .fp16.onnx].")] = None,
    mode: Annotated[Mode, typer.Option(help="static: int8 QDQ with calibrated activations (CNNs); dynamic: int8 "
                                       "MatMul weights, activations per call (transformers, LSTM/GRU, MLPs); "
                                       "float16.")] = Mode.static,
    checkpoint: Annotated[Path | None, typer.Option(help="Calibrate on this checkpoint's training data and "
                                                    "measure on its test split.")] = None,
    calibration: Annotated[Path | None, typer.Option(help="Calibration data: an .npz (one array per input name, "
                                                     "or x and optional y labels, samples along axis 0) or an "
                                                     "image folder (one subfolder per class).")] = None,
    samples: Annotated[int, typer.Option(help="Calibration samples to use.")] = 128,
    method: Annotated[Method, typer.Option(help="Calibration: minmax, entropy or percentile.")] = Method.minmax,
    per_channel: Annotated[bool, typer.Option(help="Weight scales per output channel.")] = True,
    symmetric: Annotated[bool, typer.Option(help="Activations int8 around 0 (else uint8 with a zero "
                                            "point).")] = False,
    reduce_range: Annotated[bool, typer.Option(help="7-bit weights: on x86 CPUs without VNNI (AVX2) TVM's "
                                               "int8 kernels use vpmaddubsw (faster) and ONNX Runtime's do not "
                                               "saturate; costs a little accuracy.")] = False,
    max_drop: Annotated[float | None, typer.Option(help="Accuracy budget (0.01 = one point; MSE increase for "
                                                   "reconstruction): layers that add the most error stay float "
                                                   "until the model is within it.")] = None,
    keep_float: Annotated[str | None, typer.Option(help="Comma-separated node names to leave float.")] = None,
    report: Annotated[Path | None, typer.Option(help="JSON report [default: OUTPUT with .quantize.json].")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output; write a result over --max-drop "
                                        "too.")] = False,
):
    """Quantize an ONNX model to int8 (or float16), measuring what it costs in accuracy, layer by layer."""
    from dlc.errors import DlcError
    from dlc.fileio import beside, write_json
    from dlc.quantization import QuantizeConfig, quantize_file

    if model is None:
        raise DlcError("missing MODEL: dlc quantize MODEL.onnx --checkpoint CKPT | --calibration DATA [-o OUT.onnx]")
    output = output or beside(model, ".fp16.onnx" if mode is Mode.float16 else ".int8.onnx")
    report = report or beside(output, ".quantize.json")
    if report.is_dir():
        raise DlcError(f"--report {report} is a folder; pass a file path for the JSON report")
    names = tuple(n.strip() for n in keep_float.split(",") if n.strip()) if keep_float else ()
    config = QuantizeConfig(mode=mode.value, method=method.value, per_channel=per_channel, symmetric=symmetric,
                            reduce_range=reduce_range, checkpoint=checkpoint, calibration=calibration,
                            samples=samples, max_drop=max_drop, keep_float=names, force=force)
    with stage_progress() as progress:
        result = quantize_file(model, output, config, progress)
    report_path = write_json(report, result.to_dict())
    if result.layers:
        console.print(_error_table(result))
    for kept in result.kept_float:
        console.print(f"kept float: {kept['name']} ({kept['op']}): {kept['why']}")
    console.print(_summary(result) + f"   report: {report_path}")


def _error_table(result) -> Table:
    kept = {k["name"] for k in result.kept_float} | set(result.keep_float)
    table = Table(title=f"quantization error per layer (SQNR; harm = what the layer adds), {result.source.name}")
    for column in ("layer", "op", "SQNR dB", "harm dB", "kept float"):
        table.add_column(column, justify="right" if "dB" in column else "left")
    for row in result.layers:
        table.add_row(row.name, row.op, f"{row.sqnr_db:.1f}", f"{row.harm_db:.1f}", "yes" if row.name in kept else "")
    return table


def _summary(result) -> str:
    size = (f"file {result.before['file_bytes'] / 1024:.1f} → {result.after['file_bytes'] / 1024:.1f} KiB "
            f"({100 * result.after['file_bytes'] / max(result.before['file_bytes'], 1):.0f}%)")
    line = f"wrote {result.output} ({result.mode}): {size}"
    weights = f"weights {result.before['weight_bytes'] / 1024:.1f} → {result.after['weight_bytes'] / 1024:.1f} KiB"
    line += f", {weights}"
    if result.quant_eval is not None:
        f, q = result.float_eval, result.quant_eval
        line += f", {f.metric} {f.shown(f.value)} → {f.shown(q.value)} on {q.samples} samples"
        if result.within_budget is False:
            line += " (over --max-drop, written because of --force)"
    return line
