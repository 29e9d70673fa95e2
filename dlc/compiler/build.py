"""ONNX → TVM Relax → a verified artifact directory.

Stages, in order, each failing with an error a user can act on:
  1. load and check the ONNX model; refuse up front if TVM lacks any of its ops
  2. fix every input shape (TVM builds static shapes here; `--shape` pins symbolic dims)
  3. import with the Relax ONNX frontend and build with the target's default pipeline,
     which is what fuses operators (a bare `tvm.compile` does not on CPU)
  4. write library, ONNX and golden I/O into a temporary directory, run the library
     against ONNX Runtime, and only then rename the directory into place
"""

from __future__ import annotations

import functools
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from dlc.artifact import (
    DYNAMIC_FORMAT_VERSION,
    FORMAT,
    FORMAT_VERSION,
    GOLDEN,
    KERNELS,
    LIBRARY,
    MANIFEST,
    ONNX,
    save_golden,
    sha256_file,
    why_not_replaceable,
)
from dlc.compiler.coverage import check_coverage, require_supported
from dlc.elf import read_elf_header
from dlc.compiler.frontend import import_relax
from dlc.compiler.schedules import TUNED
from dlc.errors import DlcError, first_line
from dlc.fileio import atomic_path, check_output, write_json
from dlc.numerics import Tolerance, require_close
from dlc.onnxio import io_specs, load_model, node_names, save_model
from dlc.specs import SAMPLE_DIM, TensorSpec, dynamic_specs, golden_sizes, random_inputs, static_specs
from dlc.target import TargetSpec, cpu_features, resolve_target
from dlc.version import __version__


@dataclass(frozen=True)
class TuningOptions:
    trials: int = 0  # records this model's kernels should hold in the tuning database; 0 = apply what it has
    minutes: float | None = None  # stop the search after this long (with trials 0: tune until then)
    database: Path | None = None  # default: ~/.cache/dlc/tuning/KEY, one per target, shared by every model
    tracker: str | None = None  # measure candidates on a device of this RPC tracker (HOST:PORT)...
    key: str = ""  # ...registered under this key


@dataclass(frozen=True)
class CompileConfig:
    target: str = "host"
    shapes: dict[str, list[int]] = field(default_factory=dict)  # pins symbolic input dims
    atol: float = 1e-4
    rtol: float = 1e-4
    seed: int = 0  # for the golden inputs
    force: bool = False
    tuning: TuningOptions = TuningOptions()
    schedules: str = "default"  # "none": TVM's own CPU pipeline, no dlc schedules (to compare against)
    sign: Path | None = None  # a private key to sign the artifact with (dlc.signing)
    max_shape: dict[str, int] | None = None  # dynamic: symbolic dims stay, each up to its bound; None: static


@dataclass
class CompileReport:
    artifact: Path
    target: TargetSpec
    seconds: dict[str, float]
    max_abs_diff: float | None  # TVM vs ONNX Runtime on the golden inputs; None if not run here
    library_bytes: int
    tuning: dict[str, Any] | None = None
    not_verified_because: str | None = None  # why the library could not run here ("this CPU lacks avx512f")
    schedules: dict[str, Any] | None = None  # how each kernel was scheduled (schedules.schedule_summary); CPUs
    verified_sizes: list[dict[str, int]] | None = None  # a dynamic artifact's: the sizes it was verified at

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": str(self.artifact), "target": self.target.to_dict(), "seconds": self.seconds,
                "max_abs_diff_vs_onnxruntime": self.max_abs_diff, "library_bytes": self.library_bytes,
                "tuning": self.tuning, "not_verified_because": self.not_verified_because,
                "schedules": self.schedules}


@dataclass
class Prepared:
    """What compiling and tuning both start from: the model as TVM will read it, for one target and shape."""

    model: Any  # onnx.ModelProto, LSTM/GRU and quantized operators lowered
    lowered: dict[str, Any] | None  # what the lowering passes did, if any ran
    target: TargetSpec
    inputs: list[TensorSpec]  # every dimension fixed, except with --dynamic
    source_sha256: str  # of the ONNX file as given
    bounds: dict[str, int] = field(default_factory=dict)  # --dynamic: each symbolic dimension's upper bound

    def relax(self):
        return import_relax(self.model, self.inputs, self.bounds)


