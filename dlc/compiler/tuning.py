"""MetaSchedule tuning: one database per target shared by every model, seeded with the default schedules.

The database (MetaSchedule's JSON records) lives in ~/.cache/dlc/tuning/TARGET-KEY/. A
kernel several models share (a zoo's repeated layers, the same convolution in two
networks) is tuned once and applied to all of them. `trials` asks that this model's
kernels hold that many records there: only the missing ones are searched, so a second
compile tunes nothing and an interrupted tuning resumes from what it saved.

How the budget is spent:
  1. each kernel's default schedule (dlc.compiler.schedules) is measured and committed
     as a record: the search starts from it, and a compile applies each kernel's
     best-measured record, so a candidate replaces the default only where it measured
     faster (kernel by kernel, on a machine that is building other candidates meanwhile:
     the whole model can still come out slower, see the README's Speed section);
  2. MetaSchedule's gradient task scheduler gives the trials to the kernels where the
     model's time is;
  3. `minutes` stops the search on the clock, once the batches sent out are measured and
     saved; Ctrl-C does the same (a second Ctrl-C stops at once).

The search runs in a child process of its own (see `grow`); how candidates are built
and measured is `dlc.compiler.measure`.
"""

from __future__ import annotations

import contextlib
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
WORKLOADS = "database_workload.json"
PROGRESS = "dlc-tuning.json"  # per model: the largest budget a tuning run finished with, and its records
UNLIMITED = 1 << 30  # the trials of a search that only the clock (minutes) ends


@dataclass(frozen=True)
class TuneConfig:
    trials: int  # records this model's kernels should hold in the database
    minutes: float | None = None  # stop searching after this long (what was measured is kept)
    model_key: str = ""  # whose progress this run records (`model_key`)
    trials_per_task: int | None = None  # None: the task scheduler decides
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
    key: str  # the database's (one per target)
    model_key: str
    trials_requested: int
    records_before: int  # this model's kernels' records
    records_after: int
    seconds: float
    seeded: int = 0  # default schedules measured and committed as records
    stopped_by: str | None = None  # "time" when `minutes` ended the search

    @property
    def trials_run(self) -> int:
        return self.records_after - self.records_before

    def to_dict(self) -> dict[str, Any]:
        return {"database": str(self.database), "key": self.key, "model_key": self.model_key,
                "trials_requested": self.trials_requested, "records_before": self.records_before,
                "records_after": self.records_after, "trials_run": self.trials_run, "seeded": self.seeded,
                "stopped_by": self.stopped_by, "seconds": round(self.seconds, 1),
                "records_sha256": records_sha256(self.database)}


def database_key(target_json: dict) -> str:
    """The database of a target: every model compiled for it shares it."""
    return hashlib.sha256(json.dumps({"target": target_json}, sort_keys=True).encode()).hexdigest()[:20]


