"""ONNX → Relax, with TVM's importer and one converter of dlc's own.

TVM's importer turns Clip (ReLU6 in MobileNets) into opaque TIR calls (`emit_te(topi.maximum)`),
which layout conversion cannot see through: every ReLU6 of an NHWC network would be wrapped
in two transposes. dlc converts a Clip whose bounds are constants into Relax's own
`maximum`/`minimum` with those constants, which are layout-agnostic. The importer has no
hook for custom converters, so its converter table is swapped for the duration of one
import (under a lock) and restored; any other Clip goes to TVM's converter.

Every binding an ONNX node's converter emits is named after the node (`dlc_n12` for node 12's
result, `dlc_n12_0`... for what its converter emitted on the way), so that the compiler can
later say which ONNX nodes each kernel computes (dlc.compiler.provenance).
"""

from __future__ import annotations

import contextlib
import threading

from dlc.errors import DlcError, first_line
from dlc.onnxio import node_names

_PATCH_LOCK = threading.Lock()


def import_relax(model, inputs, bounds: dict[str, int] | None = None):
    """The ONNX model as a Relax IRModule with the input shapes `inputs` and embedded weights.

    A symbolic dimension (a name in `inputs`) stays symbolic, one variable per name across
    the inputs; `bounds` gives each its upper bound, which Relax plans memory for.
    """
    from tvm.relax.frontend.onnx import from_onnx

    static = {s.name: list(s.shape) for s in inputs if s.is_static()}
    if len(static) < len(inputs):
        model = _with_input_dims(model, inputs)  # the importer takes symbolic names from the graph's inputs only
    names = node_names(model)
    if any(node.name != name for node, name in zip(model.graph.node, names)):  # empty or repeated names
        model = _renamed(model, names)
    try:
        with _dlc_converters(model):
            mod = from_onnx(model, shape_dict=static, dtype_dict={s.name: s.dtype for s in inputs},
                            keep_params_in_input=False)
    except Exception as e:  # the importer raises many types; any of them means "cannot import"
        raise DlcError(f"TVM's ONNX importer failed: {type(e).__name__}: {first_line(e)}; "
                       "run `dlc doctor MODEL.onnx` to see which ops are supported, or `dlc optimize MODEL.onnx` "
                       "first to fold the constants and shape computations the importer cannot read") from e
    mod = _label_the_rest(mod)
    if bounds:
        mod["main"] = mod["main"].with_attr("tir_var_upper_bound", dict(bounds))
    return mod


def _renamed(model, names: list[str]):
    """A copy of `model` whose nodes are called `names` (so each can be told apart in the import)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node, name in zip(copy.graph.node, names):
        node.name = name
    return copy


def _with_input_dims(model, inputs):
    """A copy of `model` whose graph inputs have the dimensions of `inputs` (sizes, or symbol names)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    by_name = {s.name: s for s in inputs}
    for value in copy.graph.input:
        if value.name in by_name:
            for dim, want in zip(value.type.tensor_type.shape.dim, by_name[value.name].shape):
                if isinstance(want, int):
                    dim.dim_value = want
                else:
                    dim.dim_param = want
    return copy


@contextlib.contextmanager
def _dlc_converters(model):
    from tvm import relax
    from tvm.relax.frontend.onnx import onnx_frontend

    original, original_emit = onnx_frontend._get_convert_map, relax.BlockBuilder.emit
    clip = _layout_agnostic_clip(onnx_frontend.Clip)
    index = _node_index(model)
    labelled = {name: _labelled(converter, index) for name, converter in {**original(), "Clip": clip}.items()}

    def convert_map():  # the importer asks for it once per node
        return labelled

    def emit(self, expr, name_hint=""):
        label = getattr(_LABEL, "node", None)  # set only in this thread, while a converter runs
        if label and not name_hint:
            _LABEL.count += 1
            name_hint = f"{label}_{_LABEL.count - 1}"
        return original_emit(self, expr, name_hint)

    with _PATCH_LOCK:
        onnx_frontend._get_convert_map, relax.BlockBuilder.emit = convert_map, emit
        try:
            yield
        finally:
            onnx_frontend._get_convert_map, relax.BlockBuilder.emit = original, original_emit


NODE_LABEL = "dlc_n"  # + the node's index in the graph; + "_K" for a binding its converter emitted on the way
_LABEL = threading.local()


