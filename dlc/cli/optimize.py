from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlc.cli._common import console


def optimize(
    model: Annotated[Path | None, typer.Argument(help="ONNX model to optimize.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="ONNX file to write "
                                                "[default: MODEL with .opt.onnx].")] = None,
    level: Annotated[int, typer.Option("-O", min=0, max=3, help="Optimization level: 0 none, 1 cleanup, "
                                       "2 cleanup + fusions, 3 also Pad and activation merging.")] = 2,
    passes: Annotated[str | None, typer.Option(help="Comma-separated pass names to run instead of a level, "
                                               "e.g. fold-constants,fuse-conv-bn (see --list).")] = None,
    opset: Annotated[int | None, typer.Option(help="Convert to this opset first (20 lets fuse-gelu emit Gelu).")] = None,
    float16: Annotated[bool, typer.Option("--float16", help="Finish with to-float16, keeping float32 "
                                          "inputs and outputs.")] = False,
    float16_io: Annotated[bool, typer.Option("--float16-io", help="Like --float16, with float16 inputs and "
                                             "outputs too.")] = False,
    atol: Annotated[float | None, typer.Option(help="Absolute tolerance per pass [default: 1e-4; to-float16 "
                                               "1e-2].")] = None,
    rtol: Annotated[float | None, typer.Option(help="Tolerance relative to the largest output [default: 1e-4; "
                                               "to-float16 1e-2].")] = None,
    inputs: Annotated[Path | None, typer.Option(help="Sample inputs (.npz, one array per input name) "
                                                "[default: seeded random, symbolic dims 2].")] = None,
    verify: Annotated[bool, typer.Option(help="Compare every pass's outputs with the model before it.")] = True,
    report: Annotated[Path | None, typer.Option(help="JSON report [default: OUTPUT with .optimize.json].")] = None,
    list_passes: Annotated[bool, typer.Option("--list", help="List the passes and levels, then exit.")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output.")] = False,
):
    """Run graph passes over an ONNX model, verifying each one on ONNX Runtime."""
    if list_passes:
        console.print(_pass_table())
        return
    from dlc.errors import DlcError
    from dlc.fileio import beside, write_json
    from dlc.optimization import OptimizeConfig, optimize_file

    if model is None:
        raise DlcError("missing MODEL: dlc optimize MODEL.onnx [-O2] [-o OUT.onnx]")
    output = output or beside(model, ".opt.onnx")
    names = tuple(n.strip() for n in passes.split(",") if n.strip()) if passes else ()
    config = OptimizeConfig(level=level, passes=names, opset=opset, float16=float16, float16_io=float16_io,
                            atol=atol, rtol=rtol, verify=verify, inputs=inputs, force=force)
    with console.status(f"optimizing {model}"):
        result = optimize_file(model, output, config)
    report_path = write_json(report or beside(output, ".optimize.json"),
                             result.to_dict())
    console.print(_records_table(result))
    if result.unknown_shapes_note():
        console.print(f"note: {result.unknown_shapes_note()}")
    before, after = result.before, result.after
    console.print(f"wrote {output}: nodes {before['nodes']} → {after['nodes']}, file "
                  f"{before['file_bytes'] / 1024:.1f} → {after['file_bytes'] / 1024:.1f} KiB, "
                  f"{result.seconds:.2f} s   report: {report_path}")


def _records_table(result) -> Table:
    table = Table(title=f"{result.source.name} — {result.pipeline}")
    for column in ("pass", "nodes", "ms", "max |diff|", "what changed"):
        table.add_column(column, justify="right" if column in ("ms", "max |diff|") else "left",
                         no_wrap=column != "what changed")
    for r in result.passes:
        diff = "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.1e}"
        stats = ", ".join(f"{k}={v}" for k, v in r.stats.items() if isinstance(v, (int, float, str)) and v)
        table.add_row(r.name, f"{r.nodes_before} → {r.nodes_after}", f"{r.seconds * 1000:.1f}", diff,
                      (stats or "changed") if r.modified else "-")
    return table


def _pass_table() -> Table:
    from dlc import passes

    table = Table(title="passes (levels: -O1 cleanup, -O2 + fusions, -O3 + Pad/activation merging)")
    for column in ("pass", "levels", "what it does"):
        table.add_column(column)
    in_level = {n: [f"O{lv}" for lv in passes.LEVELS if n in {p.name for p in passes.level(lv)}]
                for n in passes.REGISTRY}
    for name, cls in sorted(passes.REGISTRY.items()):
        table.add_row(name, ",".join(in_level[name]) or "-", cls.summary)
    return table
