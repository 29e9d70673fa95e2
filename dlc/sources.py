"""A user's own PyTorch model, by reference: `file.py:build`, `package.module:attr` or a `.pt2` file.

What `dlc export`, `dlc train` and the zoo (which builds such a reference like one of its own
models) read them with; importing the reference runs the user's code, as `python file.py` would.

`build` may be an `nn.Module`, a class or function returning one, or returning
`(module, example_inputs)`. Example inputs can also come from input specs
(`name:1x3x224x224:float32`); symbolic dims from `name:0=batch,1=seq`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlc.errors import DlcError, InputFileError, first_line

DTYPES = ("float32", "float16", "float64", "int64", "int32", "bool")


@dataclass
class ModuleSource:
    module: Any  # torch.nn.Module
    examples: tuple | None  # example inputs the source gave (tensors), or None
    label: str  # how the user named it: "net.py:build"


def default_output(source: str) -> Path:
    """Where `dlc export SOURCE` writes without -o: `net.py:build` → net.onnx, `pkg.mod:Net` → Net.onnx."""
    location, _, name = source.rpartition(":")
    if source.endswith(".pt2"):
        return Path(source).with_suffix(".onnx")
    return Path(location).with_suffix(".onnx") if location.endswith(".py") else Path(f"{name}.onnx")


def is_module_reference(source: str) -> bool:
    """True for `file.py:attr`, `package.module:attr` and `.pt2` files: what `load_module_source` reads."""
    if source.endswith(".pt2"):
        return True
    left, sep, attr = source.rpartition(":")
    return bool(sep and attr.isidentifier() and (left.endswith(".py") or re.fullmatch(r"[\w.]+", left)))


def canonical_reference(source: str) -> str:
    """`net.py:build` with the file's absolute path, so that a checkpoint finds it from any folder."""
    location, _, name = source.rpartition(":")
    return f"{Path(location).resolve()}:{name}" if location.endswith(".py") else source


def source_sha256(source: str) -> str | None:
    """The sha256 of the file holding a reference's code (the .py file, or the package module's); None for a
    zoo name or a module that cannot be found."""
    from dlc.artifact import sha256_file

    if not is_module_reference(source):
        return None
    location = source.rpartition(":")[0]
    path = Path(location) if location.endswith(".py") else _module_file(location)
    return sha256_file(path) if path and path.is_file() else None


def _module_file(dotted: str) -> Path | None:
    """The file of module `dotted` on sys.path, found without importing anything (find_spec would run the
    parent packages' __init__)."""
    from importlib.machinery import PathFinder

    search = None
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        spec = PathFinder.find_spec(part, search)
        if spec is None:
            return None
        if i == len(parts) - 1:
            return Path(spec.origin) if spec.origin else None
        search = spec.submodule_search_locations
        if not search:
            return None
    return None


def require_unchanged(source: str, sha256: str | None) -> None:
    """Refuses to run a reference's code when its file is not the one a checkpoint was trained with."""
    if sha256 is None:
        return
    now = source_sha256(source)
    if now != sha256:
        what = "is missing" if now is None else "changed since the checkpoint was written"
        raise DlcError(f"the code of {source} {what}, so its weights may not fit and it was not run; restore "
                       "that file, or train again with `dlc train --model`")


def load_module_source(source: str, weights: str | Path | None = None) -> ModuleSource:
    """Imports and builds the module `source` names; loads `weights` (a state_dict file) into it."""
    import torch

    if source.endswith(".pt2"):
        module, examples = _load_pt2(source)
    else:
        module, examples = _build(source, _attribute(source))
    if not isinstance(module, torch.nn.Module):
        raise DlcError(f"{source} returned {type(module).__name__}, not a torch.nn.Module; return a module or "
                       "(module, example_inputs)")
    if weights is not None:
        _load_weights(module, weights, source)
    return ModuleSource(module, examples, source)  # export_module puts it in eval mode


