"""Rewrite rules dlc adds where onnxscript has none; each module states its algebra."""

from __future__ import annotations

from onnxscript.rewriter import MatchResult

from dlc.passes.infra import onnx_opset


def opset_failure(context, needed: int, op_type: str) -> MatchResult | None:
    """A failed match when the model's opset predates `op_type` (a rule must not emit it), else None."""
    opset = onnx_opset(context.model)
    if opset < needed:
        return MatchResult().fail(f"{op_type} needs opset {needed}; the model imports opset {opset} "
                                  f"(convert with --opset {needed})")
    return None
