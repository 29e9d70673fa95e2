"""Shared fixtures: one small trained model, its ONNX export and its artifact, built once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import helper, TensorProto
from typer.testing import CliRunner

from dlc.cli import app


@pytest.fixture(scope="session")
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    """Runs `dlc ARGS` in-process; returns the click Result."""
    return runner.invoke(app, [str(a) for a in args])


def run_dlc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m dlc ARGS` as a real process, as a user would."""
    return subprocess.run([sys.executable, "-m", "dlc", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


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
