"""Multiply-accumulates and floating-point operations per ONNX node, from inferred shapes.

Conventions (those of most papers and of fvcore/ptflops, stated so reports can be compared):

- Conv: MACs = N · C_out · ∏out_spatial · (C_in / group) · ∏kernel; ConvTranspose the same
  with input and output swapped. FLOPs = 2 · MACs, plus one add per output element for a bias.
- Gemm: MACs = M · N · K; FLOPs = 2 · MACs, plus M · N for C. MatMul: MACs = batch · M · N · K.
- LSTM / GRU: per step and direction, gates · hidden · (input + hidden) MACs (4 gates, 3 gates).
- BatchNormalization 2 FLOPs per element (scale, shift), LayerNormalization 5, Softmax 3,
  other elementwise ops and activations 1; pooling one per window element; reductions one
  per input element. Shape-only ops (Reshape, Transpose, Concat, Cast, ...) cost nothing.
- An op not listed here, or one whose shapes could not be inferred, has no count (None) and
  is named in the report rather than silently counted as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Shape = tuple[int, ...]

_FREE = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Shape", "Size", "Concat",
         "Slice", "Split", "Gather", "Cast", "CastLike", "Constant", "ConstantOfShape", "Expand", "Dropout",
         "Pad", "Tile", "Range", "DepthToSpace", "SpaceToDepth", "QuantizeLinear", "DequantizeLinear"}
_PER_ELEMENT = {"BatchNormalization": 2, "LayerNormalization": 5, "Softmax": 3, "LogSoftmax": 3,
                "InstanceNormalization": 5, "GroupNormalization": 5}
_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Relu", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid",
                "HardSwish", "Tanh", "Erf", "Gelu", "Elu", "Selu", "Softplus", "Clip", "Sqrt", "Exp", "Log",
                "Neg", "Abs", "Reciprocal", "Max", "Min", "Where", "Equal", "Less", "Greater", "Not", "And",
                "Or", "Sum", "Mean", "Floor", "Ceil", "Round", "Sin", "Cos", "Mish", "Swish"}
_POOL = {"MaxPool", "AveragePool", "LpPool"}
_REDUCE = {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
           "ReduceProd", "ReduceL2", "ReduceSumSquare", "ArgMax", "ArgMin"}


@dataclass(frozen=True)
class Cost:
    macs: int
    flops: int


def node_cost(op_type: str, attrs: dict, inputs: list[Shape | None], outputs: list[Shape | None]) -> Cost | None:
    """The cost of one node; None when the op is unknown here or a needed shape is missing."""
    if op_type in _FREE:
        return Cost(0, 0)
    counter = _COUNTERS.get(op_type)
    if counter is not None:
        return counter(attrs, inputs, outputs)
    out = outputs[0] if outputs else None
    if out is None:
        return None
    if op_type in _PER_ELEMENT:
        return Cost(0, _PER_ELEMENT[op_type] * math.prod(out))
    if op_type in _ELEMENTWISE:
        return Cost(0, math.prod(out))
    if op_type in _POOL:
        return Cost(0, math.prod(out) * math.prod(attrs.get("kernel_shape", [1])))
    if op_type in _REDUCE:
        return None if not inputs or inputs[0] is None else Cost(0, math.prod(inputs[0]))
    return None


def _conv(attrs, inputs, outputs) -> Cost | None:
    x, w, out = _get(inputs, 0), _get(inputs, 1), _get(outputs, 0)
    if x is None or w is None or out is None:
        return None
    group = attrs.get("group", 1)
    macs = out[0] * out[1] * math.prod(out[2:]) * (x[1] // group) * math.prod(w[2:])
    return Cost(macs, 2 * macs + (math.prod(out) if _get(inputs, 2) is not None else 0))


def _conv_transpose(attrs, inputs, outputs) -> Cost | None:
    x, w, out = _get(inputs, 0), _get(inputs, 1), _get(outputs, 0)
    if x is None or w is None or out is None:
        return None
    # every input element scatters into C_out/group · kernel outputs (W is [C_in, C_out/group, kernel...])
    macs = x[0] * x[1] * math.prod(x[2:]) * w[1] * math.prod(w[2:])
    return Cost(macs, 2 * macs + (math.prod(out) if _get(inputs, 2) is not None else 0))


def _gemm(attrs, inputs, outputs) -> Cost | None:
    a, b = _get(inputs, 0), _get(inputs, 1)
    if a is None or b is None:
        return None
    m, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
    n = b[0] if attrs.get("transB", 0) else b[1]
    macs = m * n * k
    return Cost(macs, 2 * macs + (m * n if _get(inputs, 2) is not None else 0))


def _matmul(attrs, inputs, outputs) -> Cost | None:
    a, out = _get(inputs, 0), _get(outputs, 0)
    if a is None or out is None:
        return None
    k = a[-1]
    macs = math.prod(out) * k  # every output element is a length-k dot product
    return Cost(macs, 2 * macs)


def _recurrent(gates: int):
    def count(attrs, inputs, outputs) -> Cost | None:
        x = _get(inputs, 0)
        hidden = attrs.get("hidden_size")
        if x is None or hidden is None:
            return None
        steps, batch, features = x if not attrs.get("layout", 0) else (x[1], x[0], x[2])
        directions = 2 if attrs.get("direction", "forward") == "bidirectional" else 1
        macs = steps * batch * directions * gates * hidden * (features + hidden)
        return Cost(macs, 2 * macs)
    return count


def _get(shapes: list[Shape | None], i: int) -> Shape | None:
    return shapes[i] if i < len(shapes) else None


_COUNTERS = {"Conv": _conv, "ConvTranspose": _conv_transpose, "Gemm": _gemm, "MatMul": _matmul,
             "LSTM": _recurrent(4), "GRU": _recurrent(3), "RNN": _recurrent(1)}
