"""`dlc quantize`: an ONNX model to int8 (static QDQ or dynamic) or float16, within an accuracy budget.

    data       calibration samples and a labelled validation set: from a checkpoint's data
               set (calibrate on its training split, validate on its test split), an .npz
               or an image folder, each sample checked against the model's inputs first
    prepare    dlc's -O2 passes (BatchNorm folded into the Conv before it is quantized)
    quantize   onnxruntime.quantization inserts QDQ pairs (calibrated) or dynamic MatMuls
    gate       the task's metric (top-1, MSE for reconstruction) float vs quantized on ONNX
               Runtime; over `max_drop`, the layer that adds the most quantization error
               (dlc.analysis.sqnr) stays float and it is quantized again, one layer at a time
    write      only a result within the budget (or with `force`), atomically
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlc.calibration import Data, load_data, model_task, require_metric
from dlc.errors import DlcError, InvalidDataError, UnknownNameError

MODES = ("static", "dynamic", "float16")
ERROR_SAMPLES = 32  # validation samples the per-layer errors are measured on
ROUNDED_INPUT_DB = 20.0  # an input rounding worse than this per channel (under ~3.5 bits) is kept float with its layer


@dataclass(frozen=True)
class QuantizeConfig:
    mode: str = "static"
    method: str = "minmax"  # calibration: minmax, entropy, percentile
    per_channel: bool = True
    symmetric: bool = False  # activations int8 around 0, else uint8 with a zero point
    reduce_range: bool = False  # 7-bit weights: exact vpmaddubsw kernels on x86 CPUs without VNNI
    checkpoint: Path | None = None  # calibrate and validate on its data set
    calibration: Path | None = None  # an .npz or an image folder
    samples: int = 128  # calibration samples
    max_drop: float | None = None  # accuracy points (0.01 = one point); MSE increase for reconstruction
    keep_float: tuple[str, ...] = ()  # node names the user keeps float
    force: bool = False  # overwrite, and write a result over the budget


@dataclass
class Evaluation:
    metric: str  # "top-1" (vs labels), "top-1 agreement" (vs the float model) or "mse"
    value: float
    samples: int

    def shown(self, value: float) -> str:
        """A value of this metric for people: accuracy in percent, MSE as it is."""
        return f"{value:.4g}" if self.metric == "mse" else f"{100 * value:.2f}%"

    def drop_from(self, baseline: Evaluation) -> float:
        """How much worse than `baseline`: points of accuracy lost, or MSE gained."""
        return self.value - baseline.value if self.metric == "mse" else baseline.value - self.value


@dataclass
class QuantizeReport:
    source: Path
    output: Path | None
    mode: str
    before: dict[str, Any]
    after: dict[str, Any]
    float_eval: Evaluation | None
    quant_eval: Evaluation | None
    layers: list  # LayerError, most harmful first
    kept_float: list[dict[str, Any]]  # {"name", "why", metric after}
    calibration: dict[str, Any]
    within_budget: bool | None
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)
    keep_float: tuple[str, ...] = ()  # the layers the user kept float

    def to_dict(self) -> dict[str, Any]:
        def evaluation(e):
            return None if e is None else {"metric": e.metric, "value": round(e.value, 6), "samples": e.samples}

        return {"source": str(self.source), "output": str(self.output) if self.output else None, "mode": self.mode,
                "before": self.before, "after": self.after, "calibration": self.calibration,
                "accuracy": {"float": evaluation(self.float_eval), "quantized": evaluation(self.quant_eval),
                             "drop": None if not self.quant_eval else round(self.quant_eval.drop_from(
                                 self.float_eval), 6), "within_budget": self.within_budget},
                "layers": [r.to_dict() for r in self.layers], "kept_float": self.kept_float,
                "kept_float_by_you": list(self.keep_float), "stats": self.stats,
                "seconds": round(self.seconds, 3)}


Progress = Callable[[str, int, int], None]  # (stage, done, total)


def quantize_file(source: str | Path, out: str | Path, config: QuantizeConfig = QuantizeConfig(),
                  progress: Progress | None = None) -> QuantizeReport:
    """Quantizes `source` into `out` (atomically); raises before writing anything over the budget."""
    from dlc.fileio import check_output
    from dlc.onnxio import io_specs, load_model, save_model, staged_model
    from dlc.optimization import summarize

    source, out, start = Path(source), Path(out), time.perf_counter()
    _check_config(config)
    check_output(out, config.force)
    proto = load_model(source)
    data = load_data(config.checkpoint, config.calibration, io_specs(proto)[0], model_task(proto)) \
        if _needs_data(config) else None
    if config.max_drop is not None:
        require_metric(data)
    prepared = _prepare(proto, data, config.mode == "dynamic")
    float_eval = evaluate(prepared, data) if data and data.has_metric else None
    result, stats = _quantize(prepared, config, data, config.keep_float, progress)
    layers, kept = _layer_table(prepared, result, config, data), []
    quant_eval = evaluate(result, data, reference=prepared) if float_eval else None
    if config.max_drop is not None and quant_eval.drop_from(float_eval) > config.max_drop:
        result, quant_eval, stats, kept = _within_budget(prepared, config, data, layers, float_eval,
                                                         (result, quant_eval, stats), progress)
        layers = _layer_table(prepared, result, config, data)  # the table describes the model written
    within = None if config.max_drop is None else quant_eval.drop_from(float_eval) <= config.max_drop
    if within is False and not config.force:
        raise DlcError(f"{config.mode} int8 stays over --max-drop {config.max_drop:g} even with "
                       f"{len(kept) + len(config.keep_float)} layer(s) kept float ({float_eval.metric} "
                       f"{float_eval.shown(float_eval.value)} → {float_eval.shown(quant_eval.value)}); nothing was "
                       "written: raise --max-drop, try --method entropy or percentile, or pass --force to write it "
                       "anyway")
    _strip_debug_info(result)
    with staged_model(out) as staged:
        save_model(result, staged)
    return QuantizeReport(source, out, config.mode, summarize(proto, source), summarize(result, out), float_eval,
                          quant_eval, layers, kept, _calibration_info(config, data), within,
                          time.perf_counter() - start, stats, config.keep_float)


def _strip_debug_info(proto) -> None:
    """Drops the exporter's debug metadata (stack traces, FX nodes, the exported program's signature) and
    inferred shapes.

    torch.onnx writes a few hundred bytes of it per node, which the quantizer copies onto every
    node it adds, and a signature naming every float parameter the int8 model no longer has:
    together, a third of a small int8 file. Neither the runtimes nor dlc read it.
    """
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    del proto.graph.value_info[:]
    kept = [p for p in proto.graph.metadata_props if not p.key.startswith("pkg.torch.")]
    del proto.graph.metadata_props[:]
    proto.graph.metadata_props.extend(kept)


def _check_config(config: QuantizeConfig) -> None:
    from dlc.passes.quantize import CALIBRATION_METHODS

    if config.mode not in MODES:
        raise UnknownNameError(f"unknown mode {config.mode!r}; choose one of: {', '.join(MODES)}")
    if config.method not in CALIBRATION_METHODS:
        raise UnknownNameError(f"unknown calibration method {config.method!r}; choose one of: "
                               f"{', '.join(CALIBRATION_METHODS)}")
    if config.samples < 1:
        raise InvalidDataError(f"--samples must be at least 1, not {config.samples}")
    if config.max_drop is not None and config.max_drop < 0:
        raise InvalidDataError(f"--max-drop must be 0 or more, not {config.max_drop:g} (0.01 is one point)")
    if config.mode == "static" and config.checkpoint is None and config.calibration is None:
        raise InvalidDataError("static int8 needs calibration data: pass --checkpoint CKPT (its data set), "
                               "--calibration data.npz or --calibration IMAGE_FOLDER; or use --mode dynamic")
    if config.max_drop is not None and config.checkpoint is None and config.calibration is None:
        raise InvalidDataError("--max-drop needs a validation set: pass --checkpoint CKPT or --calibration DATA")
    if config.mode == "float16" and config.reduce_range:
        raise InvalidDataError("--reduce-range makes int8 weights 7-bit; float16 has none: drop it, or use --mode "
                               "static or dynamic")
    if config.mode == "float16" and config.keep_float:
        raise InvalidDataError("--keep-float applies to int8; float16 converts every layer (ops without a float16 "
                               "kernel stay float32 by themselves)")


def _needs_data(config: QuantizeConfig) -> bool:
    return config.checkpoint is not None or config.calibration is not None


def _prepare(proto, data: Data | None, dynamic: bool):
    """The model after dlc's -O2 passes, verified on a calibration sample when there is one."""
    import onnx_ir as ir

    from dlc import passes

    model = ir.serde.deserialize_model(proto)
    verifier = passes.Verifier(model, data.calibrate[0]) if data else None
    chosen = passes.level(2)
    if dynamic:  # LSTM and GRU unrolled into the MatMuls that dynamic quantization makes int8
        chosen.insert(0, passes.REGISTRY["lower-recurrent"]())
    model, _ = passes.run_passes(model, chosen, verifier)
    return ir.serde.serialize_model(model)


