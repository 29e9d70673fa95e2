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


def test_force_replaces_only_an_artifact_never_another_directory(runner, onnx_model, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    result = invoke(runner, "compile", onnx_model, "-o", victim, "--force")
    assert_one_line_error(result, "--force will not replace", "without a dlc manifest")
    assert (victim / "thesis.tex").read_text() == "years of work"
    assert invoke(runner, "compile", onnx_model, "-o", tmp_path / "fine.dlc").exit_code == 0  # a good one still works


def test_force_onto_the_working_directory_is_refused_and_leaves_nothing_behind(onnx_model, tmp_path):
    from tests.conftest import run_dlc

    import json

    (tmp_path / "notes.txt").write_text("keep")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "dlc-artifact"}))  # even one that looks like ours
    result = run_dlc("compile", onnx_model, "-o", ".", "--force", cwd=tmp_path)
    assert_one_line_error(result, "--force will not replace", "the working directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "notes.txt"]


def test_an_output_that_cannot_be_written_fails_before_the_build(runner, onnx_model):
    import time

    start = time.perf_counter()
    assert_one_line_error(invoke(runner, "compile", onnx_model, "-o", "/proc/dlc-test/x.dlc"), "cannot write in")
    assert time.perf_counter() - start < 5  # refused up front, not after building


@pytest.mark.parametrize("path", ["/tmp/evil.so", "../evil.so", "sub/../../evil.so", "link"])
def test_a_manifest_path_outside_the_artifact_is_refused_before_loading(artifact, tmp_path, path):
    import shutil

    copy = tmp_path / "copy.dlc"
    shutil.copytree(artifact, copy)
    shutil.copyfile(artifact / "model.so", tmp_path / "evil.so")  # the same bytes: the hash alone would pass
    (copy / "link").symlink_to(tmp_path / "evil.so")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["library"]["path"] = path
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match="outside the artifact"):
        Artifact.load(copy)


def test_a_library_whose_elf_header_differs_from_the_recorded_one_is_refused(artifact, tmp_path):
    import shutil

    copy = tmp_path / "copy.dlc"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["library_elf"]["machine"] = "not-a-machine"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match="ELF header"):
        Artifact.load(copy)


def _matmul_model(folder, **save):
    """y = x @ w, w 4x4, saved to folder/m.onnx (`save`: onnx.save's external-data options)."""
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])], [w])
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), folder / "m.onnx", **save)
    return folder / "m.onnx"


def test_a_model_with_external_data_compiles_into_a_self_contained_artifact(runner, tmp_path):
    source = _matmul_model(tmp_path / "src", save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    out = tmp_path / "ext.dlc"
    result = invoke(runner, "compile", source, "-o", out)
    assert result.exit_code == 0, result.output
    for data in tmp_path.glob("src/*.data"):
        data.unlink()  # the artifact must not need it
    x = np.ones((1, 4), np.float32)
    want = x @ np.arange(16).reshape(4, 4)
    np.testing.assert_allclose(open_session("tvm", out).run({"x": x})["y"], want)
    np.testing.assert_allclose(open_session("onnxruntime", out).run({"x": x})["y"], want)  # its ONNX is whole
    assert not list(out.glob("*.data"))


def test_external_data_outside_the_model_folder_is_a_one_line_error(runner, tmp_path):
    import onnx

    model = onnx.load(_matmul_model(tmp_path / "src"))
    weight = model.graph.initializer[0]
    (tmp_path / "secret.bin").write_bytes(bytes(64))  # it exists: only where it lies is wrong
    onnx.external_data_helper.set_external_data(weight, location="../secret.bin")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.ClearField("raw_data")
    onnx.save(model, tmp_path / "src" / "outside.onnx")
    result = invoke(runner, "compile", tmp_path / "src" / "outside.onnx", "-o", tmp_path / "o.dlc")
    assert_one_line_error(result, "outside the model's folder", "it was not read")
    assert not (tmp_path / "o.dlc").exists()


def test_shapes_whose_golden_inputs_would_be_gigabytes_are_refused_before_the_build(runner, onnx_model, tmp_path):
    result = invoke(runner, "compile", onnx_model, "-o", tmp_path / "huge.dlc", "--shape", "input=100000000,1,8,8")
    assert_one_line_error(result, "the limit is 256 MiB", "--shape")
    assert not (tmp_path / "huge.dlc").exists()


def test_outputs_get_the_umask_permissions_so_another_account_can_read_them(runner, onnx_model, tmp_path):
    import os
    import stat

    previous = os.umask(0o022)
    try:
        out = tmp_path / "shared.dlc"
        assert invoke(runner, "compile", onnx_model, "-o", out).exit_code == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {f.name: stat.S_IMODE(f.stat().st_mode) & 0o666 for f in out.iterdir()} == dict.fromkeys(
        ("golden.npz", "manifest.json", "model.onnx", "model.so"), 0o644)  # the linker makes the library 0755
