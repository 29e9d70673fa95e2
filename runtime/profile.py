"""Time per compiled kernel of an artifact, measured where it runs: in the Relax VM, call by call.

TVM 0.27 has no Relax VM profiler; the VM's instrumentation hook (called before and after
every call instruction) is timed here instead. Only the artifact's own kernels (the
PrimFuncs its manifest lists) are kept; VM built-ins (allocation, shape checks) are not.
The hook costs about a microsecond per call, which matters only for the smallest kernels.
"""

from __future__ import annotations

import time
from pathlib import Path


def kernel_times(artifact_path: str | Path, runs: int = 20, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Per kernel: median milliseconds per model run spent in it ("ms", all its calls) and its "calls" per run.

    A kernel may run several times per model run (an unrolled LSTM calls its step kernels once a step).
    """
    import numpy as np

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
