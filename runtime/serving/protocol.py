"""KServe v2 JSON tensors ↔ numpy, and the protocol's errors.

A request tensor is `{"name", "shape", "datatype", "data"}` with `data` flat in row-major
order; errors are `{"error": "..."}` with a 4xx/5xx status. Every problem with a request is
a `ProtocolError` carrying its status, so the app turns it into the protocol's error JSON.
"""

from __future__ import annotations

import numpy as np

from dlc.runtime.specs import TensorSpec

DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
             "FP32": "float32", "FP64": "float64"}
TO_DATATYPE = {v: k for k, v in DATATYPES.items()}


class ProtocolError(Exception):
    """A request the protocol rejects: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def tensor_metadata(spec: TensorSpec) -> dict:
    return {"name": spec.name, "datatype": TO_DATATYPE.get(spec.dtype, spec.dtype.upper()),
            "shape": [d if isinstance(d, int) else -1 for d in spec.shape]}


def decode_inputs(body: object, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """The request's input tensors as arrays, checked against `specs`; every problem reported at once."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise ProtocolError(400, "the request body must be a JSON object with an 'inputs' list")
    by_name = {s.name: s for s in specs}
    arrays, problems = {}, []
    for tensor in body["inputs"]:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        if name not in by_name:
            problems.append(f"unexpected input {name!r}")
            continue
        try:
            arrays[name] = _array(tensor, by_name[name])
        except ProtocolError as e:
            problems.append(str(e))
    problems += [f"missing input {n!r}" for n in by_name if n not in arrays and n not in
                 {t.get("name") for t in body["inputs"] if isinstance(t, dict)}]
    if problems:
        expected = "; ".join(str(s) for s in specs)
        raise ProtocolError(400, f"{'; '.join(problems)} (the model takes {expected})")
    return arrays


def _array(tensor: dict, spec: TensorSpec) -> np.ndarray:
    datatype, shape, data = tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
    if tensor.get("parameters", {}).get("binary_data_size") is not None:
        raise ProtocolError(400, f"input {spec.name!r} uses the binary tensor extension, which this server does "
                                 f"not take yet; send JSON data (tritonclient: binary_data=False)")
    if datatype not in DATATYPES:
        raise ProtocolError(400, f"input {spec.name!r} has datatype {datatype!r}; one of {', '.join(DATATYPES)}")
    if DATATYPES[datatype] != spec.dtype:
        raise ProtocolError(400, f"input {spec.name!r} is {datatype}, the model takes {TO_DATATYPE[spec.dtype]}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ProtocolError(400, f"input {spec.name!r} needs a 'shape' list of non-negative integers")
    if len(shape) != len(spec.shape) or any(isinstance(w, int) and w != g for w, g in zip(spec.shape, shape)):
        raise ProtocolError(400, f"input {spec.name!r} has shape {shape}, the model takes {list(spec.shape)}")
    try:
        array = np.asarray(data, dtype=DATATYPES[datatype])
    except (TypeError, ValueError) as e:
        raise ProtocolError(400, f"input {spec.name!r} data is not a list of {datatype} numbers ({e})") from e
    if array.size != int(np.prod(shape)):
        raise ProtocolError(400, f"input {spec.name!r} has {array.size} values for shape {shape}")
    return array.reshape(shape)


def encode_outputs(outputs: dict[str, np.ndarray], requested: object) -> list[dict]:
    """Output tensors as JSON; `requested` (the request's 'outputs' list) selects them by name."""
    names = list(outputs)
    if requested is not None:
        if not isinstance(requested, list) or not all(isinstance(r, dict) for r in requested):
            raise ProtocolError(400, "'outputs' must be a list of {\"name\": ...} objects")
        names = [r.get("name") for r in requested]
        unknown = [n for n in names if n not in outputs]
        if unknown:
            raise ProtocolError(400, f"unknown output(s) {', '.join(map(repr, unknown))}; the model has "
                                     f"{', '.join(outputs)}")
    return [{"name": n, "datatype": TO_DATATYPE.get(outputs[n].dtype.name, "FP32"), "shape": list(outputs[n].shape),
             "data": outputs[n].reshape(-1).tolist()} for n in names]
