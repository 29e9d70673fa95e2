"""Where quantization loses accuracy: each layer's error, tensor by tensor, float vs quantized.

Both models run on ONNX Runtime with every intermediate tensor exposed as an output. A QDQ
model keeps the float model's tensor names for the values before each QuantizeLinear, so
tensor t of one is compared with tensor t of the other, as signal-to-quantization-noise:

    SQNR(t) = 10·log10( Σ t_float² / Σ (t_float − t_quant)² )   dB; more is better

where t_quant is what the next layer reads (the DequantizeLinear after t's QuantizeLinear),
and a layer followed by a Relu or Clip is judged after it (the quantizer merges the two).
Each quantized input is also judged on its own rounding, channel by channel (the median of
the channels' SQNR): a tensor whose range one outlier sets rounds every other channel to a
few levels, which the tensor's overall SQNR hides. Keeping such a consumer float does not
help while its input is still rounded: the layer that makes the input must stay float too.

The error accumulates along the graph, so a layer is judged by what it adds: its harm is
the SQNR of its best-kept input minus the SQNR of its output. A layer that reads a tensor
whose range one outlier channel dominates shows it here: the input keeps a high SQNR (the
outlier carries the energy) while every small channel it reads was rounded to zero, and
its output's SQNR collapses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAP_DB = 100.0  # an exact tensor (a graph input) and anything closer than this count as this


@dataclass(frozen=True)
class LayerError:
    name: str  # the node's name in the float model
    op: str
    output: str
    sqnr_db: float  # of its output, accumulated from the graph's input
    harm_db: float  # what this layer adds: best input SQNR - output SQNR
    # its activation inputs' own rounding: (tensor, the layer that makes it or None, median per-channel SQNR dB)
    rounded_inputs: tuple[tuple[str, str | None, float], ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "output": self.output, "sqnr_db": round(self.sqnr_db, 2),
                "harm_db": round(self.harm_db, 2),
                "inputs_rounding_db": {t: round(db, 2) for t, _, db in self.rounded_inputs}}


def layer_errors(float_model, quantized_model, feeds: list[dict[str, np.ndarray]], nodes) -> list[LayerError]:
    """SQNR and harm of every node in `nodes` (onnx NodeProtos of `float_model`), most harmful first."""
    initializers = {i.name for i in float_model.graph.initializer}
    wanted = {t for n in nodes for t in [*n.input, *n.output] if t} - initializers
    seen, ranges = _seen_as(quantized_model)
    produced = {o for n in quantized_model.graph.node for o in n.output} | {i.name for i in quantized_model.graph.input}
    follow = _activation_chains(float_model)
    wanted |= {follow.get(t, t) for t in wanted}
    reference = _run_exposed(float_model, feeds, wanted)
    quantized = _run_exposed(quantized_model, feeds, {seen.get(t, t) for t in reference} | set(seen) & wanted)
    sqnr = {t: _sqnr(reference[t], quantized[seen.get(t, t)]) for t in reference
            if seen.get(t, t) in quantized and (t in produced or t in seen)}
    # a tensor's own rounding, channel by channel: what an outlier channel's range does to the others. It is
    # measured within the quantized range: a Relu the quantizer merged clamps there, which is not rounding.
    rounding = {t: _channel_sqnr(np.clip(quantized[t], *ranges[t]), quantized[seen[t]]) for t in seen
                if t in quantized and seen[t] in quantized}
    makers = {follow.get(n.output[0], n.output[0]): n.name for n in nodes}
    rows = []
    for node in nodes:
        out = node.output[0] if node.output[0] in sqnr else follow.get(node.output[0])
        if out not in sqnr:
            continue
        activations = [t for t in node.input if t and t not in initializers]
        best = max([sqnr.get(t, CAP_DB) for t in activations], default=CAP_DB)
        rounded = tuple((t, makers.get(t), rounding[t]) for t in activations if t in rounding)
        rows.append(LayerError(node.name or out, node.op_type, out, sqnr[out], best - sqnr[out], rounded))
    return sorted(rows, key=lambda r: -r.harm_db)


def _channel_sqnr(value: np.ndarray, rounded: np.ndarray) -> float:
    """The median over channels (axis 1 of each sample's tensor; axis 0 is the feed) of SQNR(value, rounded)."""
    if value.ndim < 3 or value.shape != rounded.shape:
        return _sqnr(value, rounded)
    channels = np.moveaxis(value, 2, 0).reshape(value.shape[2], -1)
    rounded_channels = np.moveaxis(rounded, 2, 0).reshape(value.shape[2], -1)
    return float(np.median([_sqnr(c, r) for c, r in zip(channels, rounded_channels) if np.any(c)] or [CAP_DB]))


def _seen_as(model) -> tuple[dict[str, str], dict[str, tuple[float, float]]]:
    """Tensor → the DequantizeLinear output its consumers read, where it is quantized (Q → DQ); and the real
    range its quantization represents, s·(q_min − z) … s·(q_max − z)."""
    from onnx import numpy_helper

    consumers = _consumers(model)
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    seen, ranges = {}, {}
    for node in model.graph.node:
        after = [c for c in consumers.get(node.output[0], []) if c.op_type == "DequantizeLinear"]
        if node.op_type != "QuantizeLinear" or not after or node.input[1] not in constants:
            continue
        seen[node.input[0]] = after[0].output[0]
        scale = float(constants[node.input[1]].max())
        zero = constants.get(node.input[2]) if len(node.input) > 2 else None
        info = np.iinfo(zero.dtype if zero is not None else np.uint8)
        z = int(zero.reshape(-1)[0]) if zero is not None else 0
        ranges[node.input[0]] = (scale * (info.min - z), scale * (info.max - z))
    return seen, ranges


def _activation_chains(model) -> dict[str, str]:
    """A tensor read only by a Relu or Clip → that activation's output (a quantizer fuses the two)."""
    return {t: users[0].output[0] for t, users in _consumers(model).items()
            if len(users) == 1 and users[0].op_type in ("Relu", "Clip")}


def _consumers(model) -> dict[str, list]:
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def _run_exposed(model, feeds: list[dict[str, np.ndarray]], tensors: set[str]) -> dict[str, np.ndarray]:
    """Every name in `tensors` that `model` computes, over all `feeds`, concatenated along a new axis."""
    import onnx
    import onnxruntime as ort

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    produced = {o for n in exposed.graph.node for o in n.output} | {i.name for i in exposed.graph.input}
    present = {o.name for o in exposed.graph.output}
    for name in sorted((tensors & produced) - present):
        exposed.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.name in tensors]
    taken: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed)):
            taken[name].append(np.asarray(value, dtype=np.float64))
    for name in [i.name for i in exposed.graph.input if i.name in tensors]:
        taken[name] = [np.asarray(f[name], dtype=np.float64) for f in feeds]
    return {n: np.stack(v) for n, v in taken.items() if v}


def _sqnr(reference: np.ndarray, quantized: np.ndarray) -> float:
    if reference.shape != quantized.shape:
        return CAP_DB
    noise = float(np.sum((reference - quantized) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0 or signal == 0.0:
        return CAP_DB if noise == 0.0 else -CAP_DB
    return float(np.clip(10.0 * np.log10(signal / noise), -CAP_DB, CAP_DB))