def _quantize(proto, config: QuantizeConfig, data: Data | None, keep_float, progress: Progress | None):
    """(quantized ModelProto, pass stats) with the nodes in `keep_float` left float."""
    import onnx_ir as ir

    from dlc.passes.float16 import ToFloat16Pass
    from dlc.passes.quantize import DynamicQuantizePass, StaticQuantizePass, quantizable_nodes

    model = ir.serde.deserialize_model(proto)
    if config.mode == "float16":
        result = ToFloat16Pass()(model)
        return ir.serde.serialize_model(result.model), result.stats
    candidates = quantizable_nodes(model, dynamic=config.mode == "dynamic")
    if not candidates:
        ops = "MatMul or Gemm" if config.mode == "dynamic" else "Conv, Gemm or MatMul"
        raise DlcError(f"nothing to quantize: the model has no {ops} with constant weights ({config.mode} int8 "
                       f"quantizes those); {'try --mode static, or ' if config.mode == 'dynamic' else ''}"
                       "use --mode float16")
    _check_names(keep_float, [n.name for n in candidates])
    if config.mode == "dynamic":
        quantize = DynamicQuantizePass(per_channel=config.per_channel, exclude=keep_float,
                                       reduce_range=config.reduce_range)
    else:
        feeds = data.calibrate[:config.samples]
        quantize = StaticQuantizePass(_counted(feeds, progress), config.method, config.per_channel, config.symmetric,
                                      keep_float, reduce_range=config.reduce_range)
    result = quantize(model)
    return ir.serde.serialize_model(result.model), result.stats