def prepare(onnx_path: str | Path, config: CompileConfig) -> Prepared:
    model, lowered = load_for_tvm(onnx_path)
    target = resolve_target(config.target)
    specs = io_specs(model)[0]
    if config.max_shape is None:
        return Prepared(model, lowered, target, static_specs(specs, config.shapes), sha256_file(onnx_path))
    return Prepared(model, lowered, target, dynamic_specs(specs, config.shapes, config.max_shape),
                    sha256_file(onnx_path), dict(config.max_shape))


def compile_model(onnx_path: str | Path, out: str | Path, config: CompileConfig = CompileConfig(),
                  on_tuning: Callable[[int, int, float | None], None] | None = None) -> CompileReport:
    """Compiles `onnx_path` into the artifact directory `out`; nothing is left at `out` on failure.

    A tuning database for this model, shapes and target is applied when one exists, and
    grown to `config.tuning.trials` records first when that is more than it holds.
    """
    out, timer = Path(out), _Timer()
    check_output(out, config.force, directory=why_not_replaceable)
    prepared = prepare(onnx_path, config)
    target, inputs, bounds = prepared.target, prepared.inputs, prepared.bounds
    if bounds and (config.tuning.trials or config.tuning.minutes):
        raise DlcError("tuning needs static shapes: tune a static build (without --dynamic), or compile --dynamic "
                       "untuned")
    cases = golden_sizes(bounds) if bounds else [{}]  # a dynamic artifact is verified at several sizes
    _check_golden_size(inputs, cases)
    if config.sign:
        from dlc import signing

        signing.load_private_key(config.sign)  # a bad key fails now, not after the build
    fcompile = target.fcompile()  # a missing cross linker fails here, before the build
    timer.mark("load")
    database, tuning = _tuned(prepared, config, on_tuning)
    timer.mark("tune")
    nodes = node_names(prepared.model)
    executable, schedules = build_module(prepared.relax(), target, database, config.schedules, nodes)
    not_here = target.why_not_here()
    # Records that each measured faster, kernel by kernel, can still make a slower model
    # (measured on a busy machine, or faster alone than among the others): the default
    # build is built too and the whole models are timed against each other.
    tuned_kernels = (schedules or {}).get("kernels", {}).get(TUNED, 0)
    default = build_module(prepared.relax(), target, None, config.schedules, nodes) if tuned_kernels and \
        not not_here else None
    timer.mark("build")
    recheck = functools.partial(check_output, out, config.force, directory=why_not_replaceable)  # what appeared since
    with atomic_path(out, directory=True, before_replace=recheck) as tmp:
        _export_library(executable, tmp / LIBRARY, fcompile, target)
        if not_here and schedules and schedules.get("nodes_without_kernel") is not None:
            # the kernels alone, for `dlc profile` to time one by one on the device (over RPC, TVM's
            # time_evaluator finds a function only at the top of what it loads, and there sits the VM)
            _export_library(executable.mod.imports[0], tmp / KERNELS, fcompile, target)
        _write_onnx(prepared, onnx_path, tmp / ONNX)
        quantized = quantized_tolerance(prepared.model)  # int8 inside: rounding may land a few steps apart
        golden = []
        for i, sizes in enumerate(cases):
            golden_in = random_inputs(inputs, seed=config.seed + i, sizes=sizes)
            golden.append((golden_in, _onnxruntime_outputs(tmp / ONNX, golden_in, quantized is not None)))
        save_golden(tmp / GOLDEN, golden)
        golden_in, golden_out = golden[0]
        if default:
            schedules, tuning = _keep_the_faster(tmp, default, golden_in, fcompile, target, schedules, tuning)
        timer.mark("export")
        atol, rtol = (max(config.atol, quantized[0]), max(config.rtol, quantized[1])) if quantized else \
            (config.atol, config.rtol)
        diff = max(_verify(tmp, *case, atol, rtol, target) for case in golden) if not_here is None else None
        timer.mark("verify")
        outputs = io_specs(prepared.model)[1] if bounds else _specs_of(golden_out)
        manifest = _manifest(out.name.removesuffix(".dlc"), tmp, prepared, outputs, diff, timer.seconds)
        manifest["source_onnx"] = str(Path(onnx_path).resolve())  # where its quantize or prune report may sit
        if bounds:
            manifest["format_version"] = DYNAMIC_FORMAT_VERSION
            manifest["max_shape"] = bounds
            manifest["verification"]["sizes"] = cases
        manifest["verification"]["not_verified_because"] = not_here
        manifest["verification"]["quantized_tolerance"] = quantized and {"atol": quantized[0], "rtol": quantized[1]}
        manifest["tuning"] = tuning
        manifest["schedules"] = schedules
        write_json(tmp / MANIFEST, manifest)
        if config.sign:
            signing.sign(tmp / MANIFEST, config.sign)
    return CompileReport(out, target, timer.seconds, diff, (out / LIBRARY).stat().st_size, tuning, not_here,
                         schedules, cases if bounds else None)


