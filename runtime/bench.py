"""Side-by-side benchmarks: the same inputs on every backend, each in a fresh process.

A fresh process per backend means one backend's thread pools, caches and allocations
never colour another's numbers, and its peak RSS is what deploying that backend alone
would cost (interpreter and numpy included).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlc.child import run_in_child
from dlc.numerics import compare
from dlc.runtime.backends import REFERENCE, get_backend
from dlc.runtime.stats import load_context, sample_stats, warm_up
from dlc.specs import aligned
from dlc.version import __version__


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] = ("tvm", "onnxruntime", "pytorch")
    warmup: int = 10
    runs: int = 100
    threads: int | None = None  # intra-op threads for every backend; None = each one's default
    checkpoint: Path | None = None  # needed for the pytorch backend
    inputs: Path | None = None  # an .npz of named inputs; default: the artifact's golden or random inputs
    seed: int = 0
    artifact: Path | None = None  # the compiled artifact backends that read one run, when `model` is an ONNX file
    remote_artifact: Path | None = None  # an artifact for a device, run through `deploy` as one more row
    device: Any = None  # the DeviceAddress of that device (rpc.DeviceAddress)
    trust: Path | None = None  # a public key the artifacts given must be signed with, checked before any opens them


@dataclass
class BackendResult:
    backend: str
    latency_ms: dict[str, float]
    throughput_per_s: float  # samples per second, batch included
    peak_rss_mb: float | None  # None for a remote device
    load_seconds: float
    max_abs_diff: float | None = None  # against the reference backend's outputs
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    samples_ms: list[float] = field(default_factory=list, repr=False)  # every timed run, for later comparisons
    warmup: dict[str, Any] | None = None  # {"runs", "settled"}: how long the timings took to settle

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "outputs"}


@dataclass
class BenchReport:
    model: str
    inputs: dict[str, list[int]]
    config: BenchConfig
    results: list[BackendResult]
    reference: str | None

    def to_dict(self) -> dict[str, Any]:
        cfg = {k: (str(v) if isinstance(v, Path) else dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
               for k, v in self.config.__dict__.items()}
        return {"dlc_version": __version__, "model": self.model, "machine": machine_info(),
                "inputs": self.inputs, "config": cfg, "reference": self.reference,
                "results": [r.to_dict() for r in self.results]}


def benchmark(model: str | Path, config: BenchConfig = BenchConfig(),
              on_result: Callable[[BackendResult], None] | None = None) -> BenchReport:
    """Benchmarks `model` (artifact directory or ONNX file) on each backend of `config`."""
    feed = _inputs(model, config)
    batch = next(iter(feed.values())).shape[0] if feed else 1
    results = []
    for backend in config.backends:
        result = _run_isolated(backend, model, feed, config, batch)
        results.append(result)
        if on_result:
            on_result(result)
    if config.remote_artifact:
        results.append(_run_remote(config, feed, batch))
        if on_result:
            on_result(results[-1])
    reference = _reference(results)
    for r in results:
        r.max_abs_diff = compare(r.outputs, reference.outputs).max_abs_diff if reference and r.outputs else None
    return BenchReport(str(model), {k: list(v.shape) for k, v in feed.items()}, config, results,
                       reference.backend if reference else None)


def _inputs(model: str | Path, config: BenchConfig) -> dict[str, np.ndarray]:
    from dlc.artifact import Artifact, is_artifact
    from dlc.onnxio import io_specs, load_model
    from dlc.specs import load_inputs, random_inputs

    if is_artifact(model):
        artifact = Artifact.load(model, trust=config.trust)
        specs = artifact.inputs
        default = artifact.golden()[0]
    else:
        specs = io_specs(load_model(model))[0]
        default = random_inputs(specs, seed=config.seed)
    if config.inputs is None:
        return default
    return load_inputs(config.inputs, specs)


def _run_isolated(backend: str, model, feed, config: BenchConfig, batch: int) -> BackendResult:
    reads = get_backend(backend).reads
    source = config.artifact if reads == "artifact" and config.artifact else model
    # torch stays out of the other backends' processes: their peak memory is theirs alone
    raw = run_in_child("dlc.runtime.bench:_measure", backend, str(source), feed, config,
                       without_torch=reads != "checkpoint")
    samples = raw.pop("times_ms")
    latency = latency_stats(samples)
    return BackendResult(backend, latency, round(batch * 1000.0 / latency["mean"], 1), **raw,
                         samples_ms=[round(t, 5) for t in samples])


def latency_stats(times_ms) -> dict[str, Any]:
    """Percentiles, the median's 95 % interval and the outliers of the samples (dlc.runtime.stats)."""
    return sample_stats(times_ms)


