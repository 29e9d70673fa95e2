"""Running one function in a fresh Python process, and cleaning up everything it started.

Native code runs there when it might kill the process that runs it: a freshly built
library (SIGILL on a CPU without the target's features, a crash on load), MetaSchedule
with its builder and runner workers, one backend of a benchmark.

A plain subprocess rather than multiprocessing: spawn-based multiprocessing re-imports
the caller's `__main__`, which breaks user scripts that lack an `if __name__` guard.
Arguments travel as a pickle on the child's stdin; the child answers with framed pickles
on its stdout — events (progress) while it runs, then the result. The child is our own
code, started from our own interpreter.

The child runs in a process group of its own, so everything it starts (MetaSchedule's
popen workers, RPC sessions) can be stopped with it: when the call ends — returned,
failed, timed out or interrupted — the whole group is killed. Ctrl-C in the parent is
passed on to the child once per press, so the child decides how to stop (tuning saves
the batch being measured first).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from dlc.errors import DlcError

_HEADER = struct.Struct("<Q")
_EVENT, _RESULT = "event", "result"
_channel = None  # in a child: the file its events and result are written to


class ChildDiedError(DlcError, RuntimeError):
    """The child process died without returning a result."""

    def __init__(self, message: str, how: str = "", last_line: str = ""):
        super().__init__(message)
        self.how, self.last_line = how, last_line  # "killed by SIGILL", the last line it wrote to stderr


def run_in_child(target: str, *args: Any, timeout: float | None = None, without_torch: bool = False,
                 on_event: Callable[..., None] | None = None) -> Any:
    """Calls `module:function(*args)` in a new interpreter and returns its result.

    A DlcError raised in the child is raised again here with the same class and message;
    a child killed by a signal becomes a ChildDiedError naming the signal. `on_event`
    receives what the child passes to `send_event`. `without_torch` keeps torch out of the
    child (tvm_ffi imports it when present: 1.2 s and ~150 MB that a TVM-only child never uses).
    """
    command = [sys.executable, "-m", "dlc.child", *(["--without-torch"] if without_torch else [])]
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                start_new_session=True)
        try:
            messages = _start_reader(proc)
            proc.stdin.write(pickle.dumps((target, args)))
            proc.stdin.close()
            result = _wait(proc, messages, target, timeout, on_event)
        finally:
            _stop_group(proc)
        if result is None:
            how, last = _how_it_ended(proc.returncode), _last_line(stderr)
            raise ChildDiedError(f"{target} died in its child process ({how}): {last}", how, last)
    ok, value = result
    if not ok:
        raise value
    return value


def send_event(*payload: Any) -> None:
    """In a child: hands `payload` to the parent's `on_event`; elsewhere does nothing."""
    if _channel is not None:
        _write(_channel, (_EVENT, payload))


def _start_reader(proc: subprocess.Popen) -> queue.Queue:
    """A thread moving the child's messages into a queue (None at end of stream).

    The main thread waits on the queue in short steps, so Ctrl-C reaches it between them.
    """
    messages: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            while header := proc.stdout.read(_HEADER.size):
                messages.put(pickle.loads(proc.stdout.read(_HEADER.unpack(header)[0])))
        except (EOFError, pickle.UnpicklingError, struct.error):
            pass  # a child killed mid-message: what it sent whole was delivered
        messages.put(None)

    threading.Thread(target=read, daemon=True).start()
    return messages


def _wait(proc, messages: queue.Queue, target: str, timeout: float | None, on_event) -> tuple[bool, Any] | None:
    """Delivers events until the result arrives (or the child ends without one)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            message = messages.get(timeout=0.1)
        except queue.Empty:
            if deadline is not None and time.monotonic() > deadline:
                raise ChildDiedError(f"{target} did not finish within {timeout:.0f} s in its child process; "
                                     "it was stopped") from None
            continue
        except KeyboardInterrupt:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)  # the child stops its own way; a second Ctrl-C is passed on too
            continue
        if message is None:
            proc.wait()
            return None
        kind, payload = message
        if kind == _RESULT:
            return payload
        if on_event:
            on_event(*payload)


def _stop_group(proc: subprocess.Popen) -> None:
    """Ends the child and every process it started (they share its process group)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
        for _ in range(50):  # up to 5 s to exit cleanly, then no choice
            if proc.poll() is not None and not _group_alive(proc.pid):
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _how_it_ended(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def _last_line(stderr) -> str:
    stderr.seek(0)
    lines = stderr.read().decode(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else "no output"


def _write(channel, message) -> None:
    data = pickle.dumps(message)
    channel.write(_HEADER.pack(len(data)) + data)
    channel.flush()


class _WithoutTorch:
    """An import hook under which `import torch` raises ImportError (tvm_ffi then goes without it).

    A hook rather than `sys.modules["torch"] = None`: libraries that look for torch in
    sys.modules (xgboost, cloudpickle) would find None there and fail.
    """

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"{name} is kept out of this process", name=name)
        return None


def _die_with_parent() -> None:
    """Linux: this process gets SIGTERM when its parent dies, so it never outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _main() -> None:
    global _channel
    _die_with_parent()
    if "--without-torch" in sys.argv:
        sys.meta_path.insert(0, _WithoutTorch())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so `finally` blocks run
    target, args = pickle.loads(sys.stdin.buffer.read())
    # Messages get a descriptor of their own; anything printed, from Python or native code, goes to stderr.
    _channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    module, name = target.split(":")
    try:
        result = (True, getattr(importlib.import_module(module), name)(*args))
    except (DlcError, KeyboardInterrupt) as e:  # raised again in the parent
        result = (False, e)
    _write(_channel, (_RESULT, result))


if __name__ == "__main__":
    _main()
