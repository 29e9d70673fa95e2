"""Loading ONNX files with errors a user can act on, and reading their input/output specs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dlc.errors import InvalidModelError, first_line
from dlc.fileio import default_mode, require_file
from dlc.specs import TensorSpec


PROTOBUF_LIMIT = 2_000_000_000  # bytes: protobuf cannot write (or read) one message larger


@contextlib.contextmanager
def staged_model(out: str | Path) -> Iterator[Path]:
    """A path named like `out` in a temporary folder beside it: the ONNX file the block writes there (and its
    OUT.data, if any) is moved onto `out` only when the block succeeds, the data file first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as staging:
        staged = Path(staging) / out.name
        yield staged
        data = staged.with_name(f"{out.name}.data")
        for file in [data, staged] if data.exists() else [staged]:
            os.chmod(file, default_mode())  # not the temporary folder's 0700 world
            os.replace(file, out.parent / file.name)


def save_model(model, path: str | Path, limit: int | None = None) -> None:
    """Writes `model` to `path`: one file, or past protobuf's 2 GB limit with every initializer in PATH.data
    beside it, the layout torch.onnx.export writes (`model` then references that file). Write into
    `staged_model` to publish both atomically."""
    import onnx

    path = Path(path)
    if model.ByteSize() < (limit or PROTOBUF_LIMIT):
        onnx.save(model, str(path))
    else:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=f"{path.name}.data", size_threshold=1024)


def load_model(path: str | Path, check: bool = True):
    """Loads an ONNX model; a missing file, a non-ONNX file or a model the checker rejects is a DlcError."""
    import onnx
    from google.protobuf.message import DecodeError

    p = require_file(path, "ONNX model", "export one with `dlc export`")
    _check_external_data(p)
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


def _check_external_data(path: Path) -> None:
    """Each external-data file the model names is a file in the model's folder, before any of them is read."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    try:
        header = onnx.load(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, UnicodeDecodeError):
        return  # not ONNX at all: onnx.load says so next
    folder = path.resolve().parent
    for tensor in _get_all_tensors(header):
        if not uses_external_data(tensor):
            continue
        location = Path(ExternalDataInfo(tensor).location)
        try:
            outside = location.is_absolute() or ".." in location.parts or \
                not (folder / location).resolve().is_relative_to(folder)
        except (ValueError, OSError):  # a NUL byte, a name too long
            outside = True
        if outside:
            raise InvalidModelError(f"{path} keeps tensor {tensor.name!r} in {location}, outside the model's folder; "
                                    "it was not read. Keep the data files beside the model (torch.onnx.export "
                                    "writes NAME.onnx.data there)")
        if not (folder / location).is_file():
            raise InvalidModelError(f"{path} keeps its weights in {location}, which is missing; copy {location} "
                                    f"into {folder}, beside it")


def io_specs(model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs (initializers excluded) and outputs; unknown dims come back as names."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in initializers]
    return inputs, [_spec(v) for v in model.graph.output]


def inferred_shapes(model, pins: dict[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """Every tensor's static shape by ONNX shape inference, with the inputs named in `pins` given those shapes
    and any other symbolic input dimension taken as 1."""
    import onnx

    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    for value in pinned.graph.input:
        sizes = (pins or {}).get(value.name)
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if sizes is not None or not dim.HasField("dim_value"):
                dim.Clear()
                dim.dim_value = int(sizes[i]) if sizes is not None else 1
    graph = onnx.shape_inference.infer_shapes(pinned, strict_mode=False, data_prop=True).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
            shapes[value.name] = tuple(d.dim_value for d in tensor.shape.dim)
    return shapes


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


def node_names(model) -> list[str]:
    """Each node's name, or `OpType_i` (its index) where the name is empty or repeated: unique, in graph order."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.name] = counts.get(node.name, 0) + 1
    return [node.name if node.name and counts[node.name] == 1 else f"{node.op_type}_{i}"
            for i, node in enumerate(model.graph.node)]
