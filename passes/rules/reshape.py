"""A Reshape to the shape its input already has is an Identity.

Reshape(X, s) with X's shape static and s constant resolves s (0 copies X's dimension,
−1 takes what is left); when the result equals X's shape the node computes nothing.
"""

from __future__ import annotations

import numpy as np
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase


class ReshapeToSameShape(RewriteRuleClassBase):
    """Replaces ``Reshape(x, shape)`` with ``Identity(x)`` when shape resolves to x's own shape."""

    def pattern(self, op, x, shape):
        return op.Reshape(x, shape, _outputs=["out"])

    def check(self, context, x, shape, out, **_) -> MatchResult:
        result = MatchResult()
        if x.shape is None or not x.shape.is_static():
            return result.fail("the input shape is not static (run infer-shapes first)", x)
        if shape.const_value is None:
            return result.fail("the target shape is not a constant", shape)
        allowzero = out.producer().attributes.get_int("allowzero", 0)
        if _resolve(list(x.shape), shape.const_value.numpy().tolist(), allowzero) != list(x.shape):
            return result.fail("the target shape differs from the input's", shape)
        return result

    def rewrite(self, op, x, shape, **_):
        return op.Identity(x)


def _resolve(input_shape: list[int], target: list[int], allowzero: int) -> list[int] | None:
    dims = [input_shape[i] if d == 0 and not allowzero and i < len(input_shape) else d for i, d in enumerate(target)]
    if dims.count(-1) == 1:
        known = int(np.prod([d for d in dims if d != -1]))
        if known == 0:
            return None
        dims[dims.index(-1)] = int(np.prod(input_shape)) // known
    return dims


reshape_to_same_shape_rule = ReshapeToSameShape.rule()