GOLDEN_LIMIT = 256 << 20  # bytes of golden inputs an artifact carries


def _check_golden_size(inputs: list[TensorSpec], cases: list[dict[str, int]]) -> None:
    """Refuses, before building, shapes whose golden inputs alone would make a huge artifact."""
    size = sum(math.prod(sizes.get(d, d) for d in s.shape) * np.dtype(s.dtype).itemsize
               for s in inputs for sizes in cases)
    if size > GOLDEN_LIMIT:
        shapes = ", ".join(f"{s.name}={'x'.join(str(cases[-1].get(d, d)) for d in s.shape)}" for s in inputs)
        raise DlcError(f"the inputs at {shapes} take {size / (1 << 20):.0f} MiB, and the artifact keeps a golden "
                       f"copy of them; the limit is {GOLDEN_LIMIT >> 20} MiB: compile for smaller shapes (--shape, "
                       "or a lower --max-shape)")


def tune_model(onnx_path: str | Path, config: CompileConfig,
               on_tuning: Callable[[int, int, float | None], None] | None = None) -> dict[str, Any]:
    """Grows the tuning database of `onnx_path` for `config.target` to `config.tuning.trials`; no artifact."""
    _, report = _tuned(prepare(onnx_path, config), config, on_tuning)
    return report


def load_for_tvm(onnx_path: str | Path):
    """The checked model with the ops dlc lowers for TVM (LSTM, GRU, QOperator) lowered; and what was lowered.

    The lowering is verified on ONNX Runtime against the original graph like any pass; an
    op it cannot lower (or any other op TVM lacks) is then named by the coverage check.
    """
    model = load_model(onnx_path)
    report = check_coverage(model)
    lowered = None
    lowerings = sorted({op.lowering for op in report.gaps("tvm") if op.lowering})
    if lowerings:
        model, lowered = _lower(model, lowerings)
        report = check_coverage(model)
    require_supported(report, "tvm")
    return model, lowered


def _lower(model, names: list[str]):
    """The model through the lowering passes `names`, then folded; (model, what each lowering did)."""
    import onnx_ir as ir

    from dlc.passes import Verifier, from_names, run_passes
    from dlc.passes.cleanup import EliminateDeadCodePass, FoldConstantsPass

    ir_model = ir.serde.deserialize_model(model)
    inputs = random_inputs(io_specs(model)[0], batch=SAMPLE_DIM)
    passes = [*from_names(names), FoldConstantsPass(), EliminateDeadCodePass()]
    ir_model, records = run_passes(ir_model, passes, Verifier(ir_model, inputs))
    ran = records[:len(names)]
    stats = {"pass": ",".join(names), "ops": {k: v for r in ran for k, v in r.stats.items()},
             "max_abs_diff": max(r.max_abs_diff for r in ran)}
    return ir.serde.serialize_model(ir_model), stats


