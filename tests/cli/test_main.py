import subprocess
import sys

from tests.conftest import assert_one_line_error, ctrl_c_delivered, invoke, run_dlc


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


def test_dlc_alone_prints_help_without_an_error():
    for args in ((), ("device",)):
        proc = run_dlc(*args)
        assert proc.returncode == 0 and "Usage" in proc.stdout and "error" not in proc.stderr, proc.stderr


def test_version():
    from dlc.version import __version__

    proc = run_dlc("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"dlc {__version__}"


def test_help_texts_keep_their_bracketed_defaults():
    """Rich markup once swallowed "[default: ...]" and left "Maximum epochs ." behind."""
    import re

    proc = run_dlc("train", "--help", env={"COLUMNS": "300"})  # one line per option
    assert "Maximum epochs [default: the model's recipe, else 30]." in proc.stdout, proc.stdout
    assert not re.search(r"\w \.(\s|$)", proc.stdout), proc.stdout


def test_output_to_a_pipe_is_not_wrapped_at_80_columns(tmp_path):
    long_dir = tmp_path / ("a-directory-name-long-enough-to-push-the-line-past-eighty-columns" * 2)
    proc = run_dlc("bench", long_dir / "missing.dlc")
    assert_one_line_error(proc, "artifact not found", "dlc compile")  # an artifact, not "ONNX model not found"
    proc = run_dlc("targets")
    assert proc.returncode == 0 and all(len(line) <= 160 for line in proc.stdout.splitlines())
    assert "runs here" in proc.stdout and "yes" in proc.stdout


def test_a_file_that_is_not_a_checkpoint_is_never_offered_as_an_output(tmp_path):
    script = tmp_path / "mymodel.py"
    script.write_text("import torch\n")
    proc = run_dlc("export", script)
    assert_one_line_error(proc, "is Python code: name the model in it", "mymodel.py:build")
    assert "-o mymodel.py" not in proc.stderr and script.read_text() == "import torch\n"
    checkpoint = tmp_path / "notes.txt"
    checkpoint.write_text("not a checkpoint\n")
    proc = run_dlc("export", checkpoint)
    assert_one_line_error(proc, "is not a dlc checkpoint", "dlc train")
    assert "-o notes.txt" not in proc.stderr and checkpoint.read_text() == "not a checkpoint\n"


def test_ctrl_c_at_any_moment_of_start_up_is_never_a_traceback(tmp_path):
    """SIGINT while the first modules import, while the command's own imports run, and during its work.

    Each delay counts from the first import `dlc.__main__.main` makes (`-X importtime` reports each import
    as it ends): a SIGINT before that, in the interpreter's own start-up (`site` importing the installed
    packages' .pth files: CPython's "Fatal Python error: init_import_site") or while runpy looks for
    `dlc.__main__`, comes before any code of dlc runs and no program can catch it — a 0.05 s delay from
    the launch landed there on a loaded 2-core machine.
    """
    import os
    import signal
    import threading
    import time

    interrupted = 0
    for delay in (0.0, 0.05, 0.2, 0.5, 1.0, 2.0):
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "dlc", "export", "cnn", "-o",
                                 str(tmp_path / "cnn.onnx"), "--force"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                preexec_fn=ctrl_c_delivered)
        lines, started = [], threading.Event()

        def drain(stream=proc.stderr, lines=lines, started=started):
            package_done = False
            for line in stream:  # the first import to end after the package's own is one of main's
                if package_done:
                    started.set()
                package_done = package_done or line.rstrip().endswith("| dlc")
                lines.append(line)
            started.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        assert started.wait(60), "python -m dlc never imported dlc"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        reader.join(timeout=30)
        stderr = "".join(line for line in lines if not line.startswith("import time:"))
        assert "Traceback" not in stderr, (delay, stderr)
        assert proc.returncode in (0, 130, -signal.SIGINT), (delay, proc.returncode, stderr)
        if proc.returncode == 130:
            assert stderr.strip().splitlines()[-1] == "error: interrupted", stderr
            interrupted += 1
    assert interrupted >= 2  # caught, not just killed before Python started or after the command ended