def _counted(feeds, progress: Progress | None):
    """The feeds, reporting each one ONNX Runtime's calibrator takes."""
    if progress is None:
        return feeds

    class Counted(list):
        def __getitem__(self, i):
            progress("calibrating", min(i + 1, len(self)), len(self))
            return super().__getitem__(i)

    return Counted(feeds)


def _check_names(names, known: list[str]) -> None:
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UnknownNameError(f"--keep-float names no quantizable layer: {', '.join(unknown)}; the layers are: "
                               f"{', '.join(known)}")


def _layer_table(float_proto, quant_proto, config: QuantizeConfig, data: Data | None) -> list:
    """Per-layer SQNR of the quantized model's layers that could be kept float (empty without data, or float16)."""
    import onnx_ir as ir

    from dlc.analysis.sqnr import layer_errors
    from dlc.passes.quantize import quantizable_nodes

    if data is None or config.mode == "float16":
        return []
    names = {n.name for n in quantizable_nodes(ir.serde.deserialize_model(float_proto), config.mode == "dynamic")}
    nodes = [n for n in float_proto.graph.node if n.name in names]
    return layer_errors(float_proto, quant_proto, data.validate[:ERROR_SAMPLES], nodes)


def _within_budget(float_proto, config: QuantizeConfig, data: Data, layers, float_eval: Evaluation, current,
                   progress: Progress | None):
    """Keeps the most harmful layer float, quantizes again, until within `max_drop` or none is left.

    `current` is (model, evaluation, stats) as quantized so far; returns the same plus the layers kept.
    """
    kept_names, kept = list(config.keep_float), []
    result, quant_eval, stats = current
    while True:
        remaining = [r for r in layers if r.name not in kept_names]
        if not remaining or remaining[0].harm_db <= 0:  # no layer adds error any more: keeping one float won't help
            return result, quant_eval, stats, kept
        worst = remaining[0]
        # an input that rounds to a few levels per channel is rounded as long as the layer making it is quantized
        makers = [(t, maker, db) for t, maker, db in worst.rounded_inputs
                  if maker and maker not in kept_names and db < ROUNDED_INPUT_DB]
        kept_names += [worst.name, *(maker for _, maker, _ in makers)]
        result, stats = _quantize(float_proto, config, data, tuple(kept_names), None)
        quant_eval = evaluate(result, data, reference=float_proto)
        score = {"metric": quant_eval.metric, "value": round(quant_eval.value, 6)}  # after keeping it float
        for tensor, maker, db in makers:
            kept.append({"name": maker, "op": next((r.op for r in layers if r.name == maker), ""), "why":
                         f"its output {tensor} rounds to {db:.1f} dB per channel (an outlier sets its range), "
                         f"ruining {worst.name}", **score})
        kept.append({"name": worst.name, "op": worst.op, "why": f"adds {worst.harm_db:.1f} dB of quantization "
                     f"error (output SQNR {worst.sqnr_db:.1f} dB)", **score})
        if progress:
            progress("keeping layers float", len(kept), len(layers))
        if quant_eval.drop_from(float_eval) <= config.max_drop:
            return result, quant_eval, stats, kept
        layers = _layer_table(float_proto, result, config, data) or layers


