from __future__ import annotations

import json
import shutil
from typing import Annotated

import typer
from rich.table import Table

from dlc.cli._common import console


def targets(
    as_json: Annotated[bool, typer.Option("--json", help="Print every target as JSON, with its whole TVM target.")]
    = False,
):
    """List the named compilation targets, whether they run on this machine, and their linkers."""
    from dlc.target import PRESETS, host_arch, host_target

    specs = [host_target(), *PRESETS.values()]
    if as_json:
        rows = [{**spec.to_dict(), "description": spec.description, "runs_here": spec.why_not_here() is None,
                 "not_here_because": spec.why_not_here()} for spec in specs]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="dlc targets (any TVM JSON target works too: --target '{\"kind\": \"llvm\", ...}')")
    for column in ("name", "arch", "CPU / GPU", "runs here", "linker", "description"):
        table.add_column(column, no_wrap=column != "description")
    notes = []
    for spec in specs:
        reason = spec.why_not_here()
        if reason and spec.arch == host_arch() and spec.device == "cpu":
            notes.append(f"{spec.name}: {reason}")
        table.add_row(spec.name, spec.arch, _processor(spec.tvm), "no" if reason else "yes",
                      _linker_status(spec.linker), spec.description)
    console.print(table)
    for note in notes:
        console.print(f"not on this machine: {note}")
    console.print("`dlc targets --json` prints each TVM target whole")


def _processor(tvm_target: dict) -> str:
    if tvm_target.get("kind") == "cuda":
        return f"{tvm_target.get('arch')} + {tvm_target.get('host', {}).get('mcpu', 'x86-64')}"
    return tvm_target.get("mcpu", "generic")


def _linker_status(linker) -> str:
    if linker is None:
        return "system cc"
    return linker.command + ("" if shutil.which(linker.command) else " (missing: ./scripts/setup-edge)")
