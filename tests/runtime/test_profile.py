"""`dlc profile`: per-kernel times mapped to ONNX nodes, on the host's roofline, with ONNX Runtime's beside them."""

import json
from collections import Counter

import onnx
import pytest

from dlc.analysis.inspect import inspect_model
from dlc.artifact import Artifact
from dlc.runtime.profile import kernel_times
from tests.conftest import assert_one_line_error, invoke


def test_every_kernel_that_computes_is_timed(artifact):
    kernels = Artifact.load(artifact).manifest["schedules"]["per_kernel"]
    times = kernel_times(artifact, runs=5, warmup=1)
    # VM built-ins (allocation, shape checks) are not kernels; a transpose the VM turned into a reshape is not called
    assert set(times) <= {k["name"] for k in kernels}
    assert {k["name"] for k in kernels if k["flops"] > 0} <= set(times)
    assert all(t["ms"] > 0 and t["calls"] == 1 for t in times.values())  # this CNN calls each kernel once


@pytest.fixture(scope="module")
def zoo_resnet(tmp_path_factory, runner):
    """The zoo ResNet (untrained: times do not depend on weights) at 1x1x32x32, and its host artifact."""
    from dlc.exporters.pytorch import export_checkpoint
    from dlc.training import checkpoint

    work = tmp_path_factory.mktemp("resnet")
    export_checkpoint(checkpoint.untrained("resnet", {"input_shape": [1, 32, 32]}), work / "resnet.onnx")
    result = invoke(runner, "compile", work / "resnet.onnx", "-o", work / "resnet.dlc")
    assert result.exit_code == 0, result.output
    return work / "resnet.onnx", work / "resnet.dlc"


def check_kernel_map(profile: dict, onnx_path) -> None:
    """Every ONNX node is computed by exactly one kernel, or (a Reshape) runs as a view, and the kernels' FLOPs are
    the model's."""
    nodes = {n.name: n.op_type for n in onnx.load(str(onnx_path)).graph.node}
    placed = Counter(n for k in profile["kernels"] for n in k["nodes"])
    assert set(placed.values()) == {1}
    assert sorted([*placed, *profile["nodes_without_kernel"]]) == sorted(nodes)
    assert {nodes[n] for n in profile["nodes_without_kernel"]} <= {"Reshape", "Flatten"}
    flops = inspect_model(onnx_path).flops
    assert sum(k["flops"] for k in profile["kernels"]) == flops


