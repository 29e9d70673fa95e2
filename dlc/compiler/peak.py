"""What a device can do at best: its peak float32 GFLOP/s and its memory bandwidth, measured with TVM.

- Compute: a TVM-compiled kernel of independent fused multiply-add chains, vectorized, on
  every core (a parallel loop over the target's cores). Each chain's accumulators live in
  registers; several chains hide the FMA latency. How many chains and lanes fill a CPU's
  FMA units depends on it (AVX-512, AVX2, NEON), so a few shapes are tried and the best is
  the peak — the same rule as the vendors' peak figures, measured rather than computed.
- Memory: a parallel, vectorized copy of arrays far larger than the caches (64 MiB each),
  counted as bytes read plus bytes written, the way STREAM's copy counts them.

On the host the kernels run here; on a device they are cross-compiled and timed over TVM
RPC. Results are cached per device in ~/.cache/dlc/peaks.json (`--refresh` measures again).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dlc.errors import DlcError, first_line
from dlc.fileio import write_json

SHAPES = ((4, 16), (6, 16), (8, 8), (12, 8), (8, 4), (16, 4))  # (independent chains, vector lanes) tried
COPY_BYTES = 64 << 20


def cache_path() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dlc" / "peaks.json"


def device_peak(target_name: str = "host", device=None, refresh: bool = False, timeout: float = 900.0,
                log=lambda message: None) -> dict[str, Any]:
    """{"gflops", "gbps", "device", "key", "shapes": {...}, "measured_at"}, from the cache unless `refresh`."""
    from dlc.target import resolve_target

    target = resolve_target(target_name)
    if target.device != "cpu":
        raise DlcError(f"target {target.name} is a {target.device} target: dlc device peak measures CPUs")
    if device is None:
        from dlc.runtime.bench import machine_info

        info = machine_info()
        key = f"host/{info['cpu']}/{info['logical_cores']} threads/{target.name}"
        if target.why_not_here():
            raise DlcError(f"target {target.name} cannot run here ({target.why_not_here()}): measure it on its device "
                           "with --rpc HOST:PORT or --tracker HOST:PORT --key KEY")
    else:
        info = None
        key = f"{device.key or device.rpc or device.tracker}/{target.name}"
    cache = _read_cache()
    if not refresh and key in cache:
        return {**cache[key], "cached": True}
    result = _measure(target, device, timeout, log)
    result.update(key=key, device=info or result.pop("device_info"),
                  measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), cached=False)
    cache[key] = {k: v for k, v in result.items() if k != "cached"}
    write_json(cache_path(), cache)
    return result


def _read_cache() -> dict[str, Any]:
    try:
        cache = json.loads(cache_path().read_text())
        return cache if isinstance(cache, dict) else {}
    except (OSError, ValueError):
        return {}


def fma_kernel(threads: int, chains: int, lanes: int, iterations: int):
    from tvm.script import tirx as T

    @T.prim_func
    def fma(A: T.Buffer((threads, chains, lanes), "float32")):
        T.func_attr({"global_symbol": "fma", "tirx.noalias": True})
        for p in T.parallel(threads):
            acc = T.decl_buffer((chains, lanes), "float32", scope="local")
            for c in T.unroll(chains):
                for v in T.vectorized(lanes):
                    acc[c, v] = A[p, c, v]
            for _ in range(iterations):
                for c in T.unroll(chains):
                    for v in T.vectorized(lanes):
                        acc[c, v] = acc[c, v] * T.float32(0.99999) + T.float32(1e-6)
            for c in T.unroll(chains):
                for v in T.vectorized(lanes):
                    A[p, c, v] = acc[c, v]

    return fma


def copy_kernel(threads: int, size: int, lanes: int = 16):
    from tvm.script import tirx as T

    per_thread = size // threads

    @T.prim_func
    def copy(A: T.Buffer((size,), "float32"), B: T.Buffer((size,), "float32")):
        T.func_attr({"global_symbol": "copy", "tirx.noalias": True})
        for p in T.parallel(threads):
            for i in range(per_thread // lanes):
                for v in T.vectorized(lanes):
                    B[p * per_thread + i * lanes + v] = A[p * per_thread + i * lanes + v]

    return copy


def _measure(target, device, timeout: float, log) -> dict[str, Any]:
    import tvm

    tvm_target = target.tvm_target()
    threads = int(tvm_target.attrs.get("num-cores", os.cpu_count() or 1))
    iterations = 200_000 if device is None else 20_000
    size = COPY_BYTES // 4 // (threads * 16) * threads * 16
    functions = {f"fma_{c}x{v}": fma_kernel(threads, c, v, iterations).with_attr("global_symbol", f"fma_{c}x{v}")
                 for c, v in SHAPES}
    functions["copy"] = copy_kernel(threads, size)
    log(f"compiling the peak kernels for {target.name}")
    with tvm_target:
        library = tvm.compile(tvm.IRModule(functions), target=tvm_target).mod
    if device is None:
        from dlc.runtime.tvm_session import use_all_cores

        use_all_cores()  # as dlc runs models: one thread per core (TVM's own default halves that)
        return _time(library, tvm.cpu(), threads, iterations, size, log)
    from dlc.runtime.rpc import connect, device_info, with_deadline

    def remote_run():
        remote = connect(device, timeout)
        with tempfile.TemporaryDirectory(prefix="dlc-peak-") as tmp:
            path = Path(tmp) / "peak.so"
            try:
                library.export_library(str(path), fcompile=target.fcompile())
            except RuntimeError as e:
                raise DlcError(f"linking the peak kernels for {target.name} failed: {first_line(e)}") from e
            remote.upload(str(path), target="dlc-peak.so")
        result = _time(remote.load_module("dlc-peak.so"), remote.cpu(), threads, iterations, size, log)
        result["device_info"] = device_info(remote)
        return result

    return with_deadline(remote_run, timeout, str(device))


def _time(library, dev, threads: int, iterations: int, size: int, log) -> dict[str, Any]:
    import tvm

    shapes = {}
    for chains, lanes in SHAPES:
        log(f"timing {chains} FMA chains of {lanes} lanes on {threads} threads")
        state = tvm.runtime.tensor(np.ones((threads, chains, lanes), "float32"), dev)
        seconds = min(library.time_evaluator(f"fma_{chains}x{lanes}", dev, number=1, repeat=3)(state).results)
        shapes[f"{chains}x{lanes}"] = round(2.0 * threads * chains * lanes * iterations / seconds / 1e9, 2)
    log("timing a 64 MiB copy")
    a = tvm.runtime.tensor(np.ones(size, "float32"), dev)
    b = tvm.runtime.tensor(np.zeros(size, "float32"), dev)
    seconds = min(library.time_evaluator("copy", dev, number=1, repeat=5)(a, b).results)
    return {"gflops": max(shapes.values()), "gbps": round(2.0 * size * 4 / seconds / 1e9, 2), "threads": threads,
            "fma_gflops_by_shape": shapes, "copy_bytes": size * 4}


def numpy_reference(log=lambda message: None) -> dict[str, float]:
    """numpy's float32 GEMM GFLOP/s (its BLAS, all cores) and a 64 MiB copy's GB/s (read + write), for comparison."""
    n = 1024
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    log("timing numpy's sgemm")
    a @ b
    gemm = min(_seconds(lambda: a @ b) for _ in range(5))
    x = np.ones(COPY_BYTES // 4, np.float32)
    y = np.empty_like(x)
    log("timing numpy's copy")
    np.copyto(y, x)
    copy = min(_seconds(lambda: np.copyto(y, x)) for _ in range(5))
    return {"sgemm_gflops": round(2.0 * n ** 3 / gemm / 1e9, 2), "copy_gbps": round(2.0 * x.nbytes / copy / 1e9, 2)}


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
