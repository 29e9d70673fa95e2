"""lower-recurrent: ONNX LSTM and GRU unrolled, equal to ONNX Runtime's own kernels on the original."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from dlc.passes.lowering import LowerRecurrentPass
from tests.passes.helpers import apply, ops

HIDDEN, FEATURES, STEPS, BATCH = 4, 3, 5, 2


def _recurrent(op_type: str, direction: str = "forward", layout: int = 0, states: bool = False,
               bias: bool = True, outputs: int = 1, **attrs) -> onnx.ModelProto:
    """One LSTM/GRU node with random weights; `outputs` of Y, Y_h, Y_c are graph outputs."""
    rng = np.random.default_rng(0)
    gates, dirs = {"LSTM": 4, "GRU": 3}[op_type], 2 if direction == "bidirectional" else 1
    x_shape = [BATCH, STEPS, FEATURES] if layout else [STEPS, BATCH, FEATURES]
    state_shape = [BATCH, dirs, HIDDEN] if layout else [dirs, BATCH, HIDDEN]
    y_shape = [BATCH, STEPS, dirs, HIDDEN] if layout else [STEPS, dirs, BATCH, HIDDEN]
    inits = {"W": rng.normal(0, 0.5, (dirs, gates * HIDDEN, FEATURES)),
             "R": rng.normal(0, 0.5, (dirs, gates * HIDDEN, HIDDEN))}
    if bias:
        inits["B"] = rng.normal(0, 0.5, (dirs, 2 * gates * HIDDEN))
    names = ["x", "W", "R", "B" if bias else "", ""]
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    if states:
        names += ["h0"] + (["c0"] if op_type == "LSTM" else [])
        graph_inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, state_shape) for n in names[5:]]
    out_names = ["Y", "Y_h", "Y_c"][:outputs]
    node = helper.make_node(op_type, names, out_names, hidden_size=HIDDEN, direction=direction, layout=layout,
                            **attrs)
    out_info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, y_shape if n == "Y" else state_shape)
                for n in out_names]
    graph = helper.make_graph([node], "rnn", graph_inputs, out_info,
                              [onnx.numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


CASES = [
    ("LSTM", dict()),
    ("LSTM", dict(direction="reverse", outputs=3)),
    ("LSTM", dict(direction="bidirectional", states=True, outputs=3)),
    ("LSTM", dict(states=True, bias=False, outputs=2)),
    ("GRU", dict(linear_before_reset=1)),
    ("GRU", dict(linear_before_reset=0, direction="bidirectional", outputs=2)),
    ("GRU", dict(linear_before_reset=1, states=True, outputs=2)),
]


@pytest.mark.parametrize("op_type, options", CASES, ids=[f"{o}-{i}" for i, (o, _) in enumerate(CASES)])
def test_lowered_recurrence_matches_onnxruntime(op_type, options):
    out, result = apply(LowerRecurrentPass(), _recurrent(op_type, **options), atol=1e-5, rtol=1e-5)
    assert result.stats == {op_type.lower(): 1}
    assert op_type not in ops(out) and {"MatMul", "Sigmoid", "Tanh"} <= set(ops(out))


def test_torch_exported_stacked_bidirectional_lstm_and_gru_lower():
    import torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    for cell in (torch.nn.LSTM, torch.nn.GRU):
        torch.manual_seed(0)
        rnn = cell(FEATURES, HIDDEN, num_layers=2, bidirectional=True, batch_first=True).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto = torch.onnx.export(rnn, (torch.randn(BATCH, STEPS, FEATURES),), dynamo=True, opset_version=18,
                                      verbose=False).model_proto
        out, result = apply(LowerRecurrentPass(), proto, atol=1e-5, rtol=1e-5)
        assert result.stats == {cell.__name__.lower(): 2} and cell.__name__ not in ops(out)


@pytest.mark.parametrize("change, reason", [
    (lambda m: m.graph.input[0].type.tensor_type.shape.dim[0].Clear(), "static"),
    (lambda m: m.graph.node[0].attribute.append(helper.make_attribute("clip", 3.0)), "clip"),
    (lambda m: m.graph.node[0].attribute.append(
        helper.make_attribute("activations", ["Relu", "Tanh", "Tanh"])), "activations"),
])
def test_what_the_lowering_cannot_express_is_left_alone(change, reason):
    model = _recurrent("LSTM")
    change(model)
    result = LowerRecurrentPass()(ir.serde.deserialize_model(model))
    assert not result.modified, reason


def test_batch_first_layout_is_left_alone():
    result = LowerRecurrentPass()(ir.serde.deserialize_model(_recurrent("GRU", layout=1)))
    assert not result.modified  # ONNX Runtime, the reference every pass is checked against, cannot run it
