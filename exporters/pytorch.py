"""PyTorch → ONNX with torch.onnx's dynamo exporter, validated against PyTorch.

`export_module` exports any module (a zoo checkpoint goes through `export_checkpoint`,
a user's own model, read by `dlc.sources`, through `export_source`). The file is written to a temporary
path, compared with the PyTorch module on ONNX Runtime, and renamed into place only if
every output is within tolerance.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dlc import zoo
from dlc.errors import DlcError, NumericMismatchError, first_line
from dlc.fileio import check_output
from dlc.numerics import Tolerance, compare
from dlc.onnxio import io_specs, load_model, save_model, staged_model
from dlc.specs import SAMPLE_DIM, TensorSpec
from dlc.training.checkpoint import Checkpoint
from dlc.version import __version__

MIN_OPSET = 18  # the dynamo exporter's native opset; lower ones go through a version converter
VALIDATION_SIZES = (1, 3)  # dynamic dims are validated at sizes other than the one they were traced at
MAX_DIM = 4096  # the upper bound torch.export gets for every dynamic dim
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 18
    dynamic_batch: bool = False
    batch: int = 1  # a zoo model's batch size baked in when the batch is not dynamic
    tolerance: float | None = None  # max abs diff vs PyTorch; None = the zoo model's own (else 1e-4)
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
    checked_batches: list[int]  # the sizes every dynamic dim was validated at (else the example's batch)
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

    if source.endswith(".py"):
        raise InputFileError(f"{source} is Python code: name the model in it, e.g. `dlc export {source}:build` "
                             "(a module, or a callable returning one)")
    if Path(source).exists():
        return checkpoint.load(source)
    if source in zoo.names():
        return checkpoint.untrained(source, model_args or {})
    raise InputFileError(f"{source!r} is neither a checkpoint file nor a zoo model; "
                         f"pass a checkpoint from `dlc train` or one of: {', '.join(zoo.names())}")


def export_checkpoint(ckpt: Checkpoint, out: str | Path, config: ExportConfig = ExportConfig()) -> ExportReport:
    """Exports a trained (or freshly built) zoo model to ONNX at `out` and validates it."""
    spec = zoo.get(ckpt.model)
    example = example_inputs([(spec.input_names[0], (config.batch, *ckpt.input_shape), "float32")], config.seed)
    dynamic = {spec.input_names[0]: {0: "batch"}} if config.dynamic_batch else {}
    tolerance = config.tolerance if config.tolerance is not None else spec.tolerance
    meta = {"dlc.model": ckpt.model, "dlc.model_args": json.dumps(ckpt.model_args),
            "dlc.preprocess": ckpt.preprocess or "", "dlc.dataset": ckpt.dataset or "",
            "dlc.metrics": json.dumps(ckpt.metrics or {})}  # the test accuracy from training, for `dlc report`
    return export_module(ckpt.build_module(), example, out, replace(config, tolerance=tolerance),
                         input_names=spec.input_names, output_names=spec.output_names, dynamic=dynamic,
                         label=ckpt.model, metadata=meta)


def export_source(source: str, out: str | Path, config: ExportConfig = ExportConfig(), *,
                  inputs: Sequence[str] = (), dynamic: Sequence[str] = (), weights: str | Path | None = None):
    """`dlc export` of a user's own model: `inputs` and `dynamic` as the CLI spells them."""
    from dlc.sources import load_module_source, parse_dynamic_spec, parse_input_spec

    specs = [parse_input_spec(text) for text in inputs]
    axes: dict[str, dict[int, str]] = {}
    for text in dynamic:
        name, dims = parse_dynamic_spec(text)
        axes.setdefault(name, {}).update(dims)
    loaded = load_module_source(source, weights)
    if specs:
        # named as the forward's parameters, the inputs go in its order, whatever order --input gave them in
        order = forward_names(loaded.module, len(specs))
        if {name for name, _, _ in specs} == set(order):
            specs.sort(key=lambda spec: order.index(spec[0]))
        example, names = example_inputs(specs, config.seed), [name for name, _, _ in specs]
    elif loaded.examples is not None:
        example, names = loaded.examples, None
    else:
        raise DlcError(f"{source} gives no example inputs; name them with --input NAME:SHAPE[:DTYPE] "
                       "(e.g. --input image:1x3x224x224), or return (module, example_inputs) from it")
    meta = {"dlc.source": source, "dlc.model": type(loaded.module).__name__}
    return export_module(loaded.module, example, out, config, input_names=names, dynamic=axes,
                         label=type(loaded.module).__name__, metadata=meta)


