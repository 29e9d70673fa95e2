import json

import numpy as np
import onnxruntime as ort
import pytest

from dlc.artifact import Artifact, sha256_file
from dlc.errors import ArtifactIntegrityError
from dlc.runtime.backends import open_session
from tests.conftest import assert_one_line_error, invoke


def test_manifest_records_versions_target_specs_and_hashes(artifact, onnx_model):
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["format"] == "dlc-artifact"
    assert {"dlc", "tvm", "tvm_ffi", "onnx", "onnxruntime"} <= set(manifest["versions"])
    assert manifest["target"]["tvm"]["kind"] == "llvm" and manifest["target"]["tvm"]["mcpu"]
    assert manifest["target"]["tvm"]["mcpu"] != "native"
    assert manifest["inputs"] == [{"name": "input", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    assert manifest["outputs"] == [{"name": "logits", "shape": [1, 10], "dtype": "float32"}]
    assert manifest["source_onnx_sha256"] == sha256_file(onnx_model)
    for entry in manifest["files"].values():
        assert sha256_file(artifact / entry["path"]) == entry["sha256"]


def test_artifact_matches_onnxruntime_within_1e_4(artifact, onnx_model):
    from dlc.training.data import load_dataset

    session = open_session("tvm", artifact)
    reference = ort.InferenceSession(str(onnx_model))
    for image in load_dataset("digits").x_test[:20]:
        feed = {"input": image[None]}
        got = session.run(feed)["logits"]
        want = reference.run(None, feed)[0]
        assert np.abs(got - want).max() <= 1e-4
    golden_in, golden_out = Artifact.load(artifact).golden()
    np.testing.assert_allclose(session.run(golden_in)["logits"], golden_out["logits"], atol=1e-4)


def test_shape_option_compiles_another_batch(runner, onnx_model, tmp_path):
    out = tmp_path / "b8.dlc"
    result = invoke(runner, "compile", onnx_model, "-o", out, "--shape", "input=8,1,8,8")
    assert result.exit_code == 0, result.output
    session = open_session("tvm", out)
    assert session.run({"input": np.zeros((8, 1, 8, 8), np.float32)})["logits"].shape == (8, 10)


def test_tampered_library_is_refused_before_loading(runner, artifact, tmp_path):
    import shutil

    copy = tmp_path / "tampered.dlc"
    shutil.copytree(artifact, copy)
    with open(copy / "model.so", "r+b") as f:
        f.seek(200)
        f.write(b"\x90\x90\x90\x90")
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        open_session("tvm", copy)
    result = invoke(runner, "bench", copy, "--runs", "1")
    assert_one_line_error(result, "model.so", "sha256")


def test_missing_file(runner, tmp_path):
    result = invoke(runner, "compile", tmp_path / "absent.onnx")
    assert_one_line_error(result, "absent.onnx", "not found")


def test_file_that_is_not_onnx(runner, tmp_path):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x00\x01GIF89a definitely not protobuf \xff" * 10)
    result = invoke(runner, "compile", junk, "-o", tmp_path / "junk.dlc")
    assert_one_line_error(result, "not an ONNX model")
    assert not (tmp_path / "junk.dlc").exists()


def test_unsupported_ops_are_all_named_before_compiling(runner, unsupported_onnx, tmp_path):
    out = tmp_path / "gaps.dlc"
    result = invoke(runner, "compile", unsupported_onnx, "-o", out)
    assert_one_line_error(result, "2 op type(s)", "Det (stats/det)", "LSTM (encoder/lstm)",
                          "static sequence length", "dlc doctor")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary directory left either


def test_recurrent_model_compiles_after_lowering(runner, lstm_onnx, tmp_path):
    out = tmp_path / "lstm.dlc"
    result = invoke(runner, "compile", lstm_onnx, "-o", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lowered"]["ops"] == {"lstm": 1} and manifest["lowered"]["max_abs_diff"] <= 1e-5
    x = np.random.default_rng(0).normal(size=(5, 1, 3)).astype(np.float32)
    want = ort.InferenceSession(str(lstm_onnx)).run(None, {"x": x})[0]
    np.testing.assert_allclose(open_session("tvm", out).run({"x": x})["out"], want, atol=1e-5)


def test_shape_for_an_unknown_input(runner, onnx_model, tmp_path):
    result = invoke(runner, "compile", onnx_model, "-o", tmp_path / "x.dlc", "--shape", "image=1,1,8,8")
    assert_one_line_error(result, "image", "input")


def test_shape_with_wrong_rank(runner, onnx_model, tmp_path):
    result = invoke(runner, "compile", onnx_model, "-o", tmp_path / "x.dlc", "--shape", "input=1,64")
    assert_one_line_error(result, "input", "rank")


def test_unknown_target_lists_presets(runner, onnx_model, tmp_path):
    result = invoke(runner, "compile", onnx_model, "-o", tmp_path / "x.dlc", "--target", "raspberry-pi-9")
    assert_one_line_error(result, "raspberry-pi-9", "host")


def test_existing_artifact_needs_force(runner, onnx_model, artifact):
    before = (artifact / "manifest.json").read_text()
    result = invoke(runner, "compile", onnx_model, "-o", artifact)
    assert_one_line_error(result, "--force")
    assert (artifact / "manifest.json").read_text() == before


def test_force_replaces_an_artifact_whole(runner, onnx_model, tmp_path):
    out = tmp_path / "twice.dlc"
    assert invoke(runner, "compile", onnx_model, "-o", out).exit_code == 0
    (out / "stray.txt").write_text("from an older build")
    assert invoke(runner, "compile", onnx_model, "-o", out, "--force").exit_code == 0
    assert not (out / "stray.txt").exists()
    Artifact.load(out)


def test_an_artifact_from_before_the_restructure_still_loads_and_runs(artifact, tmp_path):
    """Manifests written before the target gained num-cores and the manifest its schedules and reasons."""
    import json
    import shutil

    old = tmp_path / "old.dlc"
    shutil.copytree(artifact, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for key in ("schedules", "lowered"):
        manifest.pop(key, None)
    manifest["verification"].pop("not_verified_because", None)
    manifest["target"]["tvm"].pop("num-cores", None)
    (old / "manifest.json").write_text(json.dumps(manifest))
    golden_in, golden_out = Artifact.load(old).golden()
    got = open_session("tvm", old).run(golden_in)
    np.testing.assert_allclose(got["logits"], golden_out["logits"], atol=1e-4)
