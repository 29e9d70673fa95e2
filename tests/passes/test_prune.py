"""Pruning passes: channels removed through residual adds, a concat, a depthwise conv and a flatten (every shape
checked; the graph runs on ONNX Runtime and compiles with TVM), and magnitude pruning equal to zeroing by hand."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from dlc.passes.prune import ChannelPrunePass, MagnitudePrunePass
from tests.passes.helpers import parse, run


def _net():
    """A residual net: stem, a residual 3x3 conv, a residual depthwise + pointwise pair, a concat of two convs,
    a 1x1 mix, a max-pool, a flatten into two linear layers."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
            self.a = nn.Conv2d(16, 16, 3, padding=1)
            self.dw, self.pw = nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 16, 1)
            self.c1, self.c2 = nn.Conv2d(16, 8, 1), nn.Conv2d(16, 12, 3, padding=1)
            self.mix = nn.Conv2d(20, 24, 1)
            self.fc, self.out = nn.Linear(24 * 4 * 4, 32), nn.Linear(32, 5)

        def forward(self, x):
            x = self.stem(x)
            r = torch.relu(self.a(x)) + x
            d = self.pw(torch.relu(self.dw(r))) + r
            y = torch.relu(self.mix(torch.cat([self.c1(d), self.c2(d)], 1)))
            y = nn.functional.max_pool2d(y, 2)
            return self.out(torch.relu(self.fc(y.flatten(1))))

    torch.manual_seed(0)
    return Net().eval()


# Kept per layer at ratio 0.5: the stem, a, dw and pw share one group (two residual adds).
PRUNED_SHAPES = {"stem.0.weight": [8, 3, 3, 3], "a.weight": [8, 8, 3, 3], "dw.weight": [8, 1, 3, 3],
                 "pw.weight": [8, 8, 1, 1], "c1.weight": [4, 8, 1, 1], "c2.weight": [6, 8, 3, 3],
                 "mix.weight": [12, 10, 1, 1], "fc.weight": [16, 192], "out.weight": [5, 16], "stem.0.bias": [8],
                 "a.bias": [8], "dw.bias": [8], "pw.bias": [8], "c1.bias": [4], "c2.bias": [6], "mix.bias": [12],
                 "fc.bias": [16], "out.bias": [5]}


@pytest.fixture(scope="module")
def net_onnx(tmp_path_factory):
    import torch

    from dlc.exporters.pytorch import export_module

    path = tmp_path_factory.mktemp("prune") / "net.onnx"
    export_module(_net(), (torch.randn(1, 3, 8, 8),), path, input_names=["x"])
    return onnx.load(path)


def _prune(proto, pass_):
    result = pass_(ir.serde.deserialize_model(proto))
    out = ir.serde.serialize_model(result.model)
    onnx.checker.check_model(out, full_check=True)
    return out, result.stats


def _named(proto) -> dict[str, list[int]]:
    """Initializer shapes by the PyTorch parameter they hold (the exporter may fold BatchNorm into the stem)."""
    return {t.name: list(t.dims) for t in proto.graph.initializer if "." in t.name}


