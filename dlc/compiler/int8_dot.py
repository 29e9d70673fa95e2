"""int8 convolutions and matmuls as the CPU's integer dot products: AVX-512 VNNI's vpdpbusd, vpmaddubsw or
vpmaddwd.

    vnni        vpdpbusd multiplies 4 unsigned by 4 signed bytes and adds the products into
                each of 16 int32 lanes: 64 multiply-adds an instruction (a float32 FMA: 16)
    pmaddubsw   for CPUs without VNNI, when a layer's weights fit in 7 bits (|w| <= 64, as
                `dlc quantize --reduce-range` writes them): vpmaddubsw multiplies unsigned by
                signed bytes and adds pairs into int16, vpmaddwd adds those pairs into int32:
                4 bytes a lane in two instructions. With 8-bit weights the int16 pair sums
                could saturate (255·127·2 > 32767; ONNX Runtime's AVX2 kernels then go wrong);
                with 7-bit ones they cannot (255·64·2 = 32640), so the result is exact
    pmaddwd     vpmaddwd multiplies 2 pairs of int16 and adds both products into each int32
                lane (16 lanes on AVX-512, 8 on AVX2): exact for any int8 weights, for CPUs
                without VNNI (int8 values held in int16), as fast as a float32 FMA

The integer kernels of `dlc.compiler.integer` reach them when

    the activations fit          vnni, pmaddubsw: uint8 (an int8 tensor q is read as q + 128,
                                 its zero point + 128); pmaddwd: int16, the zero point taken
    the weights are int8         packed at compile time (they are constants) so that the
                                 GROUP consecutive input channels of LANES output channels are
                                 one instruction's contiguous operand: convolutions
                                 [KH, KW, IC/G, OC/L, L, G], dense [N/L, K/G, L, G]
    K % GROUP == 0 and N % LANES == 0   input and output channels (groups of 1: not depthwise)

For uint8 activations the zero point z leaves the sum as a constant per output channel,

    Σ (x − z)·w = Σ x·w − z·Σ w

exact at the borders too when the padding is z rather than 0 (the padded value is x = z).
Kernels this pass writes carry the name `int8_dot_*`; the `Int8Dot` schedule tensorizes
them with the matching intrinsic (`dlc.compiler.schedules.int8`). A target without either
(SSE only, ARM for now) keeps the integer kernels as they are, scheduled like float ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlc.compiler.integer import constant, dtype_of, each_function, is_op, producer_of

KERNEL_PREFIX = "int8_dot"


@dataclass(frozen=True)
class DotProduct:
    """One integer dot-product instruction: LANES int32 sums of GROUP products each."""

    name: str  # "vnni", "pmaddubsw512", "pmaddwd512", ...
    lanes: int  # output channels per instruction
    group: int  # input channels per lane
    data: str  # the activations' dtype: uint8 (vnni, pmaddubsw) or int16
    weights: str  # the packed weights' dtype: int8 or int16
    llvm: str  # the LLVM intrinsic
    pairs: str | None = None  # a second intrinsic adding the first's int16 pairs into int32 lanes (pmaddubsw)
    max_weight: int = 128  # the largest |w| it computes exactly


DOT_PRODUCTS = {d.name: d for d in (
    DotProduct("vnni", 16, 4, "uint8", "int8", "llvm.x86.avx512.vpdpbusd.512"),
    DotProduct("pmaddubsw512", 16, 4, "uint8", "int8", "llvm.x86.avx512.pmaddubs.w.512",
               "llvm.x86.avx512.pmaddw.d.512", 64),
    DotProduct("pmaddubsw256", 8, 4, "uint8", "int8", "llvm.x86.avx2.pmadd.ub.sw", "llvm.x86.avx2.pmadd.wd", 64),
    DotProduct("pmaddwd512", 16, 2, "int16", "int16", "llvm.x86.avx512.pmaddw.d.512"),
    DotProduct("pmaddwd256", 8, 2, "int16", "int16", "llvm.x86.avx2.pmadd.wd"),
)}
# on a CPU whose dot product is vpmaddwd, layers whose weights fit in 7 bits take vpmaddubsw
BYTE_DOTS = {"pmaddwd512": "pmaddubsw512", "pmaddwd256": "pmaddubsw256"}


def kernel_dot(block_name: str) -> DotProduct | None:
    """The dot product an `int8_dot_<dot>_*` kernel was written for, from its name."""
    if not block_name.startswith(f"{KERNEL_PREFIX}_"):
        return None
    return DOT_PRODUCTS.get(block_name[len(KERNEL_PREFIX) + 1:].split("_")[0])


def dot_product(target) -> DotProduct | None:
    """`target`'s integer dot product, or None."""
    from dlc.compiler.schedules.base import cpu_traits

    name = cpu_traits(target).int8_dot if target.kind.name == "llvm" else None
    return DOT_PRODUCTS.get(name)