def _label_the_rest(mod):
    """Bindings TVM emitted for a node without going through `emit` (the arguments of a nested call) take
    the label of the node whose result follows them; the graph's output aliases take their value's."""
    import re

    import tvm
    from tvm import relax

    label = re.compile(re.escape(NODE_LABEL) + r"\d+")
    bindings = [b for block in mod["main"].body.blocks for b in block.bindings if isinstance(b, relax.VarBinding)] \
        if isinstance(mod["main"].body, relax.SeqExpr) else []
    names, pending = {}, []
    for binding in bindings:
        name = binding.var.name
        if isinstance(binding.value, relax.Var) and label.fullmatch(names.get(binding.value, binding.value.name)):
            names[binding.var] = names.get(binding.value, binding.value.name)
        elif label.fullmatch(name):
            names.update({var: f"{name}_t{k}" for k, var in enumerate(pending)})
            pending = []
        elif not label.match(name):
            pending.append(binding.var)
    if not names:
        return mod

    @relax.expr_functor.mutator
    class Rename(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            if binding.var not in names:
                return super().visit_var_binding_(binding)
            value = self.visit_expr(binding.value)
            dataflow = isinstance(binding.var, relax.DataflowVar) or not self.builder_.current_block_is_dataflow()
            emit = self.builder_.emit if dataflow else self.builder_.emit_output
            self.set_var_remap(binding.var, emit(value, name_hint=names[binding.var]))

    try:
        renamed = mod
        renamed["main"] = Rename(mod).visit_expr(mod["main"])
        return renamed
    except tvm.error.TVMError:  # the labels only serve `dlc profile`'s map: a module they cannot go on stays as is
        return mod


def _node_index(model) -> dict[str, int]:
    """Node name → index in the graph (dlc.onnxio.node_names: unique by then, see import_relax)."""
    return {node.name: i for i, node in enumerate(model.graph.node)}


def _labelled(converter, index: dict[str, int]):
    """`converter` whose result, and whatever it emits, is bound to vars named after the ONNX node it converts."""
    from tvm import relax

    class Labelled(converter):
        @classmethod
        def get_converter(cls, opset):
            convert = converter.get_converter(opset)

            def run(bb, inputs, attr, params):
                node = index.get(attr.get("tvm_custom", {}).get("name"))
                if node is None:  # a subgraph's node, or one whose name is not unique
                    return convert(bb, inputs, attr, params)
                outer = getattr(_LABEL, "node", None), getattr(_LABEL, "count", 0)
                _LABEL.node, _LABEL.count = f"{NODE_LABEL}{node}", 0
                try:
                    result = convert(bb, inputs, attr, params)
                    if isinstance(result, relax.Call):
                        result = bb.emit(result, name_hint=f"{NODE_LABEL}{node}")
                    elif isinstance(result, relax.Tuple):  # LayerNormalization, Attention...: each output bound
                        result = relax.Tuple([bb.emit(f, name_hint=f"{NODE_LABEL}{node}_{i}")
                                              if isinstance(f, relax.Call) else f for i, f in enumerate(result.fields)])
                    return result
                finally:
                    _LABEL.node, _LABEL.count = outer

            return run

    return Labelled


def _layout_agnostic_clip(tvm_clip):
    """A Clip converter: constant bounds become Relax maximum/minimum; anything else TVM's converter."""
    import math

    import tvm
    from tvm import relax

    def bound(value):
        """A constant bound as a scalar constant; None for an absent or NaN (= unbounded) one; False otherwise."""
        if value is None:
            return None
        if not isinstance(value, tvm.ir.GenericConst) or value.value.numpy().size != 1:
            return False
        number = value.value.numpy().reshape(()).item()  # an int64 bound stays exact
        return None if isinstance(number, float) and math.isnan(number) else relax.const(number, value.ty.dtype)

    class Clip(tvm_clip):
        @classmethod
        def _impl_v13(cls, bb, inputs, attr, params):
            lo, hi = (bound(inputs[i] if len(inputs) > i else None) for i in (1, 2))
            if lo is False or hi is False:
                return tvm_clip._impl_v13(bb, inputs, attr, params)
            result = inputs[0]
            if lo is not None:
                result = bb.emit(relax.op.maximum(result, lo))
            if hi is not None:
                result = bb.emit(relax.op.minimum(result, hi))
            return result

        _impl_v11 = _impl_v13

    return Clip
