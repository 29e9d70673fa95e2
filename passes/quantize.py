"""int8 quantization passes, by onnxruntime.quantization (calibration and QDQ insertion).

    quantize-static    Conv, Gemm, MatMul and what lies between them (pools, reshapes, adds)
                       as QuantizeLinear → DequantizeLinear pairs around float ops (QDQ):
                       activations get a scale from calibration (MinMax, Entropy, Percentile),
                       weights are int8, per output channel by default (7-bit with
                       reduce_range: exact vpmaddubsw kernels on x86 CPUs without VNNI).
                       ONNX Runtime runs the pairs as int8 kernels; dlc's compiler turns them
                       into integer Relax ops.
    quantize-dynamic   int8 weights for MatMuls, activations quantized per call from their
                       own range (DynamicQuantizeLinear → MatMulInteger): no calibration, for
                       MatMul-heavy models (transformers, lowered LSTM/GRU, MLPs). Gemms are
                       rewritten to MatMul + Add first, since ONNX Runtime quantizes only MatMul.

A quantized value q with scale s and zero point z stands for s·(q − z). Both passes change
the numerics on purpose: the runner reports their output difference instead of failing it,
and `dlc quantize` holds them to an accuracy budget instead.

onnxruntime.quantization reads and writes model files (it also writes the calibration
model it augments), so the passes hand it a private temporary folder; nothing else is
touched on disk.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx_ir as ir

from dlc.passes.infra import Pass, PassResult, RewritePass, Tolerance, quiet, register, replace_contents
from dlc.passes.rules.qoperator import gemm_to_matmul_rules, qoperator_to_qdq_rules

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
STATIC_OPS = ("Conv", "Gemm", "MatMul", "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "Relu", "Clip",
              "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Resize", "Softmax", "Sigmoid")
LINEAR_OPS = ("Conv", "Gemm", "MatMul")


@register
class StaticQuantizePass(Pass):
    name = "quantize-static"
    summary = "int8 QDQ with calibrated activation scales (needs calibration data: use `dlc quantize`)"
    tolerance = None  # changes numerics on purpose

    def __init__(self, calibration: Sequence[dict[str, np.ndarray]] = (), method: str = "minmax",
                 per_channel: bool = True, symmetric: bool = False, exclude: Sequence[str] = (),
                 reduce_range: bool = False):
        super().__init__()
        if not calibration:
            from dlc.errors import DlcError

            raise DlcError("quantize-static needs calibration samples: run `dlc quantize MODEL.onnx --calibration "
                           "data.npz` (or --checkpoint CKPT) instead of naming it in --passes")
        self.calibration, self.method, self.per_channel = calibration, method, per_channel
        self.symmetric, self.reduce_range, self.exclude = symmetric, reduce_range, list(exclude)

    def call(self, model: ir.Model) -> PassResult:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[self.method]
        options = {"ActivationSymmetric": self.symmetric, "WeightSymmetric": True}
        result = _through_onnxruntime(model, self.exclude, lambda source, out: quantize_static(
            source, out, _Reader(self.calibration), QuantFormat.QDQ, op_types_to_quantize=list(STATIC_OPS),
            per_channel=self.per_channel, reduce_range=self.reduce_range,
            activation_type=QuantType.QInt8 if self.symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=self.exclude, calibrate_method=method,
            calibration_providers=["CPUExecutionProvider"], extra_options=options))
        result.stats["zero_points_dropped"] = drop_zero_bias_zero_points(result.model)
        result.stats["weight_bytes_after"] = _weight_bytes(result.model)
        result.stats["weight_bits"] = 7 if self.reduce_range else 8
        return result


@register
class DynamicQuantizePass(Pass):
    name = "quantize-dynamic"
    summary = "int8 weights for MatMul/Gemm, activations quantized per call (no calibration)"
    tolerance = None

    def __init__(self, per_channel: bool = False, exclude: Sequence[str] = (), reduce_range: bool = False):
        super().__init__()
        self.per_channel, self.exclude, self.reduce_range = per_channel, list(exclude), reduce_range

    def call(self, model: ir.Model) -> PassResult:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        from dlc.passes.cleanup import DeduplicateInitializersPass, EliminateDeadCodePass, FoldConstantsPass

        if gemm_to_matmul_rules.apply_to_model(model):
            for cleanup in (FoldConstantsPass(), DeduplicateInitializersPass(), EliminateDeadCodePass()):
                cleanup(model)
        result = _through_onnxruntime(model, self.exclude, lambda source, out: quantize_dynamic(
            source, out, op_types_to_quantize=["MatMul"], per_channel=self.per_channel, weight_type=QuantType.QInt8,
            reduce_range=self.reduce_range, nodes_to_exclude=self.exclude))
        result.stats["weight_bits"] = 7 if self.reduce_range else 8
        return result


@register
class QOperatorToQdqPass(RewritePass):
    name = "qoperator-to-qdq"
    summary = "QLinearConv, QLinearMatMul, QGemm, QLinearAdd/Mul, quantized pools, ConvInteger → QDQ form"
    rules = qoperator_to_qdq_rules
    # ONNX Runtime runs QOperator nodes with integer kernels and the QDQ form it is checked against in
    # float (DQ → op → Q): a value may round a step the other way, a step is ~1/255 of the output's range
    tolerance = Tolerance(atol=1e-4, rtol=0.02)


def quantizable_nodes(model: ir.Model, dynamic: bool = False) -> list[ir.Node]:
    """The nodes a quantizer would make int8: Conv/Gemm/MatMul (MatMul only, dynamically) with a constant weight."""
    ops = ("MatMul", "Gemm") if dynamic else LINEAR_OPS
    return [n for n in model.graph if n.op_type in ops and n.domain in ("", "ai.onnx") and len(n.inputs) > 1
            and n.inputs[1] is not None and n.inputs[1].const_value is not None]


def drop_zero_bias_zero_points(model: ir.Model) -> int:
    """Removes the all-zero int32 zero points of the biases' DequantizeLinear nodes; returns how many.

    ONNX Runtime's quantizer writes one per bias, as large as the bias itself, although an int32
    bias is always symmetric and a missing zero point means 0. ONNX Runtime still fuses the
    convolution (QLinearConv) and dlc's compiler reads the bias the same way without it.
    """
    dropped = []
    for node in model.graph:
        if node.op_type != "DequantizeLinear" or len(node.inputs) != 3 or node.inputs[2] is None:
            continue
        data, zero = node.inputs[0].const_value, node.inputs[2]
        if data is None or data.dtype != ir.DataType.INT32 or zero.const_value is None \
                or zero.const_value.numpy().any():
            continue
        node.resize_inputs(2)
        dropped.append(zero)
    for zero in dropped:
        if zero.is_initializer() and not zero.uses() and not zero.is_graph_output() and not zero.is_graph_input():
            model.graph.initializers.pop(zero.name, None)  # one may have served two nodes
    return len(dropped)


def _through_onnxruntime(model: ir.Model, exclude, quantize) -> PassResult:
    """`model` replaced by what `quantize(model_proto, out_path)` (an onnxruntime.quantization call) writes."""
    before = _weight_bytes(model)
    with quiet(""), tempfile.TemporaryDirectory(prefix="dlc-quantize-") as tmp:  # its advice goes to the root logger
        out = Path(tmp) / "model.int8.onnx"
        quantize(ir.serde.serialize_model(model), out)
        replace_contents(model, ir.load(out))
    return PassResult(model, True, _stats(model, before, exclude))


def _stats(model: ir.Model, weight_bytes_before: int, exclude) -> dict[str, int]:
    return {**_quantized(model), "weight_bytes_before": weight_bytes_before, "weight_bytes_after": _weight_bytes(model),
            "layers_kept_float": len(exclude)}


def _quantized(model: ir.Model) -> dict[str, int]:
    """What the quantizer left: QDQ pairs and integer ops, by op type."""
    counts: dict[str, int] = {}
    for node in model.graph:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
                            "ConvInteger"):
            key = {"QuantizeLinear": "quantize_nodes", "DequantizeLinear": "dequantize_nodes"}.get(
                node.op_type, node.op_type)
            counts[key] = counts.get(key, 0) + 1
    return counts


def _weight_bytes(model: ir.Model) -> int:
    return sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over a list of input feeds."""

    def __init__(self, samples: Sequence[dict[str, np.ndarray]]):
        self.samples, self.position = samples, 0  # indexed one by one: a caller's sequence may count them

    def get_next(self):
        if self.position >= len(self.samples):
            return None
        self.position += 1
        return self.samples[self.position - 1]

    def rewind(self):
        self.position = 0

    def __len__(self):
        return len(self.samples)
