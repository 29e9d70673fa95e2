"""One test per cleanup pass on a tiny model: stats, checker, outputs equal on ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import onnx_ir as ir
import pytest

from dlc.errors import InvalidModelError
from dlc.passes.cleanup import (
    ConvertOpsetPass,
    DeduplicateInitializersPass,
    EliminateCommonSubexpressionsPass,
    EliminateDeadCodePass,
    FoldConstantsPass,
    InferShapesPass,
    RemoveIdentityPass,
    RemoveNoOpsPass,
)
from tests.passes.helpers import apply, ops, parse, weights

HEADER = '<ir_version: 9, opset_import: ["" : 18]>'


def test_infer_shapes_types_every_intermediate_value():
    model = parse(HEADER + """
        g (float[2,3] x) => (float[2,3] y) { a = Relu(x)  b = Sigmoid(a)  y = Add(a, b) }""")
    out, result = apply(InferShapesPass(), model)
    assert result.stats["newly_shaped"] == 2 and result.stats["unknown_shapes"] == 0
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in out.graph.value_info}
    assert shapes == {"a": [2, 3], "b": [2, 3]}


def test_infer_shapes_names_the_node_and_tensor_it_fails_on():
    model = onnx.parser.parse_model(HEADER + """
        g (float[2,3] x, float[4] b) => (float[2,3] y) { r = Relu(x)  y = Add(r, b) }""")
    model.graph.node[1].name = "residual_add"

    with pytest.raises(InvalidModelError, match=r"node 'residual_add' \(Add\) producing tensor 'y'.*float32\[4\]"):
        InferShapesPass()(ir.serde.deserialize_model(model))


def test_fold_constants_evaluates_constant_subgraphs():
    model = parse(HEADER + """
        g (float[2,3] x) => (float[2,3] y) {
            s = Shape(x)  one = Constant<value = float {1.0}>()  e = Expand(one, s)
            two = Add(e, e)  y = Mul(x, two) }""")
    out, result = apply(FoldConstantsPass(), model)
    assert ops(out) == {"Mul": 1}
    assert result.stats["nodes_folded"] == 4 and result.modified


def test_eliminate_dead_code_drops_unused_nodes_and_initializers():
    model = parse(HEADER + """
        g (float[2,3] x) => (float[2,3] y) { unused = Sigmoid(x)  y = Relu(x) }""", stale=weights(3))
    out, result = apply(EliminateDeadCodePass(), model)
    assert ops(out) == {"Relu": 1} and not out.graph.initializer
    assert result.stats == {"nodes_removed": 1, "initializers_removed": 1}


def test_remove_identity_rewires_consumers():
    model = parse(HEADER + """
        g (float[2,3] x) => (float[2,3] y) { a = Identity(x)  b = Relu(a)  c = Identity(b)  y = Identity(c) }""")
    out, result = apply(RemoveIdentityPass(), model)
    assert ops(out) == {"Relu": 1} and result.stats == {"identities_removed": 3}


def test_remove_no_ops_turns_dropout_and_arithmetic_identities_into_identity():
    model = parse(HEADER + """
        g (float[2,3] x) => (float[2,3] y) {
            d = Dropout(x)  zero = Constant<value = float {0.0}>()  a = Add(d, zero)
            one = Constant<value = float {1.0}>()  y = Mul(a, one) }""")
    out, result = apply(RemoveNoOpsPass(), model)
    assert result.stats == {"dropout-inference": 1, "add-0": 1, "mul-1": 1}
    out, _ = apply(RemoveIdentityPass(), out)
    assert "Dropout" not in ops(out) and "Add" not in ops(out) and "Mul" not in ops(out)


def test_remove_no_ops_drops_an_all_zero_bias():
    model = parse(HEADER + """
        g (float[2,3,4,4] x) => (float[2,4,4,4] y) { y = Conv(x, w, b) }""", w=weights(4, 3, 1, 1),
                  b=np.zeros(4, np.float32))
    out, result = apply(RemoveNoOpsPass(), model)
    assert result.stats == {"conv-zero-bias": 1} and len(out.graph.node[0].input) == 2


def test_remove_no_ops_keeps_dropout_in_training_mode_and_drops_an_unused_mask():
    model = parse(HEADER + """
        g (float[2,3] x) => (float[2,3] y, float[2,3] z) {
            t = Constant<value = bool {1}>()  r = Constant<value = float {0.5}>()
            y = Dropout(x, r, t)  z, mask = Dropout(x) }""")
    out, result = apply(RemoveNoOpsPass(), model, atol=5.0)  # training mode zeroes at random (|x| < 2)
    assert result.stats == {"dropout-inference": 1} and ops(out)["Dropout"] == 1


def test_eliminate_common_subexpressions_merges_duplicates():
    model = parse(HEADER + """
        g (float[2,3] x) => (float[2,3] y) { a = Relu(x)  b = Relu(x)  y = Add(a, b) }""")
    out, result = apply(EliminateCommonSubexpressionsPass(), model)
    assert ops(out) == {"Relu": 1, "Add": 1} and result.stats == {"nodes_merged": 1}


def test_deduplicate_initializers_shares_identical_weights():
    w = weights(3, 3)
    model = parse(HEADER + """
        g (float[2,3] x) => (float[2,3] y) { a = MatMul(x, w1)  y = MatMul(a, w2) }""", w1=w, w2=w.copy())
    out, result = apply(DeduplicateInitializersPass(), model)
    assert len(out.graph.initializer) == 1 and result.stats == {"initializers_merged": 1}


def test_convert_opset_moves_the_model_to_the_requested_opset():
    model = parse(HEADER + """
        g (float[2,3] x) => (float[2,3] y) { y = Relu(x) }""")
    out, result = apply(ConvertOpsetPass(20), model)
    assert {o.domain: o.version for o in out.opset_import}[""] == 20
    assert result.stats == {"opset_before": 18, "opset": 20}
    np.testing.assert_equal(ops(out), {"Relu": 1})
