"""ONNX → Relax, with TVM's importer and one converter of dlc's own.

TVM's importer turns Clip (ReLU6 in MobileNets) into opaque TIR calls (`emit_te(topi.maximum)`),
which layout conversion cannot see through: every ReLU6 of an NHWC network would be wrapped
in two transposes. dlc converts a Clip whose bounds are constants into Relax's own
`maximum`/`minimum` with those constants, which are layout-agnostic. The importer has no
hook for custom converters, so its converter table is swapped for the duration of one
import (under a lock) and restored; any other Clip goes to TVM's converter.
"""

from __future__ import annotations

import contextlib
import threading

from dlc.errors import DlcError, first_line

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
    try:
        with _dlc_converters():
            mod = from_onnx(model, shape_dict=static, dtype_dict={s.name: s.dtype for s in inputs},
                            keep_params_in_input=False)
    except Exception as e:  # the importer raises many types; any of them means "cannot import"
        raise DlcError(f"TVM's ONNX importer failed: {type(e).__name__}: {first_line(e)}; "
                       "run `dlc doctor MODEL.onnx` to see which ops are supported, or `dlc optimize MODEL.onnx` "
                       "first to fold the constants and shape computations the importer cannot read") from e
    if bounds:
        mod["main"] = mod["main"].with_attr("tir_var_upper_bound", dict(bounds))
    return mod


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
def _dlc_converters():
    from tvm.relax.frontend.onnx import onnx_frontend

    original = onnx_frontend._get_convert_map
    clip = _layout_agnostic_clip(onnx_frontend.Clip)

    def convert_map():
        return {**original(), "Clip": clip}

    with _PATCH_LOCK:
        onnx_frontend._get_convert_map = convert_map
        try:
            yield
        finally:
            onnx_frontend._get_convert_map = original


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