def _attribute(source: str):
    location, _, name = source.rpartition(":")
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise InputFileError(f"model file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"dlc_user_{abs(hash(path.resolve()))}", path)
        namespace = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.resolve().parent))  # so it can import its neighbours
        try:
            spec.loader.exec_module(namespace)
        except SystemExit as e:
            raise DlcError(f"{path} exited while being imported (exit code {e.code}): put its script code under "
                           "`if __name__ == '__main__':`") from e
        except Exception as e:  # the user's code: anything
            raise DlcError(f"{path} failed to import: {type(e).__name__}: {first_line(e)}") from e
        finally:
            sys.path.remove(str(path.resolve().parent))
    else:
        try:
            namespace = importlib.import_module(location)
        except ImportError as e:
            raise DlcError(f"cannot import {location!r} ({first_line(e)}); is it installed or on PYTHONPATH?") from e
        except SystemExit as e:
            raise DlcError(f"{location} exited while being imported (exit code {e.code}): put its script code "
                           "under `if __name__ == '__main__':`") from e
        except Exception as e:  # a relative name (TypeError), or the module's own code failing
            raise DlcError(f"cannot import {location!r}: {type(e).__name__}: {first_line(e)}") from e
    if not hasattr(namespace, name):
        defined = sorted(n for n, v in vars(namespace).items() if callable(v) and not n.startswith("_")
                         and getattr(v, "__module__", None) == namespace.__name__)
        raise DlcError(f"{location} defines no {name!r}; it defines: {', '.join(defined) or 'no callables'}")
    return getattr(namespace, name)


def _build(source: str, attribute) -> tuple[Any, tuple | None]:
    import torch

    if isinstance(attribute, torch.nn.Module):
        return attribute, None
    if not callable(attribute):
        raise DlcError(f"{source} is a {type(attribute).__name__}, not a module or a callable that builds one")
    try:
        built = attribute()
    except (Exception, SystemExit) as e:  # the user's code: anything
        raise DlcError(f"{source}() failed: {type(e).__name__}: {first_line(e)}") from e
    if isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], torch.nn.Module):
        return built[0], _as_tuple(built[1], source)
    return built, None


def _as_tuple(examples, source: str) -> tuple:
    import torch

    examples = (examples,) if isinstance(examples, torch.Tensor) else examples
    if not isinstance(examples, (tuple, list)) or not all(isinstance(e, torch.Tensor) for e in examples):
        raise DlcError(f"{source} returned example inputs that are not a tensor or a tuple of tensors")
    return tuple(examples)


def _load_pt2(source: str) -> tuple[Any, tuple | None]:
    import torch

    path = Path(source)
    if not path.is_file():
        raise InputFileError(f"model file not found: {path}")
    torch_log = logging.getLogger("torch")
    level, torch_log.level = torch_log.level, logging.CRITICAL  # it logs a traceback before raising on junk
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise DlcError(f"{path} is not a program saved by torch.export.save ({first_line(e)})") from e
    finally:
        torch_log.setLevel(level)
    examples = program.example_inputs[0] if program.example_inputs else None
    return program.module(), tuple(examples) if examples else None


def _load_weights(module, weights: str | Path, source: str) -> None:
    import torch

    path = Path(weights)
    if not path.is_file():
        raise InputFileError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DlcError(f"{path} is not a state_dict saved with torch.save ({first_line(e)})") from e
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise DlcError(f"{path} holds a {type(state).__name__}, not a state_dict; save module.state_dict()")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        raise DlcError(f"{path} does not fit {source}: {' '.join(str(e).split())[:300]}") from e


def parse_input_spec(text: str) -> tuple[str, tuple[int, ...], str]:
    """`name:1x3x224x224[:float32]` → (name, shape, dtype)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not re.fullmatch(r"[1-9]\d*(x[1-9]\d*)*", parts[1]) or \
            (len(parts) == 3 and parts[2] not in DTYPES):
        raise DlcError(f"--input {text!r} does not parse; write NAME:SHAPE[:DTYPE] with sizes >= 1, e.g. "
                       f"--input image:1x3x224x224:float32 (dtypes: {', '.join(DTYPES)})")
    return parts[0], tuple(int(d) for d in parts[1].split("x")), parts[2] if len(parts) == 3 else "float32"


def parse_dynamic_spec(text: str) -> tuple[str, dict[int, str]]:
    """`tokens:0=batch,1=seq` → ("tokens", {0: "batch", 1: "seq"})."""
    name, sep, dims = text.partition(":")
    pairs = [d.partition("=") for d in dims.split(",")] if sep else []
    axes = [a for a, _, _ in pairs]
    if not name or not pairs or len(set(axes)) < len(axes) or \
            any(not a.isdigit() or not eq or not s.isidentifier() for a, eq, s in pairs):
        raise DlcError(f"--dynamic {text!r} does not parse; write NAME:AXIS=SYMBOL[,AXIS=SYMBOL], each axis once, e.g. "
                       "--dynamic tokens:0=batch,1=seq")
    return name, {int(a): s for a, _, s in pairs}
