"""`dlc device peak`: TVM-measured peak GFLOP/s and bandwidth, against numpy on the same machine, cached."""

import json

from tests.conftest import assert_one_line_error, invoke


def test_host_peak_agrees_with_numpy_within_the_factors_the_readme_states(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    report = tmp_path / "peak.json"
    result = invoke(runner, "device", "peak", "--compare", "--report", report)
    assert result.exit_code == 0, result.output
    peak = json.loads(report.read_text())
    assert not peak["cached"] and peak["device"]["cpu"] and peak["threads"] >= 1
    # README: TVM's FMA peak is 0.7x to 4x numpy's sgemm (a GEMM reaches 70-95 % of peak), its copy 1/3x to 3x
    # numpy's copy (both count bytes read + written)
    assert 0.7 <= peak["gflops"] / peak["numpy"]["sgemm_gflops"] <= 4.0, peak
    assert 1 / 3 <= peak["gbps"] / peak["numpy"]["copy_gbps"] <= 3.0, peak
    again = invoke(runner, "device", "peak")
    assert again.exit_code == 0 and "cached" in again.output
    assert json.loads((tmp_path / "cache" / "dlc" / "peaks.json").read_text())[peak["key"]]["gflops"] == peak["gflops"]


def test_bad_peak_requests_are_refused_in_one_line(runner):
    assert_one_line_error(invoke(runner, "device", "peak", "--rpc", "127.0.0.1:9"), "--target")
    assert_one_line_error(invoke(runner, "device", "peak", "--rpc", "127.0.0.1:9", "--target", "raspberry-pi-4",
                                 "--compare"), "--compare")
    assert_one_line_error(invoke(runner, "device", "peak", "--tracker", "127.0.0.1:9", "--target",
                                 "raspberry-pi-4"), "--key")
    assert_one_line_error(invoke(runner, "device", "peak", "--target", "raspberry-pi-4"), "--rpc")
    assert_one_line_error(invoke(runner, "device", "peak", "--report", "/dev/null", "--force"), "not a regular file")
