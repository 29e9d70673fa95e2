"""Every zoo model: a few training steps → ONNX export (dynamic batch) → TVM compile (default schedules on
every kernel) → equal to ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from dlc import zoo
from dlc.compiler.build import CompileConfig, TuningOptions, compile_model
from dlc.exporters.pytorch import ExportConfig, export_checkpoint
from dlc.runtime.backends import open_session
from dlc.runtime.session import OrtSession
from dlc.specs import random_inputs
from dlc.training import TrainConfig, train


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.names())
def test_train_export_compile_matches_onnxruntime(name, tmp_path):
    result = train(TrainConfig(model=name, epochs=1, max_steps=3))
    onnx_path = export_checkpoint(result.checkpoint, tmp_path / f"{name}.onnx", ExportConfig(dynamic_batch=True)).path
    report = compile_model(onnx_path, tmp_path / f"{name}.dlc",
                           CompileConfig(tuning=TuningOptions(database=tmp_path / "no-tuning")))
    assert report.max_abs_diff is not None and report.max_abs_diff <= zoo.get(name).tolerance
    # the default schedules reached every kernel that computes
    assert report.schedules["kernels"].get("none", 0) == 0 and report.schedules["scheduled_flops_share"] >= 0.9

    reference = OrtSession(onnx_path)
    feed = random_inputs(reference.inputs, seed=5)
    want = reference.run(feed)
    got = open_session("tvm", tmp_path / f"{name}.dlc").run(feed)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=zoo.get(name).tolerance, rtol=1e-4)