def pack_int8_dots(mod, target):
    """NHWC int8 conv2d and matmul calls as `int8_dot_*` kernels over packed weights; (module, kernels written)."""
    dot = dot_product(target)
    if dot is None:
        return mod, 0
    from tvm import relax

    mutator = _packer_class()(mod, [DOT_PRODUCTS[BYTE_DOTS[dot.name]], dot] if dot.name in BYTE_DOTS else [dot])
    return relax.transform.DeadCodeElimination()(each_function(mod, mutator)), mutator.count


def _packer_class():
    from tvm import relax

    @relax.expr_functor.mutator
    class Packer(relax.PyExprMutator):
        def __init__(self, mod, dots: list[DotProduct]):
            super().__init__(mod)
            self.count, self.dots = 0, dots  # the first whose weights and activations fit, per kernel

        def producer(self, expr):
            return producer_of(self, expr)

        def operand(self, expr, dot: DotProduct):
            """(the activations as `dot` takes them, the zero point still in them), or None."""
            if dot.data == "uint8":
                return self.unsigned(expr)
            if dtype_of(expr) not in ("int16", "int8", "uint8"):
                return None
            return (expr if dtype_of(expr) == "int16" else relax.op.astype(expr, "int16")), 0

        def unsigned(self, expr):
            """(a uint8 expression, its zero point z) of which the integer operand `expr` is x − z; or None.

            Followed back through what the integer rewrite and layout conversion put before a
            convolution: a widening cast, the zero point's subtraction, a transpose.
            """
            dtype = dtype_of(expr)
            if dtype == "uint8":
                return expr, 0
            if dtype == "int8":
                return _plus_128(expr), 128
            made = self.producer(expr)
            if dtype != "int16" or made is None:
                return None
            if made.op.name == "relax.astype" and dtype_of(made.args[0]) in ("uint8", "int8"):
                return self.unsigned(made.args[0])
            if made.op.name == "relax.subtract" and (zero := constant(made.args[1])) is not None and zero.size == 1:
                inner = self.unsigned(made.args[0])
                return None if inner is None else (inner[0], inner[1] + int(zero.reshape(-1)[0]))
            if made.op.name == "relax.permute_dims":
                inner = self.unsigned(made.args[0])
                return None if inner is None else (relax.op.permute_dims(inner[0], made.attrs.axes), inner[1])
            return None

        def visit_call_(self, call):
            call = super().visit_call_(call)
            pack = _conv2d if is_op(call, "relax.nn.conv2d") else _matmul if is_op(call, "relax.matmul") else None
            packed = next((p for p in (pack(self, call, dot) for dot in self.dots) if p is not None), None) \
                if pack else None
            if packed is None:
                return call
            self.count += 1
            return packed

    return Packer


def _emitted(m, expr):
    """`expr` bound to a variable (call_te takes variables, not the nested calls `unsigned` builds)."""
    from tvm import relax

    return m.builder_.emit(expr) if isinstance(expr, relax.Call) else expr


def _plus_128(q):
    """int8 q as the uint8 q + 128."""
    from tvm import relax

    return relax.op.astype(relax.op.add(relax.op.astype(q, "int16"), relax.const(128, "int16")), "uint8")


def _int8_weight(expr, dot: DotProduct) -> np.ndarray | None:
    w = constant(expr)
    if w is None or w.dtype.kind != "i" or w.size == 0 or w.min() < max(-128, -dot.max_weight) \
            or w.max() > min(127, dot.max_weight):
        return None
    return w.astype(np.int8)


