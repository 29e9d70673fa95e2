from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlc.cli._common import console, stage_progress


class Method(str, Enum):
    channel = "channel"
    magnitude = "magnitude"


class Importance(str, Enum):
    l1 = "l1"
    l2 = "l2"
    bn = "bn"
    taylor = "taylor"


class Backend(str, Enum):
    onnxruntime = "onnxruntime"
    tvm = "tvm"


def prune(
    model: Annotated[Path | None, typer.Argument(help="A checkpoint (dlc train) or an ONNX model.",
                                                 show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write: a checkpoint (.pt) for a "
                                                "checkpoint, an .onnx for an ONNX model [default: MODEL with "
                                                ".pruned.pt or .pruned.onnx].")] = None,
    method: Annotated[Method, typer.Option(help="channel: remove whole channels (a smaller, faster graph); "
                                           "magnitude: zero the smallest weights (ONNX; same graph, "
                                           "compresses).")] = Method.channel,
    ratio: Annotated[float, typer.Option(help="Share of channels (or weights) removed per layer, in [0, 1).")] = 0.5,
    importance: Annotated[Importance, typer.Option(help="Which channels go first: l1/l2 weight magnitude; bn "
                                                   "(batch-norm scale) and taylor (gradient x weight) for "
                                                   "checkpoints.")] = Importance.l1,
    global_pruning: Annotated[bool, typer.Option("--global", help="One threshold over the whole model instead of "
                                                 "the same ratio per layer.")] = False,
    round_to: Annotated[int, typer.Option(help="Keep a multiple of this many channels (8 or 16 suit SIMD "
                                          "widths).")] = 1,
    steps: Annotated[int, typer.Option(help="Reach --ratio in this many steps, fine-tuning after each "
                                       "(checkpoints).")] = 1,
    epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs per step (checkpoints; 0: none) "
                                               "[default: 5].", show_default=False)] = None,
    lr: Annotated[float | None, typer.Option(help="Fine-tuning learning rate [default: the model's "
                                             "recipe].")] = None,
    ignore: Annotated[list[str] | None, typer.Option(help="A layer to leave whole (repeat; a module name for "
                                                     "checkpoints, a node name for ONNX).")] = None,
    layer_ratio: Annotated[list[str] | None, typer.Option(help="NAME=RATIO: another ratio for one layer "
                                                          "(repeat).")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="An ONNX model's validation data: this checkpoint's "
                                                    "test split.")] = None,
    calibration: Annotated[Path | None, typer.Option(help="An ONNX model's validation data: an .npz (x, y) or an "
                                                     "image folder.")] = None,
    max_drop: Annotated[float | None, typer.Option(help="Write nothing if the task's metric drops more than this "
                                                   "(0.01 = one point).")] = None,
    min_speedup: Annotated[float | None, typer.Option(help="Write nothing unless the measured p50 latency is this "
                                                      "many times lower (1.6 = 1.6x faster).")] = None,
    backend: Annotated[Backend, typer.Option(help="Where latency is measured: onnxruntime, or tvm (both models "
                                             "compiled untuned for this CPU).")] = Backend.onnxruntime,
    target: Annotated[str, typer.Option(help="--backend tvm: compile for this target (dlc targets), timed on the "
                                        "device named by --rpc or --tracker/--key.")] = "host",
    rpc: Annotated[str | None, typer.Option(help="Time on this device's TVM RPC server, HOST:PORT.")] = None,
    tracker: Annotated[str | None, typer.Option(help="...or on a device of this TVM RPC tracker, HOST:PORT.")] = None,
    key: Annotated[str, typer.Option(help="The device key.")] = "",
    runs: Annotated[int, typer.Option(help="Timed runs per model.")] = 100,
    report: Annotated[Path | None, typer.Option(help="JSON report [default: OUTPUT with .prune.json].")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output; write a result that misses a gate "
                                        "too.")] = False,
):
    """Prune a model: whole channels out (smaller and faster) or the smallest weights zeroed, measured before and
    after (parameters, FLOPs, size, accuracy, latency) and gated."""
    from dlc.errors import DlcError
    from dlc.fileio import beside, write_json
    from dlc.pruning import PruneConfig, prune_file
    from dlc.runtime.rpc import DeviceAddress

    if model is None:
        raise DlcError("missing MODEL: dlc prune CHECKPOINT.pt | MODEL.onnx [--ratio 0.5] [-o OUT]")
    if key and not (rpc or tracker):
        raise DlcError("--key names a device of --tracker HOST:PORT (or of --rpc HOST:PORT): pass one of them")
    onnx_input = model.suffix.lower() == ".onnx"
    output = output or beside(model, ".pruned.onnx" if onnx_input else ".pruned.pt")
    report = report or beside(output, ".prune.json")
    _check_paths(model, output, report, force)
    config = PruneConfig(method=method.value, ratio=ratio, importance=importance.value, global_pruning=global_pruning,
                         round_to=round_to, steps=steps, epochs=epochs, lr=lr, ignore=tuple(ignore or ()),
                         layer_ratios=_layer_ratios(layer_ratio or []), checkpoint=checkpoint,
                         calibration=calibration, max_drop=max_drop, min_speedup=min_speedup,
                         backend=backend.value, target=target, runs=runs, force=force,
                         device=DeviceAddress(rpc, tracker, key) if rpc or tracker else None)
    with stage_progress() as progress:
        result = prune_file(model, output, config, progress)
    report_path = write_json(report, result.to_dict())
    console.print(_table(result))
    console.print(_per_layer(result))
    for name, why in result.left_whole.items():
        console.print(f"left whole: {name}: {why}")
    console.print(f"wrote {result.output}   report: {report_path}")


