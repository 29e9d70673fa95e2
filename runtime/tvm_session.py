"""A session over a TVM Relax executable: from a verified artifact, or compiled in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlc.runtime.specs import TensorSpec, check_inputs


class TvmSession:
    backend = "tvm"

    def __init__(self, executable, inputs: list[TensorSpec], outputs: list[TensorSpec], device: str = "cpu"):
        import tvm
        from tvm import relax

        self.device = tvm.cuda() if device == "cuda" else tvm.cpu()
        self._vm = relax.VirtualMachine(executable, self.device)
        self._main = self._vm["main"]
        self.inputs, self.outputs = inputs, outputs

    @classmethod
    def from_artifact(cls, artifact) -> "TvmSession":
        """Opens the compiled library of an artifact whose hashes were already checked."""
        import tvm

        artifact.require_runnable_here()
        lib = tvm.runtime.load_module(str(artifact.library_path))
        return cls(lib, artifact.inputs, artifact.outputs, artifact.device)

    @classmethod
    def from_onnx(cls, onnx_path: str | Path, shapes: dict[str, list[int]] | None = None) -> "TvmSession":
        """Compiles an ONNX file for the host CPU in memory (untuned, default pipeline)."""
        from dlc.compiler.build import build_executable, static_specs
        from dlc.compiler.target import resolve_target
        from dlc.onnxio import io_specs, load_model

        model = load_model(onnx_path)
        inputs = static_specs(io_specs(model)[0], shapes)
        executable = build_executable(model, inputs, resolve_target("host"))
        return cls(executable, inputs, io_specs(model)[1])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tvm

        feed = check_inputs(self.inputs, inputs)
        result = self._main(*(tvm.runtime.tensor(feed[s.name], self.device) for s in self.inputs))
        values = [result] if hasattr(result, "numpy") else list(result)
        return {o.name: v.numpy() for o, v in zip(self.outputs, values)}
