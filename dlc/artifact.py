"""The artifact format: a `NAME.dlc/` directory holding a compiled model and its proof.

    manifest.json   versions, target, input/output specs, sha256 of every file below
    model.so        the compiled TVM library (native code)
    model.onnx      the ONNX model it was compiled from
    golden.npz      sample inputs and ONNX Runtime's outputs for them

`Artifact.load` checks every hash before anything is opened: the library is native
code, and a tampered or truncated one must never be loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlc.errors import (
    ArtifactIntegrityError,
    BackendUnavailableError,
    InputFileError,
    InvalidModelError,
    WrongArchitectureError,
)
from dlc.specs import TensorSpec

FORMAT = "dlc-artifact"
FORMAT_VERSION = 1
DYNAMIC_FORMAT_VERSION = 2  # an artifact with symbolic dims: a dlc that cannot check their bounds must refuse it
FORMAT_VERSIONS = (FORMAT_VERSION, DYNAMIC_FORMAT_VERSION)
MANIFEST = "manifest.json"
LIBRARY = "model.so"
ONNX = "model.onnx"
GOLDEN = "golden.npz"
KERNELS = "kernels.so"  # a device artifact's kernels alone, for `dlc profile` over RPC
# Why an ONNX node has no kernel of its own (manifest "schedules.nodes_without_kernel"; dlc.compiler.provenance)
NO_KERNEL_FOLDED = "folded into a constant or removed by the compiler"
NO_KERNEL_VIEW = "runs without a kernel (a view of its input, or a VM built-in)"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_artifact(path: str | Path) -> bool:
    """Whether `path` names an artifact rather than an ONNX file: a directory, or a missing `NAME.dlc`.

    A missing `NAME.dlc` counts, so that `Artifact.load` says an artifact is missing
    rather than an ONNX model.
    """
    return Path(path).is_dir() or Path(path).suffix == ".dlc"


def why_not_replaceable(path: Path) -> str | None:
    """None if `path` is a dlc artifact directory, which `--force` may replace; else why not."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError, RecursionError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return "it is a directory without a dlc manifest, not an artifact dlc wrote"
    return None


