"""Loading ONNX files with errors a user can act on, and reading their input/output specs."""

from __future__ import annotations

from pathlib import Path

from dlc.errors import InvalidModelError, first_line
from dlc.fileio import require_file
from dlc.specs import TensorSpec


def load_model(path: str | Path, check: bool = True):
    """Loads an ONNX model; a missing file, a non-ONNX file or a model the checker rejects is a DlcError."""
    import onnx
    from google.protobuf.message import DecodeError

    p = require_file(path, "ONNX model", "export one with `dlc export`")
    try:
        model = onnx.load(str(p))
    except onnx.checker.ValidationError as e:  # external data outside the model's folder, missing or a link
        raise InvalidModelError(f"{p} names external data it may not read: {first_line(e)}; keep the data files "
                                "in the model's folder, beside it") from e
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError) as e:
        raise InvalidModelError(f"{p} is not an ONNX model (protobuf parse failed); "
                                f"pass a .onnx file, e.g. from `dlc export`") from e
    if not model.graph.node and not model.graph.output:
        raise InvalidModelError(f"{p} is not an ONNX model (it parsed as an empty graph); "
                                f"pass a .onnx file, e.g. from `dlc export`")
    if check:
        try:
            onnx.checker.check_model(model, full_check=False)
        except onnx.checker.ValidationError as e:
            raise InvalidModelError(f"{p} fails the ONNX checker: {first_line(e)}") from e
    return model


def io_specs(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs (initializers excluded) and outputs; unknown dims come back as names."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [_spec(v) for v in model.graph.output]


def batch_dim(model) -> str | None:
    """The symbolic first dimension that every graph input and output shares (a batch axis), or None.

    Outputs are shape-inferred first, since many models declare none: an output whose first
    dimension is fixed or unknown (a reduction over the batch, a reshape) means requests
    cannot be stacked along axis 0 and their answers cut apart again.
    """
    import onnx

    try:
        model = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError, RuntimeError):
        pass  # the declared shapes alone decide
    initializers = {t.name for t in model.graph.initializer}
    values = [v for v in model.graph.input if v.name not in initializers] + list(model.graph.output)
    firsts = set()
    for value in values:
        tensor_type = value.type.tensor_type
        dims = tensor_type.shape.dim if tensor_type.HasField("shape") else []
        if not dims or dims[0].HasField("dim_value") or not dims[0].dim_param:
            return None
        firsts.add(dims[0].dim_param)
    return firsts.pop() if len(firsts) == 1 else None


def _spec(value_info) -> TensorSpec:
    import onnx

    tensor_type = value_info.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                  for d in tensor_type.shape.dim)
    return TensorSpec(value_info.name, shape, dtype)