def _check_paths(model: Path, output: Path, report: Path, force: bool) -> None:
    """The output and the report: named files, neither the model nor each other, the report writable (and new,
    unless --force) before any work."""
    from dlc.errors import DlcError
    from dlc.fileio import check_output

    for option, path in (("-o", output), ("--report", report)):
        if not path.name or path.is_dir():
            raise DlcError(f"{option} {path} is a folder; pass a file path")
        if path.resolve() == model.resolve():
            raise DlcError(f"{option} {path} would overwrite the model; pass another path")
    if report.resolve() == output.resolve():
        raise DlcError(f"--report {report} is the output too; pass another path for the JSON report")
    check_output(report, force)


def _layer_ratios(items: list[str]) -> tuple[tuple[str, float], ...]:
    from dlc.errors import InvalidDataError

    pairs = []
    for item in items:
        name, _, value = item.rpartition("=")
        try:
            pairs.append((name, float(value)))
        except ValueError:
            name = ""
        if not name:
            raise InvalidDataError(f"--layer-ratio {item!r}: write NAME=RATIO, e.g. features.0=0.25")
    return tuple(pairs)


def _per_layer(result, shown: int = 12) -> str:
    """One line: each layer's sparsity (magnitude) or channels kept (channel), the first `shown` of them."""
    if result.method == "magnitude":
        items = [f"{name} {100 * v['sparsity']:.0f}%" for name, v in result.layers.items()]
        title = "zeros per layer"
    else:
        items = [f"{name} {v['kept']}/{v['channels']}" for name, v in result.layers.items()]
        title = "channels kept per layer"
    more = f" (+{len(items) - shown} more in the report)" if len(items) > shown else ""
    return f"{title}: {', '.join(items[:shown])}{more}"


def _table(result) -> Table:
    before, after = result.before, result.after
    table = Table(title=f"dlc prune ({result.method}), {result.source.name}")
    for column in ("", "before", "after", "after/before"):
        table.add_column(column, justify="left" if not column else "right")

    def row(label, b, a, shown=lambda v: f"{v:,}"):
        table.add_row(label, shown(b), shown(a), f"{a / b:.2f}" if b else "")

    row("parameters", before["parameters"], after["parameters"])
    row("FLOPs", before["flops"], after["flops"])
    row("file KiB", before["file_bytes"] / 1024, after["file_bytes"] / 1024, lambda v: f"{v:.1f}")
    row("deflated KiB", before["deflated_bytes"] / 1024, after["deflated_bytes"] / 1024, lambda v: f"{v:.1f}")
    latency = before["latency_ms"]
    row(f"{latency['backend']} p50 ms", latency["p50"], after["latency_ms"]["p50"], lambda v: f"{v:.3f}")
    if "metric" in before:
        metric = before["metric"]["name"]
        shown = (lambda v: f"{v:.4g}") if metric == "mse" else (lambda v: f"{100 * v:.2f}%")
        table.add_row(metric, shown(before["metric"]["value"]), shown(after["metric"]["value"]), "")
    for name, gate in result.gates.items():
        table.add_row(f"gate --{name.replace('_', '-')} {gate['limit']:g}", "", f"{gate['measured']:g}",
                      "held" if gate["held"] else "MISSED (--force)")
    return table