def _run_remote(config: BenchConfig, feed, batch: int) -> BackendResult:
    """One more row: the device's own artifact, timed on the device by `time_evaluator`.

    Its percentiles are over the timed repeats (each the mean of `number` calls).
    """
    from dlc.artifact import Artifact
    from dlc.runtime.deploy import DeployConfig, deploy

    golden_in, _ = Artifact.load(config.remote_artifact, trust=config.trust).golden()
    same_inputs = golden_in.keys() == feed.keys() and all(np.array_equal(golden_in[k], feed[k]) for k in feed)
    device = config.device
    report = deploy(config.remote_artifact, DeployConfig(rpc=device.rpc, tracker=device.tracker, key=device.key,
                                                         number=max(1, config.runs // 10), repeat=10,
                                                         trust=config.trust))
    latency = latency_stats(report.repeats_ms)
    name = report.device.get("board") or device.key or device.rpc
    return BackendResult(f"tvm@{name}", latency, round(batch * 1000.0 / latency["mean"], 1), None,
                         report.seconds.get("connect", 0.0), outputs=report.outputs if same_inputs else {},
                         samples_ms=list(report.repeats_ms))


def _measure(backend: str, model: str, feed, config: BenchConfig) -> dict[str, Any]:
    """Runs in the child process: open, warm up, time `config.runs` calls."""
    from dlc.runtime.backends import open_session

    # Inputs are prepared once, 64-byte aligned, as a serving system's buffers would be.
    feed = {name: aligned(array) for name, array in feed.items()}
    start = time.perf_counter()
    trust = config.trust if config.artifact is None or Path(model) != Path(config.artifact) else None  # not ours
    session = open_session(backend, model, checkpoint=config.checkpoint, threads=config.threads, trust=trust)
    outputs = session.run(feed)
    load_seconds = time.perf_counter() - start
    settled = warm_up(lambda: session.run(feed), config.warmup)
    times = []
    for _ in range(config.runs):
        t0 = time.perf_counter()
        session.run(feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"times_ms": times, "peak_rss_mb": round(peak_rss_mb(), 1), "load_seconds": round(load_seconds, 3),
            "outputs": outputs, "warmup": settled}


def peak_rss_mb() -> float:
    """This process's peak resident set size.

    VmHWM rather than ru_maxrss: Linux carries ru_maxrss over from the parent across
    fork and exec, so a child of a process that had torch loaded would report its size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reference(results: list[BackendResult]) -> BackendResult | None:
    by_name = {r.backend: r for r in results}
    return by_name.get(REFERENCE) or (results[0] if results else None)


def machine_info() -> dict[str, Any]:
    """Which machine measured: "cpu" names the model as Linux and LLVM see it, with its widest vector ISA."""
    from dlc.target import host_cpu_flags, physical_cores

    flags = host_cpu_flags()
    isa = next((name for name in ("avx512f", "avx2", "asimd", "neon") if name in flags), "scalar")
    return {"cpu": f"{_cpu_name()} ({_llvm_cpu()}, {isa})", "logical_cores": os.cpu_count(),
            "physical_cores": physical_cores(), "arch": platform.machine(), "vector_isa": isa,
            "python": platform.python_version(), "system": platform.system(), **load_context()}


def _llvm_cpu() -> str:
    import tvm

    if tvm.base._RUNTIME_ONLY:  # LLVM is in the compiler library, which a runtime-only TVM lacks
        return "unknown"
    from tvm.target import codegen

    return str(codegen.llvm_get_system_cpu())


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
