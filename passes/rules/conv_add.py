"""An Add of a per-channel constant after a Conv, merged into the Conv's bias.

Conv(X, W, b) + c, where c broadcasts along the output channels only (shape [C,1,..,1],
[1,C,1,..,1], [1] or a scalar), equals Conv(X, W, b + c') with c' = c broadcast to [C].
A Conv without a bias is the same with b = 0.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet


class FuseAddIntoConvBias(RewriteRuleClassBase):
    """Replaces ``Add(Conv(x, W[, b]), c)`` with ``Conv(x, W, b + c)`` for a per-channel constant c."""

    def pattern(self, op, x, c):
        return op.Add(op.Conv(x, _allow_other_inputs=True, _outputs=["conv_out"]), c)

    def check(self, context, x, c, conv_out, **_) -> MatchResult:
        result = MatchResult()
        conv = conv_out.producer()
        weight, bias = conv.inputs[1], conv.inputs[2] if len(conv.inputs) > 2 else None
        if c.const_value is None:
            return result.fail(f"{c.name} is not a constant", c)
        if weight.shape is None or not weight.shape.is_static():
            return result.fail("the Conv weight's shape is unknown", weight)
        if bias is not None and bias.const_value is None:
            return result.fail("the Conv bias is not a constant", bias)
        if _per_channel(c.const_value.numpy(), weight.shape[0], len(weight.shape)) is None:
            return result.fail(f"{c.name} of shape {list(c.const_value.shape)} does not broadcast "
                               f"along the output channels only", c)
        return result

    def rewrite(self, op, x, c, conv_out, **_):
        conv = conv_out.producer()
        weight = conv.inputs[1]
        channels = weight.shape[0]
        added = _per_channel(c.const_value.numpy(), channels, len(weight.shape))
        old = conv.inputs[2].const_value.numpy() if len(conv.inputs) > 2 and conv.inputs[2] else 0.0
        bias = (np.broadcast_to(old, (channels,)) + added).astype(c.const_value.numpy().dtype)
        return op.Conv(x, weight, op.initializer(ir.tensor(bias), name=f"{conv_out.name}_bias"),
                       **conv.attributes)


def _per_channel(c: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """`c` as a [channels] vector if adding it to a Conv output of `rank` is a per-channel add."""
    if c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if shape[0] != 1 or any(d != 1 for d in shape[2:]) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.reshape(-1), (channels,))


fuse_add_into_conv_bias_rules = RewriteRuleSet([FuseAddIntoConvBias.rule()], commute=True)
