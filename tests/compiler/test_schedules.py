"""Default CPU schedules: each rule takes its kernel family, and what it builds equals ONNX Runtime.

Each case compiles a tiny model as `dlc compile` does (the library is verified against ONNX
Runtime on golden inputs) and checks which rule scheduled its heaviest kernel and the
share of the model's FLOPs in scheduled kernels.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from dlc.compiler.build import CompileConfig, TuningOptions, compile_model
from tests.passes.helpers import parse

IR = '<ir_version: 9, opset_import: ["" : 18]>'


def _w(*shape):
    return np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32) * 0.3


CASES = {
    # name: (model text, initializers, the family that must schedule the heaviest kernel)
    "dense": ("g (float[1,64] x) => (float[1,32] y) { y = Gemm<transB = 1>(x, w, b) }",
              {"w": _w(32, 64), "b": _w(32)}, "tiled reduction"),
    "matmul": ("g (float[16,48] x) => (float[16,40] y) { r = MatMul(x, w)  y = Relu(r) }",
               {"w": _w(48, 40)}, "tiled reduction"),
    "conv3x3": ("g (float[1,8,12,12] x) => (float[1,16,12,12] y) { c = Conv<pads = [1, 1, 1, 1]>(x, w, b) "
                "y = Relu(c) }", {"w": _w(16, 8, 3, 3), "b": _w(16)}, "tiled reduction"),
    "conv_stride2_relu6": ("g (float[1,3,16,16] x) => (float[1,24,8,8] y) { "
                           "c = Conv<pads = [1, 1, 1, 1], strides = [2, 2]>(x, w)  y = Clip(c, lo, hi) }",
                           {"w": _w(24, 3, 3, 3), "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)},
                           "tiled reduction"),
    "depthwise": ("g (float[1,32,10,10] x) => (float[1,32,10,10] y) { "
                  "y = Conv<pads = [1, 1, 1, 1], group = 32>(x, w) }", {"w": _w(32, 1, 3, 3)}, "tiled reduction"),
    "maxpool": ("g (float[1,16,8,8] x) => (float[1,16,4,4] y) { c = Conv(x, w)  y = MaxPool<kernel_shape = [2, 2], "
                "strides = [2, 2]>(c) }", {"w": _w(16, 16, 1, 1)}, "tiled reduction"),
    "softmax": ("g (float[8,64] x) => (float[8,64] y) { y = Softmax<axis = -1>(x) }", {}, "row reduction"),
    "layernorm": ("g (float[4,16,32] x) => (float[4,16,32] y) { y = LayerNormalization<axis = -1>(x, s, b) }",
                  {"s": _w(32) + 1, "b": _w(32)}, "row reduction"),
    "elementwise": ("g (float[2,8,16] x) => (float[2,16,8] y) { a = Mul(x, x)  t = Transpose<perm = [0, 2, 1]>(a) "
                    "y = Sigmoid(t) }", {}, "injective"),
    "attention_scores": ("g (float[2,16,8] q, float[2,16,8] k) => (float[2,16,16] y) { "
                         "t = Transpose<perm = [0, 2, 1]>(k)  y = MatMul(q, t) }", {}, "tiled reduction"),
    "grouped_conv": ("g (float[1,8,10,10] x) => (float[1,8,10,10] y) { "
                     "y = Conv<pads = [1, 1, 1, 1], group = 2>(x, w) }", {"w": _w(8, 4, 3, 3)}, "fallback"),  # not tiled: its indices are not linear
    "dense_odd_width": ("g (float[1,64] x) => (float[1,1001] y) { y = Gemm<transB = 1>(x, w, b) }",
                        {"w": _w(1001, 64), "b": _w(1001)}, "tiled reduction"),
    "conv_batch3_odd": ("g (float[3,5,11,13] x) => (float[3,10,11,13] y) { c = Conv<pads = [1, 1, 1, 1]>(x, w)  "
                        "y = Relu(c) }", {"w": _w(10, 5, 3, 3)}, "tiled reduction"),
    "global_avgpool": ("g (float[1,16,7,7] x) => (float[1,16,1,1] y) { c = Conv(x, w)  y = GlobalAveragePool(c) }",
                       {"w": _w(16, 16, 1, 1)}, "tiled reduction"),
    "int64_clip_to_the_type_max": ("g (int64[4,8] x) => (int64[4,8] y) { y = Clip(x, lo, hi) }",
                                   {"lo": np.array(0, np.int64), "hi": np.array(2**63 - 1, np.int64)}, "injective"),
    "argmax": ("g (float[64,32] x) => (int64[64] y) { y = ArgMax<axis = -1, keepdims = 0>(x) }", {},
               "row reduction"),
    "fast_math": ("g (float[8,64] x) => (float[8,64] y) { e = Erf(x)  t = Tanh(x)  s = Softmax<axis = -1>(x) "
                  "x2 = Exp(x)  a = Add(e, t)  b = Add(a, s)  y = Add(b, x2) }", {}, "row reduction"),
    "maxpool_padded": ("g (float[1,16,9,9] x) => (float[1,16,5,5] y) { c = Conv(x, w)  y = MaxPool<kernel_shape = "
                       "[3, 3], strides = [2, 2], pads = [1, 1, 1, 1]>(c) }", {"w": _w(16, 16, 1, 1)},
                       "tiled reduction"),
    "avgpool_padded": ("g (float[1,16,9,9] x) => (float[1,16,9,9] y) { c = Conv(x, w)  y = AveragePool<kernel_shape = "
                       "[3, 3], pads = [1, 1, 1, 1], count_include_pad = 0>(c) }", {"w": _w(16, 16, 1, 1)},
                       "tiled reduction"),
}


def _compile(name, tmp_path) -> dict:
    text, weights, _ = CASES[name]
    path = tmp_path / f"{name}.onnx"
    onnx.save(parse(IR + text, **weights), path)
    report = compile_model(path, tmp_path / f"{name}.dlc", CompileConfig(tuning=TuningOptions(database=tmp_path / "db")))
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-4  # verified against ONNX Runtime
    return json.loads((tmp_path / f"{name}.dlc" / "manifest.json").read_text())["schedules"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_kernel_family_gets_its_rule_and_matches_onnxruntime(name, tmp_path):
    schedules = _compile(name, tmp_path)
    heaviest = schedules["per_kernel"][0]
    assert heaviest["schedule"].startswith(CASES[name][2]), schedules["per_kernel"]
    assert schedules["kernels"].get("none", 0) == 0 and schedules["scheduled_flops_share"] >= 0.9


def test_a_rule_declines_a_kernel_of_another_family():
    """TiledReduction returns None for a softmax (two reductions), so the next rule is tried."""
    from dlc.compiler.schedules.tiled import TiledReduction

    kernels, target = _kernels("softmax", "host")
    assert kernels and all(TiledReduction().apply(f, target, False) is None for f in kernels)


def test_a_rule_that_tvm_refuses_leaves_the_kernel_to_the_next_rule():
    from tvm import te

    from dlc.compiler.schedules import first_schedule
    from dlc.compiler.schedules.injective import Injective
    from dlc.target import resolve_target

    class Refused:
        family = "refused"

        def apply(self, func, target, tunable):
            raise RuntimeError("ScheduleError: the primitive does not apply")

    x = te.placeholder((64, 64), name="x")
    func = te.create_prim_func([x, te.compute((64, 64), lambda i, j: x[i, j] * 2.0, name="y")])
    _, rule = first_schedule(func, resolve_target("host").tvm_target(), [Refused(), Injective()])
    assert rule.family.startswith("injective")


def test_vector_widths_follow_the_target():
    from dlc.compiler.schedules.base import cpu_traits
    from dlc.target import resolve_target

    widths = {name: cpu_traits(resolve_target(name).tvm_target()).lanes()
              for name in ("x86-64-avx2", "x86-64-avx512", "raspberry-pi-4", "armv7")}
    assert widths == {"x86-64-avx2": 8, "x86-64-avx512": 16, "raspberry-pi-4": 4, "armv7": 4}


def test_the_fallback_takes_what_no_other_rule_does_and_stays_correct():
    """A sum reading its output axis with stride 2: not tiled (not contiguous), not a row reduction."""
    import tvm
    from tvm import te

    from dlc.compiler.schedules import cpu_rules
    from dlc.target import resolve_target

    x = te.placeholder((256, 512), name="x")
    j = te.reduce_axis((0, 256), name="j")
    y = te.compute((256,), lambda i: te.sum(x[j, 2 * i], axis=j), name="y")
    func = te.create_prim_func([x, y])
    target = resolve_target("host").tvm_target()
    taken = [rule.family for rule in cpu_rules() if rule.apply(func, target, False) is not None]
    assert taken == ["fallback (parallel outer loops)"]
    schedule = cpu_rules()[-1].apply(func, target, False)
    lib = tvm.compile(schedule.mod, target=target).jit()
    data = np.random.default_rng(0).random((256, 512), dtype=np.float32)
    out = tvm.runtime.tensor(np.zeros(256, np.float32))
    lib["main"](tvm.runtime.tensor(data), out)
    np.testing.assert_allclose(out.numpy(), data[:, ::2].sum(axis=0), rtol=1e-5)


def _kernels(name: str, target_name: str = "raspberry-pi-4", model=None) -> tuple[list, object]:
    """The prepared (unscheduled) kernels of a CASES model (or `model`) for a target, and the TVM target."""
    import tvm

    from dlc.compiler import pipeline
    from dlc.compiler.frontend import import_relax
    from dlc.onnxio import io_specs
    from dlc.target import resolve_target

    if model is None:
        text, weights, _ = CASES[name]
        model = parse(IR + text, **weights)
    target = resolve_target(target_name).tvm_target()
    mod = pipeline.prepare(import_relax(model, io_specs(model)[0]), target)
    return [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)], target


def _tiled(name: str) -> str:
    """The TiledReduction schedules of a CASES model's convolution and pooling kernels, as TVMScript."""
    from dlc.compiler.schedules.tiled import TiledReduction

    kernels, target = _kernels(name)
    scheduled = [s for s in (TiledReduction().apply(f, target, False) for f in kernels) if s is not None]
    assert scheduled
    return "\n".join(s.mod["main"].script() for s in scheduled)


