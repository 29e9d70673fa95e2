"""Side-by-side benchmarks: the same inputs on every backend, each in a fresh process.

A fresh process per backend means one backend's thread pools, caches and allocations
never colour another's numbers, and its peak RSS is what deploying that backend alone
would cost (interpreter and numpy included).
"""

from __future__ import annotations

import os
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlc import __version__
from dlc.errors import InputMismatchError
from dlc.fileio import require_file
from dlc.runtime.child import run_in_child

REFERENCE = "onnxruntime"


@dataclass(frozen=True)
class BenchConfig:
    backends: tuple[str, ...] = ("tvm", "onnxruntime", "pytorch")
    warmup: int = 10
    runs: int = 100
    threads: int | None = None  # intra-op threads for every backend; None = each one's default
    checkpoint: Path | None = None  # needed for the pytorch backend
    inputs: Path | None = None  # an .npz of named inputs; default: the artifact's golden or random inputs
    seed: int = 0


@dataclass
class BackendResult:
    backend: str
    latency_ms: dict[str, float]
    throughput_per_s: float  # samples per second, batch included
    peak_rss_mb: float
    load_seconds: float
    max_abs_diff: float | None = None  # against the reference backend's outputs
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

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
        cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.config.__dict__.items()}
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
    reference = _reference(results)
    for r in results:
        r.max_abs_diff = _max_abs_diff(r.outputs, reference.outputs) if reference else None
    return BenchReport(str(model), {k: list(v.shape) for k, v in feed.items()}, config, results,
                       reference.backend if reference else None)


def _inputs(model: str | Path, config: BenchConfig) -> dict[str, np.ndarray]:
    from dlc.artifact import Artifact, is_artifact
    from dlc.onnxio import io_specs, load_model
    from dlc.runtime.specs import check_inputs, random_inputs

    if is_artifact(model):
        artifact = Artifact.load(model)
        specs = artifact.inputs
        default = artifact.golden()[0]
    else:
        specs = io_specs(load_model(model))[0]
        default = random_inputs(specs, seed=config.seed)
    if config.inputs is None:
        return default
    path = require_file(config.inputs, "inputs file", "pass an .npz holding one array per model input")
    try:
        with np.load(path, allow_pickle=False) as z:
            given = {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:
        raise InputMismatchError(f"{path} is not an .npz file of arrays ({e}); "
                                 "write one with numpy.savez(path, input=array)") from e
    return check_inputs(specs, given)


def _run_isolated(backend: str, model, feed, config: BenchConfig, batch: int) -> BackendResult:
    raw = run_in_child("dlc.runtime.bench:_measure", backend, str(model), feed, config)
    times = np.asarray(raw.pop("times_ms"))
    latency = {"mean": float(times.mean()), "std": float(times.std()), "min": float(times.min()),
               "p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)),
               "p99": float(np.percentile(times, 99)), "max": float(times.max())}
    latency = {k: round(v, 4) for k, v in latency.items()}
    return BackendResult(backend, latency, round(batch * 1000.0 / latency["mean"], 1), **raw)


def _measure(backend: str, model: str, feed, config: BenchConfig) -> dict[str, Any]:
    """Runs in the child process: open, warm up, time `config.runs` calls."""
    from dlc.runtime.session import open_session

    start = time.perf_counter()
    session = open_session(backend, model, checkpoint=config.checkpoint, threads=config.threads)
    outputs = session.run(feed)
    load_seconds = time.perf_counter() - start
    for _ in range(config.warmup):
        session.run(feed)
    times = []
    for _ in range(config.runs):
        t0 = time.perf_counter()
        session.run(feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    return {"times_ms": times, "peak_rss_mb": round(peak_rss_mb(), 1), "load_seconds": round(load_seconds, 3),
            "outputs": outputs}


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


def _max_abs_diff(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    return max((float(np.abs(got[k].astype(np.float64) - v).max(initial=0.0)) for k, v in want.items()),
               default=0.0)


def machine_info() -> dict[str, Any]:
    return {"cpu": _cpu_name(), "logical_cores": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "system": platform.system()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