def _write_onnx(prepared: Prepared, source: Path, path: Path) -> None:
    """The artifact's ONNX is the graph TVM compiled, in one file: the source file itself when it is whole.

    A lowered graph, or a source whose weights sit in external data files (torch's dynamo
    exporter writes `model.onnx.data` beside it), is written from the loaded model, its
    weights inside (past protobuf's 2 GB limit, in `model.onnx.data` in the artifact, hashed
    like every file), so the artifact needs nothing from beside it.
    """
    import onnx

    if prepared.lowered or _has_external_data(source):
        copy = onnx.ModelProto()
        copy.CopyFrom(prepared.model)  # save_model moves the weights of one past 2 GB out to model.onnx.data
        save_model(copy, path)
    else:
        shutil.copyfile(source, path)


def _has_external_data(source: Path) -> bool:
    import onnx
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(t) for t in onnx.load(str(source), load_external_data=False).graph.initializer)


def _tuned(prepared: Prepared, config: CompileConfig, on_tuning) -> tuple[Path | None, dict[str, Any] | None]:
    """The tuning database of this model, shapes and target, grown first if asked; None if it has nothing."""
    from dlc.compiler import pipeline, tuning

    target, options = prepared.target, config.tuning
    key = tuning.database_key(target.tvm)
    database = options.database or tuning.default_database(key)
    if options.minutes is not None and options.minutes <= 0:
        raise DlcError(f"tuning for {options.minutes} minutes tunes nothing: give a time above 0, or leave it out")
    trials = options.trials or (tuning.UNLIMITED if options.minutes else 0)
    if trials <= 0 and tuning.count_records(database) == 0:
        return None, None
    not_here = target.why_not_here()
    if trials > 0 and not options.tracker and not_here:
        raise DlcError(f"cannot tune for {target.name} on this machine: {not_here}. Tune on a device of that kind "
                       "through a TVM RPC tracker (dlc tune --tracker HOST:PORT --key KEY), or tune --target host")
    shapes = {s.name: list(s.shape) for s in prepared.inputs}
    tune_config = tuning.TuneConfig(trials=trials, minutes=options.minutes,
                                    model_key=tuning.model_key(prepared.source_sha256, shapes,
                                                               f"{pipeline.VERSION}/{config.schedules}"),
                                    tracker=options.tracker, key=options.key, linker=target.linker)
    tvm_target = target.tvm_target()
    report = tuning.grow(pipeline.prepare(prepared.relax(), tvm_target, config.schedules), tvm_target, database, key,
                         tune_config, on_tuning)
    return database, report.to_dict()


def build_executable(model, inputs: list[TensorSpec], target: TargetSpec):
    """Imports the ONNX model into Relax with static input shapes and builds it for `target`."""
    return build_module(import_relax(model, inputs), target)[0]


def build_module(mod, target: TargetSpec, database: Path | None = None, schedules: str = "default",
                 nodes: list[str] | None = None):
    """Builds a Relax module through dlc's pipeline; returns the executable and what was scheduled how.

    The tuning database's records apply where it has them, the default schedules elsewhere.
    With the ONNX graph's node names `nodes` (in graph order), the summary says which nodes
    each kernel computes, and why the others have no kernel.
    """
    import tvm

    from dlc.compiler import pipeline, provenance
    from dlc.compiler.integer import integer_kernels
    from dlc.compiler.schedules import schedule_summary

    tvm_target = target.tvm_target()
    fusion = provenance.kernel_nodes_instrument()
    with provenance.instrumented(fusion):
        prepared = pipeline.prepare(mod, tvm_target, schedules)
    arithmetic = integer_kernels(prepared)  # read before scheduling, while every block sits under its root
    mod = pipeline.schedule(prepared, tvm_target, database, schedules)
    summary = None
    if pipeline.is_cpu(tvm_target):
        summary = {**schedule_summary(mod), "arithmetic": arithmetic}
        if nodes is not None:
            summary.update(provenance.kernel_summary(fusion, mod, summary["per_kernel"], nodes))
    with tvm_target:
        return tvm.compile(mod, target=tvm_target, relax_pipeline=pipeline.lower(tvm_target)), summary


