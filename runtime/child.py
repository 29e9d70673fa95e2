"""Running one function in a fresh Python process.

A plain subprocess rather than multiprocessing: spawn-based multiprocessing re-imports
the caller's `__main__`, which breaks user scripts that lack an `if __name__` guard.
Arguments and results travel as pickles over the child's stdin and stdout; the child is
our own code, started from our own interpreter.
"""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
from typing import Any

from dlc.errors import DlcError


class ChildDiedError(DlcError, RuntimeError):
    """The child process died without returning a result."""


def run_in_child(target: str, *args: Any, timeout: float | None = None) -> Any:
    """Calls `module:function(*args)` in a new interpreter and returns its result.

    A DlcError raised in the child is raised again here with the same class and message.
    """
    proc = subprocess.run([sys.executable, "-m", "dlc.runtime.child"], input=pickle.dumps((target, args)),
                          capture_output=True, timeout=timeout)
    if proc.returncode != 0 or not proc.stdout:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ChildDiedError(f"{target} died in its child process (exit {proc.returncode}): {tail[0]}")
    ok, value = pickle.loads(proc.stdout)
    if not ok:
        raise value
    return value


def _main() -> None:
    target, args = pickle.loads(sys.stdin.buffer.read())
    module, name = target.split(":")
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything the function prints must not corrupt the pickle
    try:
        result = (True, getattr(importlib.import_module(module), name)(*args))
    except DlcError as e:
        result = (False, e)
    out.write(pickle.dumps(result))
    out.flush()


if __name__ == "__main__":
    _main()