def evaluate(proto, data: Data, reference=None) -> Evaluation:
    """The task's metric of `proto` on the validation set, run by ONNX Runtime.

    With labels: top-1 accuracy; for reconstruction: MSE to the input; otherwise top-1
    agreement with `reference` (the float model).
    """
    outputs = _run(proto, data.validate)
    if data.task == "reconstruct":
        inputs = np.concatenate([next(iter(f.values())) for f in data.validate])
        return Evaluation("mse", float(np.mean((outputs.reshape(inputs.shape) - inputs) ** 2)), len(inputs))
    predicted = outputs.reshape(len(outputs), -1).argmax(axis=1)
    if data.labels is not None:
        return Evaluation("top-1", float(np.mean(predicted == data.labels)), len(predicted))
    if reference is None:
        return Evaluation("top-1 agreement", 1.0, len(predicted))
    expected = _run(reference, data.validate).reshape(len(outputs), -1).argmax(axis=1)
    return Evaluation("top-1 agreement", float(np.mean(predicted == expected)), len(predicted))


def _run(proto, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """The first output for every feed, stacked along the batch axis."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # The model as it reads (QDQ unfused), the same on every CPU: fused, ONNX Runtime's u8s8 kernels saturate on
    # x86 CPUs without VNNI (dlc.runtime.session.OrtSession), which cost the zoo MobileNet 1.5 points on an
    # AVX2-only EPYC and nothing on an AVX-512 VNNI Xeon; TVM's integer kernels compute the unfused result exactly.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_outputs()[0].name
    return np.concatenate([np.asarray(session.run([name], feed)[0]) for feed in feeds])


def _calibration_info(config: QuantizeConfig, data: Data | None) -> dict[str, Any]:
    if data is None:
        return {"source": None}
    return {"source": data.source, "method": config.method if config.mode == "static" else None,
            "validated_on": "a held-out split" if data.held_out else "the calibration samples themselves (optimistic: "
                            "pass --checkpoint for its test split)",
            "samples": min(config.samples, len(data.calibrate)), "validation_samples": len(data.validate),
            "per_channel": config.per_channel, "symmetric_activations": config.symmetric}
