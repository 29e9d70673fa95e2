"""`dlc prune`: channels removed (structured) or weights zeroed (magnitude), measured and gated.

    checkpoint  Torch-Pruning removes channels through its dependency graph (residual adds,
                depthwise convolutions, batch norm follow), in `steps` steps, fine-tuning with
                the model's recipe after each step; the result is a checkpoint `dlc export` takes
    ONNX file   dlc.passes.prune removes the channels from the graph itself (node names stay those
                of the file given), or zeroes the smallest weights (magnitude)
    measure     parameters, FLOPs, file size (and deflated size) from the ONNX graphs before and
                after; the task's metric on the validation set (ONNX Runtime); latency on ONNX
                Runtime, or TVM (both compiled untuned), in fresh processes as `dlc bench` does
    gate        --max-drop on the metric, --min-speedup on the latency: a result that misses a
                gate is not written unless `force`
"""

from __future__ import annotations

import math
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlc.errors import DlcError, InvalidDataError, UnknownNameError, first_line

METHODS = ("channel", "magnitude")
IMPORTANCES = ("l1", "l2", "bn", "taylor")  # bn and taylor: checkpoints only (they need the module)
BACKENDS = ("onnxruntime", "tvm")
FINE_TUNE_EPOCHS = 5  # per step
MAX_STEPS = 50

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class PruneConfig:
    method: str = "channel"
    ratio: float = 0.5  # channels (or weights) removed per layer, or of the whole model with global_pruning
    importance: str = "l1"
    global_pruning: bool = False
    round_to: int = 1  # kept channels a multiple of this (SIMD widths)
    steps: int = 1  # prune gradually: ratio reached in this many steps, fine-tuning after each
    epochs: int | None = None  # fine-tuning epochs per step (checkpoints); None: FINE_TUNE_EPOCHS
    lr: float | None = None  # fine-tuning learning rate; None: the model's recipe
    ignore: tuple[str, ...] = ()  # layers left whole
    layer_ratios: tuple[tuple[str, float], ...] = ()  # per-layer ratios, overriding `ratio`
    checkpoint: Path | None = None  # an ONNX model's validation data: this checkpoint's data set
    calibration: Path | None = None  # ...or an .npz / image folder
    max_drop: float | None = None
    min_speedup: float | None = None
    backend: str = "onnxruntime"  # where latency is measured
    target: str = "host"  # --backend tvm: what the artifacts are compiled for
    device: Any = None  # a DeviceAddress (dlc.runtime.rpc): time the TVM artifacts on that device over RPC
    runs: int = 100
    force: bool = False


@dataclass
class PruneReport:
    source: Path
    output: Path
    method: str
    before: dict[str, Any]
    after: dict[str, Any]
    layers: dict[str, Any]
    left_whole: dict[str, str]
    gates: dict[str, Any]
    fine_tuning: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"source": str(self.source), "output": str(self.output), "method": self.method,
                "before": self.before, "after": self.after, "gates": self.gates, "layers": self.layers,
                "left_whole": self.left_whole, "fine_tuning": self.fine_tuning, "seconds": round(self.seconds, 3)}


def prune_file(source: str | Path, out: str | Path, config: PruneConfig = PruneConfig(),
               progress: Progress | None = None) -> PruneReport:
    """Prunes `source` (a checkpoint or an ONNX file) into `out`; raises before writing a result that misses a
    gate (unless `config.force`)."""
    from dlc.fileio import check_output
    from dlc.onnxio import load_model

    source, out, start = Path(source), Path(out), time.perf_counter()
    from_checkpoint = source.suffix.lower() != ".onnx"
    _check_config(config, from_checkpoint)
    check_output(out, config.force)
    _check_output_kind(out, from_checkpoint)
    with tempfile.TemporaryDirectory(prefix="dlc-prune-") as work:
        work = Path(work)
        before_onnx, after_onnx = work / "before.onnx", work / "after.onnx"
        if from_checkpoint:
            original, prune = _load_checkpoint(source, before_onnx), _prune_checkpoint
        else:
            original, prune = _load_onnx(source, before_onnx), _prune_onnx
        data = _validation(source if from_checkpoint else config.checkpoint, config, before_onnx)
        before = _measure(before_onnx, data, None, config, work, progress)  # a device that fails, fails first
        pruned, stats = prune(original, config, after_onnx, progress)
        after = _measure(after_onnx, data, load_model(before_onnx), config, work, progress)
        gates = _gates(before, after, config)
        if not all(g["held"] for g in gates.values()) and not config.force:
            failed = "; ".join(g["why"] for g in gates.values() if not g["held"])
            remedy = "prune in more --steps (fine-tuning between)" if from_checkpoint else \
                "prune the PyTorch checkpoint instead (it is fine-tuned)"
            raise DlcError(f"the pruned model misses a gate: {failed}; nothing was written: lower --ratio, {remedy}, "
                           "or pass --force to write it anyway")
        _write(_with_measured_metric(pruned, after) if from_checkpoint else pruned, out)
    return PruneReport(source, out, config.method, before, after, stats["layers"], stats.get("left_whole", {}),
                       gates, stats.get("fine_tuning", []), time.perf_counter() - start)


