"""How tuning builds and measures candidates: MetaSchedule's builder and runner, set up for dlc.

The trap this module exists to avoid: MetaSchedule's LocalBuilder starts fresh worker
processes for every batch, and its default build function imports
`tvm.s_tir.tensor_intrin`, whose package init loads the CUDA intrinsics (~25 s here),
so every build hits the 30 s timeout and nothing gets tuned. dlc's build function,
registered in each worker by the pool initializer, loads only the CPU intrinsics.

With a tracker, candidates are linked here (with the target's own linker) and timed on a
device: MetaSchedule's default hands the device a tar of object files to link itself, and
boards rarely carry a C compiler.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

BUILD_FUNC = "dlc.meta_schedule.cpu_build"
EXPORT_FUNC = "dlc.meta_schedule.export_shared"


def builder_and_runner(config):
    """A LocalBuilder with dlc's build function, and the local runner or an RPCRunner to a tracker's device."""
    from tvm.s_tir import meta_schedule as ms

    if not config.tracker:
        builder = ms.builder.LocalBuilder(f_build=BUILD_FUNC, initializer=register_cpu_build,
                                          timeout_sec=config.builder_timeout)
        return builder, "local"
    from dlc.runtime.rpc import host_port

    host, port = host_port(config.tracker, "--tracker")
    builder = ms.builder.LocalBuilder(f_build=BUILD_FUNC, f_export=EXPORT_FUNC, timeout_sec=config.builder_timeout,
                                      initializer=functools.partial(register_cpu_build, config.linker))
    rpc = ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=config.key,
                              session_timeout_sec=config.session_timeout)
    evaluator = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=0)
    return builder, ms.runner.RPCRunner(rpc_config=rpc, evaluator_config=evaluator, max_workers=1)


def register_cpu_build(linker=None) -> None:
    """Pool initializer: registers BUILD_FUNC and EXPORT_FUNC in a MetaSchedule builder worker."""
    import importlib
    import types

    import tvm.s_tir
    from tvm_ffi import register_global_func

    package = "tvm.s_tir.tensor_intrin"
    if package not in sys.modules:  # a bare package, so its __init__ (which loads CUDA's) never runs
        stub = types.ModuleType(package)
        stub.__path__ = [str(Path(tvm.s_tir.__file__).parent / "tensor_intrin")]
        sys.modules[package] = stub
    for name in ("x86", "arm_cpu"):
        importlib.import_module(f"{package}.{name}")
    register_global_func(BUILD_FUNC, _cpu_build, override=True)
    register_global_func(EXPORT_FUNC, functools.partial(_export_shared, linker), override=True)


def _export_shared(linker, mod) -> str:
    """A shared library for the device, linked as `dlc compile` links it (gcc- or lld-style), or with this cc."""
    import tempfile

    path = os.path.join(tempfile.mkdtemp(), "tvm_tmp_mod.so")
    mod.export_library(path, fcompile=linker.fcompile() if linker else None)
    return path


def _cpu_build(mod, target, _params):
    """MetaSchedule's default build, minus the import of every tensor intrinsic."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)


def seed_default_schedules(tasks, target, database, stop=lambda: False) -> int:
    """Measures each task's default schedule here and commits it as a tuning record; returns how many.

    The search then starts from them (MetaSchedule draws its first population from the
    database's best records), and a candidate replaces a default only where it measured
    faster. Tasks that already hold records are left alone.
    """
    from tvm.s_tir import meta_schedule as ms

    from dlc.compiler.schedules import first_schedule

    seeded = 0
    for task in tasks:
        if stop():  # interrupted, or out of time: what was committed stays
            break
        mod = task.dispatched[0]
        if database.has_workload(mod) and database.get_top_k(database.commit_workload(mod), 1):
            continue
        scheduled = first_schedule(mod["main"], target, name=task.task_name)
        if scheduled is None:
            continue
        schedule = scheduled[0]
        try:
            seconds = _time(schedule.mod, target)
        except (RuntimeError, ValueError, TypeError):  # e.g. a dtype numpy cannot fill: the search starts cold
            continue
        record = ms.database.TuningRecord(schedule.trace, database.commit_workload(mod), [seconds], target,
                                          ms.arg_info.ArgInfo.from_prim_func(mod["main"]))
        database.commit_tuning_record(record)
        seeded += 1
    return seeded


def _time(mod, target, min_ms: int = 50) -> float:
    """Seconds per call of `mod`'s main on random inputs, as MetaSchedule's local runner times candidates."""
    import numpy as np
    import tvm

    library = tvm.compile(mod, target=target).jit()
    device = tvm.cpu()
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(np.asarray(rng.random([int(d) for d in b.shape])).astype(str(b.dtype)), device)
            for b in mod["main"].params]
    timer = library.time_evaluator("main", device, number=1, repeat=3, min_repeat_ms=min_ms)
    return float(np.median(timer(*args).results))
