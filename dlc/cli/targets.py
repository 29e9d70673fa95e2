from __future__ import annotations

import json
import shutil

from rich.table import Table

from dlc.cli._common import console


def targets():
    """List the named compilation targets and whether their linker is installed."""
    from dlc.compiler.target import PRESETS, host_target

    table = Table(title="dlc targets (any TVM JSON target works too: --target '{\"kind\": \"llvm\", ...}')")
    for column in ("name", "arch", "device", "TVM target", "linker", "description"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "arch", "device"))
    for spec in [host_target(), *PRESETS.values()]:
        linker = spec.linker
        status = "system cc" if linker is None else (
            f"{linker.command}" + ("" if shutil.which(linker.command) else " (missing: ./scripts/setup-edge)"))
        table.add_row(spec.name, spec.arch, spec.device, json.dumps(spec.tvm), status, spec.description)
    console.print(table)
