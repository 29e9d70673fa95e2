"""Compilation targets: TVM JSON target dicts plus the CPU architecture they run on.

TVM 0.27 takes targets as JSON dicts and rejects "-mcpu=native", so the host CPU is
detected with LLVM (`llvm_get_system_cpu`).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from typing import Any

from dlc.errors import UnknownNameError

PRESETS = {"host": "this machine's CPU, detected by LLVM"}


@dataclass(frozen=True)
class TargetSpec:
    name: str
    tvm: dict[str, Any]  # what tvm.target.Target() takes
    arch: str  # machine the code runs on, as platform.machine() spells it

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tvm": self.tvm, "arch": self.arch}

    def tvm_target(self):
        import tvm

        return tvm.target.Target(self.tvm)


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def resolve_target(name: str) -> TargetSpec:
    """A preset name, or a TVM JSON target (`{"kind": "llvm", "mcpu": "skylake"}`)."""
    if name == "host":
        from tvm.target import codegen

        return TargetSpec("host", {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()}, host_arch())
    if name.lstrip().startswith("{"):
        return _from_json(name)
    raise UnknownNameError(f"unknown target {name!r}; use one of: {', '.join(PRESETS)}, "
                           "or a TVM JSON target such as '{\"kind\": \"llvm\", \"mcpu\": \"skylake\"}'")


def _from_json(text: str) -> TargetSpec:
    import tvm

    try:
        spec = json.loads(text)
        tvm.target.Target(spec)
    except (json.JSONDecodeError, ValueError, TypeError, RuntimeError) as e:
        raise UnknownNameError(f"invalid TVM target {text!r}: {str(e).splitlines()[0]}") from e
    triple = spec.get("mtriple", "")
    arch = triple.split("-")[0] if triple else host_arch()
    return TargetSpec("custom", spec, arch)