def export_module(module, example: tuple, out: str | Path, config: ExportConfig = ExportConfig(), *,
                  input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                  dynamic: dict[str, dict[int, str]] | None = None, label: str = "module",
                  metadata: dict[str, str] | None = None) -> ExportReport:
    """Exports any `torch.nn.Module`, called with the tensors `example`, to ONNX at `out` and validates it.

    `dynamic` makes input axes symbolic ({"tokens": {0: "batch", 1: "seq"}}); the file is then
    checked against PyTorch with every symbol at each of VALIDATION_SIZES. Input names default
    to the forward's parameter names, output names to a dict output's keys (else "output",
    "output_1", ...). Written only if ONNX Runtime agrees with PyTorch within the tolerance.
    """
    out, start = Path(out), time.perf_counter()
    check_output(out, config.force)
    if config.opset < MIN_OPSET:
        raise DlcError(f"opset {config.opset} is too old for torch's exporter; use --opset {MIN_OPSET} or newer")
    input_names = list(input_names or forward_names(module, len(example)))
    dynamic = _checked_dynamic(dynamic or {}, dict(zip(input_names, example)))
    # torch.export specializes a dimension whose example size is 0 or 1: dynamic ones are traced at SAMPLE_DIM or more
    traced = tuple(_resized(x, dynamic.get(name, {}), None) for name, x in zip(input_names, example))
    was_training, module = module.training, _in_eval_mode(module)
    try:
        return _export_in_eval_mode(module, traced, out, config, input_names, output_names, dynamic, label,
                                    metadata, start)
    finally:
        if was_training and not module.training:  # the caller's module comes back as it was given
            module.train()


def _export_in_eval_mode(module, traced, out: Path, config: ExportConfig, input_names, output_names, dynamic,
                         label, metadata, start) -> ExportReport:
    result = _forward(module, traced, label)
    output_names = list(output_names or _output_names(result))
    clash = sorted(set(input_names) & set(output_names))
    if clash:
        raise DlcError(f"{label} has an input and an output both named {clash[0]!r}; ONNX needs distinct names: "
                       "rename the input (--input) or the output")
    tolerance = config.tolerance if config.tolerance is not None else DEFAULT_TOLERANCE
    with staged_model(out) as tmp:  # past 2 GB, torch writes the weights to OUT.data beside it
        _torch_export(module, traced, tmp, input_names, output_names, dynamic, config, label)
        _annotate(tmp, {"dlc.version": __version__, **(metadata or {})})
        inputs, outputs = io_specs(load_model(tmp))
        _require_symbolic(inputs, dynamic, label)
        sizes = list(VALIDATION_SIZES) if dynamic else []
        diff = _validate(module, tmp, dict(zip(input_names, traced)), dynamic, sizes, tolerance, label)
    checked = sizes or [int(traced[0].shape[0]) if traced and traced[0].dim() else 1]
    return ExportReport(out, label, config.opset, inputs, outputs, diff, tolerance, checked,
                        time.perf_counter() - start)


