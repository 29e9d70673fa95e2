"""A model repository: which models a server offers, in which versions, and loading them.

    REPO/NAME/VERSION/model.dlc    a compiled artifact (served by TVM)
    REPO/NAME/VERSION/model.onnx   an ONNX file (served by ONNX Runtime)
    REPO/NAME.dlc, REPO/NAME.onnx  version 1 of NAME

A single artifact or ONNX file is a repository of one model. A model that fails to load
keeps its reason and is reported not ready; the others serve. Names and versions are
matched against what was discovered, never joined into paths from a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dlc.errors import InputFileError
from dlc.runtime.backends import serving_backend

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class ModelVersion:
    name: str
    version: str
    path: Path
    platform: str  # the backend that serves it, by its file kind (backends.serving_backend)
    session: object | None = None
    error: str | None = None
    batch_axis: bool = False  # every input and output of the ONNX graph has the same symbolic first dim

    @property
    def ready(self) -> bool:
        return self.session is not None

    def load(self, trust: Path | None = None) -> None:
        """Opens the session; any failure keeps this one model out, with its reason, and the others serve."""
        import onnx

        from dlc.artifact import Artifact
        from dlc.onnxio import batch_dim
        from dlc.runtime.backends import open_session

        try:
            session = open_session(self.platform, self.path, trust=trust)  # checks the files: signature, hashes
            onnx_path = self.path if self.path.suffix == ".onnx" else Artifact.load(self.path, trust=trust).onnx_path
            self.batch_axis = batch_dim(onnx.load(str(onnx_path), load_external_data=False)) is not None
            self.session = session
        except Exception as e:  # noqa: BLE001 - a malformed manifest, a checker error, a foreign library...
            self.error = f"{type(e).__name__}: {' '.join(str(e).split())}"[:1000]


@dataclass
class Repository:
    root: Path
    models: dict[str, dict[str, ModelVersion]] = field(default_factory=dict)

    def find(self, name: str, version: str | None) -> ModelVersion | None:
        versions = self.models.get(name)
        if not versions:
            return None
        if version is None:
            return versions[max(versions, key=_version_key)]
        return versions.get(version)

    def load_all(self, trust: Path | None = None) -> None:
        """Loads every model; with `trust`, an artifact must be signed by that public key (ONNX files carry no
        native code and load as they are)."""
        for versions in self.models.values():
            for model in versions.values():
                model.load(trust)


def discover(path: str | Path) -> Repository:
    """The models under `path` (a repository folder, an artifact, or an ONNX file), not yet loaded."""
    root = Path(path)
    if not root.exists():
        raise InputFileError(f"{root} does not exist; pass a model repository folder, a .dlc artifact or an .onnx file")
    repo = Repository(root)
    if _model_file(root):
        _add(repo, root.name.removesuffix(".dlc").removesuffix(".onnx"), "1", root)
        return repo
    for entry in sorted(root.iterdir()):
        if _model_file(entry):
            _add(repo, entry.name.removesuffix(".dlc").removesuffix(".onnx"), "1", entry)
        elif entry.is_dir():
            for version in sorted(v for v in entry.iterdir() if v.is_dir() and v.name.isdigit()):
                files = [f for f in sorted(version.iterdir()) if _model_file(f)]
                if files:
                    _add(repo, entry.name, version.name, files[0])
    if not repo.models:
        raise InputFileError(f"{root} holds no models; put NAME/1/model.dlc (or model.onnx) in it, or pass an "
                             f"artifact or ONNX file")
    return repo


def _model_file(path: Path) -> bool:
    return (path.is_dir() and path.suffix == ".dlc" and (path / "manifest.json").exists()) or \
        (path.is_file() and path.suffix == ".onnx")


def _add(repo: Repository, name: str, version: str, path: Path) -> None:
    if NAME.match(name):
        platform = serving_backend(path)
        repo.models.setdefault(name, {})[version] = ModelVersion(name, version, path, platform)


def _version_key(version: str) -> int:
    return int(version) if version.isdigit() else -1
