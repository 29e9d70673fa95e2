"""Deploying to the emulated Raspberry Pi 4 over TVM RPC: directly and through a tracker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from dlc.artifact import Artifact
from dlc.errors import DeviceError
from dlc.runtime.backends import open_session
from dlc.runtime.deploy import DeployConfig, deploy
from tests.conftest import assert_one_line_error, free_port, invoke, require_emulation, run_dlc

pytestmark = pytest.mark.emulated


@pytest.fixture(scope="module")
def pi_artifact(runner, onnx_model, tmp_path_factory):
    require_emulation()
    out = tmp_path_factory.mktemp("pi") / "cnn-pi4.dlc"
    assert invoke(runner, "compile", onnx_model, "-o", out, "--target", "raspberry-pi-4").exit_code == 0
    return out


def test_pi4_artifact_on_the_emulated_board_matches_the_host(runner, board, pi_artifact, artifact, tmp_path):
    report_path = tmp_path / "deploy.json"
    result = invoke(runner, "deploy", pi_artifact, "--rpc", board.address, "--key", board.key,
                    "--number", "3", "--repeat", "2", "--report", report_path)
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["device"]["arch"] == "aarch64" and report["device"]["cpu"] == "cortex-a72"
    schedules = Artifact.load(pi_artifact).manifest["schedules"]  # the default schedules, at NEON's width
    assert schedules["kernels"].get("none", 0) == 0 and schedules["scheduled_flops_share"] >= 0.9
    assert report["max_abs_diff"] <= 1e-4 and report["latency_ms"]["mean"] > 0
    # The same golden inputs through the host's own TVM build give the same numbers.
    golden_in, _ = Artifact.load(pi_artifact).golden()
    remote = deploy(pi_artifact, DeployConfig(rpc=board.address, key=board.key, number=1, repeat=1))
    host = open_session("tvm", artifact).run(golden_in)
    np.testing.assert_allclose(remote.outputs["logits"], host["logits"], atol=1e-4)


def test_wrong_architecture_is_refused_before_upload(runner, board, onnx_model, tmp_path):
    if not shutil.which("arm-linux-gnueabihf-gcc"):
        pytest.skip("arm-linux-gnueabihf-gcc is not installed (run ./scripts/setup-edge)")
    armv7 = tmp_path / "cnn-armv7.dlc"
    assert invoke(runner, "compile", onnx_model, "-o", armv7, "--target", "armv7").exit_code == 0
    result = invoke(runner, "deploy", armv7, "--rpc", board.address, "--key", board.key)
    assert_one_line_error(result, "built for armv7l", "device is aarch64", "nothing was uploaded")


@pytest.fixture(scope="module")
def fleet():
    """TVM's RPC tracker with one emulated Pi 4 registered under the key rpi4-fleet."""
    require_emulation()
    from dlc.runtime.board import start_board

    port = free_port()
    tracker = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                "--port", str(port), "--port-end", str(port + 1)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(3)
        with start_board("raspberry-pi-4", port=free_port(), key="rpi4-fleet", tracker=f"127.0.0.1:{port}"):
            time.sleep(2)  # the server registers with the tracker after it starts listening
            yield f"127.0.0.1:{port}", "rpi4-fleet"
    finally:  # the tracker serves from a TVM popen worker of its own: end the whole group
        os.killpg(tracker.pid, signal.SIGTERM)
        tracker.wait(10)


def test_through_the_rpc_tracker(pi_artifact, fleet):
    tracker, key = fleet
    report = deploy(pi_artifact, DeployConfig(tracker=tracker, key=key, number=2, repeat=1))
    assert report.device["arch"] == "aarch64" and report.max_abs_diff <= 1e-4


@pytest.mark.slow
def test_tuning_measures_on_the_device_through_the_tracker(runner, fleet, tmp_path):
    """Candidates are cross-linked here and timed on the emulated Pi; the records then build a Pi artifact."""
    from dlc.compiler import tuning

    tracker, key = fleet
    model = tmp_path / "mlp.onnx"
    assert invoke(runner, "export", "mlp", "-o", model, "--arg", "hidden=[16]").exit_code == 0
    database = tmp_path / "pi-db"
    # A process of its own, as a user runs it: MetaSchedule keeps global state between runs.
    proc = run_dlc("tune", model, "--target", "raspberry-pi-4", "--trials", "6", "--tuning-db", database,
                   "--tracker", tracker, "--key", key)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (database / tuning.RECORDS).read_text().splitlines()]
    assert len(records) >= 6
    measured = [r for r in records if r[1][1] and min(r[1][1]) < 1e9]  # run_secs of successful runs
    assert measured, "no candidate ran on the device"
    out = tmp_path / "pi.dlc"
    result = invoke(runner, "compile", model, "-o", out, "--target", "raspberry-pi-4", "--tuning-db", database)
    assert result.exit_code == 0 and "0 trials run now" in result.stdout, result.output


