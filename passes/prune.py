"""Pruning passes: whole channels out of the graph (structured), or weights set to zero (unstructured).

`ChannelPrunePass` removes output channels of Conv, Gemm and MatMul layers together with every input
that reads them, so the graph is physically smaller. It follows the channel axis (axis 1) through the
graph as *layouts*: a tensor's channels are a list of segments `(space, channels, inner)`, where a
space is a set of channels that must be pruned alike and `inner` the features each channel became
once flattened.

    Conv / Gemm / MatMul with constant weights   start a space (their output channels)
    activations, pools, BatchNormalization,      pass the layout on (BatchNormalization's parameters
    reductions over other axes, depthwise Conv   and a depthwise Conv's filters are cut with it)
    Add, Sub, Mul, Div, Max, Min                 join their inputs' spaces: a residual add keeps the
                                                 same channels on both sides, so they form one group
    Concat on axis 1                             lays its inputs' segments end to end
    Flatten / Reshape to [N, C·S]                multiplies `inner` by S, which a Gemm reads as columns

A space that reaches anything else (a graph output, a grouped Conv, Transpose, Softmax...) is left
whole, and the reason recorded. A channel's importance is Σ over the space's producers of
‖W[c]‖ₚ / mean_c ‖W[c]‖ₚ, so each producer weighs the same whatever its scale.

`MagnitudePrunePass` sets the smallest |w| of every Conv/Gemm/MatMul weight to zero, per layer or
with one threshold for the whole model: the graph keeps its shapes; the file compresses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import onnx_ir as ir

from dlc.onnxio import inferred_shapes
from dlc.passes.infra import Pass, PassResult, register

_PASS_THROUGH = {"Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
                 "Softplus", "Gelu", "Erf", "Mish", "Neg", "Abs", "Sqrt", "Exp", "Dropout", "Identity", "MaxPool",
                 "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "Cast"}
_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu"}  # PRelu: its slope may be per channel
_REDUCE = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum"}
_FIXED = None  # the space of channels that come from outside any prunable layer

Segment = tuple  # (space id or None, channels, inner)


@dataclass
class _Space:
    size: int
    producers: list = field(default_factory=list)  # (node, weight axis of the output channels)
    blocked: list[str] = field(default_factory=list)  # why it is left whole


class _Channels:
    """The channel spaces of a graph, its layouts, and every weight that a pruned channel cuts."""

    def __init__(self, model: ir.Model, shapes: dict[str, tuple[int, ...]], ignore: set[str]):
        self.spaces: list[_Space] = []
        self.parent: list[int] = []
        self.layouts: dict[ir.Value, tuple[Segment, ...]] = {}
        self.cuts: list[tuple] = []  # (kind, node, input index, axis, layout) applied once channels are chosen
        self.skipped: dict[str, str] = {}  # layers with constant weights that start no group, and why
        self.shapes, self.ignore = shapes, ignore
        for node in model.graph:
            self._visit(node)
            self._block_subgraph_reads(node)
        for value in model.graph.outputs:
            self._block(self.layouts.get(value), f"its channels are the graph output {value.name!r}")

    # union-find over spaces
    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def _join(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            self.spaces[a].producers += self.spaces[b].producers
            self.spaces[a].blocked += self.spaces[b].blocked

    def _new_space(self, node: ir.Node, size: int, axis: int) -> tuple[Segment, ...]:
        self.spaces.append(_Space(size, [(node, axis)]))
        self.parent.append(len(self.parent))
        if _label(node) in self.ignore:
            self.spaces[-1].blocked.append(f"{_label(node)} is ignored (--ignore)")
        return ((len(self.spaces) - 1, size, 1),)

    def _block(self, layout, why: str) -> None:
        for space, _, _ in layout or ():
            if space is not _FIXED:
                self.spaces[self.find(space)].blocked.append(why)

    def _cut_later(self, node: ir.Node, index: int, axis: int, layout, kind: str = "slice") -> None:
        """Records that input `index` of `node` loses the pruned channels of `layout` along `axis` — unless it
        cannot safely: then the channels stay (not constant, shared with another node, or a width that does
        not match the channels arriving)."""
        value = node.inputs[index] if index < len(node.inputs) else None
        if value is None:
            return
        why = None
        if value.const_value is None:
            why = f"{_label(node)} reads {value.name}, which is not constant"
        elif len(value.uses()) > 1:
            why = f"{_label(node)} shares {value.name} with another node"
        elif kind == "slice" and value.const_value.shape[axis] != _width(layout):
            why = (f"{_label(node)}'s {value.name} is {value.const_value.shape[axis]} wide where {_width(layout)} "
                   "channels arrive")
        if why:
            self._block(layout, why)
        else:
            self.cuts.append((kind, node, index, axis, layout))

    def _block_subgraph_reads(self, node: ir.Node) -> None:
        """Values an If/Loop/Scan body reads from outside are read by ops this pass does not follow."""
        for attr in node.attributes.values():
            graphs = [attr.value] if attr.type == ir.AttributeType.GRAPH else \
                list(attr.value) if attr.type == ir.AttributeType.GRAPHS else []
            for graph in graphs:
                for inner in ir.traversal.RecursiveGraphIterator(graph):
                    for value in inner.inputs:
                        self._block(self.layouts.get(value), f"a subgraph of {_label(node)} reads it")

    def _shape(self, value: ir.Value | None):
        return None if value is None else self.shapes.get(value.name)

    def _visit(self, node: ir.Node) -> None:
        op = node.op_type
        laid = [self.layouts.get(v) if v is not None else None for v in node.inputs]
        out = None
        if op == "Conv":
            out = self._conv(node, laid)
        elif op in ("Gemm", "MatMul"):
            out = self._dense(node, laid)
        elif op == "BatchNormalization" and laid[0] and not any(laid[1:]) and _constants(node.inputs[1:5]):
            for i in range(1, 5):
                self._cut_later(node, i, 0, laid[0])
            out = laid[0]
        elif op in _PASS_THROUGH and laid[0] and _constants(node.inputs[1:]):
            out = laid[0]
        elif op in _BINARY and any(laid):
            out = self._binary(node, laid)
        elif op == "Concat" and any(laid):
            out = self._concat(node, laid)
        elif op in ("Flatten", "Reshape") and laid[0]:
            out = self._flatten(node, laid[0])
        elif op in _REDUCE and laid[0]:
            out = self._reduce(node, laid[0])
        elif any(laid):
            for layout in laid:
                self._block(layout, f"{_label(node)} ({op}) reads it")
        if out and node.outputs:
            self.layouts[node.outputs[0]] = out

    def _conv(self, node: ir.Node, laid) -> tuple[Segment, ...] | None:
        weight = node.inputs[1]
        if weight is None or weight.const_value is None or not _constants(node.inputs[2:]):
            for layout in laid:
                self._block(layout, f"{_label(node)} (Conv) has weights that are not constant")
            return None
        out_channels, group = weight.const_value.shape[0], _attr(node, "group", 1)
        if group == 1:
            if laid[0]:
                self._cut_later(node, 1, 1, laid[0])
            layout = self._new_space(node, out_channels, 0)
            self._cut_later(node, 1, 0, layout)
            self._cut_later(node, 2, 0, layout)
            return layout
        if laid[0] and group == out_channels == _width(laid[0]):  # depthwise: channel c reads only channel c
            if _label(node) in self.ignore:
                self._block(laid[0], f"{_label(node)} is ignored (--ignore)")
            if len(laid[0]) == 1 and laid[0][0][0] is not _FIXED and laid[0][0][2] == 1:  # ranks its group too
                self.spaces[self.find(laid[0][0][0])].producers.append((node, 0))
            self._cut_later(node, 1, 0, laid[0])
            self._cut_later(node, 2, 0, laid[0])
            self.cuts.append(("group", node, 0, 0, laid[0]))
            return laid[0]
        self._block(laid[0], f"{_label(node)} is a grouped Conv (group={group})")
        self.skipped[_label(node)] = f"a grouped Conv (group={group}) whose input channels are not followed"
        return None

    def _dense(self, node: ir.Node, laid) -> tuple[Segment, ...] | None:
        weight = node.inputs[1]
        a_shape = self._shape(node.inputs[0])
        gemm = node.op_type == "Gemm"
        if weight is None or weight.const_value is None or len(weight.const_value.shape) != 2 or \
                (gemm and _attr(node, "transA", 0)) or (not gemm and (a_shape is None or len(a_shape) != 2)) or \
                not _constants(node.inputs[2:]):
            for layout in laid:
                self._block(layout, f"{_label(node)} ({node.op_type}) is not a 2-D product with a constant weight")
            if not gemm and a_shape and len(a_shape) != 2 and weight is not None and weight.const_value is not None:
                self.skipped[_label(node)] = (f"MatMul of a {len(a_shape)}-D input: only 2-D products (Gemm, MatMul "
                                              "after a flatten) are followed")
            return None
        transposed = gemm and _attr(node, "transB", 0)
        if laid[0]:
            self._cut_later(node, 1, 1 if transposed else 0, laid[0])
        out_features = weight.const_value.shape[0 if transposed else 1]
        layout = self._new_space(node, out_features, 0 if transposed else 1)
        self._cut_later(node, 1, 0 if transposed else 1, layout)
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        if bias is not None and bias.const_value.shape[-1:] == (out_features,):
            self._cut_later(node, 2, len(bias.const_value.shape) - 1, layout)
        elif bias is not None and bias.const_value.size != 1:
            self._block(layout, f"{_label(node)}'s bias does not have one value per output")
        return layout

    def _binary(self, node: ir.Node, laid) -> tuple[Segment, ...] | None:
        layouts = [x for x in laid if x]
        first = layouts[0]
        rank = len(self._shape(node.outputs[0]) or ())
        if any(len(self._shape(v) or ()) != rank for v, x in zip(node.inputs, laid) if x):
            for layout in layouts:
                self._block(layout, f"{_label(node)} ({node.op_type}) broadcasts it to another rank")
            return None
        for other in layouts[1:]:
            if [(c, i) for _, c, i in other] != [(c, i) for _, c, i in first] or \
                    any((a is _FIXED) != (b is _FIXED) for (a, _, _), (b, _, _) in zip(first, other)):
                for layout in layouts:
                    self._block(layout, f"{_label(node)} ({node.op_type}) combines differently laid channels")
                return None
            for (a, _, _), (b, _, _) in zip(first, other):
                if a is not _FIXED:
                    self._join(a, b)
        for i, (value, layout) in enumerate(zip(node.inputs, laid)):
            if layout:
                continue
            shape = tuple(value.const_value.shape) if value is not None and value.const_value is not None else None
            axis = None if shape is None or not rank else 1 - (rank - len(shape))
            if shape is None or (axis is not None and axis >= 0 and shape[axis] != 1 and shape[axis] !=
                                 _width(first)) or rank == 0:
                self._block(first, f"{_label(node)} ({node.op_type}) also reads {value.name if value else 'nothing'}, "
                                   "which is not a constant per channel")
                return None
            if axis is not None and axis >= 0 and shape[axis] != 1:
                self._cut_later(node, i, axis, first)
        return first

    def _concat(self, node: ir.Node, laid) -> tuple[Segment, ...] | None:
        rank = len(self._shape(node.outputs[0]) or ())
        axis = _attr(node, "axis", 0)
        if not rank or axis % rank != 1:
            for layout in laid:
                self._block(layout, f"{_label(node)} (Concat) joins along axis {axis}, not the channels")
            return None
        segments = []
        for value, layout in zip(node.inputs, laid):
            shape = self._shape(value)
            if layout is None and shape is None:
                for other in laid:
                    self._block(other, f"{_label(node)} (Concat) has an input of unknown width")
                return None
            segments += list(layout or ((_FIXED, shape[1], 1),))
        return tuple(segments)

    def _flatten(self, node: ir.Node, layout) -> tuple[Segment, ...] | None:
        shape, out = self._shape(node.inputs[0]), self._shape(node.outputs[0])
        target = node.inputs[1].const_value.numpy() if node.op_type == "Reshape" and node.inputs[1] is not None \
            and node.inputs[1].const_value is not None else None
        flattens = node.op_type == "Flatten" and _attr(node, "axis", 1) == 1 or \
            target is not None and len(target) == 2 and target[0] in (0, -1, shape and shape[0])
        flat = shape and out and len(out) == 2 and len(shape) >= 2 and out[0] == shape[0] and \
            out[1] == math.prod(shape[1:]) and flattens
        if not flat:
            self._block(layout, f"{_label(node)} ({node.op_type}) reshapes the channels")
            return None
        spatial = math.prod(shape[2:])
        flattened = tuple((space, channels, inner * spatial) for space, channels, inner in layout)
        if target is not None and target[1] != -1:
            self._cut_later(node, 1, 1, flattened, kind="reshape")
        return flattened

    def _reduce(self, node: ir.Node, layout) -> tuple[Segment, ...] | None:
        rank = len(self._shape(node.inputs[0]) or ())
        axes = _attr(node, "axes", None)
        if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None and node.inputs[1].const_value is \
                not None:
            axes = node.inputs[1].const_value.numpy().tolist()
        if not rank or axes is None or 1 in {a % rank for a in axes} or (not _attr(node, "keepdims", 1) and
                                                                          any(a % rank < 1 for a in axes)):
            self._block(layout, f"{_label(node)} ({node.op_type}) reduces over the channels")
            return None
        return layout


def _attr(node: ir.Node, name: str, default):
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def _constants(values) -> bool:
    return all(v is None or v.const_value is not None for v in values)


def _width(layout) -> int:
    return sum(channels * inner for _, channels, inner in layout)


def _positions(layout, keep: dict[int, np.ndarray], find) -> np.ndarray:
    """Indices along the channel axis that stay, given the channels kept per space."""
    parts, offset = [], 0
    for space, channels, inner in layout:
        kept = np.arange(channels) if space is _FIXED else keep.get(find(space), np.arange(channels))
        parts.append((offset + kept[:, None] * inner + np.arange(inner)).ravel())
        offset += channels * inner
    return np.concatenate(parts)


@register
class ChannelPrunePass(Pass):
    """Structured pruning: the least important output channels of Conv/Gemm/MatMul removed with their readers."""

    name: ClassVar[str] = "prune-channels"
    summary: ClassVar[str] = "remove the least important channels (and what reads them): a smaller graph"
    tolerance = None  # changes numerics on purpose: the accuracy gate judges it

    def __init__(self, ratio: float = 0.5, importance: str = "l1", global_pruning: bool = False, round_to: int = 1,
                 ignore: tuple[str, ...] = (), layer_ratios: dict[str, float] | None = None):
        super().__init__()
        self.ratio, self.importance, self.global_pruning = ratio, importance, global_pruning
        self.round_to, self.ignore, self.layer_ratios = max(1, round_to), set(ignore), dict(layer_ratios or {})

    def call(self, model: ir.Model) -> PassResult:
        channels = _Channels(model, inferred_shapes(ir.serde.serialize_model(model)), self.ignore)
        roots = sorted({channels.find(s) for s in range(len(channels.spaces))})
        open_ = [r for r in roots if not channels.spaces[r].blocked]
        scores = {r: _importance(channels.spaces[r], self.importance) for r in open_}
        keep = self._choose(channels, scores)
        for kind, node, index, axis, layout in channels.cuts:
            _cut(kind, node, index, axis, _positions(layout, keep, channels.find))
        if keep:
            _forget_inner_shapes(model)
        layers = {_label(node): {"channels": channels.spaces[r].size, "kept": len(keep.get(r, ()))
                              or channels.spaces[r].size} for r in roots for node, _ in channels.spaces[r].producers}
        whole = {**{_space_name(channels.spaces[r]): channels.spaces[r].blocked[0] for r in roots
                    if channels.spaces[r].blocked}, **channels.skipped}
        return PassResult(model, bool(keep), {"groups": len(roots), "groups_pruned": len(keep),
                                              "groups_left_whole": sum(1 for r in roots if channels.spaces[r].blocked),
                                              "channels_before": sum(channels.spaces[r].size for r in roots),
                                              "channels_after": sum(len(keep[r]) if r in keep else
                                                                    channels.spaces[r].size for r in roots),
                                              "layers": layers, "left_whole": whole})

    def _choose(self, channels: _Channels, scores: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """The channels each open space keeps: its most important ones, per space or by one global threshold."""
        counts = {}
        if self.global_pruning and scores:
            everything = np.sort(np.concatenate(list(scores.values())))
            threshold = everything[min(int(self.ratio * len(everything)), len(everything) - 1)]
            counts = {r: int((s >= threshold).sum()) for r, s in scores.items()}
        else:
            for r in scores:
                # a group with a --layer-ratio member takes that ratio (the lowest, if members differ)
                ratio = min((self.layer_ratios[_label(node)] for node, _ in channels.spaces[r].producers
                             if _label(node) in self.layer_ratios), default=self.ratio)
                counts[r] = len(scores[r]) - int(ratio * len(scores[r]))
        keep = {}
        for r, score in scores.items():
            count = max(counts[r], 1)
            count -= count % self.round_to  # rounded down, as Torch-Pruning does; none left: the group stays whole
            if 0 < count < len(score):
                keep[r] = np.sort(np.argsort(-score, kind="stable")[:count])
        return keep


def _importance(space: _Space, kind: str) -> np.ndarray:
    total = np.zeros(space.size)
    for node, axis in space.producers:
        weight = np.moveaxis(node.inputs[1].const_value.numpy().astype(np.float64), axis, 0).reshape(space.size, -1)
        norm = np.abs(weight).sum(axis=1) if kind == "l1" else np.sqrt((weight ** 2).sum(axis=1))
        total += norm / max(norm.mean(), 1e-12)
    return total / len(space.producers)  # a residual group ranks like a single layer under one global threshold


def _space_name(space: _Space) -> str:
    return ", ".join(_label(node) for node, _ in space.producers)


def _label(node: ir.Node) -> str:
    """A node's name, or (unnamed) the name of what it computes."""
    return node.name or f"{node.op_type} → {node.outputs[0].name}"


