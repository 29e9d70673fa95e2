"""Tiny models from ONNX text, and the check every pass test makes: checker + same outputs on ORT."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx.parser
import onnx_ir as ir
import onnxruntime as ort

from dlc.onnxio import io_specs
from dlc.specs import random_inputs


def parse(text: str, **initializers: np.ndarray) -> onnx.ModelProto:
    """An ONNX model from onnx.parser text, with numpy arrays appended as initializers."""
    model = onnx.parser.parse_model(text)
    for name, array in initializers.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(array), name))
    onnx.checker.check_model(model, full_check=True)
    return model


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = {i.name: feed[i.name].astype(np.float16 if i.type == "tensor(float16)" else feed[i.name].dtype)
              for i in session.get_inputs()}
    return session.run(None, inputs)


def apply(pass_, model: onnx.ModelProto, atol: float = 1e-5, rtol: float = 1e-5):
    """Runs `pass_` on `model`; asserts the result passes the full checker and matches on ONNX Runtime."""
    feed = random_inputs(io_specs(model)[0], seed=1, batch=2)
    feed = {k: v * 4 - 2 if v.dtype.kind == "f" else v for k, v in feed.items()}  # signed values
    before = run(model, feed)
    result = pass_(ir.serde.deserialize_model(model))
    out = ir.serde.serialize_model(result.model)
    onnx.checker.check_model(out, full_check=True)
    for want, got in zip(before, run(out, feed)):
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), atol=atol, rtol=rtol)
    return out, result


def ops(model: onnx.ModelProto) -> collections.Counter:
    return collections.Counter(n.op_type for n in model.graph.node)


def bn_params(channels: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Non-trivial batch-norm statistics, so a wrong fold shows in the outputs."""
    rng = np.random.default_rng(seed)
    return {"gamma": rng.uniform(0.5, 1.5, channels).astype(np.float32),
            "beta": rng.normal(size=channels).astype(np.float32),
            "mean": rng.normal(size=channels).astype(np.float32),
            "var": rng.uniform(0.5, 2.0, channels).astype(np.float32)}


def weights(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)