def model_key(source_sha256: str, shapes: dict[str, list[int]], pipeline: str = "") -> str:
    """Whose progress a tuning run records: the model, its shapes and what the pipeline makes of them."""
    blob = json.dumps({"onnx": source_sha256, "shapes": shapes, "pipeline": pipeline}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def default_database(key: str) -> Path:
    cache = Path(os.environ.get("DLC_CACHE", Path.home() / ".cache" / "dlc"))
    return cache / "tuning" / key


def count_records(database: Path) -> int:
    """Every record in the database, of every model."""
    path = database / RECORDS
    if not path.is_file():
        return 0
    with open(path) as f:
        return sum(1 for line in f if line.strip())


def progress(database: Path, key: str) -> dict[str, int]:
    """{"finished_trials": largest budget a run for this model finished, "records": its kernels' records then}."""
    try:
        entry = json.loads((database / PROGRESS).read_text())[key]
        return {"finished_trials": int(entry["finished_trials"]), "records": int(entry["records"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {"finished_trials": 0, "records": 0}


def _write_progress(database: Path, key: str, finished_trials: int, records: int) -> None:
    from dlc.fileio import write_json

    try:
        everything = json.loads((database / PROGRESS).read_text())
    except (OSError, ValueError):
        everything = {}
    everything[key] = {"finished_trials": max(finished_trials, progress(database, key)["finished_trials"]),
                       "records": records}
    write_json(database / PROGRESS, everything)


def records_sha256(database: Path) -> str | None:
    path = database / RECORDS
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def grow(mod, target, database: Path, key: str, config: TuneConfig, on_progress=None) -> TuningReport:
    """Tunes the prepared `mod` (`pipeline.prepare`) until its kernels hold `config.trials` records.

    The search runs in a child process: MetaSchedule keeps global state between runs (a
    second tuning in one process failed with "'NoneType' object has no attribute
    'format'"), and its builder and runner workers must end with it, whatever happens.
    """
    from dlc.child import run_in_child

    start, state = time.perf_counter(), progress(database, config.model_key)
    if config.trials <= state["finished_trials"]:  # a run with this budget finished: nothing is missing
        return TuningReport(database, key, config.model_key, config.trials, state["records"], state["records"],
                            time.perf_counter() - start)
    with _only_writer(database):
        outcome = run_in_child("dlc.compiler.tuning:tune_in_child", mod, dict(target.export()), database, config,
                               on_event=on_progress)
        finished = config.trials if outcome["stopped_by"] is None else 0
        _write_progress(database, config.model_key, finished, outcome["after"])
    return TuningReport(database, key, config.model_key, config.trials, outcome["before"], outcome["after"],
                        time.perf_counter() - start, outcome["seeded"], outcome["stopped_by"])


@contextlib.contextmanager
def _only_writer(database: Path):
    """Holds the database's lock: MetaSchedule numbers workloads in memory, so two writers would mix them up."""
    import fcntl

    database.mkdir(parents=True, exist_ok=True)
    with open(database / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DlcError(f"another tuning is writing {database} now: wait for it to end, or give this one its "
                           "own --tuning-db") from None
        yield  # the lock ends with the file


def tune_in_child(mod, target_json: dict, database: Path, config: TuneConfig) -> dict[str, Any]:
    """The child process's side of `grow`: seed, search, count; progress goes back to the parent as events."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from dlc.child import send_event
    from dlc.compiler.measure import seed_default_schedules
    from dlc.runtime.tvm_session import use_all_cores

    use_all_cores()  # candidates are measured with the threads the compiled model will have
    target = tvm.target.Target(target_json)
    database.mkdir(parents=True, exist_ok=True)
    db = ms.database.JSONDatabase(work_dir=str(database))
    tasks = ms.relax_integration.extract_tasks(mod, target)
    before = _model_records(database, db, tasks)
    with _interrupt_guard() as interrupted:
        stop = _StopWhen(interrupted, time.monotonic() + 60 * config.minutes if config.minutes else None)
        # Measured here, the seeds would be wrong for a device behind a tracker: there the search starts cold.
        seeded = 0 if config.tracker else seed_default_schedules(tasks, target, db, stop)
        if interrupted:
            raise _interrupted(database)
        stopped = "time" if stop() else _search(tasks, target, database, db, config, stop,
                                                config.trials - before - seeded, before + seeded, send_event)
    return {"before": before, "after": _model_records(database, db, tasks), "seeded": seeded, "stopped_by": stopped}


def _interrupted(database: Path) -> DlcError:
    return DlcError(f"tuning interrupted after {count_records(database)} records; they are kept in {database} and "
                    "the same command resumes from them")


def _model_records(database: Path, db, tasks) -> int:
    """How many records of the database belong to these tasks' kernels (a kernel shared with another model counts)."""
    ours = {str(db.commit_workload(t.dispatched[0]).as_json()[0]) for t in tasks if db.has_workload(t.dispatched[0])}
    if not ours:
        return 0
    with open(database / WORKLOADS) as f:
        hashes = [json.loads(line)[0] for line in f if line.strip()]
    with open(database / RECORDS) as f:
        return sum(1 for line in f if line.strip() and hashes[json.loads(line)[0]] in ours)


def _search(tasks, target, database: Path, db, config: TuneConfig, stop: _StopWhen, trials: int, done: int,
            on_progress) -> str | None:
    """MetaSchedule's search over `tasks` for `trials` more trials; returns "time" if the clock ended it."""
    from tvm.s_tir import meta_schedule as ms

    from dlc.compiler.measure import builder_and_runner

    if trials <= 0:
        return None
    # MetaSchedule's console handler takes this level; its full log still goes to DATABASE/logs.
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(tasks, str(database), seed=config.seed)
    scheduler = ms.task_scheduler.TaskScheduler.create("gradient")
    ending = _Ending(scheduler, stop)
    builder, runner = builder_and_runner(config)
    try:
        ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(database), max_trials_global=trials,
                           max_trials_per_task=config.trials_per_task, num_trials_per_iter=config.trials_per_iter,
                           builder=_stopping_builder(builder, ending), runner=runner, database=db,
                           task_scheduler=scheduler,
                           measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"),
                                              _progress_callback(done, done + trials, on_progress, ending)])
    except BaseException:
        # `_Ending` ends the search with an exception; TVM's FFI re-raises it as another
        # type, so the flags say why it ended.
        if stop.timed_out:
            return "time"
        if not stop.interrupted:
            raise
        raise _interrupted(database) from None
    return None


class _Ending:
    """Ends a search on Ctrl-C or the clock, keeping every batch already sent to be measured.

    The gradient task scheduler sends each task's first batch before it collects any (and
    the default callbacks commit a batch's records only when it is collected): raising
    at the first collection would throw away the rest of that round, which on a
    15-kernel CNN is most of the first 8 minutes. So every batch out is collected first.
    """

    def __init__(self, scheduler, stop: _StopWhen):
        self.scheduler, self.stop, self.ending = scheduler, stop, False

    def check(self, collecting: int | None = None) -> None:
        """Raises _Stopped once it is time, after collecting the batches out (but `collecting`'s, underway)."""
        if self.ending or not self.stop():
            return
        self.ending = True  # the collections below run the callbacks again
        for task_id, task in enumerate(self.scheduler.tasks_):
            if task_id != collecting and not task.is_terminated and task.runner_futures is not None:
                self.scheduler.join_running_task(task_id)
        raise _Stopped()


class _StopWhen:
    """Ctrl-C was pressed, or the deadline passed."""

    def __init__(self, interrupted: list[bool], deadline: float | None):
        self.interrupted, self.deadline, self.timed_out = interrupted, deadline, False

    def __call__(self) -> bool:
        self.timed_out = self.deadline is not None and time.monotonic() > self.deadline
        return bool(self.interrupted) or self.timed_out


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
    """Raised from the measure callback to end a tuning run (interrupted, or out of time)."""


def _stopping_builder(builder, ending: _Ending):
    """`builder`, checking before each batch whether the search should end (so a round of many tasks can)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class StoppingBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            ending.check()
            return builder.build(build_inputs)

    return StoppingBuilder()


def _progress_callback(start: int, total: int, on_progress: Callable | None, ending: _Ending):
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class Progress(ms.measure_callback.PyMeasureCallback):
        def __init__(self):
            self.done, self.best = start, {}

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            for result in runner_results:
                self.done += 1
                if result.run_secs:
                    ms_value = 1000.0 * sum(float(s) for s in result.run_secs) / len(result.run_secs)
                    self.best[task_id] = min(self.best.get(task_id, ms_value), ms_value)
            if on_progress:  # the sum of each tuned task's best: the model's kernel time so far
                on_progress(self.done, total, sum(self.best.values()) if self.best else None)
            ending.check(collecting=task_id)  # this batch's records are already in (callbacks run in order)

    return Progress()
