"""dlc from Python: the pipeline's stages as functions, the same ones the CLI commands run.

    import dlc

    dlc.export(model, (x,), "m.onnx", dynamic={"x": {0: "batch"}})   # any torch.nn.Module
    dlc.optimize("m.onnx", "m.opt.onnx")
    dlc.quantize("m.onnx", "m.int8.onnx", calibration="data.npz", max_drop=0.01)   # int8, within one point
    dlc.prune("m.pt", "m.pruned.pt", ratio=0.5, max_drop=0.01)         # half the channels, fine-tuned
    artifact = dlc.compile("m.opt.onnx", "m.dlc")                      # target="raspberry-pi-4" to cross-compile
    session = dlc.load("m.dlc")                                        # an .onnx file opens on ONNX Runtime
    outputs = session.run({"x": x.numpy()})
    report = dlc.bench("m.dlc", backends=("tvm", "onnxruntime"))

Every function raises `dlc.errors.DlcError` (one line naming the problem and the fix) on
bad input, and writes nothing half-done. `import dlc` imports none of this until a function
is first used.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dlc.artifact import Artifact
    from dlc.exporters.pytorch import ExportReport
    from dlc.optimization import OptimizeReport
    from dlc.pruning import PruneConfig, PruneReport
    from dlc.quantization import QuantizeConfig, QuantizeReport
    from dlc.runtime.bench import BenchReport
    from dlc.runtime.session import Session


def export(model: Any, example_inputs: Any = None, out: str | Path = "model.onnx", *,
           dynamic: dict[str, dict[int, str]] | None = None, input_names: Sequence[str] | None = None,
           output_names: Sequence[str] | None = None, opset: int = 18, tolerance: float | None = None,
           force: bool = False, allow_code: bool = False) -> ExportReport:
    """Exports `model` to ONNX at `out`, validated against PyTorch on ONNX Runtime (as `dlc export`).

    `model`: a `torch.nn.Module` called with `example_inputs` (a tensor or a tuple of them),
    or what `dlc export` takes: "net.py:build", "package.module:Net", a .pt2 file (these may
    bring their own examples), a `dlc train` checkpoint or a zoo name. `dynamic` makes axes
    symbolic: {"tokens": {0: "batch", 1: "seq"}}; they are validated at several sizes.
    `allow_code`: a checkpoint of your own model may run its file (for this process on).
    """
    import torch

    from dlc.errors import DlcError
    from dlc.exporters.pytorch import ExportConfig, export_checkpoint, export_module, resolve_source
    from dlc.sources import is_module_reference, load_module_source
    from dlc.training.checkpoint import permit_code

    permit_code(allow_code)
    config = ExportConfig(opset=opset, tolerance=tolerance, force=force)
    if isinstance(model, (str, Path)) and not is_module_reference(str(model)):
        if example_inputs is not None or dynamic or input_names:
            raise DlcError("a checkpoint or zoo model brings its own inputs; export it with dlc.export(name, out=...)")
        return export_checkpoint(resolve_source(str(model)), out, config)
    label = None
    if isinstance(model, (str, Path)):
        loaded = load_module_source(str(model))
        model, label = loaded.module, loaded.label
        example_inputs = loaded.examples if example_inputs is None else example_inputs
    if not isinstance(model, torch.nn.Module):
        raise DlcError(f"dlc.export takes a torch.nn.Module or a reference such as 'net.py:build', not "
                       f"{type(model).__name__}")
    example = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else example_inputs
    if not isinstance(example, (tuple, list)) or not example or \
            not all(isinstance(x, torch.Tensor) for x in example):
        raise DlcError(f"dlc.export needs example inputs for {type(model).__name__}: a tensor or a tuple of tensors, "
                       f"not {type(example_inputs).__name__}")
    example = tuple(example)
    name = type(model).__name__
    return export_module(model, example, out, config, input_names=input_names, output_names=output_names,
                         dynamic=dynamic, label=name, metadata={"dlc.model": name, "dlc.source": label or "python"})


def optimize(model: str | Path, out: str | Path, *, level: int = 2, passes: Sequence[str] = (),
             float16: bool = False, force: bool = False) -> OptimizeReport:
    """Runs dlc's graph passes over an ONNX file, each verified on ONNX Runtime (as `dlc optimize`)."""
    from dlc.optimization import OptimizeConfig, optimize_file

    return optimize_file(model, out, OptimizeConfig(level=level, passes=tuple(passes), float16=float16, force=force))


