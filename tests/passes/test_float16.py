"""to-float16: weights halve, numerics stay within float16's tolerance, float32 I/O by option."""

from __future__ import annotations

import onnx

from dlc.passes.float16 import ToFloat16Pass
from tests.passes.helpers import apply, parse, weights

MODEL = '<ir_version: 9, opset_import: ["" : 18]>' + """
    g (float[2,16] x) => (float[2,8] y) { h = Gemm<transB = 1>(x, w1, b1)  r = Relu(h)  y = Gemm<transB = 1>(r, w2, b2) }"""


def _model():
    return parse(MODEL, w1=weights(32, 16) * 0.25, b1=weights(32, seed=1), w2=weights(8, 32, seed=2) * 0.25,
                 b2=weights(8, seed=3))


def _elem_type(value) -> int:
    return value.type.tensor_type.elem_type


def test_to_float16_halves_the_weights_and_keeps_float32_io():
    out, result = apply(ToFloat16Pass(), _model(), atol=2e-2, rtol=1e-2)
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in out.graph.initializer)
    assert _elem_type(out.graph.input[0]) == _elem_type(out.graph.output[0]) == onnx.TensorProto.FLOAT
    assert result.stats["initializers_converted"] == 4 and result.stats["casts_inserted"] == 2
    assert result.stats["weight_bytes_after"] * 2 == result.stats["weight_bytes_before"]


def test_to_float16_with_float16_io():
    out, result = apply(ToFloat16Pass(keep_io_types=False), _model(), atol=2e-2, rtol=1e-2)
    assert _elem_type(out.graph.input[0]) == _elem_type(out.graph.output[0]) == onnx.TensorProto.FLOAT16
    assert result.stats["casts_inserted"] == 0 and not result.stats["float32_io"]