def _check_config(config: PruneConfig, from_checkpoint: bool) -> None:
    for kind, value, valid in (("method", config.method, METHODS), ("importance", config.importance, IMPORTANCES),
                               ("backend", config.backend, BACKENDS)):
        if value not in valid:
            raise UnknownNameError(f"unknown {kind} {value!r}; choose one of: {', '.join(valid)}")
    for name, ratio in (("--ratio", config.ratio), *((f"--layer-ratio {n}", r) for n, r in config.layer_ratios)):
        if not 0 <= ratio < 1:
            raise InvalidDataError(f"{name} must be in [0, 1) (the share removed), not {ratio:g}")
    if not 1 <= config.steps <= MAX_STEPS or config.round_to < 1 or (config.epochs or 0) < 0 or config.runs < 1:
        raise InvalidDataError(f"--steps must be 1 to {MAX_STEPS}, --round-to and --runs at least 1, --epochs at "
                               "least 0")
    if config.lr is not None and not 0 < config.lr < math.inf:
        raise InvalidDataError(f"--lr must be a positive number, not {config.lr:g}")
    if config.checkpoint is not None and config.calibration is not None:
        raise InvalidDataError("pass --checkpoint or --calibration for the validation data, not both")
    if config.method == "magnitude" and config.ratio == 0 and not config.layer_ratios:
        raise InvalidDataError("--ratio 0 zeroes no weight; pass the share to zero, e.g. --ratio 0.5")
    if config.max_drop is not None and not config.max_drop >= 0:
        raise InvalidDataError(f"--max-drop must be 0 or more, not {config.max_drop:g} (0.01 is one point)")
    if config.min_speedup is not None and not config.min_speedup > 0:
        raise InvalidDataError(f"--min-speedup must be above 0, not {config.min_speedup:g} (1.6 = 1.6x faster)")
    if config.global_pruning and config.layer_ratios:
        raise InvalidDataError("--layer-ratio sets one layer's share of the per-layer pruning; --global ranks the "
                               "whole model at once: use one or the other")
    if (config.device is not None or config.target != "host") and config.backend != "tvm":
        raise InvalidDataError("--target, --rpc and --tracker time TVM artifacts: add --backend tvm")
    if config.target != "host" and config.device is None:
        raise InvalidDataError(f"--target {config.target} compiles for another machine: name it with --rpc HOST:PORT "
                               "or --tracker HOST:PORT --key KEY")
    if config.device is not None:
        config.device.check()
    if config.target != "host":
        from dlc.target import resolve_target

        resolve_target(config.target)
    if config.method == "magnitude" and config.round_to != 1:
        raise InvalidDataError("--round-to rounds channel counts; --method magnitude keeps every channel: drop it")
    if from_checkpoint:
        _check_checkpoint_options(config)
    else:
        _check_onnx_options(config)


def _check_checkpoint_options(config: PruneConfig) -> None:
    if config.method == "magnitude":
        raise InvalidDataError("--method magnitude prunes an ONNX model's weights: `dlc export` the checkpoint, then "
                               "`dlc prune MODEL.onnx --method magnitude`")
    if config.checkpoint is not None or config.calibration is not None:
        raise InvalidDataError("--checkpoint and --calibration give an ONNX model its validation data; a checkpoint "
                               "is measured on its own data set's test split: drop them")


