"""A session over a TVM Relax executable: from a verified artifact, or compiled in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlc.runtime.specs import TensorSpec, check_inputs, is_aligned


class TvmSession:
    backend = "tvm"

    def __init__(self, executable, inputs: list[TensorSpec], outputs: list[TensorSpec], device: str = "cpu"):
        import tvm
        from tvm import relax

        self.device = tvm.cuda() if device == "cuda" else tvm.cpu()
        self._cpu = device != "cuda"
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
        from dlc.compiler.build import build_executable, load_for_tvm
        from dlc.target import resolve_target
        from dlc.onnxio import io_specs
        from dlc.runtime.specs import static_specs

        model, _ = load_for_tvm(onnx_path)
        inputs = static_specs(io_specs(model)[0], shapes)
        executable = build_executable(model, inputs, resolve_target("host"))
        return cls(executable, inputs, io_specs(model)[1])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = check_inputs(self.inputs, inputs)
        result = self._main(*(self._to_device(feed[s.name]) for s in self.inputs))
        values = [result] if hasattr(result, "numpy") else list(result)
        return {o.name: self._to_numpy(v) for o, v in zip(self.outputs, values)}

    def _to_device(self, array: np.ndarray):
        """Zero-copy for a 64-byte-aligned CPU array; a copy otherwise.

        TVM's kernels assume the alignment of TVM's own allocations (64 bytes): handing
        them a view of a less aligned numpy array crashes with vector loads, so only an
        aligned, contiguous, writeable array is shared (see `aligned`).
        """
        import tvm
        import tvm_ffi

        if self._cpu and is_aligned(array):
            return tvm_ffi.from_dlpack(array)
        return tvm.runtime.tensor(array, self.device)

    def _to_numpy(self, value) -> np.ndarray:
        # On the CPU the output is TVM-allocated: a DLPack view keeps it alive without a copy.
        return np.from_dlpack(value) if self._cpu else value.numpy()
