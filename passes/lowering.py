"""Lowering passes: ops a backend lacks rewritten into ops it has, verified like every pass.

TVM's ONNX importer has no LSTM or GRU; `lower-recurrent` unrolls them (see
`dlc.passes.rules.recurrent`). Nor does it take quantized operators (QLinearConv, QGemm…);
`qoperator-to-qdq` (dlc.passes.quantize) rewrites them to QDQ. `dlc compile` runs each
by itself when a model needs it: `LOWERINGS` says which pass takes which op.
"""

from __future__ import annotations

import onnx_ir as ir

from dlc.passes.cleanup import InferShapesPass
from dlc.passes.infra import PassResult, RewritePass, register
from dlc.passes.rules.qoperator import QOPERATOR_OPS
from dlc.passes.rules.recurrent import LOWERED_OPS, lower_gru_rules, lower_lstm_rules

__all__ = ["LOWERINGS", "LowerRecurrentPass"]

# (domain, op type) → the pass that rewrites it into ops TVM imports
LOWERINGS = {**{("", op): "lower-recurrent" for op in LOWERED_OPS}, **dict.fromkeys(QOPERATOR_OPS, "qoperator-to-qdq")}


@register
class LowerRecurrentPass(RewritePass):
    name = "lower-recurrent"
    summary = "unroll ONNX LSTM and GRU (static sequence length) into MatMul/Sigmoid/Tanh steps TVM can import"
    rules = {"lstm": lower_lstm_rules, "gru": lower_gru_rules}

    def call(self, model: ir.Model) -> PassResult:
        InferShapesPass()(model)  # the checks need the static sequence length
        return super().call(model)