def _check_onnx_options(config: PruneConfig) -> None:
    if config.importance not in ("l1", "l2"):
        raise InvalidDataError(f"--importance {config.importance} needs the PyTorch model (it reads batch-norm "
                               "scales or gradients); for an ONNX file use l1 or l2, or prune the checkpoint")
    if config.steps != 1 or config.epochs is not None or config.lr is not None:
        raise InvalidDataError("--steps, --epochs and --lr fine-tune a checkpoint between steps; an ONNX file is "
                               "pruned in one step without training: drop them, or prune the checkpoint")


def _check_output_kind(out: Path, from_checkpoint: bool) -> None:
    wanted = (".pt", ".pth") if from_checkpoint else (".onnx",)
    if out.suffix.lower() not in wanted:
        source = "a checkpoint" if from_checkpoint else "an ONNX model"
        raise InvalidDataError(f"-o {out}: pruning {source} writes {' or '.join(wanted)}; pass -o NAME{wanted[0]}"
                               + (" (then `dlc export` it)" if from_checkpoint else ""))


# --- an ONNX file ----------------------------------------------------------------------------------------------

def _load_onnx(source: Path, before: Path):
    """The model as an ir.Model, also written to `before` (one file, even if the source has external data)."""
    import onnx_ir as ir

    from dlc.onnxio import load_model, save_model

    proto = load_model(source)
    names = [n.name for n in proto.graph.node if n.name]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidDataError(f"{source} has several nodes named {', '.join(twice[:3])}; ONNX Runtime refuses such "
                               "a model and layers are chosen by name: give each node its own name")
    save_model(proto, before)
    return ir.serde.deserialize_model(proto)


def _prune_onnx(model, config: PruneConfig, after: Path, progress: Progress | None):
    """(pruned ModelProto, pass stats), also written to `after`."""
    import onnx_ir as ir

    from dlc.onnxio import save_model
    from dlc.passes.prune import ChannelPrunePass, MagnitudePrunePass, prunable_weights

    _check_names({*config.ignore, *(n for n, _ in config.layer_ratios)}, list(prunable_weights(model)))
    ratios = dict(config.layer_ratios)
    if config.method == "magnitude":
        pruning = MagnitudePrunePass(config.ratio, config.global_pruning, config.ignore, ratios)
    else:
        pruning = ChannelPrunePass(config.ratio, config.importance, config.global_pruning, config.round_to,
                                   config.ignore, ratios)
    result = pruning(model)
    if not result.modified:
        raise DlcError(f"nothing was pruned: {_why_nothing(result.stats, config)}")
    proto = ir.serde.serialize_model(result.model)
    save_model(proto, after)
    if progress:
        progress("pruning", 1, 1)
    return proto, result.stats


def _why_nothing(stats: dict, config: PruneConfig) -> str:
    whole = stats.get("left_whole", {})
    if not stats.get("groups"):
        return "the model has no Conv, Gemm or MatMul with constant weights"
    if stats["groups"] > stats["groups_left_whole"]:
        return (f"--ratio {config.ratio:g} (with --round-to {config.round_to}) removes no channel from the "
                f"{stats['groups'] - stats['groups_left_whole']} group(s) that could lose some; raise --ratio"
                + (" or lower --round-to" if config.round_to > 1 else ""))
    reasons = "; ".join(f"{k}: {v}" for k, v in whole.items())
    return (f"every group of channels is left whole ({reasons}); channel pruning follows Conv/Gemm networks, "
            "--method magnitude zeroes weights of any model")


def _check_names(names, known: list[str]) -> None:
    unknown = sorted(n for n in names if n not in known)
    if unknown:
        raise UnknownNameError(f"no prunable layer is named {', '.join(unknown)}; the layers are: {', '.join(known)}")


# --- a checkpoint ----------------------------------------------------------------------------------------------

def _load_checkpoint(source: Path, before: Path):
    """The checkpoint, checked, also exported to `before`."""
    from dlc import zoo
    from dlc.exporters.pytorch import export_checkpoint
    from dlc.training import checkpoint

    ckpt = checkpoint.load(source)
    if zoo.get(ckpt.model).task not in ("classify", "reconstruct"):
        raise InvalidDataError(f"{ckpt.model} is a {zoo.get(ckpt.model).task} model, which dlc cannot fine-tune "
                               "after pruning (it fine-tunes classifiers and autoencoders): `dlc export` it and "
                               "prune the ONNX model")
    export_checkpoint(ckpt, before)
    return ckpt