def test_resnet_on_the_host_kernels_sum_to_the_whole_and_hold_every_node_once(runner, zoo_resnet, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    onnx_path, artifact = zoo_resnet
    report = tmp_path / "profile.json"
    result = invoke(runner, "profile", artifact, "--runs", "40", "--report", report, "--top", "5")
    assert result.exit_code == 0, result.output
    profile = json.loads(report.read_text())
    check_kernel_map(profile, onnx_path)
    assert 0.85 <= profile["kernel_sum_vs_e2e"] <= 1.15, profile["kernel_sum_vs_e2e"]
    assert profile["e2e_ms"]["n"] == 40 and profile["device"]["cpu"]
    convs = [k for k in profile["kernels"] if "Conv" in k["ops"]]
    assert convs and all(k["gflops"] > 0 and k["intensity"] > 0 and k["attainable_gflops"] > 0 for k in convs)
    assert set(profile["furthest_below_roofline"]) <= {k["name"] for k in profile["kernels"]}
    ort = profile["onnxruntime"]
    assert {n["op"] for n in ort["nodes"]} >= {"Conv", "Gemm"}
    assert any(k["onnxruntime_ms"] for k in convs)  # ORT's NCHWc convs named after their outputs, matched back
    shown = " ".join(result.output.split())  # a narrow terminal (COLUMNS) wraps the lines under the table
    assert "fused_conv2d" in shown and "Conv+Add+Relu" in shown and "roofline" in shown


def test_a_kernel_that_serves_two_identical_layers_maps_each_call_to_its_own_nodes(runner, tmp_path):
    """MobileNet's two identical blocks share one fused kernel: its nodes come from both call sites."""
    from dlc.exporters.pytorch import export_checkpoint
    from dlc.training import checkpoint

    export_checkpoint(checkpoint.untrained("mobilenet", {}), tmp_path / "m.onnx")
    assert invoke(runner, "compile", tmp_path / "m.onnx", "-o", tmp_path / "m.dlc").exit_code == 0
    schedules = Artifact.load(tmp_path / "m.dlc").manifest["schedules"]
    shared = [k for k in schedules["per_kernel"] if k["calls"] > 1]
    assert shared and all(len(k["nodes"]) % k["calls"] == 0 and len(k["nodes"]) >= 2 * k["calls"] for k in shared)
    profile = {"kernels": [{"nodes": k["nodes"], "flops": 0} for k in schedules["per_kernel"]],
               "nodes_without_kernel": schedules["nodes_without_kernel"]}
    nodes = [n.name for n in onnx.load(str(tmp_path / "m.onnx")).graph.node]
    placed = Counter(n for k in profile["kernels"] for n in k["nodes"])
    assert schedules["nodes_without_kernel"] == {} and sorted(placed) == sorted(nodes) and set(placed.values()) == {1}


def test_bad_profile_requests_are_refused_in_one_line(runner, artifact, tmp_path):
    assert_one_line_error(invoke(runner, "profile", tmp_path / "nothing.dlc"), "artifact not found")
    (tmp_path / "model.onnx").write_bytes(b"")
    assert_one_line_error(invoke(runner, "profile", tmp_path / "model.onnx"), "is a file, not an artifact")
    (tmp_path / "mine.json").write_text("mine")
    assert_one_line_error(invoke(runner, "profile", artifact, "--report", tmp_path / "mine.json"), "already exists")
    assert (tmp_path / "mine.json").read_text() == "mine"
    assert_one_line_error(invoke(runner, "profile", artifact, "--report", "/dev/null", "--force"),
                          "not a regular file")
    assert_one_line_error(invoke(runner, "profile", artifact, "--rpc", "127.0.0.1:70000"), "65535")
    assert_one_line_error(invoke(runner, "profile", artifact, "--key", "pi"), "--rpc")
    assert_one_line_error(invoke(runner, "profile", artifact, "--rpc", "nowhere"), "HOST:PORT")
    assert_one_line_error(invoke(runner, "profile", artifact, "--rpc", "127.0.0.1:1", "--no-roofline"),
                          "no kernels library")
    # an artifact compiled before dlc recorded its kernel map
    old = tmp_path / "old.dlc"
    import shutil

    shutil.copytree(artifact, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["schedules"]["nodes_without_kernel"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(invoke(runner, "profile", old, "--no-roofline"), "recompile it")


@pytest.mark.emulated
def test_resnet_on_the_emulated_pi_kernels_sum_to_the_whole_and_hold_every_node_once(runner, zoo_resnet, board,
                                                                                      tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    onnx_path, _ = zoo_resnet
    pi = tmp_path / "resnet-pi4.dlc"
    assert invoke(runner, "compile", onnx_path, "-o", pi, "--target", "raspberry-pi-4").exit_code == 0
    assert (pi / "kernels.so").is_file()
    report = tmp_path / "pi.json"
    result = invoke(runner, "profile", pi, "--rpc", board.address, "--key", board.key, "--runs", "10",
                    "--report", report)
    assert result.exit_code == 0, result.output
    profile = json.loads(report.read_text())
    check_kernel_map(profile, onnx_path)
    assert 0.85 <= profile["kernel_sum_vs_e2e"] <= 1.15, profile["kernel_sum_vs_e2e"]
    assert profile["device"]["arch"] == "aarch64" and "onnxruntime" not in profile
    assert profile["peak"]["threads"] == 4 and profile["peak"]["gflops"] > 0  # measured on the board, over RPC
    assert profile["furthest_below_roofline"]
