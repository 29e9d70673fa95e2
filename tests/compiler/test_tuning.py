"""MetaSchedule tuning: the database grows once, and the next compile reuses it with zero trials."""

import json

import pytest

from dlc.compiler import tuning
from tests.conftest import assert_one_line_error, ctrl_c_delivered, invoke, processes_marked


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def mlp_onnx(runner, tmp_path_factory):
    out = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    assert invoke(runner, "export", "mlp", "-o", out, "--arg", "hidden=[32]").exit_code == 0
    return out


@pytest.mark.slow
def test_second_compile_reuses_the_database_with_zero_trials(runner, mlp_onnx, tmp_path, cache):
    first, second = tmp_path / "first.dlc", tmp_path / "second.dlc"
    result = invoke(runner, "compile", mlp_onnx, "-o", first, "--tune", "16")
    assert result.exit_code == 0, result.output
    tuned = json.loads((first / "manifest.json").read_text())
    database = tuning.default_database(tuned["tuning"]["key"])
    records = tuning.count_records(database)
    assert tuned["tuning"]["trials_run"] == records >= 16
    assert tuned["tuning"]["records_sha256"] == tuning.records_sha256(database)
    assert tuned["verification"]["max_abs_diff"] <= 1e-4

    result = invoke(runner, "tune", mlp_onnx, "--trials", "16")  # the tune command sees it as done too
    assert result.exit_code == 0 and "0 trials run now" in result.stdout, result.output

    result = invoke(runner, "compile", mlp_onnx, "-o", second, "--tune", "16")
    assert result.exit_code == 0, result.output
    reused = json.loads((second / "manifest.json").read_text())
    assert tuning.count_records(database) == records  # the database did not grow: nothing was tuned
    assert reused["tuning"]["trials_run"] == 0 and reused["tuning"]["records_before"] == records
    assert reused["compile_seconds"]["tune"] < tuned["compile_seconds"]["tune"]
    assert "0 trials run now" in result.stdout


def test_without_a_database_nothing_is_tuned(runner, mlp_onnx, tmp_path, cache):
    out = tmp_path / "plain.dlc"
    assert invoke(runner, "compile", mlp_onnx, "-o", out).exit_code == 0
    assert json.loads((out / "manifest.json").read_text())["tuning"] is None
    assert not (cache / "tuning").exists()


@pytest.mark.parametrize("args, message", [
    (["--tune-minutes", "0"], "tunes nothing: give a time above 0"),
    (["--target", "raspberry-pi-4", "--tune", "8"], "cannot tune for raspberry-pi-4 on this machine"),
])
def test_tuning_that_cannot_run_here_is_one_error_line(runner, mlp_onnx, tmp_path, cache, args, message):
    result = invoke(runner, "compile", mlp_onnx, "-o", tmp_path / "m.dlc", *args)
    assert_one_line_error(result, message)
    assert not (tmp_path / "m.dlc").exists()


def test_two_tunings_never_write_one_database_at_once(runner, mlp_onnx, tmp_path):
    import fcntl

    database = tmp_path / "db"
    database.mkdir()
    with open(database / ".lock", "w") as held:  # another tuning holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke(runner, "tune", mlp_onnx, "--trials", "8", "--tuning-db", database)
    assert_one_line_error(result, "another tuning is writing")
    assert not (database / tuning.RECORDS).exists()


def test_one_database_per_target_and_progress_per_model_shapes_and_pipeline():
    """A model tuned before the pipeline changed its kernels (or with other schedules) is searched again."""
    skylake, haswell = {"kind": "llvm", "mcpu": "skylake"}, {"kind": "llvm", "mcpu": "haswell"}
    assert tuning.database_key(skylake) != tuning.database_key(haswell)
    base = tuning.model_key("abc", {"input": [1, 64]}, "2/default")
    assert base != tuning.model_key("abd", {"input": [1, 64]}, "2/default")
    assert base != tuning.model_key("abc", {"input": [8, 64]}, "2/default")
    assert base != tuning.model_key("abc", {"input": [1, 64]}, "3/default")
    assert base != tuning.model_key("abc", {"input": [1, 64]}, "2/none")


def test_a_finished_budget_is_remembered_per_model_and_never_shrinks(tmp_path):
    assert tuning.progress(tmp_path, "m1") == {"finished_trials": 0, "records": 0}
    tuning._write_progress(tmp_path, "m1", 300, 280)
    tuning._write_progress(tmp_path, "m1", 100, 290)
    tuning._write_progress(tmp_path, "m2", 50, 40)
    assert tuning.progress(tmp_path, "m1") == {"finished_trials": 300, "records": 290}
    assert tuning.progress(tmp_path, "m2")["finished_trials"] == 50


@pytest.mark.slow
def test_ctrl_c_keeps_the_records_and_the_next_run_resumes(mlp_onnx, tmp_path):
    """Also: no process that tuning started (the tuning child, MetaSchedule's workers) outlives the command."""
    import os
    import signal
    import subprocess
    import sys
    import time

    database = tmp_path / "db"
    command = [sys.executable, "-m", "dlc", "tune", str(mlp_onnx), "--trials", "48", "--tuning-db", str(database)]
    env = {**os.environ, "DLC_TEST_MARK": tmp_path.name}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=ctrl_c_delivered)
    deadline = time.monotonic() + 600
    while tuning.count_records(database) == 0 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    kept = tuning.count_records(database)
    assert 0 < kept < 48, "tuning must be running, with some records saved, when it is interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 1, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert lines and "tuning interrupted after" in lines[-1] and "resumes" in lines[-1], stderr[-2000:]
    assert tuning.count_records(database) >= kept
    assert processes_marked(tmp_path.name) == []

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert tuning.count_records(database) > kept
    assert [entry["finished_trials"] for entry in json.loads((database / tuning.PROGRESS).read_text()).values()] == [48]
    assert processes_marked(tmp_path.name) == []


@pytest.mark.slow
def test_a_search_ended_by_the_clock_keeps_the_batches_it_measured(runner, tmp_path):
    """The gradient scheduler sends every kernel's first batch before collecting any: ending
    the search must collect them, not throw them away (it kept none of a 15-kernel round)."""
    model, database = tmp_path / "mobilenet.onnx", tmp_path / "db"
    assert invoke(runner, "export", "mobilenet", "-o", model).exit_code == 0
    seeded = invoke(runner, "tune", model, "--trials", "1", "--tuning-db", database)
    assert seeded.exit_code == 0, seeded.output
    before = tuning.count_records(database)
    # Every kernel now holds a record, so the search starts at once; its first round (one batch for each
    # of ~15 kernels, 5-10 s each on an AVX-512 Xeon, more on slower CPUs) is still under way when the clock ends
    # it at 4 minutes (100000 trials are far off). At 90 s an AVX2-only 2-core EPYC had finished no batch at all.
    result = invoke(runner, "tune", model, "--trials", "100000", "--minutes", "4", "--tuning-db", database)
    assert result.exit_code == 0, result.output
    assert "stopped on the clock" in result.stdout
    with open(database / tuning.RECORDS) as f:
        new = [json.loads(line) for line in f if line.strip()][before:]
    # Several kernels' batches: stopping at the first collection kept only the first kernel's
    assert len({record[0] for record in new}) >= 2, new
