"""QDQ → integer arithmetic in Relax: quantized models compute in int8, not in float.

TVM's ONNX importer keeps a QDQ model's QuantizeLinear/DequantizeLinear as Relax
`quantize`/`dequantize` around float convolutions and matmuls, so it computes in float.
This rewrite looks at every `quantize(y)` and, when `y` is made from dequantized tensors by
an op that has a rule here, computes `y` from the quantized tensors instead (after TVM
Relay's FakeQuantizationToInteger, which Relax lacks: one rule per op, so adding an op
is one registration). A quantized tensor q with scale s and zero point z stands for s·(q − z).

    conv2d, matmul (+ constant bias)
        acc = Σ (q_x − z_x)·(q_w − z_w)              int8/uint8 operands, int32 accumulator
        y_q = quantize(s_x·s_w·acc + b, s_y, z_y)    requantize epilogue, fused into the kernel
      The operands stay int8 where the zero point is 0 (symmetric; ONNX Runtime's per-channel
      weights); otherwise the shift is taken in int16, which is exact. Zero padding of
      shifted operands is the real zero, as it is in the float model.
    relu                  max(q, z)                   when input and output share s and z
    max_pool2d, reshape, permute_dims, flatten, squeeze, expand_dims
                          the op on q itself           (ordering and layout commute with s·(q − z))
    quantize(dequantize(q, s, z), s, z) = q

Anything else (residual adds, average pools, softmax) stays dequantize → float → quantize,
which fusion turns into one elementwise kernel.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import numpy as np

RULES: dict[str, Callable] = {}
SAME_SCALE_OPS = ("relax.nn.max_pool2d", "relax.reshape", "relax.permute_dims", "relax.flatten", "relax.squeeze",
                  "relax.expand_dims")
INTEGER_DTYPES = ("int8", "uint8", "int16")


def rule(*ops: str):
    def register(fn):
        for op in ops:
            RULES[op] = fn
        return fn
    return register


def to_integer(mod):
    """The module with every QDQ pattern a rule knows computed in integers; (module, rewrites per op)."""
    from tvm import relax

    counts: Counter = Counter()
    mod = each_function(mod, _mutator_class()(mod, counts))
    mod = relax.transform.DeadCodeElimination()(mod)
    return each_function(mod, _elementwise_class()(mod)), dict(counts)


def each_function(mod, mutator):
    """The module with `mutator` run over each of its Relax functions."""
    from tvm import relax

    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return mutator.builder_.get()


def _elementwise_class():
    from tvm import relax

    @relax.expr_functor.mutator
    class Elementwise(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            return elementwise(call) if is_op(call, "relax.quantize") or is_op(call, "relax.dequantize") else call

    return Elementwise


def _mutator_class():
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class Integer(relax.PyExprMutator):
        def __init__(self, mod, counts):
            super().__init__(mod)
            self.counts = counts

        def producer(self, expr):
            return producer_of(self, expr)

        def dequantized(self, expr):
            """(q, scale, zero point, axis) if `expr` is a dequantize with constant parameters; else None."""
            call = self.producer(expr)
            if call is None or call.op.name != "relax.dequantize":
                return None
            scale, zero = constant(call.args[1]), constant(call.args[2])
            if scale is None or zero is None:
                return None
            return call.args[0], scale, zero.astype(np.int32), int(call.attrs.axis)

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.quantize"):
                return call
            if (scale := constant(call.args[1])) is None or (zero := constant(call.args[2])) is None:
                return call
            made = self.producer(call.args[0])
            fn = RULES.get(made.op.name) if made is not None else None
            new = fn(self, made, call, (scale, zero.astype(np.int32))) if fn else None
            if new is None:
                return call
            self.counts[made.op.name] += 1
            return new

    return Integer


def elementwise(call):
    """A per-tensor quantize or dequantize as the elementwise ops it is, which layout conversion sees through.

    Relax's quantize/dequantize ops are opaque to ConvertLayout: an NHWC network got a
    transpose pair around each, in kernels of their own. Written out with scalar constants
    they are layout-agnostic and fuse into the kernels around them; the arithmetic is that
    of their own legalization:
        quantize(x, s, z)   = cast⟨q⟩(clip(round(x / s) + z, q_min, q_max))
        dequantize(q, s, z) = (q − z) · s
    Per-channel ones (on weights, folded at compile time) keep the op.
    """
    from tvm import relax

    scale, zero = constant(call.args[1]), constant(call.args[2])
    if scale is None or zero is None or scale.size != 1 or zero.size != 1:
        return call
    s = relax.const(float(scale.reshape(-1)[0]), "float32")
    z = relax.const(float(zero.reshape(-1)[0]), "float32")
    if call.op.name == "relax.dequantize":
        if str(call.attrs.out_dtype) != "float32":
            return call
        return relax.op.multiply(relax.op.subtract(relax.op.astype(call.args[0], "float32"), z), s)
    dtype = str(call.attrs.out_dtype)
    info = np.iinfo(dtype)
    rounded = relax.op.add(relax.op.round(relax.op.divide(call.args[0], s)), z)
    clipped = relax.op.minimum(relax.op.maximum(rounded, relax.const(float(info.min), "float32")),
                               relax.const(float(info.max), "float32"))
    return relax.op.astype(clipped, dtype)


def producer_of(mutator, expr):
    """The operator call that made `expr` (through the mutator's variable bindings), or None."""
    import tvm
    from tvm import relax

    while isinstance(expr, relax.Var):
        bound = mutator.lookup_binding(expr)
        if bound is None:
            return None
        expr = bound
    return expr if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) else None


