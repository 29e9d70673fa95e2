from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlc.cli._common import console, parse_shapes


def inspect(
    model: Annotated[Path, typer.Argument(help="ONNX model to describe.", show_default=False)],
    shape: Annotated[list[str] | None, typer.Option(help="Pin a symbolic input for the FLOP count, "
                                                    "NAME=D1,D2,... [default: symbolic dims 1].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Also write the JSON report here.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Layers to list, most FLOPs first (0 = all).")] = 15,
):
    """Show a model's opset, inputs and outputs, ops, parameters, size, and FLOPs/MACs per layer."""
    from dlc.analysis.inspect import inspect_model
    from dlc.fileio import write_json

    info = inspect_model(model, parse_shapes(shape))
    report = info.to_dict()
    if output:
        write_json(output, report)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    console.print(_overview(info))
    console.print(_layer_table(info, top))
    if info.uncounted:
        names = ", ".join(f"{layer.name} ({layer.op})" for layer in info.uncounted[:5])
        console.print(f"note: {len(info.uncounted)} node(s) have no FLOP count (unknown op or shape): {names}")


def _overview(info) -> Table:
    table = Table(title=f"{info.path.name}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    weights = ", ".join(f"{_size(n)} {dtype}" for dtype, n in info.weight_bytes.items()) or "none"
    rows = [
        ("file", f"{_size(info.file_bytes)} (IR {info.ir_version}, producer {info.producer or '?'})"),
        ("opsets", ", ".join(f"{d} {v}" for d, v in info.opsets.items())),
        ("inputs", "; ".join(map(str, info.inputs))),
        ("outputs", "; ".join(map(str, info.outputs))),
        ("counted at", "; ".join(f"{k}[{','.join(map(str, v))}]" for k, v in info.shapes_used.items())),
        ("nodes", f"{sum(info.ops.values())}: " + ", ".join(f"{op} {n}" for op, n in info.ops.items())),
        ("parameters", f"{info.parameters:,} ({weights})"),
        ("MACs", f"{info.macs:,} ({info.macs / 1e6:.3f} M)"),
        ("FLOPs", f"{info.flops:,} ({info.flops / 1e6:.3f} M)"),
    ]
    for field, value in rows:
        table.add_row(field, value)
    return table


def _layer_table(info, top: int) -> Table:
    layers = sorted(info.layers, key=lambda layer: -(layer.cost.flops if layer.cost else -1))
    shown = layers[:top] if top else layers
    table = Table(title=f"layers by FLOPs ({len(shown)} of {len(layers)})")
    for column in ("layer", "op", "output", "params", "MACs", "FLOPs", "% FLOPs"):
        table.add_column(column, justify="left" if column in ("layer", "op", "output") else "right",
                         overflow="fold")
    for layer in shown:
        flops = layer.cost.flops if layer.cost else None
        share = "-" if flops is None or not info.flops else f"{100 * flops / info.flops:.1f}"
        table.add_row(layer.name, layer.op, "?" if layer.output_shape is None else "x".join(map(str, layer.output_shape)),
                      f"{layer.parameters:,}", "-" if layer.cost is None else f"{layer.cost.macs:,}",
                      "-" if flops is None else f"{flops:,}", share)
    return table


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"