def _prune_checkpoint(ckpt, config: PruneConfig, after: Path, progress: Progress | None):
    """(pruned Checkpoint, stats), also exported to `after`: Torch-Pruning in steps, fine-tuning after each."""
    import torch
    import torch_pruning as tp

    from dlc import zoo
    from dlc.exporters.pytorch import export_checkpoint

    spec = zoo.get(ckpt.model)
    net = ckpt.build_module()
    model = getattr(net, "inner", net)
    layers = _prunable_modules(model, ckpt.model)
    _check_names({*config.ignore, *(n for n, _ in config.layer_ratios)}, list(layers))
    example = torch.zeros(1, *ckpt.input_shape)
    output_layer, output_shape = _output_layer(model, example, layers)
    widths = {name: _width(m) for name, m in layers.items()}
    pruner = tp.pruner.BasePruner(
        model, example, importance=_importance(config.importance), pruning_ratio=config.ratio,
        global_pruning=config.global_pruning, iterative_steps=config.steps,
        ignored_layers=[layers[output_layer], *(layers[n] for n in config.ignore)],
        round_to=config.round_to if config.round_to > 1 else None,
        pruning_ratio_dict={layers[n]: r for n, r in config.layer_ratios})
    history = _steps(pruner, net, model, spec, ckpt, config, (example, output_shape, layers, widths), progress)
    pruned = _pruned_checkpoint(ckpt, model, config, example)
    export_checkpoint(pruned, after)
    whole = {output_layer: "its outputs are the model's", **{n: "ignored (--ignore)" for n in config.ignore}}
    untouched = "no BatchNorm scale ranks its channels (--importance bn)" if config.importance == "bn" else \
        "Torch-Pruning kept every channel (--ratio and --round-to, or --global ranked it high)"
    whole.update({n: untouched for n, m in layers.items() if n not in whole and _width(m) == widths[n]})
    return pruned, {"layers": {name: {"channels": widths[name], "kept": _width(m)} for name, m in layers.items()},
                    "fine_tuning": history, "left_whole": whole}


def _steps(pruner, net, model, spec, ckpt, config: PruneConfig, check, progress: Progress | None) -> list[dict]:
    """Prunes in `config.steps` steps, fine-tuning after each; returns the fine-tuning history."""
    import torch

    from dlc.training.config import TrainConfig, with_recipe
    from dlc.training.data import load_dataset
    from dlc.training.loop import fine_tune

    epochs = FINE_TUNE_EPOCHS if config.epochs is None else config.epochs
    data = load_dataset(ckpt.dataset, task=spec.task)
    train = with_recipe(TrainConfig(model=ckpt.model, epochs=max(epochs, 1), lr=config.lr, schedule="cosine"), spec)
    example, output_shape, layers, widths = check
    history = []
    for step in range(1, config.steps + 1):
        if config.importance == "taylor":
            _gradients(net, spec.task, data, train)
        pruner.step()
        with torch.no_grad():
            shape = tuple(model.eval()(example).shape)
        if shape != output_shape:
            raise DlcError(f"pruning changed {ckpt.model}'s output from {list(output_shape)} to {list(shape)}: its "
                           "output layer was not found; pass it with --ignore")
        if step == config.steps and all(_width(m) == widths[n] for n, m in layers.items()):
            raise DlcError(f"nothing was pruned: Torch-Pruning kept every channel of {ckpt.model} at --ratio "
                           f"{config.ratio:g} (--round-to {config.round_to}, --importance {config.importance}"
                           f"{', every layer ignored' if len(config.ignore) + 1 >= len(layers) else ''}); raise "
                           "--ratio or use --importance l1")
        if progress:
            progress("pruning steps", step, config.steps)

        def epoch_done(stats, step=step):
            history.append({"step": step, **stats.__dict__})
            if progress:
                progress(f"fine-tuning (step {step})", stats.epoch, epochs)

        fine_tune(net, model, spec.task, data, train, epochs, epoch_done)
    return history


