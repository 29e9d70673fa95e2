"""A session over a TVM Relax executable: from a verified artifact, or one just built (`dlc.compiler.session`)."""

from __future__ import annotations

import os

import numpy as np

from dlc.specs import ALIGNMENT, TensorSpec, check_inputs, check_sizes
from dlc.target import physical_cores, tvm_device, use_cuda_library


def use_all_cores(threads: int | None = None) -> None:
    """TVM's thread pool gets `threads`, else one thread per physical core unless TVM_NUM_THREADS is set.

    Left alone, TVM assumes two hardware threads per core and halves the count: on a
    2-vCPU machine every parallel loop then ran on one thread, paying the pool's cost for
    nothing (mobilenet 32x32: 0.43 ms instead of 0.18). The pool reads the variable when it
    first starts, on the first parallel call.
    """
    if threads:
        os.environ["TVM_NUM_THREADS"] = str(threads)
    else:
        os.environ.setdefault("TVM_NUM_THREADS", str(physical_cores()))


class TvmSession:
    backend = "tvm"

    def __init__(self, executable, inputs: list[TensorSpec], outputs: list[TensorSpec], device: str = "cpu",
                 bounds: dict[str, int] | None = None):
        from tvm.runtime.vm import VirtualMachine  # not tvm.relax: a runtime-only TVM has no compiler to import

        use_all_cores()
        self.device = tvm_device(device)
        self._cpu = device == "cpu"
        self._vm = VirtualMachine(executable, self.device)
        self._main = self._vm["main"]
        self.inputs, self.outputs = inputs, outputs
        self.bounds = dict(bounds or {})  # a dynamic artifact's upper bound per symbolic dimension

    @classmethod
    def from_artifact(cls, artifact, threads: int | None = None) -> "TvmSession":
        """Opens the compiled library of an artifact whose hashes were already checked."""
        import tvm

        artifact.require_runnable_here()
        use_all_cores(threads)
        if artifact.device == "cuda":
            use_cuda_library(artifact.target.tvm.get("arch", "sm_50"))
        lib = tvm.runtime.load_module(str(artifact.library_path))
        return cls(lib, artifact.inputs, artifact.outputs, artifact.device, artifact.max_shape)

    def time_on_device(self, inputs: dict[str, np.ndarray], number: int, repeat: int) -> list[float]:
        """ms per call of the model with `inputs` already on the device: `repeat` means of `number` calls each
        (TVM's time_evaluator, which waits for the device), without copies in or out."""
        feed = check_inputs(self.inputs, inputs)
        if self.bounds:
            check_sizes(self.inputs, feed, self.bounds)
        args = [self._to_device(feed[s.name]) for s in self.inputs]
        timer = self._vm.time_evaluator("main", self.device, number=number, repeat=repeat)
        return [t * 1000.0 for t in timer(*args).results]

    def instrument(self, hook) -> None:
        """Calls `hook(func, symbol, before, result, *args)` around every VM call (see runtime.profile)."""
        self._vm.set_instrument(hook)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = check_inputs(self.inputs, inputs)
        if self.bounds:
            check_sizes(self.inputs, feed, self.bounds)
        result = self._main(*(self._to_device(feed[s.name]) for s in self.inputs))
        values = [result] if hasattr(result, "numpy") else list(result)
        return {o.name: self._to_numpy(v) for o, v in zip(self.outputs, values)}

    def _to_device(self, array: np.ndarray):
        """Zero-copy for a 64-byte-aligned CPU array; a copy otherwise.

        TVM's kernels assume the alignment of TVM's own allocations (64 bytes): handing
        them a view of a less aligned numpy array crashes with vector loads, so only an
        aligned, writeable array is shared (see `aligned`). DLPack checks the alignment in
        C++ (reading the address from Python costs 2 µs a call) and refuses read-only arrays.
        """
        import tvm
        import tvm_ffi

        if self._cpu:
            try:
                return tvm_ffi.from_dlpack(array, require_alignment=ALIGNMENT)
            except (ValueError, RuntimeError, BufferError, TypeError):  # misaligned, read-only
                pass
        return tvm.runtime.tensor(array, self.device)

    def _to_numpy(self, value) -> np.ndarray:
        # On the CPU the output is TVM-allocated: a DLPack view keeps it alive without a copy.
        return np.from_dlpack(value) if self._cpu else value.numpy()
