"""MetaSchedule tuning with a persistent database keyed by model, input shapes and target.

Untuned TVM code is far slower than ONNX Runtime on CPUs; tuning is where TVM's speed
comes from. The database (MetaSchedule's JSON records) lives in
~/.cache/dlc/tuning/KEY/, so the next compile of the same model for the same target
applies it without tuning again, and an interrupted tuning resumes from what it saved.

The trap this module exists to avoid: MetaSchedule's LocalBuilder starts fresh worker
processes for every batch, and its default build function imports
`tvm.s_tir.tensor_intrin`, whose package init loads the CUDA intrinsics (~25 s here),
so every build hits the 30 s timeout and nothing gets tuned. dlc's build function,
registered in each worker by the pool initializer, loads only the CPU intrinsics.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlc.errors import DlcError

RECORDS = "database_tuning_record.json"
PROGRESS = "dlc-tuning.json"  # the largest budget a tuning run finished with
WORKLOADS = "database_workload.json"
BUILD_FUNC = "dlc.meta_schedule.cpu_build"
EXPORT_FUNC = "dlc.meta_schedule.export_shared"


@dataclass(frozen=True)
class TuneConfig:
    trials: int  # total trials the database should hold for this model and target
    trials_per_task: int | None = None
    trials_per_iter: int = 32  # candidates measured per round; small keeps 2-core machines responsive
    builder_timeout: float = 60.0
    seed: int = 0
    tracker: str | None = None  # HOST:PORT of a TVM RPC tracker: measure on a device instead of here
    key: str = ""  # the device key at that tracker
    linker: Any = None  # the target's dlc.target.Linker for the device's libraries; None: this machine's cc
    session_timeout: float = 120.0


@dataclass
class TuningReport:
    database: Path
    key: str
    trials_requested: int
    records_before: int
    records_after: int
    seconds: float

    @property
    def trials_run(self) -> int:
        return self.records_after - self.records_before

    def to_dict(self) -> dict[str, Any]:
        return {"database": str(self.database), "key": self.key, "trials_requested": self.trials_requested,
                "records_before": self.records_before, "records_after": self.records_after,
                "trials_run": self.trials_run, "seconds": round(self.seconds, 1),
                "records_sha256": records_sha256(self.database)}


def database_key(source_sha256: str, shapes: dict[str, list[int]], target_json: dict) -> str:
    blob = json.dumps({"onnx": source_sha256, "shapes": shapes, "target": target_json}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def default_database(key: str) -> Path:
    cache = Path(os.environ.get("DLC_CACHE", Path.home() / ".cache" / "dlc"))
    return cache / "tuning" / key


def count_records(database: Path) -> int:
    path = database / RECORDS
    if not path.is_file():
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip())


def finished_budget(database: Path) -> int:
    try:
        return int(json.loads((database / PROGRESS).read_text())["finished_trials"])
    except (OSError, ValueError, KeyError):
        return 0


def _write_progress(database: Path, trials: int) -> None:
    from dlc.fileio import write_json

    write_json(database / PROGRESS, {"finished_trials": max(trials, finished_budget(database))})


def records_sha256(database: Path) -> str | None:
    path = database / RECORDS
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def tune(mod, target, database: Path, config: TuneConfig,
         on_progress: Callable[[int, int, float | None], None] | None = None) -> int:
    """Tunes `mod` (prepared by `pipeline.prepare`) until the database holds `config.trials` records.

    Returns the number of trials run now. Ctrl-C stops tuning early; what was measured
    stays in the database and the next call resumes from it.
    """
    from tvm.s_tir import meta_schedule as ms

    database.mkdir(parents=True, exist_ok=True)
    before = count_records(database)
    remaining = config.trials - before
    if remaining <= 0:
        return 0
    tasks = len(ms.relax_integration.extract_tasks(mod, target))
    # Spread the budget over every task; by default MetaSchedule may spend it all on the first few.
    per_task = config.trials_per_task or max(8, -(-config.trials // max(tasks, 1)))
    # MetaSchedule's console handler takes this level; its full log still goes to DATABASE/logs.
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    builder, runner = _builder_and_runner(config)
    with _interrupt_guard() as interrupted:
        progress = _progress_callback(before, config.trials, on_progress, interrupted)
        try:
            ms.relax_integration.tune_relax(
                mod, params={}, target=target, work_dir=str(database), max_trials_global=remaining,
                max_trials_per_task=per_task, num_trials_per_iter=min(config.trials_per_iter, per_task),
                builder=builder, runner=runner, database=ms.database.JSONDatabase(work_dir=str(database)),
                measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), progress],
                seed=config.seed)
        except BaseException:
            # The progress callback stops the search with an exception once Ctrl-C was seen;
            # TVM's FFI re-raises it as another type, so the flag says the user interrupted.
            if not interrupted:
                raise
            raise DlcError(f"tuning interrupted after {count_records(database)} of {config.trials} trials; "
                           f"the records are kept in {database} and the same command resumes from them") from None
    return count_records(database) - before


@contextlib.contextmanager
def _interrupt_guard():
    """Yields a list that becomes non-empty once SIGINT arrives (main thread only).

    The first Ctrl-C only sets the flag, and tuning stops after the batch being measured
    (its records saved); raising KeyboardInterrupt inside TVM's C++ loop instead left
    the process to die by the signal. A second Ctrl-C stops at once.
    """
    interrupted: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_sigint(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        print("stopping after the batch being measured (Ctrl-C again to stop now)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


class _Stopped(Exception):
    """Raised from the measure callback to end a tuning run that was interrupted."""


def _progress_callback(start: int, total: int, on_progress, interrupted: list[bool]):
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class Progress(ms.measure_callback.PyMeasureCallback):
        def __init__(self):
            self.done, self.best = start, {}

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            if interrupted:  # the batch's records are already in the database (callbacks run in order)
                raise _Stopped()
            for result in runner_results:
                self.done += 1
                if result.run_secs:
                    ms_value = 1000.0 * sum(float(s) for s in result.run_secs) / len(result.run_secs)
                    self.best[task_id] = min(self.best.get(task_id, ms_value), ms_value)
            if on_progress:  # the sum of each tuned task's best: the model's kernel time so far
                on_progress(self.done, total, sum(self.best.values()) if self.best else None)

    return Progress()


def _builder_and_runner(config: TuneConfig):
    """Local builder and runner; with a tracker, libraries are cross-linked and timed on the device.

    A device measures shared libraries linked here: MetaSchedule's default hands it a tar
    of object files to link on the device, and boards rarely carry a C compiler.
    """
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


def grow(mod, target, database: Path, key: str, config: TuneConfig, on_progress=None) -> TuningReport:
    """Tunes the prepared `mod` (`pipeline.prepare`) until the database holds `config.trials` records.

    The search runs in a child process: MetaSchedule keeps global state between runs (a
    second tuning in one process failed with "'NoneType' object has no attribute
    'format'"), and its builder and runner workers must end with it, whatever happens.
    """
    from dlc.child import run_in_child

    start = time.perf_counter()
    before = count_records(database)
    # MetaSchedule stops early once every task's search space is exhausted, so a finished
    # run can hold fewer records than its budget; only an interrupted one is resumed.
    if config.trials > max(before, finished_budget(database)):
        run_in_child("dlc.compiler.tuning:tune_in_child", mod, dict(target.export()), database, config,
                     on_event=on_progress)
        _write_progress(database, config.trials)
    return TuningReport(database, key, config.trials, before, count_records(database), time.perf_counter() - start)


def tune_in_child(mod, target_json: dict, database: Path, config: TuneConfig) -> int:
    """The child process's side of `grow`: progress goes back to the parent as events."""
    import tvm

    from dlc.child import send_event
    from dlc.runtime.tvm_session import use_all_cores

    use_all_cores()  # candidates are measured with the threads the compiled model will have

    return tune(mod, tvm.target.Target(target_json), database, config, send_event)
