"""Sessions: one `run(inputs) -> outputs` interface over every backend.

Bench, profile, serve and deploy only talk to this interface, so any backend can be
measured or served side by side with any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from dlc.errors import BackendUnavailableError, UnknownNameError
from dlc.runtime.specs import TensorSpec, check_inputs

BACKENDS = ("tvm", "onnxruntime", "pytorch")


class Session(Protocol):
    backend: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OrtSession:
    """ONNX Runtime on the CPU execution provider, all graph optimizations on."""

    backend = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        from dlc.onnxio import io_specs, load_model

        self.inputs, self.outputs = io_specs(load_model(model_path))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = check_inputs(self.inputs, inputs)
        values = self._session.run([o.name for o in self.outputs], feed)
        return {o.name: v for o, v in zip(self.outputs, values)}


class TorchSession:
    """The PyTorch module rebuilt from a dlc checkpoint, in eval mode under no_grad.

    Input and output names come from the ONNX model it is compared with, so that the
    same feed runs on every backend.
    """

    backend = "pytorch"

    def __init__(self, checkpoint_path: str | Path, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 threads: int | None = None):
        import torch

        from dlc import checkpoint

        if threads:
            torch.set_num_threads(threads)
        self._module = checkpoint.load(checkpoint_path).build_module()
        self.inputs, self.outputs = inputs, outputs

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        feed = check_inputs(self.inputs, inputs)
        with torch.no_grad():
            result = self._module(*(torch.from_numpy(feed[s.name]) for s in self.inputs))
        values = result if isinstance(result, (tuple, list)) else (result,)
        return {o.name: v.numpy() for o, v in zip(self.outputs, values)}


def open_session(backend: str, model: str | Path, *, checkpoint: str | Path | None = None,
                 threads: int | None = None) -> Session:
    """Opens `backend` on `model`: a `.dlc` artifact directory or an ONNX file.

    For an ONNX file the TVM backend compiles it in memory for the host (untuned).
    """
    from dlc.artifact import Artifact, is_artifact

    artifact = Artifact.load(model) if is_artifact(model) else None
    onnx_path = artifact.onnx_path if artifact else Path(model)
    if backend == "onnxruntime":
        return OrtSession(onnx_path, threads)
    if backend == "tvm":
        from dlc.runtime.tvm_session import TvmSession

        _set_tvm_threads(threads)
        return TvmSession.from_artifact(artifact) if artifact else TvmSession.from_onnx(onnx_path)
    if backend == "pytorch":
        if checkpoint is None:
            raise BackendUnavailableError("the pytorch backend needs the training checkpoint: "
                                          "pass --checkpoint model.pt (or leave pytorch out of --backends)")
        from dlc.onnxio import io_specs, load_model

        inputs, outputs = io_specs(load_model(onnx_path))
        return TorchSession(checkpoint, inputs, outputs, threads)
    raise UnknownNameError(f"unknown backend {backend!r}; choose from: {', '.join(BACKENDS)}")


def _set_tvm_threads(threads: int | None) -> None:
    # TVM's thread pool reads this when it first starts, which happens on the first run.
    if threads:
        os.environ["TVM_NUM_THREADS"] = str(threads)
