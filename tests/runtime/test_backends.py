"""The backend registry: one table decides what each backend opens, benchmarks and serves."""

from pathlib import Path

import pytest

from dlc.errors import BackendUnavailableError, UnknownNameError
from dlc.runtime.backends import BACKENDS, default_backends, open_session, serving_backend


def test_the_default_benchmark_needs_a_checkpoint_for_pytorch():
    assert default_backends(has_checkpoint=False) == ("tvm", "onnxruntime")
    assert default_backends(has_checkpoint=True) == ("tvm", "onnxruntime", "pytorch")


def test_serve_picks_the_backend_by_file_kind():
    assert serving_backend(Path("m.dlc")) == "tvm" and serving_backend(Path("m.onnx")) == "onnxruntime"
    assert serving_backend(Path("m.pt")) is None


def test_unknown_backend_lists_the_known_ones(onnx_model):
    with pytest.raises(UnknownNameError, match=", ".join(BACKENDS)):
        open_session("tensorrt", onnx_model)


def test_tvm_runs_artifacts_and_says_how_to_get_one_from_an_onnx_file(onnx_model, artifact):
    with pytest.raises(BackendUnavailableError, match="dlc compile"):
        open_session("tvm", onnx_model)
    assert open_session("tvm", artifact).backend == "tvm"