def save_golden(path: Path, cases: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]) -> None:
    """Inputs and ONNX Runtime's outputs: the first case as input/NAME, output/NAME; more (a dynamic artifact's
    other sizes) as caseI/input/NAME, caseI/output/NAME."""
    arrays = {}
    for i, (inputs, outputs) in enumerate(cases):
        prefix = f"case{i}/" if i else ""
        arrays |= {f"{prefix}input/{k}": v for k, v in inputs.items()}
        arrays |= {f"{prefix}output/{k}": v for k, v in outputs.items()}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path, verify: bool = True, trust: str | Path | None = None) -> "Artifact":
        """Reads and checks the manifest, and verifies every file's sha256 (unless `verify` is False because
        this process just did); raises on any mismatch.

        With `trust` (a public key file), the manifest must first carry a valid signature by
        that key (dlc.signing): the hashes checked next are then the signer's.
        """
        root = Path(path)
        if root.is_file():
            raise InputFileError(f"{root} is a file, not an artifact directory: compile it first "
                                 f"(`dlc compile {root} -o {root.stem}.dlc`)")
        if not root.is_dir():
            raise InputFileError(f"artifact not found: {root} (create one with `dlc compile MODEL.onnx -o {root}`)")
        content = _manifest_bytes(root)
        if trust is not None:  # before anything else is read: no native code is touched before this passes
            from dlc import signing

            signing.check(root / MANIFEST, Path(trust), content)
        manifest = _read_manifest(root, content)
        artifact = cls(root, manifest)
        if verify:
            artifact.verify()
        return artifact

    def verify(self) -> None:
        """Every file the manifest names is inside the artifact and has its sha256; the library's ELF header is
        the one recorded at compile time. All of it before any native code is loaded."""
        for role, entry in self.manifest["files"].items():
            file = self.path / entry["path"]
            if not file.is_file():
                raise ArtifactIntegrityError(f"artifact {self.path} is missing its {role} file {entry['path']}; "
                                             "recompile it with `dlc compile`")
            if sha256_file(file) != entry["sha256"]:
                raise ArtifactIntegrityError(
                    f"artifact {self.path}: {entry['path']} does not match the sha256 in {MANIFEST} "
                    "(modified or corrupted); it was not loaded. Recompile it with `dlc compile`")
        recorded = self.manifest.get("library_elf")
        if recorded is not None:
            from dlc.elf import read_elf_header

            if read_elf_header(self.library_path) != recorded:
                raise ArtifactIntegrityError(f"artifact {self.path}: the library's ELF header does not match the one "
                                             f"recorded in {MANIFEST}; it was not loaded. Recompile it with "
                                             "`dlc compile`")

    def require_runnable_here(self) -> None:
        """Refuses an artifact whose code cannot run on this machine, before it is opened.

        Native code for a CPU feature this machine lacks would kill the process (SIGILL).
        """
        from dlc.target import cuda_present, host_arch, missing_cpu_features

        target = self.target
        if target.arch != host_arch():
            raise WrongArchitectureError(
                f"artifact {self.path} was built for {target.arch}, this machine is {host_arch()}; run it on such a "
                "device with `dlc deploy`, or recompile with `--target host`")
        recorded = self.manifest.get("cpu_features")  # absent from artifacts compiled before dlc recorded it
        if recorded is None and _runtime_only_tvm():
            raise InvalidModelError(f"artifact {self.path} does not record its CPU features and this TVM is "
                                    "runtime-only (no LLVM to read them); recompile it with this dlc's `dlc compile`")
        missing = missing_cpu_features(target.tvm, recorded)
        if missing:
            raise WrongArchitectureError(
                f"artifact {self.path} was built for target {target.name} and this CPU lacks {', '.join(missing)}; "
                "it was not loaded. Recompile it here with `--target host`")
        if target.device == "cuda" and not cuda_present():
            raise BackendUnavailableError(f"artifact {self.path} was built for a CUDA GPU and this machine has none; "
                                          "run it on a GPU machine, or recompile with `--target host`")

    @property
    def target(self):
        from dlc.target import TargetSpec

        return TargetSpec.from_dict(self.manifest["target"])

    @property
    def device(self) -> str:
        return self.target.device

    @property
    def name(self) -> str:
        return self.manifest["name"]

    @property
    def library_path(self) -> Path:
        return self.path / self.manifest["files"]["library"]["path"]

    @property
    def onnx_path(self) -> Path:
        return self.path / self.manifest["files"]["onnx"]["path"]

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["inputs"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d) for d in self.manifest["outputs"]]

    @property
    def max_shape(self) -> dict[str, int]:
        """A dynamic artifact's upper bound per symbolic dimension; empty for a static one."""
        return dict(self.manifest.get("max_shape") or {})

    def golden(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The golden inputs and ONNX Runtime's outputs (a dynamic artifact's first size)."""
        return self.golden_cases()[0]

    def golden_cases(self) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """Every golden case: one for a static artifact, one per verified size for a dynamic one."""
        cases: dict[str, tuple[dict, dict]] = {}
        with np.load(self.path / self.manifest["files"]["golden"]["path"], allow_pickle=False) as z:
            for key in z.files:  # input/NAME, output/NAME, caseI/input/NAME...; a NAME may hold "/"
                case, rest = ("", key) if key.startswith(("input/", "output/")) else key.split("/", 1)
                kind, _, name = rest.partition("/")
                cases.setdefault(case, ({}, {}))[kind == "output"][name] = z[key]
        return [cases[k] for k in sorted(cases, key=lambda c: int(c.removeprefix("case") or 0))]


def _runtime_only_tvm() -> bool:
    import tvm

    return bool(tvm.base._RUNTIME_ONLY)


def _manifest_bytes(root: Path) -> bytes:
    file = root / MANIFEST
    if not file.is_file():
        raise InvalidModelError(f"{root} is not a dlc artifact (no {MANIFEST}); create one with `dlc compile`")
    return file.read_bytes()


def _read_manifest(root: Path, content: bytes) -> dict[str, Any]:
    file = root / MANIFEST
    try:
        manifest = json.loads(content)
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, a 5,000-digit number, deep nesting
        raise ArtifactIntegrityError(f"{file} is not valid JSON ({' '.join(str(e).split())[:200]}); recompile with "
                                     "`dlc compile`") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            manifest.get("format_version") not in FORMAT_VERSIONS:
        versions = "/".join(map(str, FORMAT_VERSIONS))
        raise InvalidModelError(f"{root} is not a dlc artifact of format {FORMAT} v{versions}; "
                                "recompile it with this dlc's `dlc compile`")
    problem = _manifest_problem(root, manifest)
    if problem:
        raise ArtifactIntegrityError(f"{file} {problem}; it was not loaded. Recompile it with `dlc compile`")
    return manifest


REQUIRED = {"name": str, "target": dict, "inputs": list, "outputs": list, "files": dict}
ROLES = ("library", "onnx", "golden")


def _manifest_problem(root: Path, manifest: dict[str, Any]) -> str | None:
    """What makes a manifest unusable, or None: a missing or mistyped field, a path that leaves the artifact."""
    for key, kind in REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            return f"has no valid {key!r}"
    for role in ROLES:
        entry = manifest["files"].get(role)
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or \
                not isinstance(entry.get("sha256"), str):
            return f"has no valid files.{role} entry (path and sha256)"
    for role, entry in manifest["files"].items():
        relative = Path(entry["path"]) if isinstance(entry, dict) and isinstance(entry.get("path"), str) else None
        if relative is None or relative.is_absolute() or ".." in relative.parts or relative == Path("."):
            return f"names its {role} file outside the artifact"
        if not (root / relative).resolve().is_relative_to(root.resolve()):  # a symlink out of it
            return f"names its {role} file outside the artifact (through a link)"
    bounds = manifest.get("max_shape", {})
    if not isinstance(bounds, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                               for v in bounds.values()):
        return "has an invalid 'max_shape' (symbol: positive size)"
    features = manifest.get("cpu_features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        return "has an invalid 'cpu_features' (a list of feature names)"
    for spec in (*manifest["inputs"], *manifest["outputs"]):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or \
                not isinstance(spec.get("shape"), list) or not isinstance(spec.get("dtype"), str):
            return "has an input or output without a valid name, shape and dtype"
    return None
