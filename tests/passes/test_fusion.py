"""One test per fusion pass on a tiny model: which rule fired, checker, outputs equal on ONNX Runtime."""

from __future__ import annotations

import math

import numpy as np

from dlc.passes.fusion import (
    EliminateTransposeReshapePass,
    FuseActivationChainsPass,
    FuseConvAddPass,
    FuseConvBatchNormPass,
    FuseGeluPass,
    FuseLayerNormPass,
    FuseMatMulAddPass,
    FusePadConvPass,
)
from tests.passes.helpers import apply, bn_params, ops, parse, weights

OPSET18 = '<ir_version: 9, opset_import: ["" : 18]>'
OPSET20 = '<ir_version: 10, opset_import: ["" : 20]>'
BN = "BatchNormalization<epsilon = 0.001>({}, gamma, beta, mean, var)"


def test_fuse_conv_bn_folds_conv_convtranspose_gemm_and_matmul():
    model = parse(OPSET18 + f"""
        g (float[2,3,6,6] x, float[2,5] v) => (float[2,4,6,6] a, float[2,4,7,7] b, float[2,4] c, float[2,4] d) {{
            c1 = Conv<pads = [1, 1, 1, 1]>(x, w_conv)  a = {BN.format("c1")}
            t1 = ConvTranspose(x, w_convt)  b = {BN.format("t1")}
            g1 = Gemm<transB = 1>(v, w_gemm, bias_gemm)  c = {BN.format("g1")}
            m1 = MatMul(v, w_mm)  d = {BN.format("m1")}
        }}""", w_conv=weights(4, 3, 3, 3), w_convt=weights(3, 4, 2, 2, seed=1), w_gemm=weights(4, 5, seed=2),
        bias_gemm=weights(4, seed=3), w_mm=weights(5, 4, seed=4), **bn_params(4))
    out, result = apply(FuseConvBatchNormPass(), model, atol=1e-4, rtol=1e-4)
    assert result.stats == {"conv-bn": 1, "convtranspose-bn": 1, "gemm-bn": 1, "matmul-bn": 1}
    assert "BatchNormalization" not in ops(out)
    assert {i.name for i in out.graph.initializer}.isdisjoint({"gamma", "beta", "mean", "var"})


def test_fuse_conv_bn_leaves_a_batchnorm_whose_statistics_are_inputs():
    model = parse(OPSET18 + """
        g (float[2,3,4,4] x, float[3] mean) => (float[2,3,4,4] y) {
            c = Conv(x, w)  y = BatchNormalization(c, gamma, beta, mean, var) }""",
                  w=weights(3, 3, 1, 1), **{k: v for k, v in bn_params(3).items() if k != "mean"})
    out, result = apply(FuseConvBatchNormPass(), model)
    assert not result.modified and ops(out)["BatchNormalization"] == 1


def test_fuse_conv_add_merges_a_per_channel_constant_into_the_bias():
    model = parse(OPSET18 + """
        g (float[2,3,5,5] x) => (float[2,4,5,5] y, float[2,4,5,5] z) {
            c = Conv(x, w)  y = Add(c, per_channel)
            d = Conv(x, w2, b2)  z = Add(per_pixel, d) }""",
                  w=weights(4, 3, 1, 1), per_channel=weights(1, 4, 1, 1, seed=1), w2=weights(4, 3, 1, 1, seed=2),
                  b2=weights(4, seed=3), per_pixel=weights(1, 1, 5, 5, seed=4))
    out, result = apply(FuseConvAddPass(), model)
    assert result.stats == {"conv-add": 1}  # the [1,1,5,5] constant varies per pixel: not a bias
    assert ops(out) == {"Conv": 2, "Add": 1}


def test_fuse_matmul_add_makes_a_gemm():
    model = parse(OPSET18 + """
        g (float[2,5] x) => (float[2,3] y) { m = MatMul(x, w)  y = Add(m, b) }""",
                  w=weights(5, 3), b=weights(3, seed=1))
    out, result = apply(FuseMatMulAddPass(), model)
    assert result.stats == {"matmul-add": 1} and ops(out) == {"Gemm": 1}


def test_eliminate_transpose_reshape_drops_inverse_and_identity_reshapes():
    model = parse(OPSET18 + """
        g (float[2,3,4] x) => (float[4,6] y) {
            t1 = Transpose<perm = [2, 0, 1]>(x)  t2 = Transpose<perm = [1, 2, 0]>(t1)
            same = Constant<value = int64[3] {2, 3, 4}>()  r1 = Reshape(t2, same)
            flat = Constant<value = int64[2] {6, 4}>()  r2 = Reshape(r1, flat)
            final = Constant<value = int64[2] {4, 6}>()  y = Reshape(r2, final) }""")
    from dlc.passes.cleanup import InferShapesPass, RemoveIdentityPass

    shaped, _ = apply(InferShapesPass(), model)
    out, result = apply(EliminateTransposeReshapePass(), shaped)
    assert result.stats == {"transpose-transpose": 1, "reshape-reshape": 2}
    out, _ = apply(RemoveIdentityPass(), out)
    assert ops(out) == {"Reshape": 1, "Constant": 1} or ops(out) == {"Reshape": 1}


