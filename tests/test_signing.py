"""Signed artifacts: keygen, compile --sign, sign, verify, and --trust refusing what the key did not sign."""

from __future__ import annotations

import json
import shutil
import stat

import pytest

from dlc.artifact import Artifact
from dlc.errors import ArtifactIntegrityError
from tests.conftest import assert_one_line_error, invoke, run_dlc


@pytest.fixture(scope="module")
def keys(tmp_path_factory, runner):
    folder = tmp_path_factory.mktemp("keys")
    for name in ("ours", "theirs"):
        result = invoke(runner, "keygen", "-o", folder / name)
        assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def signed(tmp_path_factory, runner, onnx_model, keys):
    out = tmp_path_factory.mktemp("signed") / "cnn.dlc"
    result = invoke(runner, "compile", onnx_model, "-o", out, "--sign", keys / "ours")
    assert result.exit_code == 0 and "signed with" in result.stdout, result.output
    return out


def test_keygen_keeps_the_private_key_to_its_owner(keys):
    assert stat.S_IMODE((keys / "ours").stat().st_mode) == 0o600
    assert (keys / "ours.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_a_signed_artifact_verifies_and_loads_with_trust(runner, signed, keys):
    result = invoke(runner, "verify", signed, "--trust", keys / "ours.pub")
    assert result.exit_code == 0 and "signed by the key" in result.stdout, result.output
    assert Artifact.load(signed, trust=keys / "ours.pub").name == "cnn"


@pytest.mark.parametrize("change", ["unsigned", "other key", "manifest edited", "library swapped"])
def test_trust_refuses_what_the_key_did_not_sign(runner, signed, keys, tmp_path, change):
    import hashlib

    copy = tmp_path / "copy.dlc"
    shutil.copytree(signed, copy)
    if change == "unsigned":
        (copy / "signature.json").unlink()
    elif change == "other key":
        assert invoke(runner, "sign", copy, "--key", keys / "theirs").exit_code == 0
    elif change == "manifest edited":
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["name"] = "renamed"
        (copy / "manifest.json").write_text(json.dumps(manifest))
    else:  # a new library, its hash written into the manifest: the hashes pass, the signature does not
        (copy / "model.so").write_bytes((copy / "model.so").read_bytes() + b"\0")
        manifest = json.loads((copy / "manifest.json").read_text())
        manifest["files"]["library"]["sha256"] = hashlib.sha256((copy / "model.so").read_bytes()).hexdigest()
        (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match="not signed"):
        Artifact.load(copy, trust=keys / "ours.pub")
    assert_one_line_error(invoke(runner, "verify", copy, "--trust", keys / "ours.pub"), "not signed")
    assert_one_line_error(invoke(runner, "bench", copy, "--backends", "tvm", "--trust", keys / "ours.pub"),
                          "not signed")


def test_serve_with_trust_serves_the_signed_artifact_and_refuses_the_unsigned(signed, artifact, keys, tmp_path):
    from tests.runtime.test_serve import _request, serving

    shutil.copytree(signed, tmp_path / "signed" / "1" / "model.dlc")
    shutil.copytree(artifact, tmp_path / "unsigned" / "1" / "model.dlc")
    with serving(tmp_path, "--trust", keys / "ours.pub") as url:
        status, body = _request(url, "/v2/models/unsigned")
        assert status == 503 and "is not signed" in body["error"], body
        request = {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.5] * 64}]}
        status, answer = _request(url, "/v2/models/signed/infer", json.dumps(request).encode())
        assert status == 200 and answer["outputs"][0]["shape"] == [1, 10]


def test_a_trust_file_that_is_not_a_public_key_is_one_error_line(signed, keys, tmp_path):
    assert_one_line_error(run_dlc("serve", signed, "--trust", keys / "ours"), "not a PEM public key")
    assert_one_line_error(run_dlc("verify", signed, "--trust", tmp_path / "missing.pub"), "key not found")
