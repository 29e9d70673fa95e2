"""Dropout at inference is the identity.

Dropout(x, ratio, training_mode) returns x unchanged (and an all-true mask) unless
training_mode is true; with training_mode absent or a constant false, and the mask
unused, the node is Identity(x). (onnxscript's rule matches only the pre-opset-12
attribute form.)
"""

from __future__ import annotations

from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet


class _DropoutAtInference(RewriteRuleClassBase):
    def check(self, context, x, out, **_) -> MatchResult:
        result = MatchResult()
        node = out.producer()
        training = node.inputs[2] if len(node.inputs) > 2 else None
        if training is not None and (training.const_value is None or bool(training.const_value.numpy())):
            return result.fail("training_mode is not a constant false", training)
        if len(node.outputs) > 1 and node.outputs[1].uses():
            return result.fail("the mask output is used", node.outputs[1])
        return result

    def rewrite(self, op, x, **_):
        return op.Identity(x)


class DropoutAtInference(_DropoutAtInference):
    def pattern(self, op, x):
        return op.Dropout(x, _allow_other_inputs=True, _outputs=["out"])


class DropoutWithMaskAtInference(_DropoutAtInference):
    def pattern(self, op, x):
        return op.Dropout(x, _allow_other_inputs=True, _outputs=["out", "mask"])[0]  # the mask, unused, goes


dropout_at_inference_rules = RewriteRuleSet([DropoutAtInference.rule(), DropoutWithMaskAtInference.rule()])