@pytest.mark.parametrize("name", ["depthwise", "maxpool_padded", "avgpool_padded"])
def test_windowed_kernels_read_their_padding_in_place(name):
    """Depthwise convolutions and pooling test the bounds where they read (no padded copy of the input)."""
    assert "pad_temp" not in _tiled(name)


def test_a_convolution_over_input_channels_copies_a_padded_tile():
    assert "pad_temp" in _tiled("conv3x3")


def test_only_the_outermost_tiles_are_shared_out_over_the_cores():
    """A 224x224x64 depthwise conv on a Pi 4's 4 cores: one parallel loop, outermost, with at least 8 tiles per core
    but not all of them; under it a serial loop walks the rest of each parallel tile's tiles in order."""
    import tvm

    from dlc.compiler.schedules.base import cpu_traits
    from dlc.compiler.schedules.tiled import TiledReduction
    from dlc.target import resolve_target

    x = tvm.te.placeholder((1, 226, 226, 64), name="x")
    w = tvm.te.placeholder((3, 3, 64), name="w")
    ry, rx = tvm.te.reduce_axis((0, 3), "ry"), tvm.te.reduce_axis((0, 3), "rx")
    y = tvm.te.compute((1, 224, 224, 64), lambda n, h, col, c: tvm.te.sum(x[n, h + ry, col + rx, c] * w[ry, rx, c],
                                                                          axis=[ry, rx]), name="y")
    target = resolve_target("raspberry-pi-4").tvm_target()
    schedule = TiledReduction().apply(tvm.te.create_prim_func([x, w, y]), target, False)
    loops = [schedule.get(loop) for loop in schedule.get_loops(schedule.get_sblock("y_update"))]
    parallel = [n for n, loop in enumerate(loops) if loop.kind == tvm.tirx.ForKind.PARALLEL]
    assert parallel == [0] and len(loops) == 6, loops  # parallel tiles, serial tiles, 3 x 3 window, rows, lanes
    outer, tiles, window_y, window_x, rows, lanes = (int(loop.extent) for loop in loops)
    assert (window_y, window_x) == (3, 3) and outer * tiles * rows * lanes == 224 * 224 * 64
    assert outer >= cpu_traits(target).cores * 8 and tiles > 1 and loops[1].kind == tvm.tirx.ForKind.SERIAL


def test_exp_erf_tanh_and_softmax_compile_to_their_fast_forms():
    """LLVM calls libm once per lane for exp, erf and tanh; dlc's kernels compute TVM's polynomials instead
    (the [fast_math] case above checks the library against ONNX Runtime)."""
    import re

    kernels, _ = _kernels("fast_math", "x86-64-avx2")
    calls = set(re.findall(r"T\.(exp|erf|tanh)\(", "\n".join(k.script() for k in kernels)))
    assert not calls, calls


def test_fast_math_passes_over_calls_that_are_not_operators():
    """An Expand to a runtime shape calls an ExternFunc; Relax's own FastMathTransform crashed on it."""
    kernels, _ = _kernels("", "x86-64-avx2", parse(IR + "g (float[1,3] b, int64[2] s) => (float[2,3] y) { "
                                                   "e = Exp(b)  y = Expand(e, s) }"))
    assert kernels and "T.exp(" not in "\n".join(k.script() for k in kernels)