def _output_layer(model, example, layers: dict) -> tuple[str, tuple[int, ...]]:
    """The Conv/Linear that runs last (its outputs are the model's) and the model's output shape."""
    import torch

    order = []
    hooks = [m.register_forward_hook(lambda *_, name=name: order.append(name)) for name, m in layers.items()]
    try:
        with torch.no_grad():
            shape = tuple(model.eval()(example).shape)
    finally:
        for hook in hooks:
            hook.remove()
    if not order:
        raise InvalidDataError("the model has no Conv or Linear layer to prune")
    return order[-1], shape


def _prunable_modules(model, name: str) -> dict[str, Any]:
    """Conv and Linear layers by name; a model with layers dlc cannot rebuild narrower is refused."""
    from torch import nn

    from dlc.zoo.sequence import SelfAttention

    # what narrow_to cannot rebuild, or where channels are split into heads Torch-Pruning does not know of
    refused = (nn.RNNBase, nn.MultiheadAttention, SelfAttention, nn.Embedding, nn.ConvTranspose1d, nn.ConvTranspose2d,
               nn.ConvTranspose3d, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.PReLU)
    unsupported = sorted({type(m).__name__ for m in model.modules() if isinstance(m, refused) or (
        isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.affine)})
    if unsupported:
        raise InvalidDataError(f"{name} has {', '.join(unsupported)} layers, which channel pruning does not narrow "
                               "(it follows Conv/Linear networks such as mlp, cnn, resnet, mobilenet, autoencoder): "
                               "`dlc export` it and zero its smallest weights with `dlc prune MODEL.onnx --method "
                               "magnitude`")
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))}


def _width(module) -> int:
    return module.out_features if hasattr(module, "out_features") else module.out_channels


def _importance(kind: str):
    import torch_pruning as tp

    if kind == "bn":
        return tp.importance.BNScaleImportance()
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if kind == "l1" else 2)


def _gradients(net, task: str, data, train) -> None:
    """Gradients of the loss on a batch of training samples: what Taylor importance reads."""
    import torch

    from dlc.training.objectives import make_objective

    objective = make_objective(task, net, train)
    net.zero_grad()
    x, y = (torch.from_numpy(a[:256]) for a in (data.x_train, data.y_train))
    objective.loss(net.eval(), x, y)[0].backward()


def _pruned_checkpoint(ckpt, model, config: PruneConfig, example):
    """The checkpoint of the pruned `model`, checked: rebuilt from it, the model computes the same."""
    from dataclasses import replace

    import torch

    how = {"method": config.method, "ratio": config.ratio, "importance": config.importance,
           "global": config.global_pruning, "steps": config.steps, "round_to": config.round_to,
           "epochs_per_step": FINE_TUNE_EPOCHS if config.epochs is None else config.epochs}
    pruned = replace(ckpt, state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
                     pruned=how, training_state=None)
    try:
        rebuilt = getattr(pruned.build_module(), "inner", None) or pruned.build_module()
        with torch.no_grad():
            same = torch.allclose(rebuilt(example), model.eval()(example), atol=1e-5)
    except RuntimeError as e:  # torch's size mismatches
        raise DlcError(f"the pruned {ckpt.model} cannot be rebuilt from its checkpoint ({first_line(e)}); pass the "
                       "layers involved with --ignore, or prune the exported ONNX model") from e
    if not same:
        raise DlcError(f"the pruned {ckpt.model} computes differently once rebuilt from its checkpoint; pass the "
                       "layers involved with --ignore, or prune the exported ONNX model")
    return pruned


def _with_measured_metric(pruned, after: dict):
    """The pruned checkpoint with the test accuracy measured after pruning, not the one from training."""
    from dataclasses import replace

    metrics = {k: v for k, v in pruned.metrics.items() if k not in ("test_accuracy", "test_loss", "train_accuracy",
                                                                    "val_accuracy")}
    if after.get("metric", {}).get("name") == "top-1":
        metrics["test_accuracy"] = after["metric"]["value"]
    return replace(pruned, metrics=metrics)


# --- measure, gate, write ----------------------------------------------------------------------------------------