def _checked_dynamic(dynamic, example: dict) -> dict[str, dict[int, str]]:
    """`dynamic` as {input: {axis: symbol}}, every input known and every axis within its rank."""
    if not isinstance(dynamic, dict) or not all(
            isinstance(axes, dict) and all(isinstance(a, int) and isinstance(s, str) and s.isidentifier()
                                           for a, s in axes.items()) for axes in dynamic.values()):
        raise DlcError("dynamic must map input names to {axis: symbol}, e.g. {'tokens': {0: 'batch', 1: 'seq'}}")
    unknown = sorted(set(dynamic) - set(example))
    if unknown:
        raise DlcError(f"--dynamic names unknown input(s) {', '.join(unknown)}; the inputs are: "
                       f"{', '.join(example)}")
    for name, axes in dynamic.items():
        bad = [a for a in axes if not 0 <= a < example[name].dim()]
        if bad:
            raise DlcError(f"--dynamic {name}:{bad[0]}=... names axis {bad[0]}, and {name} has "
                           f"{example[name].dim()} axes (0 to {example[name].dim() - 1})")
    return dict(dynamic)


def example_inputs(specs: Sequence[tuple[str, tuple[int, ...], str]], seed: int = 0) -> tuple:
    """Example tensors for (name, shape, dtype) specs: seeded normal floats; zeros for integers (valid indices)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    try:
        return tuple(torch.randn(shape, generator=generator, dtype=getattr(torch, dtype))
                     if dtype.startswith("float") else torch.zeros(shape, dtype=getattr(torch, dtype))
                     for _, shape, dtype in specs)
    except RuntimeError as e:  # out of memory
        raise DlcError(f"cannot make example inputs of shapes {', '.join('x'.join(map(str, s)) for _, s, _ in specs)}"
                       f" ({first_line(e)}); give smaller ones with --input") from e


def _in_eval_mode(module):
    try:
        return module.eval()
    except NotImplementedError:  # a torch.export program's module: its graph was fixed in the mode it was traced in
        return module


def forward_names(module, count: int) -> list[str]:
    """Names for `count` positional inputs: the forward's parameter names where it has as many."""
    import inspect

    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return params[:count] if len(params) >= count else [f"input_{i}" for i in range(count)]


def _resized(x, axes: dict[int, str], size: int | None):
    """`x` with each of `axes` cut or repeated to `size` (None: to at least SAMPLE_DIM), values cycled so that
    integer inputs stay valid indices."""
    import torch

    for axis in axes:
        n = x.shape[axis]
        target = max(n, SAMPLE_DIM) if size is None else size
        if target != n:
            x = torch.index_select(x, axis, torch.arange(target, device=x.device) % n)
    return x


def _forward(module, example: tuple, label: str, resized: bool = False):
    """`module(*example)` without gradients; `resized`: the example's dynamic dims were set to another size."""
    import torch

    try:
        with torch.no_grad():
            return module(*example)
    except Exception as e:  # the user's code: anything
        which = "the example inputs resized along their --dynamic dims" if resized else "the example inputs"
        hint = ("; the model does not take every size of those dims: drop the ones it fixes from --dynamic"
                if resized else "")
        raise DlcError(f"{label}'s forward failed on {which} ({', '.join(_shape(x) for x in example)}): "
                       f"{first_line(e)}{hint}") from e


def _shape(x) -> str:
    return f"{str(x.dtype).removeprefix('torch.')}[{'x'.join(map(str, x.shape))}]"


def _numpy(tensor):
    return tensor.detach().cpu().numpy()


def _onnxruntime(call):
    """`call()`, with ONNX Runtime's refusals (an op or dtype it lacks, bfloat16 say) as one line."""
    try:
        return call()
    except DlcError:
        raise
    except Exception as e:  # onnxruntime raises its own exception types
        raise DlcError(f"ONNX Runtime cannot run the exported graph, so it cannot be checked: {first_line(e)}; "
                       "export in float32 (module.float()) or with ops ONNX Runtime's CPU provider has") from e


def _flat(result) -> list:
    from torch.utils._pytree import tree_leaves

    return tree_leaves(result)