def test_unreachable_device_is_a_clear_error_after_retries(runner, artifact):
    start = time.monotonic()
    result = invoke(runner, "deploy", artifact, "--rpc", f"127.0.0.1:{free_port()}", "--retries", "1")
    assert_one_line_error(result, "cannot reach", "gave up after 2 attempts", "dlc device emulate")
    assert time.monotonic() - start < 60


def test_silent_device_times_out_instead_of_hanging(artifact):
    """A peer that accepts the connection and never answers: the deadline ends each attempt."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    start = time.monotonic()
    with pytest.raises(DeviceError, match="did not finish within 3 s"):
        deploy(artifact, DeployConfig(rpc=f"127.0.0.1:{listener.getsockname()[1]}", timeout=3, retries=0))
    assert time.monotonic() - start < 15
    listener.close()


def test_rpc_address_must_be_host_port(runner, artifact):
    assert_one_line_error(invoke(runner, "deploy", artifact, "--rpc", "raspberrypi.local"), "HOST:PORT")


def test_exactly_one_device_address(runner, artifact):
    assert_one_line_error(invoke(runner, "deploy", artifact), "--rpc", "--tracker")


def test_bench_puts_host_and_device_side_by_side(runner, board, pi_artifact, artifact, tmp_path):
    report_path = tmp_path / "side.json"
    result = invoke(runner, "bench", artifact, "--remote", pi_artifact, "--rpc", board.address, "--key", board.key,
                    "--runs", "20", "--report", report_path)
    assert result.exit_code == 0, result.output
    rows = {r["backend"]: r for r in json.loads(report_path.read_text())["results"]}
    assert set(rows) == {"tvm", "onnxruntime", "tvm@raspberry-pi-4"}
    device = rows["tvm@raspberry-pi-4"]
    assert device["peak_rss_mb"] is None and device["latency_ms"]["p50"] > 0
    assert device["max_abs_diff"] <= 1e-4  # same golden inputs, compared with ONNX Runtime on the host
    assert "tvm@raspberry-pi-4" in result.stdout


def test_a_dynamic_artifact_is_verified_on_the_board_at_every_size(board, tmp_path):
    """Cross-compiled with symbolic dims, checked on the emulated Pi at each size it was verified at here."""
    import torch

    import dlc

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    dlc.export(model, torch.randn(2, 5, 6), tmp_path / "m.onnx", dynamic={"input": {0: "batch", 1: "seq"}})
    out = tmp_path / "m-pi4.dlc"
    compiled = run_dlc("compile", tmp_path / "m.onnx", "-o", out, "--target", "raspberry-pi-4", "--dynamic",
                       "--max-shape", "batch=4", "--max-shape", "seq=32")
    assert compiled.returncode == 0, compiled.stderr
    assert len(Artifact.load(out).golden_cases()) == 3
    report = deploy(out, DeployConfig(rpc=board.address, key=board.key, number=1, repeat=1))
    assert report.max_abs_diff <= 1e-4


def test_an_int8_artifact_runs_on_the_board_and_matches(runner, board, onnx_model, trained_checkpoint, tmp_path):
    """Static int8, cross-compiled: integer kernels on the emulated Pi, equal to ONNX Runtime's int8 within a step."""
    import onnx

    from dlc.compiler.build import output_quantization_step

    assert invoke(runner, "quantize", onnx_model, "--checkpoint", trained_checkpoint, "-o",
                  tmp_path / "q.onnx").exit_code == 0
    out = tmp_path / "q-pi4.dlc"
    compiled = invoke(runner, "compile", tmp_path / "q.onnx", "-o", out, "--target", "raspberry-pi-4")
    assert compiled.exit_code == 0, compiled.output
    manifest = Artifact.load(out).manifest
    arithmetic = manifest["schedules"]["arithmetic"]  # two convolutions, two Gemms, in integers
    assert sum(arithmetic.values()) == 4 and set(arithmetic) <= {"int8", "int16"}
    step = output_quantization_step(onnx.load(tmp_path / "q.onnx"))
    report = deploy(out, DeployConfig(rpc=board.address, key=board.key, number=1, repeat=1))
    assert 0 < step and report.max_abs_diff <= step * 1.001  # the CNN's integer kernels: within one step


def test_prune_times_both_models_on_the_board(runner, board, onnx_model, tmp_path):
    """`dlc prune --backend tvm --target raspberry-pi-4 --rpc`: the latency gate measured on the emulated Pi."""
    result = invoke(runner, "prune", onnx_model, "--backend", "tvm", "--target", "raspberry-pi-4", "--rpc",
                    board.address, "--key", board.key, "--runs", "10", "--min-speedup", "0.01", "-o",
                    tmp_path / "small.onnx")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "small.prune.json").read_text())
    for side in ("before", "after"):
        assert report[side]["latency_ms"]["backend"] == "tvm@raspberry-pi-4" and report[side]["latency_ms"]["p50"] > 0
    assert report["gates"]["min_speedup"]["held"]
    assert_one_line_error(run_dlc("prune", str(onnx_model), "--target", "raspberry-pi-4", "-o",
                                  str(tmp_path / "x.onnx")), "add --backend tvm")