def _decomposed_layernorm(opset_header: str):
    return parse(opset_header + """
        g (float[2,3,8] x) => (float[2,3,8] y) {
            axes = Constant<value = int64[1] {-1}>()
            mean = ReduceMean(x, axes)  d = Sub(x, mean)  two = Constant<value = float {2.0}>()
            sq = Pow(d, two)  var = ReduceMean(sq, axes)  eps = Constant<value = float {1e-5}>()
            ve = Add(var, eps)  std = Sqrt(ve)  n = Div(d, std)  s = Mul(n, scale)  y = Add(s, bias) }""",
                 scale=weights(8), bias=weights(8, seed=1))


def test_fuse_layernorm_recognizes_the_decomposition():
    out, result = apply(FuseLayerNormPass(), _decomposed_layernorm(OPSET18))
    assert result.stats == {"layernorm": 1, "layernorm-bias": 1}
    assert ops(out) == {"LayerNormalization": 1}


def _attribute_axes_layernorm(opset: int):
    return parse(f'<ir_version: 8, opset_import: ["" : {opset}]>' + """
        g (float[2,8] x) => (float[2,8] y) {
            mean = ReduceMean<axes = [-1]>(x)  d = Sub(x, mean)  sq = Mul(d, d)  var = ReduceMean<axes = [-1]>(sq)
            eps = Constant<value = float {1e-5}>()  ve = Add(var, eps)  std = Sqrt(ve)  n = Div(d, std)
            y = Mul(n, scale) }""", scale=weights(8))


def test_fuse_layernorm_takes_opset_17_reduce_mean_and_needs_opset_17():
    out, result = apply(FuseLayerNormPass(), _attribute_axes_layernorm(17))
    assert result.stats == {"layernorm": 1} and ops(out) == {"LayerNormalization": 1}
    out, result = apply(FuseLayerNormPass(), _attribute_axes_layernorm(16))
    assert not result.modified and "LayerNormalization" not in ops(out)


def _gelu(header: str, approximate: bool):
    if approximate:
        body = """c3 = Constant<value = float {3.0}>()  p = Pow(x, c3)  k = Constant<value = float {0.044715}>()
            kp = Mul(k, p)  s = Add(x, kp)  r = Constant<value = float {%r}>()  rs = Mul(r, s)  f = Tanh(rs)""" % (
            math.sqrt(2 / math.pi))
    else:
        body = """r = Constant<value = float {%r}>()  q = Div(x, r)  f = Erf(q)""" % math.sqrt(2)
    return parse(header + """
        g (float[2,16] x) => (float[2,16] y) {
            %s  one = Constant<value = float {1.0}>()  a = Add(f, one)  h = Constant<value = float {0.5}>()
            m = Mul(h, a)  y = Mul(x, m) }""" % body)


def test_fuse_gelu_recognizes_the_erf_and_tanh_forms():
    for approximate, attr in ((False, "none"), (True, "tanh")):
        out, result = apply(FuseGeluPass(), _gelu(OPSET20, approximate), atol=1e-4)
        assert result.stats == {"gelu": 1} and ops(out) == {"Gelu": 1}
        assert [a.s.decode() for a in out.graph.node[0].attribute if a.name == "approximate"] in ([attr], [])


def test_fuse_gelu_leaves_models_below_opset_20_alone():
    out, result = apply(FuseGeluPass(), _gelu(OPSET18, approximate=False))
    assert not result.modified and "Gelu" not in ops(out) and ops(out)["Erf"] == 1


def test_fuse_pad_conv_merges_a_zero_pad():
    model = parse(OPSET18 + """
        g (float[2,3,5,5] x) => (float[2,4,7,7] y) {
            pads = Constant<value = int64[8] {0, 0, 1, 1, 0, 0, 1, 1}>()  p = Pad(x, pads)  y = Conv(p, w) }""",
                  w=weights(4, 3, 1, 1))
    out, result = apply(FusePadConvPass(), model)
    assert result.stats.get("pad-conv") == 1 and "Pad" not in ops(out)


def test_fuse_activation_chains_collapses_relu_relu():
    model = parse(OPSET18 + """
        g (float[2,3] x) => (float[2,3] y) { a = Relu(x)  y = Relu(a) }""")
    out, result = apply(FuseActivationChainsPass(), model)
    assert result.stats == {"relu-relu": 1} and ops(out) == {"Relu": 1}
    np.testing.assert_equal(len(out.graph.node), 1)