def _output_names(result) -> list[str]:
    """A dict's keys (nested ones joined with "."), else "output", "output_1", ..."""
    from torch.utils._pytree import tree_flatten_with_path

    leaves, _ = tree_flatten_with_path(result)
    if isinstance(result, dict):
        return [".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) for path, _ in leaves]
    return ["output" if i == 0 else f"output_{i}" for i in range(len(leaves))]


def _torch_export(module, example: tuple, path: Path, input_names, output_names, dynamic, config: ExportConfig,
                  label: str) -> None:
    import torch

    symbols: dict[str, object] = {}
    dynamic_shapes = None
    if dynamic:
        dynamic_shapes = tuple({axis: symbols.setdefault(sym, torch.export.Dim(sym, min=1, max=MAX_DIM))
                                for axis, sym in dynamic.get(name, {}).items()} or None for name in input_names)
    # The exporter logs a warning per torchvision op it cannot register; dlc has no torchvision.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations
            # nn.LSTM/GRU re-assign their flat weight list while torch.export traces them
            warnings.filterwarnings("ignore", message="The tensor attributes .*_flat_weights", category=UserWarning)
            # a symbol shared by several inputs is named once
            warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
            program = torch.onnx.export(module, example, input_names=list(input_names),
                                        output_names=list(output_names), opset_version=config.opset,
                                        dynamo=True, dynamic_shapes=dynamic_shapes, optimize=config.optimize,
                                        verbose=False)
            program.save(str(path))
    except Exception as e:  # torch.export raises many types for code it cannot trace
        hint = ("; a dim declared dynamic that the code fixes (a view to a constant size, say) must leave "
                "--dynamic" if dynamic and "constraint" in str(e).lower() else "")
        raise DlcError(f"torch.onnx export of {label!r} failed: {first_line(e)}{hint}") from e


def _require_symbolic(inputs, dynamic: dict[str, dict[int, str]], label: str) -> None:
    """Every axis declared dynamic came out symbolic: torch.export fixes one the model's code treats as constant."""
    by_name = {s.name: s for s in inputs}
    for name, axes in dynamic.items():
        for axis, symbol in axes.items():
            size = by_name[name].shape[axis]
            if isinstance(size, int):
                raise DlcError(f"torch.export fixed {symbol} (axis {axis} of {name}) of {label!r} at {size}: the "
                               f"model's code treats it as a constant; drop {axis}={symbol} from --dynamic (or make "
                               "that code follow the input's size)")


def _annotate(path: Path, metadata: dict[str, str]) -> None:
    """Records where the model came from in the ONNX metadata."""
    import onnx

    model = onnx.load(str(path))
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "dlc", __version__
    save_model(model, path)


def _validate(module, onnx_path: Path, example: dict, dynamic, sizes: list[int], tolerance: float,
              label: str) -> float:
    """PyTorch and ONNX Runtime on the example, at each of `sizes` of every dynamic dim (else as it is)."""
    from dlc.runtime.session import OrtSession

    session, worst, failures = _onnxruntime(lambda: OrtSession(onnx_path)), 0.0, []
    symbols = "/".join(sorted({s for axes in dynamic.values() for s in axes.values()}))
    for size in sizes or [None]:
        feed = {name: _resized(x, dynamic.get(name, {}), size) if size else x for name, x in example.items()}
        result = _forward(module, tuple(feed.values()), label, resized=size is not None)
        want = {spec.name: _numpy(e) for spec, e in zip(session.outputs, _flat(result))}
        # an input the graph does not use is not one of its inputs
        got = _onnxruntime(lambda: session.run({s.name: _numpy(feed[s.name]) for s in session.inputs}))
        result = compare(got, want, Tolerance(atol=tolerance, rtol=0.0), f"at {symbols} {size}" if size else "")
        worst, failures = max(worst, result.max_abs_diff), failures + result.failures
    if failures:
        raise NumericMismatchError(f"ONNX Runtime differs from PyTorch beyond tolerance {tolerance:g}: "
                                   f"{'; '.join(failures)}; nothing was written (raise --tolerance only if "
                                   "this difference is acceptable)")
    return worst