def _validation(data_source: Path | None, config: PruneConfig, model_path: Path):
    from dlc.calibration import load_data, model_task, require_metric
    from dlc.onnxio import io_specs, load_model

    data = None
    if data_source is not None or config.calibration is not None:
        proto = load_model(model_path)
        data = load_data(data_source, config.calibration if data_source is None else None, io_specs(proto)[0],
                         model_task(proto))
    if config.max_drop is not None:
        require_metric(data)
    return data


def _measure(path: Path, data, reference, config: PruneConfig, work: Path,
             progress: Progress | None) -> dict[str, Any]:
    """Parameters, FLOPs, sizes, the task's metric (against `reference`'s predictions when the data has no
    labels) and the latency of the ONNX model at `path`."""
    from dlc.analysis.inspect import inspect_model
    from dlc.quantization import evaluate

    info = inspect_model(path)
    proto_bytes = path.read_bytes()
    measured = {"parameters": info.parameters, "flops": info.flops, "file_bytes": len(proto_bytes),
                "deflated_bytes": len(zlib.compress(proto_bytes, 6))}
    if data is not None and data.has_metric:
        from dlc.onnxio import load_model

        result = evaluate(load_model(path), data, reference=reference)
        measured["metric"] = {"name": result.metric, "value": round(result.value, 6), "samples": result.samples}
    measured["latency_ms"] = _latency(path, config, work)
    if progress:
        progress("measuring", 1, 1)
    return measured


def _latency(path: Path, config: PruneConfig, work: Path) -> dict[str, Any]:
    """p50 and p90 on the chosen backend: here in a fresh process, or on a device over TVM RPC (TVM artifacts
    compiled untuned for `config.target`)."""
    from dlc.runtime.bench import BenchConfig, benchmark, latency_stats

    model = path
    if config.backend == "tvm":
        from dlc.compiler.build import CompileConfig, compile_model

        model = work / f"{path.stem}.dlc"
        compile_model(path, model, CompileConfig(target=config.target))
    if config.device is not None:
        from dlc.runtime.deploy import DeployConfig, deploy

        device = config.device
        report = deploy(model, DeployConfig(rpc=device.rpc, tracker=device.tracker, key=device.key,
                                            number=max(1, config.runs // 10), repeat=10))
        latency = latency_stats(report.repeats_ms)
        backend = f"tvm@{report.device.get('board') or device.key or device.rpc}"
    else:
        latency = benchmark(model, BenchConfig(backends=(config.backend,), runs=config.runs,
                                               warmup=10)).results[0].latency_ms
        backend = config.backend
    return {"backend": backend, "p50": round(latency["p50"], 4), "p90": round(latency["p90"], 4)}


def _gates(before: dict, after: dict, config: PruneConfig) -> dict[str, Any]:
    from dlc.quantization import Evaluation

    gates = {}
    if config.max_drop is not None:
        metric = before["metric"]
        b = Evaluation(metric["name"], metric["value"], metric["samples"])
        drop = Evaluation(metric["name"], after["metric"]["value"], metric["samples"]).drop_from(b)
        gates["max_drop"] = {"limit": config.max_drop, "measured": round(drop, 6), "held": drop <= config.max_drop,
                             "why": f"{metric['name']} went {b.shown(b.value)} → "
                                    f"{b.shown(after['metric']['value'])}, over --max-drop {config.max_drop:g}"}
    if config.min_speedup is not None:
        speedup = before["latency_ms"]["p50"] / max(after["latency_ms"]["p50"], 1e-9)
        gates["min_speedup"] = {"limit": config.min_speedup, "measured": round(speedup, 3),
                                "held": speedup >= config.min_speedup,
                                "why": f"{before['latency_ms']['backend']} p50 {before['latency_ms']['p50']:.3f} → "
                                       f"{after['latency_ms']['p50']:.3f} ms is {speedup:.2f}x, under "
                                       f"--min-speedup {config.min_speedup:g}"}
    return gates


def _write(pruned, out: Path) -> None:
    """A pruned checkpoint or ONNX model (a ModelProto), atomically."""
    from dlc.onnxio import save_model, staged_model
    from dlc.training import checkpoint

    if out.suffix.lower() == ".onnx":
        with staged_model(out) as staged:
            save_model(pruned, staged)
    else:
        checkpoint.save(pruned, out)