def _keep_the_faster(tmp: Path, default, golden_in, fcompile, target: TargetSpec, schedules, tuning):
    """Times the tuned library (tmp/LIBRARY) against the default build's; the faster one stays as the library.

    Returns the schedules and tuning record of what stayed; the tuning record says both times.
    """
    from dlc.child import ChildDiedError, run_in_child

    candidate = tmp / ".default-build.so"
    _export_library(default[0], candidate, fcompile, target)
    try:
        tuned_ms, default_ms = run_in_child("dlc.compiler.build:time_libraries",
                                            [str(tmp / LIBRARY), str(candidate)], golden_in, target.device,
                                            without_torch=True)
    except (ChildDiedError, DlcError) as e:  # the verification that follows says what is wrong with the library
        candidate.unlink()
        return schedules, {**tuning, "applied": True, "whole_model_ms": None, "not_compared_because": first_line(e)}
    applied = tuned_ms <= default_ms
    if applied:
        candidate.unlink()
    else:
        os.replace(candidate, tmp / LIBRARY)
        schedules = default[1]
    return schedules, {**tuning, "applied": applied,
                       "whole_model_ms": {"tuned": round(tuned_ms, 4), "default": round(default_ms, 4)}}


def time_libraries(libraries: list[str], inputs: dict[str, np.ndarray], device: str, rounds: int = 9,
                   min_seconds: float = 0.03) -> list[float]:
    """In a child process: milliseconds per call of each library on `inputs`, the median of interleaved rounds.

    Interleaved, so that a machine busy for a moment slows every library alike.
    """
    import tvm

    from dlc.runtime.tvm_session import TvmSession

    sessions = [TvmSession(tvm.runtime.load_module(path), _specs_of(inputs), [], device) for path in libraries]
    for session in sessions:
        session.run(inputs)  # the first call starts the thread pool and faults the pages in
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(rounds):
        for session, samples in zip(sessions, times):
            calls, start = 0, time.perf_counter()
            while calls == 0 or time.perf_counter() - start < min_seconds:
                session.run(inputs)
                session.device.sync()  # a GPU's kernels run on after the call returns
                calls += 1
            samples.append(1000 * (time.perf_counter() - start) / calls)
    return [float(np.median(samples)) for samples in times]


def _export_library(executable, path: Path, fcompile, target: TargetSpec) -> None:
    try:
        executable.export_library(str(path), fcompile=fcompile)
    except RuntimeError as e:  # the linker's own message is the useful part
        lines = [line for line in str(e).splitlines() if "error" in line.lower()] or [first_line(e)]
        raise DlcError(f"linking the library for target {target.name} failed: {lines[-1].strip()[:300]}") from e


def _onnxruntime_outputs(onnx_path: Path, inputs: dict[str, np.ndarray], quantized: bool = False):
    """ONNX Runtime's outputs; a quantized model's from its unfused graph (see OrtSession)."""
    from dlc.runtime.session import OrtSession

    return OrtSession(onnx_path, fuse_quantized=not quantized).run(inputs)


# How many of an int8 output's quantization steps TVM may be from ONNX Runtime. The integer kernels
# round where ONNX Runtime rounds, but the float ops between them (softmax, layer norm, GELU: each
# runtime approximates exp and erf its own way) and float requantize epilogues (an FMA on one CPU, a
# multiply and an add on another) can flip an intermediate rounding, which moves the output a step:
# on a 4-layer encoder, 82 % of logits within one step, all within three. A wrong kernel is off by
# far more. Digits CNNs, ResNet and MobileNet agree within one step on 99.9 % of values (tests).
QUANTIZED_STEPS = 4
QUANTIZED_RTOL = 0.02  # a static int8 model whose outputs are float (its last layers kept float): 2 % of the range