def _cut(kind: str, node: ir.Node, index: int, axis: int, kept: np.ndarray) -> None:
    if kind == "group":
        node.attributes["group"] = ir.AttrInt64("group", len(kept))
        return
    value = node.inputs[index] if index < len(node.inputs) else None
    if value is None or value.const_value is None:
        return
    array = value.const_value.numpy()
    if kind == "reshape":
        array = array.copy()
        array[axis] = len(kept)
    elif array.shape[axis] != len(kept):
        array = np.take(array, kept, axis=axis)
    value.const_value = ir.tensor(np.ascontiguousarray(array), name=value.name)
    value.shape = ir.Shape(array.shape)


def _forget_inner_shapes(model: ir.Model) -> None:
    """Channel counts changed: the shapes recorded for intermediate values no longer hold."""
    io = {*model.graph.inputs, *model.graph.outputs}
    for node in model.graph:
        for value in node.outputs:
            if value not in io:
                value.shape = None


def prunable_weights(model: ir.Model) -> dict[str, ir.Value]:
    """The constant weights of Conv, Gemm and MatMul nodes, by node name (see `_label`; a repeated name gets
    "#2", "#3"...)."""
    found: dict[str, ir.Value] = {}
    for node in model.graph:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.inputs) > 1:
            for value in node.inputs[:2]:
                if value is not None and value.const_value is not None and len(value.const_value.shape) >= 2:
                    label, n = _label(node), 1
                    while label in found:
                        n += 1
                        label = f"{_label(node)}#{n}"
                    found[label] = value
    return found