def _conv2d(m, call, dot: DotProduct):
    from tvm import relax

    attrs = call.attrs
    w = _int8_weight(call.args[1], dot)
    if w is None or str(attrs.out_dtype) != "int32" or attrs.data_layout != "NHWC" or attrs.kernel_layout != "HWIO" \
            or int(attrs.groups) != 1 or any(int(d) != 1 for d in attrs.dilation) or dtype_of(call.args[0]) == "int32":
        return None
    kh, kw, ic, oc = w.shape
    lanes, group = dot.lanes, dot.group
    source = m.operand(call.args[0], dot)
    if source is None or ic % group or oc % lanes:
        return None
    x, zero = _emitted(m, source[0]), source[1]
    packed = w.reshape(kh, kw, ic // group, group, oc // lanes, lanes).transpose(0, 1, 2, 4, 5, 3)
    strides, padding = [int(s) for s in attrs.strides], [int(p) for p in attrs.padding]
    name = f"{KERNEL_PREFIX}_{dot.name}_conv2d"
    acc = m.builder_.call_te(_conv2d_te, x, relax.const(np.ascontiguousarray(packed).astype(dot.weights)), strides,
                             padding, zero, name, primfunc_name_hint=name)
    return _minus_zero_sums(acc, zero, w.sum(axis=(0, 1, 2), dtype=np.int64))


def _matmul(m, call, dot: DotProduct):
    from tvm import relax

    w = _int8_weight(call.args[1], dot)
    if w is None or w.ndim != 2 or str(call.attrs.out_dtype) != "int32":
        return None
    k, n = w.shape
    lanes, group = dot.lanes, dot.group
    source = m.operand(call.args[0], dot)
    if source is None or k % group or n % lanes:
        return None
    x, zero = _emitted(m, source[0]), source[1]
    packed = w.reshape(k // group, group, n // lanes, lanes).transpose(2, 0, 3, 1)
    name = f"{KERNEL_PREFIX}_{dot.name}_dense"
    acc = m.builder_.call_te(_dense_te, x, relax.const(np.ascontiguousarray(packed).astype(dot.weights)), name,
                             primfunc_name_hint=name)
    return _minus_zero_sums(acc, zero, w.sum(axis=0, dtype=np.int64))


def _minus_zero_sums(acc, zero: int, sums: np.ndarray):
    """acc − z·Σw, per output channel (the last axis)."""
    from tvm import relax

    if zero == 0:
        return acc
    return relax.op.subtract(acc, relax.const((zero * sums).astype(np.int32)))


def _conv2d_te(data, packed, strides, padding, zero, name):
    """NHWC data (padded with its zero point) · packed weights [KH, KW, IC/G, OC/L, L, G] → int32."""
    from tvm import te, tirx, topi

    n, h, w, ic = data.shape
    kh, kw, _, oc_blocks, lanes, group = (int(d) for d in packed.shape)
    top, left, bottom, right = padding
    if any(padding):
        data = topi.nn.pad(data, [0, top, left, 0], [0, bottom, right, 0], pad_value=tirx.const(zero, data.dtype),
                           name="pad")
    out_h = (h + top + bottom - kh) // strides[0] + 1
    out_w = (w + left + right - kw) // strides[1] + 1
    rh, rw, rc = te.reduce_axis((0, kh), "rh"), te.reduce_axis((0, kw), "rw"), te.reduce_axis((0, ic), "rc")
    return te.compute(
        (n, out_h, out_w, oc_blocks * lanes),
        lambda b, y, x, o: te.sum(
            data[b, y * strides[0] + rh, x * strides[1] + rw, rc].astype("int32")
            * packed[rh, rw, rc // group, o // lanes, o % lanes, rc % group].astype("int32"), axis=[rh, rw, rc]),
        name=name)


def _dense_te(data, packed, name):
    """data [..., K] · packed weights [N/L, K/G, L, G] → int32 [..., N]."""
    from tvm import te

    k = te.reduce_axis((0, data.shape[-1]), "k")
    blocks, _, lanes, group = (int(d) for d in packed.shape)
    return te.compute(
        (*data.shape[:-1], blocks * lanes),
        lambda *i: te.sum(data[(*i[:-1], k)].astype("int32")
                          * packed[i[-1] // lanes, k // group, i[-1] % lanes, k % group].astype("int32"), axis=k),
        name=name)