def is_op(expr, name: str) -> bool:
    import tvm
    from tvm import relax

    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name


def constant(expr) -> np.ndarray | None:
    import tvm

    if isinstance(expr, tvm.ir.GenericConst):
        return expr.value.numpy()
    return None


def dtype_of(expr) -> str:
    return str(expr.ty.dtype)


def rank_of(expr) -> int:
    return int(expr.ty.ndim)


def _same(a: tuple, b: tuple) -> bool:
    """Two (scale, zero point) pairs that quantize alike (per-tensor, equal values)."""
    return a[0].size == 1 and b[0].size == 1 and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@rule("relax.dequantize")
def _requantize_identity(m, made, quantize, out):
    source = m.dequantized(made)
    if source is None or not _same(source[1:3], out) or dtype_of(source[0]) != quantize.attrs.out_dtype:
        return None
    return source[0]


@rule("relax.nn.relu")
def _relu(m, made, quantize, out):
    from tvm import relax

    source = m.dequantized(made.args[0])
    if source is None or not _same(source[1:3], out) or dtype_of(source[0]) != quantize.attrs.out_dtype:
        return None
    q = source[0]
    return relax.op.maximum(q, relax.const(int(out[1].reshape(-1)[0]), dtype_of(q)))


@rule(*SAME_SCALE_OPS)
def _same_scale(m, made, quantize, out):
    from tvm import relax

    source = m.dequantized(made.args[0])
    if source is None or not _same(source[1:3], out) or dtype_of(source[0]) != quantize.attrs.out_dtype:
        return None
    return relax.Call(made.op, [source[0], *made.args[1:]], made.attrs, made.ty_args)


@rule("relax.add", "relax.nn.conv2d", "relax.matmul")
def _linear(m, made, quantize, out):
    """conv2d/matmul of dequantized operands, optionally plus a constant-made bias, in int32."""
    from tvm import relax

    bias, var = None, quantize.args[0]  # var: the binding of the float conv/matmul
    if made.op.name == "relax.add":
        for i in (0, 1):
            core = m.producer(made.args[i])
            if core is not None and core.op.name in ("relax.nn.conv2d", "relax.matmul") and \
                    _is_constant_made(m, made.args[1 - i]):
                made, bias, var = core, made.args[1 - i], made.args[i]
                break
        else:
            return None
    lowered = _conv2d(m, made) if made.op.name == "relax.nn.conv2d" else _matmul(m, made)
    if lowered is None:
        return None
    acc, scale = lowered
    if isinstance(var, relax.Var):  # named as the float one was: dlc.compiler.provenance finds its ONNX node
        acc = m.builder_.emit(acc, name_hint=var.name)
    real = relax.op.multiply(relax.op.astype(acc, "float32"), relax.const(scale.astype(np.float32)))
    if bias is not None:
        real = relax.op.add(real, bias)
    return relax.op.quantize(real, quantize.args[1], quantize.args[2], int(quantize.attrs.axis),
                             quantize.attrs.out_dtype)


def _conv2d(m, conv):
    from tvm import relax

    x, w = m.dequantized(conv.args[0]), m.dequantized(conv.args[1])
    if x is None or w is None or x[1].size != 1 or conv.attrs.data_layout != "NCHW" or \
            conv.attrs.kernel_layout != "OIHW" or not _per_axis(w, 0):
        return None
    xi, wi = _operands(x, w, 0)
    attrs = conv.attrs
    acc = relax.op.nn.conv2d(xi, wi, attrs.strides, attrs.padding, attrs.dilation, attrs.groups, "NCHW", "OIHW",
                             "NCHW", "int32")
    scale = (x[1].reshape(()) * w[1].astype(np.float64)).reshape(1, -1, 1, 1) if w[1].size > 1 else \
        x[1].reshape(()) * w[1].reshape(()).astype(np.float64)
    return acc, scale


