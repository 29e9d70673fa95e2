"""Shared fixtures: one small trained model, its ONNX export and its artifact, built once."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from dlc.cli import app


@pytest.fixture(scope="session")
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    """Runs `dlc ARGS` in-process; returns the click Result."""
    return runner.invoke(app, [str(a) for a in args])


def run_dlc(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m dlc ARGS` as a real process, as a user would (`env` adds to the environment)."""
    return subprocess.run([sys.executable, "-m", "dlc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600, env={**os.environ, **(env or {})})


def ctrl_c_delivered() -> None:
    """A Popen preexec_fn: the child takes SIGINT as a terminal's Ctrl-C would (Python's KeyboardInterrupt).

    A suite started in the background by a non-interactive shell (`bash -c "pytest" &`, nohup)
    hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt: the
    tests that press Ctrl-C reset it so that they test dlc, not how the suite was started.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def processes_marked(marker: str) -> list[str]:
    """Command lines of the live processes whose environment carries DLC_TEST_MARK=`marker`.

    Children inherit the environment, so this finds everything a marked command started,
    even after it was re-parented (an orphan's parent is init, not the command).
    """
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if f"DLC_TEST_MARK={marker}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # not a process, gone meanwhile, or not ours to read
            continue
    return found


_BRANCHES: list[str] = []


@pytest.fixture()
def say_branch(request):
    """For tests whose expectations depend on this machine: records which case ran, shown after the run."""
    return lambda text: _BRANCHES.append(f"{request.node.nodeid}: {text}")


def pytest_terminal_summary(terminalreporter):
    if _BRANCHES:
        terminalreporter.section("host-dependent branches taken on this machine")
        for line in _BRANCHES:
            terminalreporter.write_line(line)


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 1, exactly one line on stderr starting with 'error:', no traceback."""
    stderr = result.stderr
    code = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert code == 1, (code, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr + (result.stdout or "")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_emulation():
    missing = [t for t in ("qemu-aarch64-static", "debootstrap", "aarch64-linux-gnu-gcc") if not shutil.which(t)]
    if missing:
        pytest.skip(f"emulated board needs {', '.join(missing)} (run ./scripts/setup-edge as root)")


@pytest.fixture(scope="session")
def board():
    """One emulated Raspberry Pi 4 serving TVM RPC for the whole session (it takes ~45 s to start)."""
    require_emulation()
    from dlc.runtime.board import start_board

    with start_board("raspberry-pi-4", port=free_port()) as running:
        yield running


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="session")
def trained_checkpoint(workdir, runner) -> Path:
    path = workdir / "cnn.pt"
    result = invoke(runner, "train", "--model", "cnn", "--epochs", "3", "-o", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="session")
def onnx_model(workdir, runner, trained_checkpoint) -> Path:
    path = workdir / "cnn.onnx"
    result = invoke(runner, "export", trained_checkpoint, "-o", path, "--dynamic-batch")
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="session")
def artifact(workdir, runner, onnx_model) -> Path:
    path = workdir / "cnn.dlc"
    result = invoke(runner, "compile", onnx_model, "-o", path)
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="session")
def lstm_onnx(tmp_path_factory) -> Path:
    """A model TVM's ONNX importer cannot take: an LSTM (no converter) feeding a Relu."""
    hidden, features = 4, 3
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R"], ["y", "", ""], name="encoder/lstm", hidden_size=hidden),
        helper.make_node("Relu", ["y"], ["out"], name="head/relu"),
    ]
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [1, 4 * hidden, features], [0.1] * 4 * hidden * features),
             helper.make_tensor("R", TensorProto.FLOAT, [1, 4 * hidden, hidden], [0.1] * 4 * hidden * hidden)]
    graph = helper.make_graph(nodes, "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, features])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [5, 1, 1, hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("lstm") / "lstm.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture(scope="session")
def unsupported_onnx(tmp_path_factory) -> Path:
    """Ops TVM cannot take even after dlc's lowering: Det, and an LSTM over a symbolic sequence length."""
    hidden, features = 4, 3
    nodes = [
        helper.make_node("Det", ["m"], ["d"], name="stats/det"),
        helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="encoder/lstm", hidden_size=hidden),
    ]
    inits = [helper.make_tensor("W", TensorProto.FLOAT, [1, 4 * hidden, features], [0.1] * 4 * hidden * features),
             helper.make_tensor("R", TensorProto.FLOAT, [1, 4 * hidden, hidden], [0.1] * 4 * hidden * hidden)]
    inputs = [helper.make_tensor_value_info("m", TensorProto.FLOAT, [2, 3, 3]),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, ["steps", 1, features])]
    outputs = [helper.make_tensor_value_info("d", TensorProto.FLOAT, [2]),
               helper.make_tensor_value_info("y", TensorProto.FLOAT, ["steps", 1, 1, hidden])]
    model = helper.make_model(helper.make_graph(nodes, "gaps", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("gaps") / "gaps.onnx"
    onnx.save(model, path)
    return path
