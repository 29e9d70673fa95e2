from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console, parse_shapes, schedules_line, tuning_progress, tuning_summary


class Schedules(str, Enum):
    default = "default"
    none = "none"


def compile_(
    model: Annotated[Path, typer.Argument(help="ONNX model to compile.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Artifact directory to write "
                                                "[default: MODEL with .dlc].")] = None,
    target: Annotated[str, typer.Option(help="'host' (this CPU, detected) or a TVM JSON target.")] = "host",
    shape: Annotated[list[str] | None, typer.Option(help="Pin an input shape, NAME=D1,D2,... (repeatable); "
                                                         "a symbolic batch defaults to 1.")] = None,
    atol: Annotated[float, typer.Option(help="Absolute tolerance, TVM vs ONNX Runtime.")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Relative tolerance, TVM vs ONNX Runtime.")] = 1e-4,
    tune: Annotated[int, typer.Option(min=0, help="Tune with MetaSchedule until this model's kernels hold this "
                                                  "many records in the target's tuning database (only the "
                                                  "missing ones are searched).")] = 0,
    tune_minutes: Annotated[float | None, typer.Option(min=0.0, help="Stop tuning after this many minutes "
                                                                       "(alone: tune until then).")] = None,
    tuning_db: Annotated[Path | None, typer.Option(help="Tuning database directory [default: "
                                                        "~/.cache/dlc/tuning/KEY, one per target, shared by every "
                                                        "model].")] = None,
    schedules: Annotated[Schedules, typer.Option(help="default: dlc's CPU schedules on every kernel the tuning "
                                                     "database has no record for; none: TVM's own unscheduled CPU "
                                                     "pipeline, to compare against.")] = Schedules.default,
    sign: Annotated[Path | None, typer.Option(help="Sign the artifact with this private key (from `dlc "
                                                   "keygen`).", show_default=False)] = None,
    dynamic: Annotated[bool, typer.Option(help="Keep the inputs' symbolic dims (those --shape does not pin): one "
                                                 "artifact for every size up to --max-shape.")] = False,
    max_shape: Annotated[list[str] | None, typer.Option(help="With --dynamic, the upper bound of a symbolic dim, "
                                                             "SYMBOL=N (repeatable), e.g. seq=512.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing artifact.")] = False,
):
    """Compile an ONNX model with TVM into a verified artifact directory."""
    from dlc.compiler.build import CompileConfig, TuningOptions, compile_model
    from dlc.errors import DlcError
    from dlc.fileio import beside

    output = output or beside(model, ".dlc")
    if max_shape and not dynamic:
        raise DlcError("--max-shape bounds the symbolic dims that --dynamic keeps; add --dynamic, or pin the dims "
                       "with --shape")
    config = CompileConfig(target=target, shapes=parse_shapes(shape), atol=atol, rtol=rtol, force=force,
                           max_shape=_bounds(max_shape or []) if dynamic else None,
                           tuning=TuningOptions(trials=tune, minutes=tune_minutes, database=tuning_db),
                           schedules=schedules.value, sign=sign)
    with tuning_progress(f"compiling for {target}", tune) as on_tuning:
        report = compile_model(model, output, config, on_tuning)
    diff = report.max_abs_diff
    if report.tuning:
        console.print(tuning_summary(report.tuning, report.seconds["tune"]))
        timed = report.tuning.get("whole_model_ms")
        if timed:
            kept = "the tuned build" if report.tuning["applied"] else "the default schedules (tuning did not pay here)"
            console.print(f"whole model: tuned {timed['tuned']:.4f} ms, default {timed['default']:.4f} ms; kept {kept}")
    if report.schedules:
        console.print(schedules_line(report.schedules))
    if sign:
        console.print(f"signed with {sign}")
    console.print(f"wrote {output} (library {report.library_bytes / 1024:.0f} KiB, target "
                  f"{report.target.tvm}, {sum(report.seconds.values()):.1f} s)")
    if diff is not None:
        sizes = report.verified_sizes
        where = f" at {', '.join('/'.join(f'{k}={v}' for k, v in c.items()) for c in sizes)}" if sizes else ""
        console.print(f"verified against ONNX Runtime{where}: max abs diff {diff:.2e}")
    else:
        console.print(f"not verified here: {report.not_verified_because}; `dlc deploy` verifies it on a device "
                      "that runs it")


def _bounds(values: list[str]) -> dict[str, int]:
    """`["seq=512", "batch=8"]` → `{"seq": 512, "batch": 8}`."""
    from dlc.errors import DlcError

    bounds = {}
    for value in values:
        name, sep, size = value.partition("=")
        if not sep or not name.isidentifier() or not size.isdigit() or int(size) < 1:
            raise DlcError(f"--max-shape {value!r} is not SYMBOL=N with N >= 1; e.g. --max-shape seq=512")
        bounds[name] = int(size)
    return bounds
