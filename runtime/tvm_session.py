"""A session over a TVM Relax executable: from a verified artifact, or one just built (`dlc.compiler.session`)."""

from __future__ import annotations

import os

import numpy as np

from dlc.specs import TensorSpec, check_inputs, is_aligned
from dlc.target import tvm_device


class TvmSession:
    backend = "tvm"

    def __init__(self, executable, inputs: list[TensorSpec], outputs: list[TensorSpec], device: str = "cpu"):
        from tvm import relax

        self.device = tvm_device(device)
        self._cpu = device == "cpu"
        self._vm = relax.VirtualMachine(executable, self.device)
        self._main = self._vm["main"]
        self.inputs, self.outputs = inputs, outputs

    @classmethod
    def from_artifact(cls, artifact, threads: int | None = None) -> "TvmSession":
        """Opens the compiled library of an artifact whose hashes were already checked."""
        import tvm

        artifact.require_runnable_here()
        if threads:  # TVM's thread pool reads this when it first starts, which happens on the first run
            os.environ["TVM_NUM_THREADS"] = str(threads)
        lib = tvm.runtime.load_module(str(artifact.library_path))
        return cls(lib, artifact.inputs, artifact.outputs, artifact.device)

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