def quantized_tolerance(model) -> tuple[float, float] | None:
    """(atol, rtol) a static int8 model's outputs are verified to; None for a model without QuantizeLinear."""
    step = output_quantization_step(model)
    if step:
        return QUANTIZED_STEPS * step * (1 + 1e-3), 0.0
    if any(n.op_type == "QuantizeLinear" for n in model.graph.node):
        return 0.0, QUANTIZED_RTOL
    return None


def output_quantization_step(model) -> float:
    """The largest scale of a DequantizeLinear that makes a graph output (0.0 if none does)."""
    from onnx import numpy_helper

    constants = {i.name: i for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    steps = [float(numpy_helper.to_array(constants[n.input[1]]).max()) for n in model.graph.node
             if n.op_type == "DequantizeLinear" and n.output[0] in outputs and n.input[1] in constants]
    return max(steps, default=0.0)


def _verify(tmp: Path, golden_in, golden_out, atol: float, rtol: float, target: TargetSpec) -> float:
    """Loads the written library exactly as users will, in a child process, and compares it with ONNX Runtime.

    A child process, because a library that crashes on load or on its first run (a CPU
    feature missing after all, a broken link) must not take this process with it.
    """
    from dlc.child import ChildDiedError, run_in_child

    try:
        return run_in_child("dlc.compiler.build:verify_library", str(tmp / LIBRARY), golden_in, golden_out,
                            atol, rtol, target.device, without_torch=True)
    except ChildDiedError as e:
        raise DlcError(f"the compiled library crashed when loaded and run on this machine ({e.how}: {e.last_line}); "
                       "nothing was written. Compile for --target host, or verify the library on its device "
                       "with `dlc deploy`") from e


def verify_library(library: str, golden_in, golden_out, atol: float, rtol: float, device: str) -> float:
    """In a child process: max abs diff of the library's outputs from ONNX Runtime's, within tolerance."""
    import tvm

    from dlc.runtime.tvm_session import TvmSession

    session = TvmSession(tvm.runtime.load_module(library), _specs_of(golden_in), _specs_of(golden_out), device)
    return require_close(session.run(golden_in), golden_out, Tolerance(atol, rtol), "TVM outputs and ONNX Runtime's",
                         "nothing was written. Loosen --atol/--rtol only if this difference is acceptable")


def _specs_of(arrays: dict[str, np.ndarray]) -> list[TensorSpec]:
    return [TensorSpec(name, tuple(a.shape), a.dtype.name) for name, a in arrays.items()]


def _manifest(name, tmp: Path, prepared: Prepared, outputs, diff, seconds) -> dict[str, Any]:
    import onnx
    import onnxruntime
    import tvm
    import tvm_ffi

    roles = [("library", LIBRARY), ("onnx", ONNX), ("golden", GOLDEN), ("onnx_data", f"{ONNX}.data"),
             ("kernels", KERNELS)]
    files = {role: {"path": f, "sha256": sha256_file(tmp / f), "bytes": (tmp / f).stat().st_size}
             for role, f in roles if (tmp / f).exists()}  # onnx_data: a model past 2 GB keeps its weights there
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {"dlc": __version__, "tvm": tvm.__version__, "tvm_ffi": tvm_ffi.__version__,
                     "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "target": prepared.target.to_dict(),
        "library_elf": read_elf_header(tmp / LIBRARY),
        "cpu_features": cpu_features(prepared.target.tvm),  # what loading checks against this CPU, without LLVM
        "inputs": [s.to_dict() for s in prepared.inputs], "outputs": [s.to_dict() for s in outputs],
        "source_onnx_sha256": prepared.source_sha256,  # the file given; files.onnx is what TVM compiled
        "lowered": prepared.lowered,
        "files": files,
        "verification": {"reference": "onnxruntime", "max_abs_diff": diff},
        "compile_seconds": seconds,
    }


class _Timer:
    def __init__(self):
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now
