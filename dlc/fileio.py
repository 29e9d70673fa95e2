"""Writing outputs atomically: a crash or an error never leaves a half-written file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from dlc.errors import DlcError, InputFileError, OutputExistsError


def require_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """Returns `path` as a Path, or raises a one-line error if it is not an existing file."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} not found: {p}" + (f" ({hint})" if hint else ""))
    if not p.is_file():
        raise InputFileError(f"{what} is not a file: {p}" + (f" ({hint})" if hint else ""))
    return p


def check_output(path: Path, force: bool, *, directory: Callable[[Path], str | None] | None = None) -> None:
    """Refuses an output that cannot be written, or that exists unless `force`, before any work starts.

    Even with `force`, only what dlc writes there is replaced: a file, or where the output
    is a directory, an existing directory that `directory(path)` finds no reason against
    (e.g. that it holds a dlc manifest); never the working directory or one above it.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not force:
            raise OutputExistsError(f"output already exists: {path} (pass --force to overwrite it)")
        why = _not_replaceable(path, directory)
        if why:
            raise OutputExistsError(f"--force will not replace {path}: {why}; choose another output path")
    _require_writable(path.parent)


def _not_replaceable(path: Path, directory: Callable[[Path], str | None] | None) -> str | None:
    if directory is None:
        if path.is_dir():
            return "it is a directory, and dlc writes a file there"
        return None if path.is_file() and not path.is_symlink() else "it is not a regular file (a device, a pipe, a link)"
    if path.is_symlink() or not path.is_dir():
        return "it is not a directory"
    here = Path.cwd().resolve()
    if path.resolve() in (here, *here.parents):
        return "it is the working directory, or holds it"
    return directory(path)


def _require_writable(folder: Path) -> None:
    """Fails now, not after a long build, when nothing can be created in `folder` (or its nearest existing parent)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".dlc-write-check-", dir=existing)
    except OSError as e:
        raise DlcError(f"cannot write in {existing}: {e.strerror or e}; choose an output path in a folder you "
                       "can write to") from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, directory: bool = False,
                before_replace: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yields a temporary path beside `dest`; renames it onto `dest` only if the block succeeds.

    For a directory, an existing `dest` is moved aside first and removed after the swap,
    so `dest` is either the old or the new complete tree, never a mix. `before_replace`
    runs just before: a long build re-checks there what may be replaced (see check_output).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{dest.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_mode(directory))  # as open() would have made it, not 0600
        if before_replace:
            before_replace()
        _replace(tmp, dest, directory)
    except BaseException:
        _remove(tmp)
        raise


def default_mode(directory: bool = False) -> int:
    """The permissions open() or mkdir() would give a new file or folder here (the umask applied)."""
    return (0o777 if directory else 0o666) & ~_umask()


def _umask() -> int:
    """The process's umask, read without setting it (os.umask would change it for every thread meanwhile)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        return 0o022


def _replace(tmp: Path, dest: Path, directory: bool) -> None:
    if not directory or not dest.exists():
        os.replace(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    try:
        os.replace(dest, old / "tree")
    except OSError:
        old.rmdir()
        raise
    try:
        os.replace(tmp, dest)
    except OSError:  # the old tree goes back
        os.replace(old / "tree", dest)
        old.rmdir()
        raise
    shutil.rmtree(old, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Writes `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return Path(path)


MODEL_SUFFIXES = (".dlc", ".onnx", ".pt")


def beside(source: str | os.PathLike, suffix: str) -> Path:
    """Where an output derived from `source` goes by default: beside it, its model suffix replaced.

    `cnn.pt` → `cnn.metrics.json`, `model.dlc/` → `model.bench.json`, `model.onnx` → `model.dlc`.
    """
    path = Path(str(source).rstrip("/"))
    if not path.name:  # "." or "..": the folder's own name
        path = path.resolve()
    name = next((path.name.removesuffix(s) for s in MODEL_SUFFIXES if path.name.endswith(s)), path.name)
    return path.with_name(name + suffix)
