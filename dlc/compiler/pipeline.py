"""The Relax pipeline dlc compiles with, in three stages shared by compiling and tuning.

    prepare    decompose inference ops; on CPUs, quantized (QDQ) convolutions and matmuls in
               integers (dlc.compiler.integer), convolutions to NHWC with HWIO weights
               (output channels innermost, so they vectorize like a matmul's columns; the
               weight transposes fold into constants at compile time, the activations'
               layout follows through pooling and elementwise ops) and exp, erf, tanh and
               softmax as TVM's vectorizable polynomials (ONNX Runtime's CPU kernels
               approximate them too, with polynomials of their own); then legalize to TIR,
               fold constants and fuse — the kernels that tuning searches and schedules apply to
    schedule   the tuning database's records where it has them, dlc's default CPU schedules
               (dlc.compiler.schedules) everywhere else
    lower      TVM's own: dataflow lowering, memory planning, VM code

GPU targets keep TVM's default pipeline, whose DLight rules schedule every kernel.
"""

from __future__ import annotations

from pathlib import Path

# ConvertLayout carries NHWC from the convolutions through whatever follows them.
CPU_LAYOUTS = {"relax.nn.conv2d": ["NHWC", "HWIO"]}
# Changes with what `prepare` and the default schedules make of a model: a tuning run's progress
# is recorded under it, so a model tuned before a change is searched again (its kernels changed).
VERSION = 2
FAST_FORMS = {"relax.exp": "fast_exp", "relax.erf": "fast_erf", "relax.tanh": "fast_tanh"}


def is_cpu(target) -> bool:
    return target.kind.name == "llvm"


SCHEDULES = ("default", "none")  # dlc's default CPU schedules, or TVM's unscheduled CPU pipeline (to compare)


def prepare(mod, target, schedules: str = "default"):
    """Relax → fused TIR kernels, ready for tuning or scheduling (in NHWC when default schedules follow)."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu
    from tvm.relax.pipeline import zero_pipeline

    from dlc.compiler.int8_dot import pack_int8_dots
    from dlc.compiler.integer import to_integer

    passes = [relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings()]
    with target:
        mod = tvm.transform.Sequential(passes)(_bounded_gathers(mod))
        if not is_cpu(target):
            return zero_pipeline()(mod)
        mod = to_integer(mod)[0]
        if schedules == "default":
            mod = fast_math()(relax.transform.FoldConstant()(_channels_last(mod)))
            mod = pack_int8_dots(mod, target)[0]
        return tvm.transform.Sequential([*cpu.library_dispatch_passes(target), *cpu.legalize_passes(target)])(mod)


def _bounded_gathers(mod):
    """Every `take` (ONNX Gather: embeddings, indexing) clips its indices instead of reading unchecked.

    TVM's ONNX importer emits `take(mode="fast")`, which reads past the table for an index
    out of range: an embedding given token id 10^9 crashed the process (a served model, the
    server), where ONNX Runtime answers with an error. Clipped, such an index reads the
    first or last row; indices in range (negative ones are wrapped before) are unchanged.
    """
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class Clip(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.take" and call.attrs.mode == "fast":
                return relax.op.take(call.args[0], call.args[1], call.attrs.axis, mode="clip")
            return call

    updated = mod
    for var, function in mod.functions.items():
        if isinstance(function, relax.Function):
            updated[var] = Clip().visit_expr(function)
    return updated


def _channels_last(mod):
    """Convolutions in NHWC with HWIO weights (Relax's ConvertLayout), for a module that has any.

    A module without convolutions is left alone: ConvertLayout would change nothing there,
    and its layout inference crashes on some operators (an InternalError "Invalid SLayout"
    on a model that stacks two tensors and takes their max). Where it crashes on a module
    with convolutions, they stay NCHW and take the fallback schedule.
    """
    import tvm
    from tvm import relax

    ops = set()
    for function in mod.functions.values():
        if isinstance(function, relax.Function):
            relax.analysis.post_order_visit(function, lambda e: ops.add(e.op.name) if isinstance(e, relax.Call) and
                                            isinstance(e.op, tvm.ir.Op) else None)
    if not ops & set(CPU_LAYOUTS):
        return mod
    try:
        return relax.transform.ConvertLayout(CPU_LAYOUTS)(mod)
    except tvm.error.InternalError:
        return mod


def fast_math():
    """exp, erf, tanh and softmax as TVM's polynomial forms (topi.fast_*), which vectorize.

    LLVM calls libm once per vector lane for exp and erf: the softmaxes and GELUs of a 4-layer
    encoder took 1.1 of its 6.7 ms. Measured against float64: exp within 4.1e-6 relative (0
    below about e^-87.7, inf from e^88.38, where float32 holds up to e^88.72), erf and tanh
    within 4.2e-7 absolute. Relax's own FastMathTransform does the same but reads the name of
    every call's callee, and crashed on the ExternFunc call of an Expand to a runtime shape.
    """
    import tvm
    from tvm import relax, topi

    @relax.expr_functor.mutator
    class FastMath(relax.PyExprMutator):
        def visit_call_(self, call):
            if isinstance(call.op, tvm.ir.Op):
                if call.op.name == "relax.nn.softmax":
                    return self.builder_.call_te(topi.nn.fast_softmax, call.args[0], call.attrs.axis)
                if call.op.name in FAST_FORMS:
                    return self.builder_.call_te(getattr(topi, FAST_FORMS[call.op.name]), call.args[0])
            return super().visit_call_(call)

    @tvm.transform.module_pass(opt_level=0, name="dlc.FastMath")
    def transform(mod, _context):
        mutator = FastMath(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                mutator.builder_.update_func(gv, mutator.visit_expr(func))
        return mutator.builder_.get()

    return transform


def schedule(mod, target, database: Path | None = None, schedules: str = "default"):
    """Tuned records where the database has them, then the default schedules (CPU targets)."""
    from tvm.relax import transform

    from dlc.compiler.schedules import apply_default_schedules

    if database is not None:
        with target:
            mod = transform.MetaScheduleApplyDatabase(str(database))(mod)
    return apply_default_schedules(mod, target, None if schedules == "default" else []) if is_cpu(target) else mod


def lower(target):
    """The rest of TVM's pipeline for `target`, after scheduling."""
    import tvm
    from tvm import relax
    from tvm.relax.backend.cpu_generic import pipeline as cpu

    if not is_cpu(target):
        return relax.get_default_pipeline(target)
    return tvm.transform.Sequential([*cpu.dataflow_lower_passes(target), *cpu.finalize_passes(target)])
