"""The backends dlc runs models on, by name: what each one opens and where it appears; `open_session`.

Adding a backend is one entry here and its session class: `open_session`, `dlc bench`
(its default list and help), `dlc serve` (which file kind a backend serves) and the
reports all read this table.

    tvm           a compiled artifact (NAME.dlc), TVM's Relax VM on its device
    onnxruntime   an ONNX file (or an artifact's copy of it), ONNX Runtime's CPU provider
    pytorch       the training checkpoint the ONNX file was exported from, PyTorch eager
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dlc.errors import BackendUnavailableError, UnknownNameError


@dataclass(frozen=True)
class Backend:
    name: str
    reads: str  # "artifact", "onnx" or "checkpoint": what its session is opened from
    opens: Callable[..., object]  # (artifact | None, onnx path, checkpoint path | None, threads) -> Session
    in_default_bench: bool  # benchmarked unless --backends says otherwise (given what it reads)
    serves: str | None = None  # the model file suffix `dlc serve` runs with this backend


def _open_tvm(artifact, onnx_path: Path, checkpoint, threads):
    from dlc.runtime.tvm_session import TvmSession

    if artifact is None:
        raise BackendUnavailableError(f"the tvm backend runs compiled artifacts and {onnx_path} is an ONNX file: "
                                      f"compile it first (`dlc compile {onnx_path}`), or bench it with `dlc bench`, "
                                      "which compiles it for you")
    return TvmSession.from_artifact(artifact, threads)


def _open_onnxruntime(artifact, onnx_path: Path, checkpoint, threads):
    from dlc.runtime.session import OrtSession

    return OrtSession(onnx_path, threads)


def _open_pytorch(artifact, onnx_path: Path, checkpoint, threads):
    from dlc.onnxio import io_specs, load_model
    from dlc.runtime.session import TorchSession

    if checkpoint is None:
        raise BackendUnavailableError("the pytorch backend needs the training checkpoint: "
                                      "pass --checkpoint model.pt (or leave pytorch out of --backends)")
    inputs, outputs = io_specs(load_model(onnx_path))
    return TorchSession(checkpoint, inputs, outputs, threads)


BACKENDS: dict[str, Backend] = {b.name: b for b in [
    Backend("tvm", "artifact", _open_tvm, in_default_bench=True, serves=".dlc"),
    Backend("onnxruntime", "onnx", _open_onnxruntime, in_default_bench=True, serves=".onnx"),
    Backend("pytorch", "checkpoint", _open_pytorch, in_default_bench=True),
]}
REFERENCE = "onnxruntime"  # what every other backend's outputs are compared with


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UnknownNameError(f"unknown backend {name!r}; choose from: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def default_backends(has_checkpoint: bool) -> tuple[str, ...]:
    """What `dlc bench` runs when not told: every default backend whose input is there."""
    return tuple(b.name for b in BACKENDS.values() if b.in_default_bench and (b.reads != "checkpoint" or has_checkpoint))


def serving_backend(path: Path) -> str | None:
    """The backend `dlc serve` runs a model file with, by its suffix; None for other files."""
    return next((b.name for b in BACKENDS.values() if b.serves == path.suffix), None)


def open_session(backend: str, model: str | Path, *, checkpoint: str | Path | None = None,
                 threads: int | None = None, trust: str | Path | None = None):
    """Opens `backend` on `model`: a `.dlc` artifact directory or an ONNX file; returns its Session.

    `trust`: a public key an artifact must be signed with (dlc.signing), checked before its
    library is loaded.
    """
    from dlc.artifact import Artifact, is_artifact

    chosen = get_backend(backend)
    artifact = Artifact.load(model, trust=trust) if is_artifact(model) else None
    onnx_path = artifact.onnx_path if artifact else Path(model)
    return chosen.opens(artifact, onnx_path, checkpoint, threads)