def _matmul(m, matmul):
    """matmul(x, w) or matmul(x, permute_dims(w)) of a 2-D weight; per-channel along the output columns."""
    from tvm import relax

    x = m.dequantized(matmul.args[0])
    weight, transposed = matmul.args[1], False
    permute = m.producer(weight)
    if permute is not None and permute.op.name == "relax.permute_dims":
        axes = [int(a) for a in permute.attrs.axes] if permute.attrs.axes is not None else [1, 0]
        if axes != [1, 0]:
            return None
        weight, transposed = permute.args[0], True
    w = m.dequantized(weight)
    if x is None or w is None or x[1].size != 1 or rank_of(w[0]) != 2:
        return None
    column_axis = 0 if transposed else 1
    if not _per_axis(w, column_axis):
        return None
    xi, wi = _operands(x, w, column_axis)
    if transposed:
        wi = relax.op.permute_dims(wi, [1, 0])
    acc = relax.op.matmul(xi, wi, "int32")
    return acc, x[1].reshape(()) * w[1].astype(np.float64).reshape(-1)


def _per_axis(w, axis: int) -> bool:
    """A weight quantized per tensor, or per channel along `axis` (the one a scale can be factored out of)."""
    return w[1].size == 1 or w[3] == axis or w[3] + rank_of(w[0]) == axis


def _operands(x, w, axis: int):
    """The integer operands: as they are where the zero point is 0, else shifted in int16."""
    from tvm import relax

    def shifted(q, zero, shape):
        if not zero.any() and dtype_of(q) in ("int8", "uint8"):
            return q, dtype_of(q)
        return relax.op.subtract(relax.op.astype(q, "int16"), relax.const(zero.reshape(shape).astype(np.int16))), \
            "int16"

    rank = rank_of(w[0])
    w_shape = [-1 if i == axis else 1 for i in range(rank)] if w[2].size > 1 else ()
    xi, x_dtype = shifted(x[0], x[2], ())
    wi, w_dtype = shifted(w[0], w[2], w_shape)
    if x_dtype != w_dtype:  # int8 with uint8 or int16: both in int16, which holds either exactly
        xi = xi if x_dtype == "int16" else relax.op.astype(xi, "int16")
        wi = wi if w_dtype == "int16" else relax.op.astype(wi, "int16")
    return xi, wi


def _is_constant_made(m, expr) -> bool:
    """Whether `expr` is computed from constants only (a bias: dequantize of an int32 constant, reshaped)."""
    import tvm
    from tvm import relax

    if isinstance(expr, tvm.ir.GenericConst):
        return True
    call = m.producer(expr)
    if call is None:
        return False
    return all(isinstance(a, tvm.ir.GenericConst) or
               (isinstance(a, (relax.Var, relax.Call)) and _is_constant_made(m, a))
               for a in call.args if not isinstance(a, relax.ShapeExpr))


def integer_kernels(mod) -> dict[str, int]:
    """Conv/matmul kernels of a TIR module by what their reductions read: {"int8": n, "int16": m, "float32": k}.

    "int8": the operands are int8/uint8 bytes; "int16": an operand was widened to int16 (an
    activation zero point subtracted, on CPUs without a byte dot product); both accumulate in
    int32. Read from the kernels' dtypes, not their names.
    """
    from tvm import tirx

    counts: Counter = Counter()
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or not any(k in gv.name_hint for k in ("conv2d", "matmul", "dense")):
            continue
        for block in _reduction_blocks(func):
            written = str(block.writes[0].source.dtype)
            reads = {str(r.source.dtype) for r in block.reads} - ({"int32"} if written == "int32" else set())
            if written == "int32" and reads and reads <= set(INTEGER_DTYPES):
                counts["int16" if "int16" in reads else "int8"] += 1
            else:
                counts[written] += 1
            break
    return dict(counts)


def _reduction_blocks(func):
    """The blocks of an unscheduled kernel (all under its root) that reduce."""
    from tvm import s_tir, tirx

    sch = s_tir.Schedule(func)
    blocks = [sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))]
    return [b for b in blocks if any(v.iter_type == tirx.IterVar.CommReduce for v in b.iter_vars)]
