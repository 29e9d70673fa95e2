"""Quantized operators (QOperator format) as QDQ, and Gemm as MatMul for dynamic quantization.

int8 models made by other tools hold QLinearConv, QLinearMatMul, QGemm, QLinearAdd and the
like, which TVM's importer does not take. Each is the float op between dequantized inputs
and a quantized output, so it is rewritten to exactly that, with x̂ = s·(q − z):

    QLinearConv(x, sx, zx, w, sw, zw, sy, zy, B)  = Q(Conv(x̂, ŵ, B̂), sy, zy)   B̂ = (sx·sw)·B
    QLinearMatMul(a, sa, za, b, sb, zb, sy, zy)    = Q(MatMul(â, b̂), sy, zy)
    QGemm(a, sa, za, b, sb, zb, C, sy, zy)         = Q(Gemm(â, b̂, Ĉ), sy, zy)     Ĉ = (α·sa·sb)·C; no Q without sy
    QLinearAdd / QLinearMul(a, sa, za, b, sb, zb, sy, zy) = Q(Add/Mul(â, b̂), sy, zy)
    QLinearGlobalAveragePool / QLinearAveragePool(x, sx, zx, sy, zy) = Q(pool(x̂), sy, zy)
    ConvInteger(x, w, zx, zw)                     = Cast⟨int32⟩(Conv(x − zx, w − zw))  (exact below 2^24)

dlc's compiler then turns the QDQ form into integer kernels again. MatMulInteger imports
into TVM as it is and is left alone.

    Gemm(A, B, C) (alpha = beta = 1, A not transposed, B constant) = MatMul(A, B′) + C,
    B′ = Bᵀ when transB (a Transpose for constant folding to fold): ONNX Runtime's dynamic
    quantizer quantizes MatMul, not Gemm.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet

MS = "com.microsoft"


def _dq(op, q, scale, zero, axis: int = 1):
    return op.DequantizeLinear(q, scale, zero, axis=axis)


def _scaled_bias(op, bias, scale_a, scale_b, name: str, alpha: float = 1.0):
    """An int32 bias quantized with scale alpha·sa·sb, dequantized (both scales must be constants)."""
    scale = alpha * scale_a.const_value.numpy().astype(np.float32) * scale_b.const_value.numpy().astype(np.float32)
    scale = scale.astype(np.float32)
    scale_value = op.initializer(ir.tensor(scale.reshape(-1) if scale.size > 1 else scale.reshape(())),
                                 name=f"{name}_bias_scale")
    zero = op.initializer(ir.tensor(np.zeros(scale.shape if scale.size > 1 else (), np.int32)),
                          name=f"{name}_bias_zero")
    return op.DequantizeLinear(bias, scale_value, zero, axis=0)


def _constant(*values) -> str | None:
    for v in values:
        if v is not None and v.const_value is None:
            return f"{v.name} is not a constant"
    return None


class QLinearConvToQdq(RewriteRuleClassBase):
    def pattern(self, op, x, sx, zx, w, sw, zw, sy, zy):
        return op.QLinearConv(x, sx, zx, w, sw, zw, sy, zy, _allow_other_inputs=True, _outputs=["y"])

    def check(self, context, sx, sw, y, **_) -> MatchResult:
        node = y.producer()
        bias = node.inputs[8] if len(node.inputs) > 8 else None
        reason = _constant(sx, sw) if bias is not None else None
        return MatchResult().fail(reason) if reason else MatchResult()

    def rewrite(self, op, x, sx, zx, w, sw, zw, sy, zy, y):
        node = y.producer()
        inputs = [_dq(op, x, sx, zx), _dq(op, w, sw, zw, axis=0)]
        if len(node.inputs) > 8 and node.inputs[8] is not None:
            inputs.append(_scaled_bias(op, node.inputs[8], sx, sw, y.name))
        return op.QuantizeLinear(op.Conv(*inputs, **node.attributes), sy, zy)


class QLinearMatMulToQdq(RewriteRuleClassBase):
    def pattern(self, op, a, sa, za, b, sb, zb, sy, zy):
        return op.QLinearMatMul(a, sa, za, b, sb, zb, sy, zy)

    def rewrite(self, op, a, sa, za, b, sb, zb, sy, zy):
        return op.QuantizeLinear(op.MatMul(_dq(op, a, sa, za), _dq(op, b, sb, zb, axis=1)), sy, zy)


class QGemmToQdq(RewriteRuleClassBase):
    def pattern(self, op, a, sa, za, b, sb, zb):
        return op.QGemm(a, sa, za, b, sb, zb, _allow_other_inputs=True, _domain=MS, _outputs=["y"])

    def check(self, context, sa, sb, y, **_) -> MatchResult:
        node = y.producer()
        bias = node.inputs[6] if len(node.inputs) > 6 else None
        if node.attributes.get_int("transA", 0):
            return MatchResult().fail("QGemm with transA")
        reason = _constant(sa, sb) if bias is not None else None
        return MatchResult().fail(reason) if reason else MatchResult()

    def rewrite(self, op, a, sa, za, b, sb, zb, y):
        node = y.producer()
        trans_b, alpha = node.attributes.get_int("transB", 0), node.attributes.get_float("alpha", 1.0)
        inputs = [_dq(op, a, sa, za), _dq(op, b, sb, zb, axis=0 if trans_b else 1)]
        if len(node.inputs) > 6 and node.inputs[6] is not None:
            inputs.append(_scaled_bias(op, node.inputs[6], sa, sb, y.name, alpha))
        gemm = op.Gemm(*inputs, alpha=alpha, transB=trans_b)
        if len(node.inputs) > 7 and node.inputs[7] is not None:  # y_scale: a quantized output (zero point optional)
            zero = node.inputs[8] if len(node.inputs) > 8 and node.inputs[8] is not None else None
            return op.QuantizeLinear(gemm, node.inputs[7], zero) if zero is not None else \
                op.QuantizeLinear(gemm, node.inputs[7])
        return gemm


class QLinearBinaryToQdq(RewriteRuleClassBase):
    def __init__(self, quantized: str, float_op: str):
        super().__init__(f"{quantized}ToQdq")
        self.quantized, self.float_op = quantized, float_op

    def pattern(self, op, a, sa, za, b, sb, zb, sy, zy):
        return getattr(op, self.quantized)(a, sa, za, b, sb, zb, sy, zy, _domain=MS)

    def rewrite(self, op, a, sa, za, b, sb, zb, sy, zy):
        return op.QuantizeLinear(getattr(op, self.float_op)(_dq(op, a, sa, za), _dq(op, b, sb, zb)), sy, zy)


class QLinearPoolToQdq(RewriteRuleClassBase):
    def __init__(self, quantized: str, float_op: str):
        super().__init__(f"{quantized}ToQdq")
        self.quantized, self.float_op = quantized, float_op

    def pattern(self, op, x, sx, zx, sy, zy):
        return getattr(op, self.quantized)(x, sx, zx, sy, zy, _domain=MS, _outputs=["y"])

    def check(self, context, y, **_) -> MatchResult:
        if y.producer().attributes.get_int("channels_last", 0):
            return MatchResult().fail("channels_last pooling")
        return MatchResult()

    def rewrite(self, op, x, sx, zx, sy, zy, y):
        attributes = {k: v for k, v in y.producer().attributes.items() if k != "channels_last"}
        return op.QuantizeLinear(getattr(op, self.float_op)(_dq(op, x, sx, zx), **attributes), sy, zy)


class ConvIntegerToFloat(RewriteRuleClassBase):
    def pattern(self, op, x, w):
        return op.ConvInteger(x, w, _allow_other_inputs=True, _outputs=["y"])

    def rewrite(self, op, x, w, y):
        node = y.producer()
        one = op.initializer(ir.tensor(np.array(1.0, np.float32)), name=f"{y.name}_unit_scale")
        zeros = [node.inputs[i] if len(node.inputs) > i and node.inputs[i] is not None else None for i in (2, 3)]
        xf = op.DequantizeLinear(x, one, zeros[0]) if zeros[0] is not None else op.DequantizeLinear(x, one)
        wf = op.DequantizeLinear(w, one, zeros[1], axis=0) if zeros[1] is not None else op.DequantizeLinear(w, one)
        return op.Cast(op.Conv(xf, wf, **node.attributes), to=ir.DataType.INT32)


class GemmToMatMul(RewriteRuleClassBase):
    def pattern(self, op, a, b):
        return op.Gemm(a, b, _allow_other_inputs=True, _outputs=["y"])

    def check(self, context, a, b, y, **_) -> MatchResult:
        attributes = y.producer().attributes
        if attributes.get_int("transA", 0) or attributes.get_float("alpha", 1.0) != 1.0 or \
                attributes.get_float("beta", 1.0) != 1.0:
            return MatchResult().fail("Gemm with transA, alpha or beta")
        if b.const_value is None:
            return MatchResult().fail(f"{b.name} is not a constant")
        return MatchResult()

    def rewrite(self, op, a, b, y):
        node = y.producer()
        # a Transpose of the constant (folded afterwards, once per weight however many Gemms share it)
        product = op.MatMul(a, op.Transpose(b, perm=[1, 0]) if node.attributes.get_int("transB", 0) else b)
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            return op.Add(product, node.inputs[2])
        return product


qoperator_to_qdq_rules = {
    "QLinearConv": RewriteRuleSet([QLinearConvToQdq.rule()]),
    "QLinearMatMul": RewriteRuleSet([QLinearMatMulToQdq.rule()]),
    "QGemm": RewriteRuleSet([QGemmToQdq.rule()]),
    "QLinearAdd": RewriteRuleSet([QLinearBinaryToQdq.rule("QLinearAdd", "Add")]),
    "QLinearMul": RewriteRuleSet([QLinearBinaryToQdq.rule("QLinearMul", "Mul")]),
    "QLinearGlobalAveragePool": RewriteRuleSet([QLinearPoolToQdq.rule("QLinearGlobalAveragePool",
                                                                      "GlobalAveragePool")]),
    "QLinearAveragePool": RewriteRuleSet([QLinearPoolToQdq.rule("QLinearAveragePool", "AveragePool")]),
    "ConvInteger": RewriteRuleSet([ConvIntegerToFloat.rule()]),
}
gemm_to_matmul_rules = RewriteRuleSet([GemmToMatMul.rule()])
# (domain, op) of everything the rules above rewrite: what `dlc compile` turns to QDQ before TVM's importer
QOPERATOR_OPS = (("", "QLinearConv"), ("", "QLinearMatMul"), ("", "ConvInteger"), (MS, "QGemm"), (MS, "QLinearAdd"),
                 (MS, "QLinearMul"), (MS, "QLinearGlobalAveragePool"), (MS, "QLinearAveragePool"))
