"""Writing outputs atomically: a crash or an error never leaves a half-written file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dlc.errors import InputFileError, OutputExistsError


def require_file(path: str | os.PathLike, what: str, hint: str = "") -> Path:
    """Returns `path` as a Path, or raises a one-line error if it is not an existing file."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{what} not found: {p}" + (f" ({hint})" if hint else ""))
    if not p.is_file():
        raise InputFileError(f"{what} is not a file: {p}" + (f" ({hint})" if hint else ""))
    return p


def check_output(path: Path, force: bool) -> None:
    """Refuses to overwrite an existing output unless `force`."""
    if path.exists() and not force:
        raise OutputExistsError(f"output already exists: {path} (pass --force to overwrite it)")


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `dest`; renames it onto `dest` only if the block succeeds.

    For a directory, an existing `dest` is moved aside first and removed after the swap,
    so `dest` is either the old or the new complete tree, never a mix.
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
        _replace(tmp, dest, directory)
    except BaseException:
        _remove(tmp)
        raise


def _replace(tmp: Path, dest: Path, directory: bool) -> None:
    if not directory or not dest.exists():
        os.replace(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.replace(dest, old / "tree")
    os.replace(tmp, dest)
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
    name = next((path.name.removesuffix(s) for s in MODEL_SUFFIXES if path.name.endswith(s)), path.name)
    return path.with_name(name + suffix)
