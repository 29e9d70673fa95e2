"""Sessions: one `run(inputs) -> outputs` interface over every backend.

Bench, profile, serve and deploy only talk to this interface, so any backend can be
measured or served side by side with any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from dlc.specs import TensorSpec, check_inputs


class Session(Protocol):
    backend: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OrtSession:
    """ONNX Runtime on the CPU execution provider, all graph optimizations on.

    With `fuse_quantized=False`, only the basic optimizations: a QDQ model then runs as it
    reads (Dequantize, the float op, Quantize), which is its meaning. Fused, ONNX Runtime
    runs it with its own u8s8 kernels, which on x86 CPUs without VNNI multiply-add byte pairs
    with vpmaddubsw and saturate the int16 sums (why its quantizer offers `reduce_range`):
    the digits CNN's logits moved by 0.21 on an AVX2-only EPYC, where the unfused graph and
    TVM's integer kernels agree exactly. dlc checks its int8 builds against the unfused graph.
    """

    backend = "onnxruntime"

    def __init__(self, model_path: str | Path, threads: int | None = None, fuse_quantized: bool = True):
        import onnxruntime as ort

        from dlc.onnxio import io_specs, load_model

        self.inputs, self.outputs = io_specs(load_model(model_path))
        options = ort.SessionOptions()
        if not fuse_quantized:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
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

        from dlc.training import checkpoint

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
