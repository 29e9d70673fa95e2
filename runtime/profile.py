"""Per-kernel profiles of an artifact, mapped to its ONNX nodes, placed on the device's roofline.

On the host, one run of the model under the Relax VM's instrumentation hook (TVM 0.27 has no
Relax VM profiler) records every kernel call in order with its buffers; the calls are then
replayed in that order, each timed, so each kernel meets the caches as the model leaves them
and the hook's own cost is not in the times. On a device over TVM RPC no Python hook can run:
each kernel is timed alone by TVM's `time_evaluator` with arguments of the shapes the compiler
recorded (random floats, integers 0: an index of 0 is always in range), times the calls the
model makes to it; alone and repeated, it runs with warm
caches, so these times can be lower than in the model. Over RPC, the time_evaluator finds a
function only at the top of what it loads, where the VM sits: a device artifact carries its
kernels alone in a second library (`kernels.so`) for this. The whole model is timed in
between the kernels (without the hook), so both see the same machine: what the kernels do
not account for is the VM's own work between them (allocation, calls), reported as such.

`kernel_times` times every call inside the running model with the hook instead, hook
included (a few microseconds a call, which matters only for the smallest kernels).

ONNX Runtime's own per-node profile (its `enable_profiling` trace) of the artifact's ONNX
file is taken beside it. FLOPs per kernel are dlc's counts (dlc.analysis.flops) of the
nodes it computes; bytes are the sizes of the buffers it reads and writes.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dlc.errors import DlcError
from dlc.runtime.stats import sample_stats


@dataclass(frozen=True)
class ProfileConfig:
    runs: int = 50  # model runs whose per-kernel times are kept (host); repeats per kernel (device)
    warmup: int = 5
    top: int = 10  # rows of the printed table
    onnxruntime: bool = True  # ONNX Runtime's per-node profile beside TVM's (host only)
    device: Any = None  # rpc.DeviceAddress: profile on that device instead of here
    trust: Path | None = None
    timeout: float = 600.0


def kernel_times(artifact_path: str | Path, runs: int = 20, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Per kernel: median milliseconds per model run spent in it ("ms", all its calls) and its "calls" per run,
    timed inside the running model by the VM's instrumentation hook.

    A kernel may run several times per model run (an unrolled LSTM calls its step kernels once a step).
    """
    from dlc.artifact import Artifact
    from dlc.runtime.tvm_session import TvmSession

    artifact = Artifact.load(artifact_path)
    kernels = {k["name"] for k in (artifact.manifest.get("schedules") or {}).get("per_kernel", [])}
    session = TvmSession.from_artifact(artifact)
    feed, _ = artifact.golden()
    spent: dict[str, float] = {}
    calls: dict[str, int] = {}
    started: list[float] = []

    def instrument(func, symbol, before, ret, *args):
        if symbol in kernels:
            if before:
                started.append(time.perf_counter())
            else:
                spent[symbol] = spent.get(symbol, 0.0) + time.perf_counter() - started.pop()
                calls[symbol] = calls.get(symbol, 0) + 1
        return 0  # VMInstrumentReturnKind.kNoOp: run the call as usual

    session.instrument(instrument)
    samples: dict[str, list[float]] = {}
    for n in range(warmup + runs):
        spent.clear()
        calls.clear()
        session.run(feed)
        if n >= warmup:
            for name, seconds in spent.items():
                samples.setdefault(name, []).append(seconds * 1000.0)
    return {name: {"ms": float(np.median(values)), "calls": calls[name]} for name, values in samples.items()}


