"""KServe v2 JSON tensors ↔ numpy, and the protocol's errors.

A request tensor is `{"name", "shape", "datatype", "data"}` with `data` flat in row-major
order; errors are `{"error": "..."}` with a 4xx/5xx status. Every problem with a request is
a `ProtocolError` carrying its status, so the app turns it into the protocol's error JSON.

The binary tensor extension (what tritonclient sends by default): the JSON header is the
first `Inference-Header-Content-Length` bytes of the body, and a tensor with
`"parameters": {"binary_data_size": n}` has its n raw little-endian bytes after it, in the
order of the tensors. Outputs asked for with `"parameters": {"binary_data": true}` come
back the same way, and so does any output holding NaN or infinity, which JSON cannot carry.
"""

from __future__ import annotations

import math

import numpy as np

from dlc.specs import TensorSpec

DATATYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
             "FP32": "float32", "FP64": "float64"}
TO_DATATYPE = {v: k for k, v in DATATYPES.items()}


class ProtocolError(Exception):
    """A request the protocol rejects: `status` is the HTTP status to answer with, `retry_after` seconds
    when trying again later will do (the queue was full)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


def tensor_metadata(spec: TensorSpec) -> dict:
    return {"name": spec.name, "datatype": TO_DATATYPE.get(spec.dtype, spec.dtype.upper()),
            "shape": [d if isinstance(d, int) else -1 for d in spec.shape]}


def decode_inputs(body: object, specs: list[TensorSpec], binary: bytes = b"") -> dict[str, np.ndarray]:
    """The request's input tensors as arrays, checked against `specs`; every problem reported at once.

    `binary` is what followed the JSON header (the binary tensor extension).
    """
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise ProtocolError(400, "the request body must be a JSON object with an 'inputs' list")
    by_name = {s.name: s for s in specs}
    arrays, problems, offset = {}, [], 0
    for tensor in body["inputs"]:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        size = _binary_size(tensor)
        chunk, offset = binary[offset:offset + size] if size is not None else None, offset + (size or 0)
        if not isinstance(name, str):
            problems.append("an input without a string 'name'")
            continue
        if name not in by_name:
            problems.append(f"unexpected input {name!r}")
            continue
        try:
            arrays[name] = _array(tensor, by_name[name], chunk)
        except ProtocolError as e:
            problems.append(str(e))
    if offset != len(binary):
        problems.append(f"the body carries {len(binary)} bytes of binary tensors, the inputs declare {offset}")
    named = {t.get("name") for t in body["inputs"] if isinstance(t, dict) and isinstance(t.get("name"), str)}
    problems += [f"missing input {n!r}" for n in by_name if n not in arrays and n not in named]
    if problems:
        expected = "; ".join(str(s) for s in specs)
        raise ProtocolError(400, f"{'; '.join(problems)} (the model takes {expected})")
    return arrays


def _binary_size(tensor: object) -> int | None:
    params = tensor.get("parameters") if isinstance(tensor, dict) else None
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ProtocolError(400, f"binary_data_size {size!r} is not a byte count")
    return size


def _array(tensor: dict, spec: TensorSpec, chunk: bytes | None) -> np.ndarray:
    datatype, shape, data = tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise ProtocolError(400, f"input {spec.name!r} has datatype {datatype!r}; one of {', '.join(DATATYPES)}")
    if DATATYPES[datatype] != spec.dtype:
        raise ProtocolError(400, f"input {spec.name!r} is {datatype}, the model takes {TO_DATATYPE[spec.dtype]}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise ProtocolError(400, f"input {spec.name!r} needs a 'shape' list of non-negative integers")
    if len(shape) != len(spec.shape) or any(isinstance(w, int) and w != g for w, g in zip(spec.shape, shape)):
        raise ProtocolError(400, f"input {spec.name!r} has shape {shape}, the model takes {list(spec.shape)}")
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if chunk is not None:
        if len(chunk) % dtype.itemsize:
            raise ProtocolError(400, f"input {spec.name!r} has {len(chunk)} binary bytes, not whole {datatype}s")
        array = np.frombuffer(chunk, dtype=dtype).astype(dtype.newbyteorder("="))
    else:
        try:
            array = np.asarray(data, dtype=DATATYPES[datatype])
        except (TypeError, ValueError, OverflowError) as e:
            raise ProtocolError(400, f"input {spec.name!r} data is not a list of {datatype} numbers "
                                     f"({' '.join(str(e).split())[:200]})") from e
    if array.size != math.prod(shape):  # Python's integers: a huge shape cannot overflow into a match
        raise ProtocolError(400, f"input {spec.name!r} has {array.size} values for shape {shape}")
    try:
        return array.reshape(shape)
    except (ValueError, OverflowError) as e:  # e.g. [0, 10**30]: no values, and a dimension numpy cannot hold
        raise ProtocolError(400, f"input {spec.name!r} has shape {shape}, which numpy cannot hold") from e


def encode_outputs(outputs: dict[str, np.ndarray], body: dict) -> tuple[list[dict], bytes]:
    """Output tensors as JSON, plus the binary tail for those asked for as binary data.

    The request's 'outputs' list selects them by name; its `binary_data` parameter (or the
    request-wide `binary_data_output`) picks the binary form.
    """
    requested = body.get("outputs")
    everything_binary = bool(_parameters(body).get("binary_data_output"))
    binary = {n: everything_binary for n in outputs}
    if requested is not None:
        if not isinstance(requested, list) or not all(isinstance(r, dict) and isinstance(r.get("name"), str)
                                                      for r in requested):
            raise ProtocolError(400, "'outputs' must be a list of {\"name\": ...} objects")
        binary = {r["name"]: bool(_parameters(r).get("binary_data", everything_binary)) for r in requested}
        unknown = [n for n in binary if n not in outputs]
        if unknown:
            raise ProtocolError(400, f"unknown output(s) {', '.join(map(repr, unknown))}; the model has "
                                     f"{', '.join(outputs)}")
    tensors, tail = [], []
    for name, as_binary in binary.items():
        array = np.asarray(outputs[name], order="C")  # ascontiguousarray would make a scalar 1-d
        tensor = {"name": name, "datatype": TO_DATATYPE.get(array.dtype.name, "FP32"), "shape": list(array.shape)}
        # JSON has no NaN or infinity: a tensor holding them comes back in the binary form
        if as_binary or (array.dtype.kind == "f" and not np.isfinite(array).all()):
            raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            tail.append(raw)
        else:
            tensor["data"] = array.reshape(-1).tolist()
        tensors.append(tensor)
    return tensors, b"".join(tail)


def _parameters(holder: dict) -> dict:
    """A request's or a tensor's 'parameters' object; anything else is a 400."""
    params = holder.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(400, "'parameters' must be a JSON object")
    return params
