"""PyTorch → ONNX with torch.onnx's dynamo exporter, validated against PyTorch.

The exported file is written to a temporary path, compared with the PyTorch module on
ONNX Runtime, and renamed into place only if every output is within tolerance.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlc import __version__, zoo
from dlc.errors import DlcError, NumericMismatchError, first_line
from dlc.fileio import atomic_path, check_output
from dlc.numerics import Tolerance, compare
from dlc.specs import SAMPLE_DIM, TensorSpec, random_inputs
from dlc.training.checkpoint import Checkpoint

MIN_OPSET = 18  # the dynamo exporter's native opset; lower ones go through a version converter
VALIDATION_BATCHES = (1, 3)  # a dynamic batch is validated at sizes other than the one it was traced at


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 18
    dynamic_batch: bool = False
    batch: int = 1  # the batch size baked in when the batch is not dynamic
    tolerance: float | None = None  # max abs diff vs PyTorch; None = the zoo model's own
    seed: int = 0
    force: bool = False
    optimize: bool = True  # torch's own ONNX cleanup (folding, BN fusion); False keeps the traced graph


@dataclass
class ExportReport:
    path: Path
    model: str
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_abs_diff: float
    tolerance: float
    checked_batches: list[int]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"onnx": str(self.path), "model": self.model, "opset": self.opset,
                "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
                "validation": {"reference": "pytorch", "runtime": "onnxruntime",
                               "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
                               "batches": self.checked_batches, "passed": True},
                "seconds": round(self.seconds, 3)}


def resolve_source(source: str, model_args: dict[str, Any] | None = None) -> Checkpoint:
    """A checkpoint file, else a zoo model name built with fresh weights (and `model_args`)."""
    from dlc.errors import InputFileError
    from dlc.training import checkpoint

    if Path(source).exists():
        return checkpoint.load(source)
    if source in zoo.names():
        return checkpoint.untrained(source, model_args or {})
    raise InputFileError(f"{source!r} is neither a checkpoint file nor a zoo model; "
                         f"pass a checkpoint from `dlc train` or one of: {', '.join(zoo.names())}")


def export_checkpoint(ckpt: Checkpoint, out: str | Path, config: ExportConfig = ExportConfig()) -> ExportReport:
    """Exports a trained (or freshly built) zoo model to ONNX at `out` and validates it."""
    import torch

    out, start = Path(out), time.perf_counter()
    check_output(out, config.force)
    if config.opset < MIN_OPSET:
        raise DlcError(f"opset {config.opset} is too old for torch's exporter; use --opset {MIN_OPSET} or newer")
    spec = zoo.get(ckpt.model)
    module = ckpt.build_module()
    # torch.export specializes a dimension whose example size is 1: a dynamic batch is traced at SAMPLE_DIM
    example = torch.zeros((max(config.batch, SAMPLE_DIM) if config.dynamic_batch else config.batch, *ckpt.input_shape))
    tolerance = config.tolerance if config.tolerance is not None else spec.tolerance
    with atomic_path(out) as tmp:
        _torch_export(module, example, tmp, spec, config)
        _annotate(tmp, ckpt)
        from dlc.onnxio import io_specs, load_model

        inputs, outputs = io_specs(load_model(tmp))
        if config.dynamic_batch and all(isinstance(s.shape[0], int) for s in inputs):
            raise DlcError(f"torch.export fixed the batch dimension of {spec.name!r} at {inputs[0].shape[0]}; "
                           f"export without --dynamic-batch (and pick the batch with --batch)")
        batches = [config.batch] if not config.dynamic_batch else list(VALIDATION_BATCHES)
        diff = _validate(module, tmp, inputs, batches, tolerance, config.seed)
    return ExportReport(out, ckpt.model, config.opset, inputs, outputs, diff, tolerance, batches,
                        time.perf_counter() - start)


def _torch_export(module, example, path: Path, spec: zoo.ModelSpec, config: ExportConfig) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic_shapes = ({0: batch},) if config.dynamic_batch else None
    # The exporter logs a warning per torchvision op it cannot register; dlc has no torchvision.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations
            # nn.LSTM/GRU re-assign their flat weight list while torch.export traces them
            warnings.filterwarnings("ignore", message="The tensor attributes .*_flat_weights", category=UserWarning)
            program = torch.onnx.export(module, (example,), input_names=list(spec.input_names),
                                        output_names=list(spec.output_names), opset_version=config.opset,
                                        dynamo=True, dynamic_shapes=dynamic_shapes, optimize=config.optimize,
                                        verbose=False)
    except Exception as e:  # torch.export raises many types for code it cannot trace
        raise DlcError(f"torch.onnx export of {spec.name!r} failed: {first_line(e)}") from e
    program.save(str(path))


def _annotate(path: Path, ckpt: Checkpoint) -> None:
    """Records where the model came from in the ONNX metadata."""
    import onnx

    model = onnx.load(str(path))
    meta = {"dlc.version": __version__, "dlc.model": ckpt.model, "dlc.model_args": json.dumps(ckpt.model_args),
            "dlc.preprocess": ckpt.preprocess or "", "dlc.dataset": ckpt.dataset or ""}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "dlc", __version__
    onnx.save(model, str(path))


def _validate(module, onnx_path: Path, inputs, batches, tolerance: float, seed) -> float:
    """Runs PyTorch and ONNX Runtime on sample inputs; collects every output over tolerance, at every batch."""
    import torch

    from dlc.runtime.session import OrtSession

    session, worst, failures = OrtSession(onnx_path), 0.0, []
    for batch in batches:
        feed = random_inputs(inputs, seed=seed + batch, batch=batch)
        with torch.no_grad():
            expected = module(*(torch.from_numpy(feed[s.name]) for s in inputs))
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        want = {spec.name: e.numpy() for spec, e in zip(session.outputs, expected)}
        result = compare(session.run(feed), want, Tolerance(atol=tolerance, rtol=0.0), f"at batch {batch}")
        worst, failures = max(worst, result.max_abs_diff), failures + result.failures
    if failures:
        raise NumericMismatchError(f"ONNX Runtime differs from PyTorch beyond tolerance {tolerance:g}: "
                                   f"{'; '.join(failures)}; nothing was written (raise --tolerance only if "
                                   "this difference is acceptable)")
    return worst