def _time_kernels(library, dev, rows: list[dict[str, Any]], repeat: int, whole: Callable[[int], list[float]]):
    """Each kernel main calls, timed alone on a device, and the whole model timed in between (so both see the
    same machine: a shared one drifts within seconds); ({name: {"ms": median ms × calls, "calls"}}, whole ms)."""
    import tvm

    timed = [row for row in rows if row.get("calls") and all(all(isinstance(d, int) for d in shape)
                                                             for shape, _ in row["args"])]
    # kernels main never calls (inlined away) and ones over symbolic shapes are left out
    per_batch = max(3, -(-repeat // (len(timed) + 1)))
    times, samples, rng = {}, whole(per_batch), np.random.default_rng(0)
    for row in timed:
        buffers = [tvm.runtime.tensor(_filler(shape, dtype, rng), dev) for shape, dtype in row["args"]]
        timer = library.time_evaluator(row["name"], dev, number=1, repeat=repeat, min_repeat_ms=0)
        kernel = [r * 1000.0 for r in timer(*buffers).results]  # the evaluator's first call is a discarded warm-up
        times[row["name"]] = {"ms": float(np.median(kernel)) * row["calls"], "calls": row["calls"]}
        samples += whole(per_batch)
    return times, samples


def _filler(shape, dtype: str, rng) -> np.ndarray:
    """Floats in [-1, 1) (an emulator's software floating point takes shortcuts on zeros), integers 0 (an index
    of 0 is always in range)."""
    if np.dtype(dtype).kind == "f":
        return rng.uniform(-1.0, 1.0, shape).astype(dtype)
    return np.zeros(shape, dtype=dtype)


def _host_times(artifact, config: ProfileConfig):
    """(per-kernel times, end-to-end ms of each run, this machine), here.

    One run with the VM's instrumentation hook records the kernel calls in order with the
    buffers they got; those calls are then replayed in order, each timed, so every kernel
    meets the caches as the model leaves them (the hook itself is not timed). The whole
    model, without the hook, is timed in between, so both see the same machine.
    """
    import tvm

    from dlc.runtime.bench import machine_info
    from dlc.runtime.tvm_session import TvmSession

    rows = {row["name"]: row for row in artifact.manifest["schedules"]["per_kernel"]}
    library = tvm.runtime.load_module(str(artifact.library_path)).imports[0]  # the kernels under the VM
    recorder, plain = TvmSession.from_artifact(artifact), TvmSession.from_artifact(artifact)
    feed, _ = artifact.golden()
    calls: list[tuple[str, Any, list]] = []

    def record(func, symbol, before, ret, *args):
        if before and symbol in rows:
            calls.append((symbol, library.get_function(symbol), list(args)))
        return 0  # VMInstrumentReturnKind.kNoOp: run the call as usual

    recorder.instrument(record)
    recorder.run(feed)
    for _ in range(config.warmup):
        plain.run(feed)
    spent: dict[str, list[float]] = {symbol: [] for symbol, _, _ in calls}
    whole: list[float] = []
    batch = 5
    for start in range(-batch, config.runs, batch):  # a first batch of each, untimed
        samples = plain.time_on_device(feed, number=1, repeat=batch)
        for _ in range(batch):
            run: dict[str, float] = {}
            for symbol, kernel, args in calls:
                t0 = time.perf_counter()
                kernel(*args)
                run[symbol] = run.get(symbol, 0.0) + (time.perf_counter() - t0) * 1000.0
            if start >= 0:
                for symbol, ms in run.items():
                    spent[symbol].append(ms)
        if start >= 0:
            whole += samples
    counts = {symbol: sum(1 for s, _, _ in calls if s == symbol) for symbol in spent}
    times = {symbol: {"ms": float(np.median(ms)), "calls": counts[symbol]} for symbol, ms in spent.items()}
    return times, whole[: config.runs], machine_info()


def _device_times(artifact, config: ProfileConfig):
    """(per-kernel times, end-to-end ms of each run, what the device said it is), over TVM RPC."""
    import tvm
    from tvm.runtime.vm import VirtualMachine

    from dlc.runtime.deploy import connect_to_run, upload
    from dlc.runtime.rpc import with_deadline
    from dlc.target import tvm_device

    def run():
        remote, info = connect_to_run(artifact, config.device, config.timeout)
        dev = tvm_device(artifact.device, remote)
        vm = VirtualMachine(upload(remote, artifact, "library"), dev)
        golden_in, _ = artifact.golden()
        args = [tvm.runtime.tensor(golden_in[s.name], dev) for s in artifact.inputs]
        for _ in range(config.warmup):
            vm["main"](*args)

        def whole(n):
            timer = vm.time_evaluator("main", dev, number=1, repeat=n, min_repeat_ms=0)
            return [r * 1000.0 for r in timer(*args).results]

        times, samples = _time_kernels(upload(remote, artifact, "kernels"), dev,
                                       artifact.manifest["schedules"]["per_kernel"], config.runs, whole)
        return times, samples, info

    return with_deadline(run, config.timeout, str(config.device))


def profilable(artifact_path: str | Path, config: ProfileConfig):
    """The artifact, checked and refused before any measurement if it cannot be profiled where `config` says."""
    from dlc.artifact import Artifact

    artifact = Artifact.load(artifact_path, trust=config.trust)
    if artifact.device != "cpu":
        raise DlcError(f"{artifact.path} is built for {artifact.target.name} ({artifact.device}): dlc profile times "
                       "CPU kernels; time the whole model with `dlc bench`")
    schedules = artifact.manifest.get("schedules") or {}
    if not schedules.get("per_kernel") or "nodes_without_kernel" not in schedules or \
            any("calls" not in row for row in schedules["per_kernel"]):
        raise DlcError(f"{artifact.path} records no kernel map (compiled by an older dlc): recompile it with "
                       "`dlc compile` to profile it")
    why = artifact.target.why_not_here()
    if config.device is None and why:
        raise DlcError(f"{artifact.path} cannot run here ({why}): profile it on its device with --rpc HOST:PORT "
                       "or --tracker HOST:PORT --key KEY")
    if config.device is not None and "kernels" not in artifact.manifest["files"]:
        raise DlcError(f"{artifact.path} has no kernels library for profiling on a device (it was compiled for this "
                       "machine, or by an older dlc): compile it for the device with `dlc compile --target TARGET`")
    return artifact


def profile(artifact_path: str | Path, config: ProfileConfig = ProfileConfig(),
            peak: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile of one artifact (see the module's docstring), as a JSON-ready dict.

    `peak` is the device's {"gflops", "gbps"} (dlc.compiler.peak); with it every kernel is
    placed on the roofline and those furthest below it are named.
    """
    from dlc.analysis.inspect import inspect_model

    artifact = profilable(artifact_path, config)
    schedules = artifact.manifest["schedules"]
    if config.device is None:
        times, whole, device = _host_times(artifact, config)
    else:
        times, whole, device = _device_times(artifact, config)
    shapes = {s.name: list(s.shape) for s in artifact.inputs}
    layers = {layer.name: layer for layer in inspect_model(artifact.onnx_path, shapes).layers}
    from dlc.artifact import NO_KERNEL_VIEW as VIEW

    kernels = [_kernel_row(row, times.get(row["name"]), layers) for row in schedules["per_kernel"]]
    missing = dict(schedules["nodes_without_kernel"])
    missing.update({node: VIEW for k in kernels if k["ms"] is None for node in k["nodes"]})  # lowered to a view
    kernels = sorted((k for k in kernels if k["ms"] is not None), key=lambda k: -k["ms"])
    total = sum(k["ms"] for k in kernels)
    for k in kernels:
        k["share"] = round(k["ms"] / total, 4) if total else 0.0
    e2e = sample_stats(whole)
    report = {"artifact": str(artifact.path), "target": artifact.target.name, "device": device,
              "where": "host" if config.device is None else str(config.device),
              "method": "the model's kernel calls replayed in order, each timed" if config.device is None else
              "time_evaluator per kernel, alone",
              "e2e_ms": e2e, "e2e_samples_ms": [round(t, 5) for t in whole], "kernel_sum_ms": round(total, 4),
              "outside_kernels_ms": round(e2e["p50"] - total, 4),
              "kernel_sum_vs_e2e": round(total / e2e["p50"], 3) if e2e["p50"] else None,
              "kernels": kernels, "nodes_without_kernel": missing,
              "nodes": len(layers), "peak": peak}
    if peak:
        report["furthest_below_roofline"] = place_on_roofline(kernels, peak)
    if config.onnxruntime and config.device is None:
        report["onnxruntime"] = onnxruntime_profile(artifact.onnx_path, artifact.golden()[0], config.runs,
                                                    config.warmup)
        by_node = _onnxruntime_by_node(report["onnxruntime"]["nodes"], artifact.onnx_path)
        for k in kernels:
            matched = [by_node[n] for n in k["nodes"] if n in by_node]
            k["onnxruntime_ms"] = round(sum(matched), 5) if matched else None
    return report


def _onnxruntime_by_node(ort_nodes: list[dict[str, Any]], onnx_path: Path) -> dict[str, float]:
    """ONNX Runtime's node times by the ONNX node they belong to.

    Its graph optimizations rename what they rewrite: an NCHWc convolution is named after the
    tensor the original node wrote, plus "_nchwc"; a fused node keeps the first node's name.
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    producer = {output: node.name for node in graph.node for output in node.output}
    names = {node.name for node in graph.node}
    by_node: dict[str, float] = {}
    for n in ort_nodes:
        base = n["name"].removesuffix("_nchwc")
        node = n["name"] if n["name"] in names else base if base in names else producer.get(base)
        if node:
            by_node[node] = by_node.get(node, 0.0) + n["ms"]
    return by_node


def _kernel_row(row: dict[str, Any], timed: dict[str, float] | None, layers) -> dict[str, Any]:
    flops = [layers[n].cost.flops if n in layers and layers[n].cost else None for n in row["nodes"]]
    counted = sum(f for f in flops if f is not None)
    nbytes = sum(int(np.prod(shape)) * _itemsize(dtype) for shape, dtype in row.get("args", [])
                 if all(isinstance(d, int) for d in shape))
    calls = (timed or {}).get("calls", 1) or 1
    nbytes *= calls  # the FLOPs are those of every call too
    ms = None if timed is None else round(timed["ms"], 5)
    return {"name": row["name"], "nodes": row["nodes"], "ops": [layers[n].op for n in row["nodes"] if n in layers],
            "schedule": row.get("schedule"), "calls": None if timed is None else timed["calls"], "ms": ms,
            "flops": counted, "bytes": nbytes,
            "gflops": round(counted / (ms * 1e6), 3) if ms and counted else 0.0,
            "intensity": round(counted / nbytes, 3) if nbytes else None}


def _itemsize(dtype: str) -> int:
    """Bytes per element, also of dtypes numpy lacks (bfloat16, float8: their width is in the name)."""
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        bits = "".join(c for c in dtype if c.isdigit())
        return max(1, int(bits or 32) // 8)


def place_on_roofline(kernels: list[dict[str, Any]], peak: dict[str, Any], worst: int = 3) -> list[str]:
    """Adds each kernel's attainable GFLOP/s (min(peak, intensity × bandwidth)) and its share of it;

    returns the kernels that lose the most time to the roofline (time spent beyond what the
    roofline allows), the largest first. Kernels without FLOPs (copies, layouts) are placed by bandwidth.
    """
    lost = []
    if not peak.get("gflops") or not peak.get("gbps"):
        return lost
    for k in kernels:
        if k["intensity"] is None or not k["ms"]:
            continue
        attainable = min(peak["gflops"], k["intensity"] * peak["gbps"])
        k["attainable_gflops"] = round(attainable, 3)
        k["bound"] = "compute" if k["intensity"] * peak["gbps"] >= peak["gflops"] else "memory"
        if k["flops"]:
            best_ms = k["flops"] / (attainable * 1e6)
        else:  # a copy: its bytes at the device's bandwidth
            best_ms = k["bytes"] / (peak["gbps"] * 1e6)
        k["roofline_fraction"] = round(best_ms / k["ms"], 4) if k["ms"] else None
        lost.append((k["ms"] - best_ms, k["name"]))
    return [name for _, name in sorted(lost, reverse=True)[:worst]]


def onnxruntime_profile(onnx_path: str | Path, feed: dict[str, np.ndarray], runs: int, warmup: int) -> dict[str, Any]:
    """ONNX Runtime's per-node times (ms per run, its own profiler) and its end-to-end time without profiling."""
    import onnxruntime as ort

    whole = []
    plain = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for n in range(warmup + runs):
        t0 = time.perf_counter()
        plain.run(None, feed)
        if n >= warmup:
            whole.append((time.perf_counter() - t0) * 1000.0)
    with tempfile.TemporaryDirectory(prefix="dlc-ort-profile-") as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    timed_from = starts[warmup] if len(starts) > warmup else 0  # the warm-up runs' node events are left out
    events = [e for e in events if e.get("ts", 0) >= timed_from]
    spent: dict[str, float] = {}
    ops: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            name = event["name"].removesuffix("_kernel_time")
            spent[name] = spent.get(name, 0.0) + event["dur"] / 1000.0
            ops[name] = event.get("args", {}).get("op_name", "")
    # ONNX Runtime's profiler slows every node (it records thread and memory statistics per node): each
    # node's "ms" is its profiled time scaled by the run's unprofiled time over the profiled nodes' sum
    profiled = sum(spent.values()) / runs
    scale = float(np.median(whole)) / profiled if profiled else 1.0
    nodes = sorted(({"name": n, "op": ops[n], "ms": round(ms / runs * scale, 5), "ms_profiled": round(ms / runs, 5)}
                    for n, ms in spent.items()), key=lambda n: -n["ms"])
    return {"version": ort.__version__, "e2e_ms": sample_stats(whole), "profiled_node_sum_ms": round(profiled, 4),
            "nodes": nodes}
