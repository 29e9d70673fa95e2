"""Quantization passes: static QDQ, dynamic MatMuls, QOperator models rewritten to QDQ, Gemm → MatMul."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

from dlc.errors import DlcError
from dlc.passes import from_names
from dlc.passes.quantize import DynamicQuantizePass, QOperatorToQdqPass, StaticQuantizePass
from dlc.passes.rules.qoperator import gemm_to_matmul_rules
from tests.passes.helpers import apply, ops, parse, run

CONV_NET = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[1, 3, 8, 8] x) => (float[1, 5] y) {
    c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
    r1 = Relu (c1)
    p = GlobalAveragePool (r1)
    f = Flatten (p)
    y = Gemm <transB = 1> (f, w2, b2)
}
"""


def _conv_net() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    return parse(CONV_NET, w1=rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
                 b1=rng.normal(size=8).astype(np.float32), w2=rng.normal(size=(5, 8)).astype(np.float32),
                 b2=rng.normal(size=5).astype(np.float32))


def _samples(n: int = 16, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(n)]


def test_static_quantization_inserts_qdq_and_stays_close():
    model = _conv_net()
    result = StaticQuantizePass(_samples())(ir.serde.deserialize_model(model))
    out = ir.serde.serialize_model(result.model)
    onnx.checker.check_model(out, full_check=True)
    assert ops(out)["QuantizeLinear"] >= 2 and ops(out)["DequantizeLinear"] >= 4
    assert result.stats["weight_bytes_after"] < result.stats["weight_bytes_before"] / 2
    feed = _samples(1, seed=5)[0]
    want, got = run(model, feed)[0], run(out, feed)[0]
    assert np.abs(want - got).max() < 0.05 * np.abs(want).max()  # int8: close, not equal


def test_the_biases_zero_points_are_dropped_and_nothing_else_changes(tmp_path):
    """ONNX Runtime's quantizer writes an all-zero int32 zero point per bias; without them the model computes the
    same values, bit for bit, and ONNX Runtime still fuses its integer kernels."""
    import onnxruntime as ort

    from dlc.passes.quantize import drop_zero_bias_zero_points

    onnx.save(_conv_net(), tmp_path / "f.onnx")
    samples = iter(_samples())

    class Reader:
        def get_next(self):
            return next(samples, None)

    quantize_static(tmp_path / "f.onnx", tmp_path / "q.onnx", Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    written = onnx.load(tmp_path / "q.onnx")
    model = ir.serde.deserialize_model(written)
    assert drop_zero_bias_zero_points(model) == 2  # the Conv's bias and the Gemm's
    out = ir.serde.serialize_model(model)
    onnx.checker.check_model(out, full_check=True)
    assert len(out.graph.initializer) == len(written.graph.initializer) - 2
    assert not [i for i in out.graph.initializer if i.data_type == onnx.TensorProto.INT32 and "zero_point" in i.name]
    feed = _samples(1, seed=7)[0]
    np.testing.assert_array_equal(run(written, feed)[0], run(out, feed)[0])
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "fused.onnx")
    ort.InferenceSession(out.SerializeToString(), options, providers=["CPUExecutionProvider"])  # writes it
    assert {"QLinearConv", "QGemm"} <= set(ops(onnx.load(tmp_path / "fused.onnx")))
    assert drop_zero_bias_zero_points(ir.serde.deserialize_model(out)) == 0  # nothing left to drop


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_every_calibration_method_runs(method):
    result = StaticQuantizePass(_samples(), method=method)(ir.serde.deserialize_model(_conv_net()))
    assert result.modified and result.stats["quantize_nodes"] >= 2


def test_a_kept_layer_stays_float():
    model = _conv_net()
    gemm = next(n.name for n in model.graph.node if n.op_type == "Gemm")
    out = ir.serde.serialize_model(StaticQuantizePass(_samples(), exclude=[gemm])(
        ir.serde.deserialize_model(model)).model)
    gemm_node = next(n for n in out.graph.node if n.op_type == "Gemm")
    weights = {i.name: i for i in out.graph.initializer}
    assert weights[gemm_node.input[1]].data_type == onnx.TensorProto.FLOAT  # its weight was not quantized


def test_static_quantization_needs_samples_when_named_in_a_pass_list():
    with pytest.raises(DlcError, match="calibration samples"):
        from_names(["quantize-static"])


def test_dynamic_quantization_makes_gemms_integer_matmuls():
    model = _conv_net()
    result = DynamicQuantizePass()(ir.serde.deserialize_model(model))
    out = ir.serde.serialize_model(result.model)
    onnx.checker.check_model(out, full_check=True)
    assert ops(out)["MatMulInteger"] == 1 and "Gemm" not in ops(out)
    feed = _samples(1, seed=3)[0]
    np.testing.assert_allclose(run(out, feed)[0], run(model, feed)[0], atol=0.05)


def test_gemm_becomes_matmul_and_add_exactly():
    model = _conv_net()
    ir_model = ir.serde.deserialize_model(model)
    assert gemm_to_matmul_rules.apply_to_model(ir_model) == 1
    out = ir.serde.serialize_model(ir_model)
    assert ops(out)["MatMul"] == 1 and ops(out)["Transpose"] == 1 and "Gemm" not in ops(out)
    feed = _samples(1)[0]
    np.testing.assert_allclose(run(out, feed)[0], run(model, feed)[0], rtol=1e-5, atol=1e-5)


def test_qoperator_model_from_onnxruntime_becomes_qdq(tmp_path):
    """QLinearConv, QGemm (com.microsoft), QLinearGlobalAveragePool → QDQ; outputs within a rounding step."""
    onnx.save(_conv_net(), tmp_path / "f.onnx")

    class Reader:
        def __init__(self):
            self.it = iter(_samples())

        def get_next(self):
            return next(self.it, None)

    # reduce_range (7-bit weights): the reference is ONNX Runtime's own QLinearConv, whose u8s8 kernel saturates
    # int16 sums on x86 CPUs without VNNI (0.31 off on an AVX2 EPYC); with 7-bit weights it is exact everywhere
    quantize_static(tmp_path / "f.onnx", tmp_path / "q.onnx", Reader(), quant_format=QuantFormat.QOperator,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    reduce_range=True)
    qop = onnx.load(tmp_path / "q.onnx")
    assert {"QLinearConv", "QGemm"} <= set(ops(qop))
    out, result = apply(QOperatorToQdqPass(), qop, atol=0.15, rtol=0)  # one output step is ~0.1 here
    assert not {"QLinearConv", "QGemm", "QLinearGlobalAveragePool"} & set(ops(out))
    assert result.stats.get("QLinearConv") == 1 and result.stats.get("QGemm") == 1


def test_conv_integer_becomes_float_conv_of_shifted_integers():
    rng = np.random.default_rng(0)
    model = parse("""
        <ir_version: 8, opset_import: ["" : 17]>
        net (uint8[1, 2, 5, 5] x) => (int32[1, 4, 3, 3] y) {
            y = ConvInteger (x, w, zx, zw)
        }""", w=rng.integers(-128, 127, (4, 2, 3, 3), dtype=np.int8), zx=np.array(7, np.uint8),
                  zw=np.array(0, np.int8))
    feed = {"x": rng.integers(0, 255, (1, 2, 5, 5), dtype=np.uint8)}
    want = run(model, feed)[0]
    out = ir.serde.serialize_model(QOperatorToQdqPass()(ir.serde.deserialize_model(model)).model)
    assert "ConvInteger" not in ops(out)
    np.testing.assert_array_equal(run(out, feed)[0], want)
