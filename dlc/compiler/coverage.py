"""Which ONNX ops of a model each backend can run: every gap at once, with node names.

TVM support is read from the Relax ONNX importer's own converter table, ONNX Runtime
support from the kernels its CPU execution provider registers, so the answer follows
the installed versions rather than a list kept by hand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from dlc.errors import UnsupportedOpError

CHECKED_BACKENDS = ("tvm", "onnxruntime")
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class OpUse:
    domain: str
    op_type: str
    version: int  # the op's schema version under the model's opset (0 if unknown)
    nodes: list[str] = field(default_factory=list)
    supported: dict[str, bool] = field(default_factory=dict)
    lowering: str | None = None  # the dlc pass that rewrites this op into ones TVM has, if TVM lacks it

    @property
    def qualified(self) -> str:
        return f"{self.domain}::{self.op_type}" if self.domain not in _DEFAULT_DOMAINS else self.op_type


@dataclass
class CoverageReport:
    opsets: dict[str, int]
    ops: list[OpUse]

    def gaps(self, backend: str) -> list[OpUse]:
        return [op for op in self.ops if not op.supported[backend]]

    def gaps_after_lowering(self, backend: str) -> list[OpUse]:
        return [op for op in self.gaps(backend) if backend != "tvm" or op.lowering is None]

    def to_dict(self) -> dict:
        return {
            "opsets": self.opsets,
            "ops": [{"op": op.qualified, "version": op.version, "count": len(op.nodes),
                     "nodes": op.nodes, "supported": op.supported, "lowering": op.lowering} for op in self.ops],
            "gaps": {b: [op.qualified for op in self.gaps(b)] for b in CHECKED_BACKENDS},
            "gaps_after_lowering": {b: [op.qualified for op in self.gaps_after_lowering(b)]
                                    for b in CHECKED_BACKENDS},
        }


def check_coverage(model) -> CoverageReport:
    """Groups the model's nodes (subgraphs included) by op and checks each backend."""
    opsets = {imp.domain: imp.version for imp in model.opset_import}
    uses: dict[tuple[str, str], OpUse] = {}
    for node in _walk(model.graph):
        key = (node.domain, node.op_type)
        if key not in uses:
            uses[key] = OpUse(node.domain, node.op_type, _schema_version(node, opsets))
        uses[key].nodes.append(node.name or f"<unnamed {node.op_type}>")
    for op in uses.values():
        op.supported = {"tvm": _tvm_supports(op), "onnxruntime": _ort_supports(op)}
        if not op.supported["tvm"]:
            op.lowering = _lowerings().get(("" if op.domain in _DEFAULT_DOMAINS else op.domain, op.op_type))
    return CoverageReport(opsets, sorted(uses.values(), key=lambda o: (o.domain, o.op_type)))


def require_supported(report: CoverageReport, backend: str) -> None:
    """Raises one error naming every op `backend` cannot handle, with up to 3 node names each."""
    gaps = report.gaps(backend)
    if not gaps:
        return
    listed = "; ".join(f"{op.qualified} ({_node_list(op.nodes)})" for op in gaps)
    lowerable = [op.qualified for op in gaps if op.lowering == "lower-recurrent"]
    hint = (f" dlc lowers {', '.join(lowerable)} only with a static sequence length, no sequence_lens and the "
            f"default activations: export with a fixed sequence length." if lowerable else "")
    raise UnsupportedOpError(
        f"{backend} cannot import {len(gaps)} op type(s) of this model: {listed}.{hint} "
        f"Run `dlc doctor MODEL.onnx` for the full table; re-export without these ops "
        f"or replace them before compiling")


def _node_list(nodes: list[str]) -> str:
    shown = ", ".join(nodes[:3])
    return shown + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")


def _walk(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _walk(sub)


def _schema_version(node, opsets: dict[str, int]) -> int:
    import onnx

    opset = opsets.get(node.domain, opsets.get("ai.onnx" if node.domain == "" else node.domain, 0))
    try:
        return onnx.defs.get_schema(node.op_type, opset, node.domain).since_version
    except onnx.defs.SchemaError:
        return 0


def _tvm_supports(op: OpUse) -> bool:
    return op.domain in _DEFAULT_DOMAINS and op.op_type in _tvm_ops()


def _ort_supports(op: OpUse) -> bool:
    ranges = _ort_kernels().get(("" if op.domain == "ai.onnx" else op.domain, op.op_type), [])
    return any(start <= op.version <= end for start, end in ranges) if op.version else bool(ranges)


def _lowerings() -> dict[tuple[str, str], str]:
    from dlc.passes.lowering import LOWERINGS

    return LOWERINGS


@functools.cache
def _tvm_ops() -> frozenset[str]:
    from tvm.relax.frontend.onnx import onnx_frontend

    return frozenset(onnx_frontend._get_convert_map())


@functools.cache
def _ort_kernels() -> dict[tuple[str, str], list[tuple[int, int]]]:
    from onnxruntime.capi import _pybind_state

    kernels: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for k in _pybind_state.get_all_opkernel_def():
        if k.provider == "CPUExecutionProvider":
            kernels.setdefault((k.domain, k.op_name), []).append(tuple(k.version_range))
    return kernels
