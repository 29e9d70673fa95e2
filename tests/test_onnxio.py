"""Reading and writing ONNX files: external data in the model's folder only, and past 2 GB written beside it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlc.errors import InvalidModelError
from dlc.onnxio import load_model, save_model, staged_model
from dlc.runtime.session import OrtSession


def _matmul(weight: np.ndarray):
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight.shape[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weight.shape[1]])],
                              [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_a_model_past_the_limit_is_written_with_its_weights_in_a_data_file_beside_it(tmp_path):
    weight = np.random.default_rng(0).random((64, 32), dtype=np.float32)
    with staged_model(tmp_path / "m.onnx") as staged:
        save_model(_matmul(weight), staged, limit=1000)  # the 2 GB limit, scaled down
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    assert (tmp_path / "m.onnx").stat().st_size < 1000 <= (tmp_path / "m.onnx.data").stat().st_size
    x = np.ones((1, 64), np.float32)
    load_model(tmp_path / "m.onnx")  # the checker accepts it
    np.testing.assert_allclose(OrtSession(tmp_path / "m.onnx").run({"x": x})["y"], x @ weight, rtol=1e-5)


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), staged_model(tmp_path / "m.onnx") as staged:
        save_model(_matmul(np.ones((4, 4), np.float32)), staged, limit=10)
        raise RuntimeError("a verification failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("location, fragment", [("../w.bin", "outside the model's folder"),
                                                ("/etc/passwd", "outside the model's folder"),
                                                ("link.bin", "outside the model's folder"),
                                                ("gone.bin", "gone.bin, which is missing")])
def test_external_data_outside_the_folder_or_missing_is_refused_before_it_is_read(tmp_path, location, fragment):
    (tmp_path / "link.bin").symlink_to("/etc/hostname")
    model = _matmul(np.ones((4, 4), np.float32))
    weight = model.graph.initializer[0]
    onnx.external_data_helper.set_external_data(weight, location=location, offset=0, length=64)
    weight.data_location, weight.raw_data = TensorProto.EXTERNAL, b""
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString())  # onnx.save would write the data file
    with pytest.raises(InvalidModelError, match=fragment):
        load_model(tmp_path / "m.onnx")


def test_an_artifact_of_a_model_past_the_limit_keeps_its_weights_in_a_hashed_data_file(tmp_path, monkeypatch):
    import dlc.onnxio
    from dlc.artifact import Artifact
    from dlc.compiler.build import compile_model
    from dlc.errors import ArtifactIntegrityError

    weight = np.random.default_rng(1).random((64, 32), dtype=np.float32)
    with staged_model(tmp_path / "m.onnx") as staged:
        save_model(_matmul(weight), staged, limit=1000)  # as torch.onnx.export writes it
    monkeypatch.setattr(dlc.onnxio, "PROTOBUF_LIMIT", 1000)  # the 2 GB limit, scaled down
    report = compile_model(tmp_path / "m.onnx", tmp_path / "m.dlc")
    assert report.max_abs_diff < 1e-4
    artifact = Artifact.load(tmp_path / "m.dlc")
    assert artifact.manifest["files"]["onnx_data"]["path"] == "model.onnx.data"
    x = np.ones((1, 64), np.float32)
    np.testing.assert_allclose(OrtSession(artifact.onnx_path).run({"x": x})["y"], x @ weight, rtol=1e-5)
    (tmp_path / "m.dlc" / "model.onnx.data").write_bytes(b"\0" * 8192)
    with pytest.raises(ArtifactIntegrityError, match="model.onnx.data does not match"):
        Artifact.load(tmp_path / "m.dlc")
