"""`dlc inspect`: what an ONNX model is — opsets, I/O, ops, parameters, size, and its cost.

Per-layer MACs and FLOPs (see `dlc.flops` for the conventions) come from ONNX shape
inference with every input dimension fixed: symbolic ones from `shapes`, else 1, so
that later reports can turn a latency into achieved GFLOP/s.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlc.analysis.flops import Cost, node_cost
from dlc.onnxio import inferred_shapes, io_specs, load_model, node_names
from dlc.specs import TensorSpec


@dataclass
class Layer:
    name: str
    op: str
    output_shape: list[int] | None
    parameters: int
    cost: Cost | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op": self.op, "output_shape": self.output_shape, "parameters": self.parameters,
                "macs": None if self.cost is None else self.cost.macs,
                "flops": None if self.cost is None else self.cost.flops}


@dataclass
class ModelInfo:
    path: Path
    file_bytes: int
    ir_version: int
    opsets: dict[str, int]
    producer: str
    metadata: dict[str, str]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    shapes_used: dict[str, list[int]]
    ops: dict[str, int]
    parameters: int
    weight_bytes: dict[str, int]  # by dtype
    layers: list[Layer] = field(default_factory=list)

    @property
    def macs(self) -> int:
        return sum(layer.cost.macs for layer in self.layers if layer.cost)

    @property
    def flops(self) -> int:
        return sum(layer.cost.flops for layer in self.layers if layer.cost)

    @property
    def uncounted(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.cost is None]

    def to_dict(self) -> dict[str, Any]:
        return {"model": str(self.path), "file_bytes": self.file_bytes, "ir_version": self.ir_version,
                "opsets": self.opsets, "producer": self.producer, "metadata": self.metadata,
                "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
                "shapes_used": self.shapes_used, "nodes": sum(self.ops.values()), "ops": self.ops,
                "parameters": self.parameters, "weight_bytes": self.weight_bytes,
                "total": {"macs": self.macs, "flops": self.flops,
                          "uncounted_nodes": [f"{layer.name} ({layer.op})" for layer in self.uncounted]},
                "layers": [layer.to_dict() for layer in self.layers]}


def inspect_model(path: str | Path, shapes: dict[str, list[int]] | None = None) -> ModelInfo:
    """Reads `path` (checked by the ONNX checker) and counts its cost at the given input shapes."""
    from dlc.specs import static_specs

    path = Path(path)
    model = load_model(path)
    inputs, outputs = io_specs(model)
    fixed = static_specs(inputs, shapes)
    contents = graph_contents(model)
    return ModelInfo(
        path=path, file_bytes=path.stat().st_size, ir_version=model.ir_version,
        opsets={o.domain or "ai.onnx": o.version for o in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        metadata={p.key: p.value for p in model.metadata_props}, inputs=inputs, outputs=outputs,
        shapes_used={s.name: list(s.shape) for s in fixed}, ops=contents["ops"], parameters=contents["parameters"],
        weight_bytes=contents["weight_bytes"],
        layers=_layers(model, fixed, {t.name: t for t in model.graph.initializer}))


def graph_contents(model) -> dict[str, Any]:
    """Op histogram (most used first), parameter count and weight bytes by dtype of an ONNX model."""
    import onnx

    weight_bytes: dict[str, int] = collections.Counter()
    parameters = 0
    for t in model.graph.initializer:
        array = onnx.numpy_helper.to_array(t)
        weight_bytes[array.dtype.name] += array.nbytes
        parameters += array.size
    ops = collections.Counter(n.op_type for n in model.graph.node)
    return {"ops": dict(ops.most_common()), "parameters": parameters, "weight_bytes": dict(weight_bytes)}


def _layers(model, fixed: list[TensorSpec], inits: dict) -> list[Layer]:
    import numpy as np

    shapes = inferred_shapes(model, {s.name: tuple(s.shape) for s in fixed})
    layers = []
    for node, name in zip(model.graph.node, node_names(model)):
        in_shapes = [shapes.get(name) if name else None for name in node.input]
        out_shapes = [shapes.get(name) if name else None for name in node.output]
        params = sum(int(np.prod(inits[name].dims)) for name in node.input if name in inits)
        cost = node_cost(node.op_type, _attributes(node), in_shapes, out_shapes)
        out = out_shapes[0] if out_shapes else None
        layers.append(Layer(name, node.op_type, None if out is None else list(out),
                            params, cost))
    return layers


def _attributes(node) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute
            if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS, onnx.AttributeProto.FLOAT,
                          onnx.AttributeProto.STRING)}