@register
class MagnitudePrunePass(Pass):
    """Unstructured pruning: the smallest |w| of each Conv/Gemm/MatMul weight set to zero."""

    name: ClassVar[str] = "prune-magnitude"
    summary: ClassVar[str] = "set the smallest weights to zero (same graph, compresses)"
    tolerance = None

    def __init__(self, ratio: float = 0.5, global_pruning: bool = False, ignore: tuple[str, ...] = (),
                 layer_ratios: dict[str, float] | None = None):
        super().__init__()
        self.ratio, self.global_pruning, self.ignore = ratio, global_pruning, set(ignore)
        self.layer_ratios = dict(layer_ratios or {})

    def call(self, model: ir.Model) -> PassResult:
        weights = {k: v for k, v in prunable_weights(model).items() if k not in self.ignore}
        threshold = None
        if self.global_pruning and weights:
            everything = np.sort(np.concatenate([np.abs(v.const_value.numpy()).ravel() for v in weights.values()]))
            threshold = everything[min(int(self.ratio * len(everything)), len(everything) - 1)]
        layers = {}
        for name, value in weights.items():
            array = value.const_value.numpy()
            magnitude = np.abs(array)
            if threshold is None:
                count = int(self.layer_ratios.get(name, self.ratio) * array.size)
                cut = np.sort(magnitude.ravel())[count] if count < array.size else np.inf
            else:
                cut = threshold
            pruned = np.where(magnitude < cut, np.zeros((), array.dtype), array)
            value.const_value = ir.tensor(pruned, name=value.name)
            layers[name] = {"weights": int(array.size), "sparsity": round(float((pruned == 0).mean()), 4)}
        total = sum(v["weights"] for v in layers.values())
        zeros = sum(v["weights"] * v["sparsity"] for v in layers.values())
        return PassResult(model, bool(layers), {"layers": layers,
                                                "sparsity": round(zeros / total, 4) if total else 0.0})
