"""BatchNormalization folded into the MatMul before it (onnxscript folds Conv, ConvTranspose, Gemm).

For Y = X·W with X of rank 2, BN normalizes Y's columns (channel axis 1):

    BN(Y) = (Y − μ)·s + β,   s = γ / sqrt(σ² + ε)
          = X·(W·diag(s)) + (β − μ·s)

so the pair is Gemm(X, W', b') with W' = W * s[None, :] and b' = β − μ * s.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase


class FuseBatchNormIntoMatMul(RewriteRuleClassBase):
    """Replaces ``BatchNormalization(MatMul(x, W))`` with ``Gemm(x, W', b')`` for rank-2 x."""

    def pattern(self, op, x, w, gamma, beta, mean, var):
        return op.BatchNormalization(op.MatMul(x, w), gamma, beta, mean, var, _outputs=["bn_out"])

    def check(self, context, x, w, gamma, beta, mean, var, bn_out, **_) -> MatchResult:
        result = MatchResult()
        for value in (w, gamma, beta, mean, var):
            if value.const_value is None:
                return result.fail(f"{value.name} is not a constant", value)
        if x.shape is None or len(x.shape) != 2:
            return result.fail("the MatMul input is not known to be rank 2 (run infer-shapes first)", x)
        if len(w.const_value.shape) != 2:
            return result.fail("the MatMul weight is not a matrix", w)
        if bn_out.producer().attributes.get_int("training_mode", 0):
            return result.fail("BatchNormalization runs in training mode", bn_out)
        return result

    def rewrite(self, op, x, w, gamma, beta, mean, var, bn_out, **_):
        eps = bn_out.producer().attributes.get_float("epsilon", 1e-5)
        weight = w.const_value.numpy()
        gamma, beta, mean, var = (v.const_value.numpy().astype(np.float64) for v in (gamma, beta, mean, var))
        scale = gamma / np.sqrt(var + eps)
        fused_w = (weight * scale[None, :]).astype(weight.dtype)
        fused_b = (beta - mean * scale).astype(weight.dtype)
        return op.Gemm(x, op.initializer(ir.tensor(fused_w), name=f"{bn_out.name}_weight"),
                       op.initializer(ir.tensor(fused_b), name=f"{bn_out.name}_bias"))


fuse_batchnorm_into_matmul_rule = FuseBatchNormIntoMatMul.rule()
