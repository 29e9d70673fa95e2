import subprocess
import sys

from tests.conftest import assert_one_line_error, invoke, run_dlc


def test_help_imports_neither_torch_nor_tvm():
    code = ("import sys; from typer.testing import CliRunner; from dlc.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "heavy = [m for m in ('torch', 'tvm', 'onnxruntime', 'sklearn') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_command_has_help(runner):
    for command in ("quickstart", "train", "export", "compile", "bench", "doctor"):
        result = invoke(runner, command, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout, command


def test_unknown_option_is_one_line_exit_1():
    proc = run_dlc("compile", "model.onnx", "--turbo")
    assert_one_line_error(proc, "--turbo", "dlc compile --help")


def test_missing_argument_is_one_line_exit_1():
    assert_one_line_error(run_dlc("export"), "Missing argument", "source")


def test_library_error_from_a_real_process(tmp_path):
    proc = run_dlc("doctor", tmp_path / "nothing.onnx")
    assert_one_line_error(proc, "nothing.onnx", "not found")
