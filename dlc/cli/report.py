from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dlc.cli._common import console
from dlc.cli.signing import TRUST_HELP, require_key
from dlc.errors import DlcError
from dlc.profiling import DEVICE_FORM


def report(
    artifacts: Annotated[list[Path], typer.Argument(help="Artifact directories from `dlc compile`, one per model "
                                                         "(float, int8, pruned...).")],
    device: Annotated[list[str] | None, typer.Option(help=f"Where to measure, repeatable: {DEVICE_FORM} "
                                                         "[default: host].")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file (its JSON beside it, .json).")] =
    Path("report.html"),
    runs: Annotated[int, typer.Option(min=5, help="Timed runs per row (a device takes a fifth of them).")] = 100,
    baseline: Annotated[Path | None, typer.Option(help="An earlier report's JSON: say what changed, regressions "
                                                       "by a Mann-Whitney test on the samples.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds allowed per model on a device.")] = 900.0,
    force: Annotated[bool, typer.Option(help="Replace an existing report.")] = False,
    trust: Annotated[Path | None, typer.Option(help=TRUST_HELP, show_default=False)] = None,
):
    """One self-contained HTML page (and JSON) for several models on several devices: accuracy, size, latency,
    memory, per-layer times and rooflines."""
    from dlc.fileio import atomic_path, check_output, write_json
    from dlc.profiling import build_report, load_baseline, parse_device
    from dlc.analysis.report_html import render

    require_key(trust)
    devices = [parse_device(d) for d in (device or ["host"])]
    if len({d.name for d in devices}) < len(devices):
        raise DlcError(f"two --device options share a name ({', '.join(d.name for d in devices)}): give each its own")
    if output.suffix.lower() != ".html":
        raise DlcError(f"-o {output} is not an .html file: the report is HTML, its JSON goes beside it "
                       "(e.g. -o report.html writes report.json too)")
    json_path = output.with_suffix(".json")
    for path in (output, json_path):
        check_output(path, force)
    old = load_baseline(baseline) if baseline else None
    work = output.parent / f".{output.stem}-work"  # device builds, kept for the next report
    with console.status("measuring") as status:
        result = build_report(artifacts, devices, work, runs, old, timeout, trust, log=status.update)
    page = render(result)  # before anything is written
    write_json(json_path, result)
    with atomic_path(output) as tmp:
        tmp.write_text(page, encoding="utf-8")
    for row in result["rows"]:
        lat = row["latency_ms"]
        change = f", {row['change']} vs baseline" if "change" in row else ""
        console.print(f"{row['model']} on {row['device']} ({row['backend']}): p50 {lat['p50']:.4f} ms "
                      f"[{lat['p50_ci95_low']:.4f}–{lat['p50_ci95_high']:.4f}]{change}")
    console.print(f"report: {output} (JSON: {json_path})")
