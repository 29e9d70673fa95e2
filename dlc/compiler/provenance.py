"""Which ONNX nodes each compiled kernel computes.

TVM keeps no record of where an expression came from. dlc's import names every binding
after the ONNX node that made it (`dlc_n12`, `dlc_n12_0`: dlc.compiler.frontend), and those
names survive the dataflow rewrites up to operator fusion. `FuseOps` then moves each group of
bindings into a function of its own, keeping their names except the group's output's (it
becomes `gv`, and the call in `main` a fresh `lv`); that output is recognised by what it
computes — its callee and its arguments — in the module just before fusion. `FuseTIR` names
each fused kernel after its function; a kernel `main` calls directly keeps its binding.

A node lands in no kernel when the compiler folded it into a constant or removed it
(shape arithmetic, Identity, Dropout) or when it runs as a view without a kernel (Reshape,
Flatten); kernels without a node are layout conversions the compiler inserted.
"""

from __future__ import annotations

import re
from typing import Any

from dlc.artifact import NO_KERNEL_FOLDED as FOLDED
from dlc.artifact import NO_KERNEL_VIEW as VIEW
from dlc.compiler.frontend import NODE_LABEL

_LABEL = re.compile(re.escape(NODE_LABEL) + r"(\d+)(?:_t?\d+)*")


def node_of(name: str) -> int | None:
    match = _LABEL.fullmatch(name)
    return int(match.group(1)) if match else None


def kernel_nodes_instrument():
    """A pass instrument that keeps the module just before and just after FuseOps."""
    from tvm.ir.instrument import pass_instrument

    @pass_instrument
    class Fusion:
        def __init__(self):
            self.before = self.after = None

        def run_before_pass(self, mod, info):
            if info.name == "FuseOps":
                self.before = mod

        def run_after_pass(self, mod, info):
            if info.name == "FuseOps":
                self.after = mod

    return Fusion()


def attribute(fusion, final_mod, node_count: int) -> tuple[dict[str, list[int]], dict[int, str]]:
    """(kernel name → indices of the ONNX nodes it computes, node index → why it has no kernel).

    `final_mod` is the module after fusion (its PrimFuncs are the kernels); every node is in
    exactly one kernel or has a reason; one split across kernels goes to the one holding its result.
    """
    from tvm import relax, tirx

    kernels = {gv.name_hint for gv, f in final_mod.functions_items() if isinstance(f, tirx.PrimFunc)}
    found: dict[str, list[int]] = {k: [] for k in kernels}
    if fusion.before is None or fusion.after is None:
        return found, {i: "not traced (the compiler did not fuse this module)" for i in range(node_count)}
    signatures: dict[tuple, list[str]] = {}  # identical computations (same callee, same inputs): in order
    for b in _bindings(fusion.before["main"]):
        signature = _signature(b.value, lambda v: v.name)
        if signature:
            signatures.setdefault(signature, []).append(b.var.name)

    def original(value, name, fallback: str) -> str:
        """The name the binding computing `value` had before fusion (each match used once, in order)."""
        left = signatures.get(_signature(value, name))
        return left.pop(0) if left else fallback

    holds: dict[int, list[str]] = {}  # node → kernels holding a binding of it, the one with its result first
    seen: set[int] = set()
    renamed: dict[Any, str] = {}  # a var of main after fusion → the name its value had before

    def name_in(env):
        return lambda var: env.get(var, var.name)

    for binding in _bindings(fusion.after["main"]):
        value, kernel, names = binding.value, None, []
        callee = value.op if isinstance(value, relax.Call) else None
        if isinstance(callee, relax.GlobalVar) and isinstance(fusion.after[callee], relax.Function):
            function = fusion.after[callee]
            env = {p: name_in(renamed)(a) if isinstance(a, relax.Var) else _constant_key(a)
                   for p, a in zip(function.params, value.args)}
            for inner in _bindings(function):  # one function may serve two identical groups: match each call
                env[inner.var] = original(inner.value, name_in(env), inner.var.name)
                names.append(env[inner.var])
            kernel, result = callee.name_hint, names[-1] if names else None
        else:
            result = original(value, name_in(renamed), binding.var.name)
            names = [result]
            if _signature(value, name_in(renamed)):
                kernel = value.args[0].name_hint
        renamed[binding.var] = result
        for name in names:
            node = node_of(name)
            if node is None:
                continue
            seen.add(node)
            if kernel in found:
                where = holds.setdefault(node, [])
                if kernel not in where:
                    where.insert(0, kernel) if name == f"{NODE_LABEL}{node}" else where.append(kernel)
    for node, where in holds.items():
        found[where[0]].append(node)
    missing = {i: VIEW if i in seen else FOLDED for i in range(node_count) if i not in holds}
    return {k: sorted(v) for k, v in found.items()}, missing


def _bindings(function):
    from tvm import relax

    body = function.body
    return [b for block in body.blocks for b in block.bindings if isinstance(b, relax.VarBinding)] \
        if isinstance(body, relax.SeqExpr) else []


def _signature(value, name) -> tuple | None:
    """(callee, argument names) of a call_tir; None for anything else."""
    from tvm import relax

    if not (isinstance(value, relax.Call) and getattr(value.op, "name", None) == "relax.call_tir"):
        return None
    args = value.args[1].fields if isinstance(value.args[1], relax.Tuple) else [value.args[1]]
    return (value.args[0].name_hint, *(name(a) if isinstance(a, relax.Var) else _constant_key(a) for a in args))


def _constant_key(expr):
    """A constant argument by its value (two convolutions of one input differ by their weights)."""
    import tvm_ffi

    try:
        return ("const", tvm_ffi.structural_hash(expr))
    except Exception:  # noqa: BLE001 - an argument that cannot be hashed tells nothing apart
        return ("const",)


def instrumented(instrument):
    """The current pass context with `instrument` added (its options kept)."""
    import tvm

    current = tvm.transform.PassContext.current()
    return tvm.transform.PassContext(opt_level=current.opt_level, required_pass=list(current.required_pass),
                                     disabled_pass=list(current.disabled_pass), config=dict(current.config),
                                     instruments=[*current.instruments, instrument])


def kernel_summary(fusion, mod, rows: list[dict[str, Any]], nodes: list[str]) -> dict[str, Any]:
    """Adds to each kernel's row its ONNX "nodes" and its "args" ([shape, dtype] of each buffer it takes);

    returns {"nodes_without_kernel": {node name: why}} for the manifest.
    """
    from tvm import tirx

    found, missing = attribute(fusion, mod, len(nodes))
    calls: dict[str, int] = {}
    for binding in _bindings(mod["main"]):
        signature = _signature(binding.value, lambda v: "")
        if signature:
            calls[signature[0]] = calls.get(signature[0], 0) + 1
    for row in rows:
        func = mod[row["name"]]
        row["nodes"] = [nodes[i] for i in found.get(row["name"], [])]
        row["calls"] = calls.get(row["name"], 0)  # call sites in main: calls per model run, without loops
        if isinstance(func, tirx.PrimFunc):
            row["args"] = [[[int(d) if isinstance(d, (int, tirx.IntImm)) else str(d) for d in buffer.shape],
                            str(buffer.dtype)] for buffer in func.params if hasattr(buffer, "shape")]
    return {"nodes_without_kernel": {nodes[i]: why for i, why in sorted(missing.items())}}