def quantize(model: str | Path, out: str | Path, config: QuantizeConfig | None = None, **options) -> QuantizeReport:
    """Quantizes an ONNX file to int8 (static QDQ or dynamic) or float16 (as `dlc quantize`).

    `options` are `dlc.quantization.QuantizeConfig`'s fields (or pass `config`): mode, checkpoint
    or calibration (the data), samples, method, per_channel, symmetric, reduce_range, max_drop (0.01 = one
    point of top-1: the layers that add the most error stay float until within it), keep_float,
    force.
    """
    from dlc.quantization import QuantizeConfig, quantize_file

    return quantize_file(model, out, config or _config(QuantizeConfig, "dlc.quantize", options))


def prune(model: str | Path, out: str | Path, config: PruneConfig | None = None, **options) -> PruneReport:
    """Prunes a checkpoint (Torch-Pruning, then fine-tuning) or an ONNX file (as `dlc prune`).

    `options` are `dlc.pruning.PruneConfig`'s fields (or pass `config`): method ("channel" or
    "magnitude"), ratio, importance, global_pruning, round_to, steps, ignore,
    epochs and lr (fine-tuning), layer_ratios (name → ratio), checkpoint or calibration (an ONNX
    model's validation data), max_drop, min_speedup, backend ("onnxruntime" or "tvm"), runs, force.
    """
    from dlc.pruning import PruneConfig, prune_file

    if isinstance(options.get("layer_ratios"), dict):
        options = {**options, "layer_ratios": tuple(options["layer_ratios"].items())}
    return prune_file(model, out, config or _config(PruneConfig, "dlc.prune", options))


def _config(cls, function: str, options: dict[str, Any]):
    """`cls` (a frozen config dataclass) from keyword options: paths as Path, sequences as tuples."""
    import dataclasses

    from dlc.errors import DlcError

    fields = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(options) - fields):
        raise DlcError(f"{function} has no option {', '.join(unknown)}; the options are {', '.join(sorted(fields))}")
    paths = {k: Path(v) for k, v in options.items() if k in ("checkpoint", "calibration") and v is not None}
    lists = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in options.items()
             if k in ("keep_float", "ignore", "layer_ratios")}
    return cls(**{**options, **paths, **lists})


def compile(model: str | Path, out: str | Path | None = None, *, target: str = "host",
            shapes: dict[str, list[int]] | None = None, tune_minutes: float | None = None,
            force: bool = False) -> Artifact:
    """Compiles an ONNX file with TVM into a verified artifact directory (as `dlc compile`); returns it.

    `out` defaults to the model's path with .dlc; `shapes` pins symbolic input dims
    ({"input": [8, 1, 8, 8]}); `tune_minutes` tunes with MetaSchedule first.
    """
    from dlc.artifact import Artifact
    from dlc.compiler.build import CompileConfig, TuningOptions, compile_model
    from dlc.fileio import beside

    out = Path(out) if out is not None else beside(model, ".dlc")
    config = CompileConfig(target=target, shapes=dict(shapes or {}), force=force,
                           tuning=TuningOptions(minutes=tune_minutes))
    compile_model(model, out, config)
    return Artifact.load(out)


def load(model: str | Path, backend: str | None = None, *, threads: int | None = None) -> Session:
    """A session with `run(feeds) -> outputs` (dicts of numpy arrays by name): TVM for an artifact, ONNX Runtime
    for an ONNX file, or the `backend` named."""
    from dlc.artifact import is_artifact
    from dlc.runtime.backends import open_session

    return open_session(backend or ("tvm" if is_artifact(model) else "onnxruntime"), model, threads=threads)


def bench(model: str | Path, *, backends: Sequence[str] | None = None, runs: int = 100, warmup: int = 10,
          threads: int | None = None, checkpoint: str | Path | None = None, allow_code: bool = False) -> BenchReport:
    """Benchmarks an artifact or ONNX file on each backend, each in a process of its own (as `dlc bench`).

    An ONNX file is compiled for this machine first when a backend runs artifacts.
    `allow_code`: a checkpoint of your own model may run its file (for this process on).
    """
    from dlc.training.checkpoint import permit_code

    permit_code(allow_code)
    from dlc.compiler.session import benchmark
    from dlc.runtime.backends import default_backends
    from dlc.runtime.bench import BenchConfig

    chosen = tuple(backends) if backends else default_backends(checkpoint is not None)
    config = BenchConfig(backends=chosen, runs=runs, warmup=warmup, threads=threads,
                         checkpoint=Path(checkpoint) if checkpoint else None)
    return benchmark(model, config)
