"""Decomposed LayerNormalization replaced by ONNX's LayerNormalization op (opset 17).

onnxscript's rule recognizes the last-axis decomposition
    Y = scale · (X − mean(X)) / sqrt(mean((X − mean(X))²) + ε) (+ bias)
and this module relaxes its pattern (ReduceMean's keepdims may be left at its default) and
adds the checks it lacks: below opset 17 the fused op does not exist, and
only a constant of the scale's shape may become the op's bias (a residual Add must not).
"""

from __future__ import annotations

from onnxscript.rewriter import MatchResult, RewriteRuleSet, pattern
from onnxscript.rewriter.rules.fusion._layer_norm import (
    LayerNormBiasFusion,
    LayerNormFusion,
)

from dlc.passes.rules import opset_failure

LAYER_NORM_OPSET = 17


class LayerNormFusionAtOpset17(LayerNormFusion):
    """onnxscript's pattern without its `keepdims=1` (the default, which exporters often leave out)."""

    def reduce_mean(self, op, x, name):  # opset 18+: axes is an input
        return op.ReduceMean(x, [-1], _outputs=[name])

    def pattern(self, op, x, scale, epsilon):
        mean = self.reduce_mean(op, x, "mean")
        deviation = op.Sub(x, mean)
        squared = pattern.OrValue([op.Mul(deviation, deviation), op.Pow(deviation, 2)])
        std = op.Sqrt(op.Add(self.reduce_mean(op, squared, "variance"), epsilon))
        normalized = pattern.OrValue([op.Mul(deviation, op.Reciprocal(std)), op.Div(deviation, std)])
        return op.Mul(normalized, scale)

    def check(self, context, x, epsilon, mean, variance, **kwargs) -> MatchResult:
        for reduced in (mean, variance):
            if reduced.producer().attributes.get_int("keepdims", 1) != 1:
                return MatchResult().fail("ReduceMean drops the reduced axis (keepdims=0)", reduced)
        failure = opset_failure(context, LAYER_NORM_OPSET, "LayerNormalization")
        return failure if failure is not None else super().check(context, x, epsilon, **kwargs)


class LayerNormFusionAxesAttribute(LayerNormFusionAtOpset17):
    """The same before opset 18, where ReduceMean's axes is an attribute."""

    def reduce_mean(self, op, x, name):
        return op.ReduceMean(x, axes=[-1], _outputs=[name])


class LayerNormConstantBiasFusion(LayerNormBiasFusion):
    """Only a constant bias of the scale's shape is LayerNormalization's bias (not, say, a residual)."""

    def check(self, context, x, scale, bias, **_) -> MatchResult:
        result = MatchResult()
        if bias.const_value is None or scale.shape is None or bias.const_value.shape != scale.shape:
            return result.fail("the added value is not a constant of the scale's shape", bias)
        return result


layer_norm_rules = RewriteRuleSet([LayerNormFusionAtOpset17.rule(), LayerNormFusionAxesAttribute.rule()])
layer_norm_bias_rule = LayerNormConstantBiasFusion.rule()