def test_every_shape_follows_the_residuals_the_concat_the_depthwise_conv_and_the_flatten(net_onnx, tmp_path):
    pruned, stats = _prune(net_onnx, ChannelPrunePass(0.5))
    shapes = _named(pruned)
    assert {k: shapes[k] for k in PRUNED_SHAPES if k in shapes} == {k: v for k, v in PRUNED_SHAPES.items()
                                                                    if k in shapes}
    assert {"a.weight", "dw.weight", "mix.weight", "fc.weight"} <= set(shapes)
    depthwise = next(n for n in pruned.graph.node if n.op_type == "Conv" and "dw.weight" in n.input)
    assert onnx.helper.get_attribute_value(next(a for a in depthwise.attribute if a.name == "group")) == 8
    assert stats["left_whole"] == {"node_linear_1": "its channels are the graph output 'output'"}
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    assert run(pruned, {"x": x})[0].shape == (1, 5)

    from dlc.compiler.build import CompileConfig, compile_model
    from dlc.runtime.backends import open_session

    onnx.save(pruned, tmp_path / "pruned.onnx")
    compile_model(tmp_path / "pruned.onnx", tmp_path / "pruned.dlc", CompileConfig())  # verifies against ORT itself
    got = open_session("tvm", tmp_path / "pruned.dlc").run({"x": x})
    np.testing.assert_allclose(next(iter(got.values())), run(pruned, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_removing_channels_that_are_zero_changes_nothing(tmp_path):
    """Half of each group's channels made exactly zero in PyTorch (weights, biases, batch-norm scale and shift):
    l1 importance picks exactly those, and the pruned graph computes what the full one does."""
    import torch

    from dlc.exporters.pytorch import export_module

    net = _net()
    zeroed = {"a": range(1, 16, 2), "dw": range(1, 16, 2), "pw": range(1, 16, 2), "stem.1": range(1, 16, 2),
              "c1": range(4), "c2": range(0, 12, 2), "mix": range(12), "fc": range(0, 32, 2)}
    with torch.no_grad():
        for name, channels in zeroed.items():
            layer = net.get_submodule(name)
            layer.weight[list(channels)] = 0
            layer.bias[list(channels)] = 0
    export_module(net, (torch.randn(1, 3, 8, 8),), tmp_path / "zeroed.onnx", input_names=["x"])
    full = onnx.load(tmp_path / "zeroed.onnx")
    pruned, stats = _prune(full, ChannelPrunePass(0.5))
    assert stats["channels_after"] == 51 and _named(pruned)["fc.weight"] == [16, 192]
    x = np.random.default_rng(1).random((4, 3, 8, 8), dtype=np.float32)
    for sample in x:
        feed = {"x": sample[None]}
        np.testing.assert_allclose(run(pruned, feed)[0], run(full, feed)[0], rtol=1e-5, atol=1e-5)


def test_a_channel_axis_it_cannot_follow_is_named_and_left_whole():
    rng = np.random.default_rng(0)
    model = parse("""
        <ir_version: 8, opset_import: ["" : 17]>
        net (float[1, 3, 4, 4] x) => (float[1, 4, 4, 8] y, float[1, 6] z) {
            a = Conv <pads = [1, 1, 1, 1]> (x, wa)
            y = Transpose <perm = [0, 2, 3, 1]> (a)
            b = Conv (x, wb)
            p = GlobalAveragePool (b)
            f = Flatten (p)
            z = Gemm <transB = 1> (f, wc)
        }""", wa=rng.normal(size=(8, 3, 3, 3)).astype(np.float32), wb=rng.normal(size=(8, 3, 1, 1)).astype(np.float32),
                  wc=rng.normal(size=(6, 8)).astype(np.float32))
    pruned, stats = _prune(model, ChannelPrunePass(0.5))
    reasons = " ".join(stats["left_whole"].values())
    assert "(Transpose) reads it" in reasons
    shapes = {t.name: list(t.dims) for t in pruned.graph.initializer}
    assert shapes["wa"] == [8, 3, 3, 3] and shapes["wb"] == [4, 3, 1, 1] and shapes["wc"] == [6, 4]


def test_round_to_keeps_a_multiple_of_channels_and_global_pruning_ranks_across_layers(net_onnx):
    pruned, _ = _prune(net_onnx, ChannelPrunePass(0.5, round_to=8))
    kept = {w: _named(pruned)[f"{w}.weight"][0] for w in ("a", "mix", "fc", "c1", "c2")}
    # rounded down to a multiple of 8 (as Torch-Pruning does); c1 (4 of 8) and c2 (6 of 12) round to none: whole
    assert kept == {"a": 8, "mix": 8, "fc": 16, "c1": 8, "c2": 12}
    _, stats = _prune(net_onnx, ChannelPrunePass(0.5, global_pruning=True))
    kept = [v["kept"] / v["channels"] for k, v in stats["layers"].items() if k != "node_linear_1"]
    assert len(set(kept)) > 1  # one threshold: layers lose different shares
    assert 0.3 < stats["channels_after"] / stats["channels_before"] < 0.7


def test_magnitude_pruning_equals_zeroing_the_smallest_weights_by_hand(net_onnx):
    pruned, stats = _prune(net_onnx, MagnitudePrunePass(0.5))
    expected = onnx.ModelProto()
    expected.CopyFrom(net_onnx)
    weights = {n.input[1] for n in expected.graph.node if n.op_type in ("Conv", "Gemm")}
    for t in expected.graph.initializer:
        if t.name in weights:
            array = onnx.numpy_helper.to_array(t).copy()
            flat = array.reshape(-1)
            flat[np.argsort(np.abs(flat), kind="stable")[:flat.size // 2]] = 0
            t.CopyFrom(onnx.numpy_helper.from_array(array, t.name))
    got = {t.name: onnx.numpy_helper.to_array(t) for t in pruned.graph.initializer}
    for t in expected.graph.initializer:
        np.testing.assert_array_equal(got[t.name], onnx.numpy_helper.to_array(t), err_msg=t.name)
    x = np.random.default_rng(2).random((1, 3, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(run(pruned, {"x": x})[0], run(expected, {"x": x})[0])
    assert all(abs(v["sparsity"] - 0.5) < 0.01 for v in stats["layers"].values())
    assert [t.dims for t in pruned.graph.initializer] == [t.dims for t in net_onnx.graph.initializer]


def test_global_magnitude_pruning_uses_one_threshold(net_onnx):
    _, stats = _prune(net_onnx, MagnitudePrunePass(0.7, global_pruning=True))
    assert abs(stats["sparsity"] - 0.7) < 0.01
    assert len({round(v["sparsity"], 2) for v in stats["layers"].values()}) > 1


def _weights(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(np.float32) for s in shapes]


HEAD = """
<ir_version: 8, opset_import: ["" : 17]>
net (float[1, 3, 4, 4] x) => (float[1, 6] z) {{
    {body}
    p = GlobalAveragePool (q)
    f = Flatten (p)
    z = Gemm <transB = 1> (f, wc)
}}"""


@pytest.mark.parametrize("body, weights, reason", [
    # a per-channel scale shared by two layers' outputs would be cut twice, differently
    ("a = Conv (x, wa)\n b = Conv (x, wb)\n a2 = Mul (a, s)\n b2 = Mul (b, s)\n q = Concat <axis = 1> (a2, b2)",
     {"wa": (8, 3, 1, 1), "wb": (8, 3, 1, 1), "s": (1, 8, 1, 1), "wc": (6, 16)}, "shares s with another node"),
    # batch-norm parameters that are not constants
    ("a = Conv (x, wa)\n g = Identity (gamma)\n q = BatchNormalization (a, g, beta, mean, var)",
     {"wa": (8, 3, 1, 1), "gamma": (8,), "beta": (8,), "mean": (8,), "var": (8,), "wc": (6, 8)}, "(BatchNormalization)"),
])
def test_what_cannot_be_cut_safely_is_left_whole(body, weights, reason):
    arrays = dict(zip(weights, _weights(*weights.values())))
    model = parse(HEAD.format(body=body), **arrays)
    pruned, stats = _prune(model, ChannelPrunePass(0.5))
    assert any(reason in why for why in stats["left_whole"].values()), stats["left_whole"]
    x = np.random.default_rng(0).random((1, 3, 4, 4), dtype=np.float32)
    np.testing.assert_allclose(run(pruned, {"x": x})[0], run(model, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_an_activation_as_a_matmul_operand_is_not_cut():
    wa, w1, c = _weights((8, 3, 1, 1), (8, 8), (6, 1))
    model = parse("""
        <ir_version: 8, opset_import: ["" : 17]>
        net (float[1, 3, 4, 4] x) => (float[6, 8] z) {
            a = Conv (x, wa)
            p = GlobalAveragePool (a)
            f = Flatten (p)
            g = Gemm <transB = 1> (f, w1)
            z = MatMul (c, g)
        }""", wa=wa, w1=w1, c=c)
    pruned, stats = _prune(model, ChannelPrunePass(0.5))
    assert "MatMul → z (MatMul) is not a 2-D product with a constant weight" in stats["left_whole"].values()
    x = np.random.default_rng(0).random((1, 3, 4, 4), dtype=np.float32)
    assert run(pruned, {"x": x})[0].shape == (6, 8)


def test_a_per_channel_prelu_slope_is_cut_with_its_channels():
    wa, slope, wc = _weights((8, 3, 1, 1), (8, 1, 1), (6, 8))
    model = parse(HEAD.format(body="a = Conv (x, wa)\n q = PRelu (a, slope)"), wa=wa, slope=slope, wc=wc)
    pruned, _ = _prune(model, ChannelPrunePass(0.5))
    shapes = {t.name: list(t.dims) for t in pruned.graph.initializer}
    assert shapes["slope"] == [4, 1, 1] and shapes["wc"] == [6, 4]
    assert run(pruned, {"x": np.ones((1, 3, 4, 4), np.float32)})[0].shape == (1, 6)


def test_a_flatten_over_symbolic_spatial_dims_is_not_guessed():
    wa, wc = _weights((8, 3, 1, 1), (6, 32))
    model = parse("""
        <ir_version: 8, opset_import: ["" : 17]>
        net (float[N, 3, H, W] x) => (float[N, 6] z) {
            a = Conv (x, wa)
            f = Flatten (a)
            z = Gemm <transB = 1> (f, wc)
        }""", wa=wa, wc=wc)
    pruned, stats = _prune(model, ChannelPrunePass(0.5))
    assert "wc is 32 wide where 8 channels arrive" in " ".join(stats["left_whole"].values())
    assert {t.name: list(t.dims) for t in pruned.graph.initializer}["wa"] == [8, 3, 1, 1]


def test_global_pruning_ranks_a_residual_group_like_a_single_layer():
    ws, wa, wb, wc = _weights((16, 3, 1, 1), (16, 16, 1, 1), (16, 3, 1, 1), (6, 32))
    model = parse("""
        <ir_version: 8, opset_import: ["" : 17]>
        net (float[1, 3, 4, 4] x) => (float[1, 6] z) {
            s = Conv (x, ws)
            a = Conv (s, wa)
            r = Add (s, a)
            b = Conv (x, wb)
            c = Concat <axis = 1> (r, b)
            p = GlobalAveragePool (c)
            f = Flatten (p)
            z = Gemm <transB = 1> (f, wc)
        }""", ws=ws, wa=wa, wb=wb, wc=wc)
    _, stats = _prune(model, ChannelPrunePass(0.5, global_pruning=True))
    kept = {k: v["kept"] for k, v in stats["layers"].items()}
    assert 4 <= kept["Conv → s"] <= 12 and 4 <= kept["Conv → b"] <= 12, kept


def test_magnitude_pruning_prunes_every_unnamed_layer():
    wa, wb, wc = _weights((8, 3, 1, 1), (8, 8, 1, 1), (6, 8))
    model = parse(HEAD.format(body="a = Conv (x, wa)\n q = Conv (a, wb)"), wa=wa, wb=wb, wc=wc)
    pruned, stats = _prune(model, MagnitudePrunePass(0.5))
    assert set(stats["layers"]) == {"Conv → a", "Conv → q", "Gemm → z"}
    assert all(np.isclose((onnx.numpy_helper.to_array(t) == 0).mean(), 0.5) for t in pruned.graph.initializer)


def test_ignoring_a_depthwise_conv_keeps_its_group_whole(net_onnx):
    depthwise = next(n.name for n in net_onnx.graph.node if n.op_type == "Conv" and "dw.weight" in n.input)
    pruned, stats = _prune(net_onnx, ChannelPrunePass(0.5, ignore=(depthwise,)))
    shapes = _named(pruned)
    assert shapes["dw.weight"] == [16, 1, 3, 3] and shapes["a.weight"] == [16, 16, 3, 3]
    assert shapes["c2.weight"] == [6, 16, 3, 3]  # other groups are still pruned
    assert f"{depthwise} is ignored (--ignore)" in stats["left_whole"].values()
