"""`dlc report`: float, int8 and pruned artifacts on the host and the emulated Pi, in one HTML page checked in a
real headless browser (Debian's chromium, driven by playwright)."""

import json
import shutil

import pytest

from dlc.analysis.report_html import render
from dlc.profiling import compare_with, parse_device
from tests.conftest import assert_one_line_error, invoke


def browse(html_path, screenshot=None) -> dict:
    """Opens the page in headless chromium: what it shows, and every script error or failed request it logged."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium is not installed (run ./scripts/setup-edge as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: pip install -e .[dev]")
    errors = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1240, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request {r.url}"))
        page.goto(html_path.resolve().as_uri())
        figures = page.eval_on_selector_all("[data-figure]", "els => els.map(e => [e.dataset.figure, "
                                            "e.getBoundingClientRect().width, e.getBoundingClientRect().height])")
        rows = page.locator("table.sortable tbody tr").count()
        first = page.locator("table.sortable tbody tr").first.inner_text()
        page.locator("table.sortable th", has_text="p50 ms").click()  # the inline script sorts by latency
        ascending = [float(t) for t in page.locator("table.sortable tbody tr td:nth-child(6)").all_inner_texts()]
        if screenshot:
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {"errors": errors, "figures": figures, "rows": rows, "first": first, "sorted": ascending}


@pytest.fixture(scope="module")
def three_artifacts(runner, onnx_model, trained_checkpoint, tmp_path_factory):
    """The digits CNN as float, static int8 (dlc quantize) and channel-pruned (dlc prune), each compiled for the host."""
    work = tmp_path_factory.mktemp("report")
    int8, pruned = work / "cnn.int8.onnx", work / "cnn.pruned.onnx"
    result = invoke(runner, "quantize", onnx_model, "-o", int8, "--checkpoint", trained_checkpoint, "--samples", "64")
    assert result.exit_code == 0, result.output
    result = invoke(runner, "prune", onnx_model, "-o", pruned, "--ratio", "0.25", "--checkpoint", trained_checkpoint)
    assert result.exit_code == 0, result.output
    artifacts = []
    for name, source in (("float", onnx_model), ("int8", int8), ("pruned", pruned)):
        assert invoke(runner, "compile", source, "-o", work / f"{name}.dlc").exit_code == 0
        artifacts.append(work / f"{name}.dlc")
    return artifacts


@pytest.mark.emulated
def test_three_artifacts_on_the_host_and_the_emulated_pi_in_one_page(runner, three_artifacts, board, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "report.html"
    result = invoke(runner, "report", *three_artifacts, "--device", "host", "--device",
                    f"pi4=rpc:{board.address}/raspberry-pi-4", "--runs", "20", "-o", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["model"], r["device"], r["backend"]): r for r in report["rows"]}
    assert set(rows) == {(m, d, b) for m in ("float", "int8", "pruned")
                         for d, b in (("host", "tvm"), ("host", "onnxruntime"), ("pi4", "tvm"))}
    accuracy = {m: rows[(m, "host", "tvm")]["accuracy"] for m in ("float", "int8", "pruned")}
    assert accuracy["float"]["from"].startswith("training") and accuracy["int8"]["from"].endswith(".quantize.json")
    assert accuracy["pruned"]["from"].endswith(".prune.json") and all(0.5 < a["value"] <= 1 for a in accuracy.values())
    pi = rows[("float", "pi4", "tvm")]
    assert "compiled for raspberry-pi-4" in pi["note"] and pi["peak_rss_mb"] is None and len(pi["samples_ms"]) >= 10
    assert rows[("int8", "host", "tvm")]["size_bytes"] > 0 and rows[("float", "host", "onnxruntime")]["peak_rss_mb"]
    assert report["peaks"]["pi4"]["device"]["arch"] == "aarch64" and report["peaks"]["host"]["gflops"] > 0
    assert len(report["profiles"]) == 6 and all(p["kernels"] for p in report["profiles"])
    page = browse(out, tmp_path / "report.png")
    assert page["errors"] == [], page["errors"]
    shown = {name for name, width, height in page["figures"] if width > 100 and height > 20}
    assert shown == {"table", "distribution host", "distribution pi4", "roofline host", "roofline pi4",
                     *(f"kernels {m} {d}" for m in ("float", "int8", "pruned") for d in ("host", "pi4"))}
    assert page["rows"] == 9 and page["sorted"] == sorted(page["sorted"])
    assert (tmp_path / "report.png").stat().st_size > 20_000
    assert "https://" not in out.read_text() and "http://" not in out.read_text().replace(
        "http://www.w3.org/2000/svg", "")  # nothing fetched from a network


def test_a_baseline_flags_a_regression_by_its_samples(runner, three_artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = tmp_path / "first.html"
    assert invoke(runner, "report", three_artifacts[0], "--runs", "20", "-o", first).exit_code == 0
    baseline = json.loads(first.with_suffix(".json").read_text())
    second = tmp_path / "second.html"
    result = invoke(runner, "report", three_artifacts[0], "--runs", "20", "--baseline", first.with_suffix(".json"),
                    "-o", second)
    assert result.exit_code == 0, result.output
    changes = json.loads(second.with_suffix(".json").read_text())["baseline"]
    assert {(c["model"], c["backend"]) for c in changes} == {("float", "tvm"), ("float", "onnxruntime")}
    assert all(c["change"] in ("same", "regression", "improvement") and c["p_value"] is not None for c in changes)
    # the same rows 30 % slower, sample by sample: a regression; the page shows it
    slower = json.loads(json.dumps(baseline))
    for row in slower["rows"]:
        row["samples_ms"] = [t * 1.3 for t in row["samples_ms"]]
    changes = compare_with(baseline, slower["rows"])
    assert {c["change"] for c in changes} == {"regression"}
    slower["baseline"] = changes
    page = tmp_path / "slower.html"
    page.write_text(render(slower))
    shown = browse(page)
    assert shown["errors"] == [] and "regression" in page.read_text()


def test_bad_report_requests_are_refused_in_one_line(runner, artifact, tmp_path):
    out = tmp_path / "r.html"
    assert_one_line_error(invoke(runner, "report", artifact, "--device", "pi4=ssh:host/raspberry-pi-4", "-o", out),
                          "--device", "rpc:HOST:PORT/TARGET")
    assert_one_line_error(invoke(runner, "report", artifact, "--device", "pi4=rpc:127.0.0.1:9/no-such-board",
                                 "-o", out), "no-such-board")
    for bad in ({}, {"rows": [1, 2]}, {"rows": [{"model": "m", "device": "host", "backend": "tvm",
                                                 "latency_ms": {"p50": 1.0}, "samples_ms": "abc"}]}):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        assert_one_line_error(invoke(runner, "report", artifact, "--baseline", tmp_path / "bad.json", "-o", out),
                              "not a `dlc report` JSON")
    assert_one_line_error(invoke(runner, "report", artifact, "--device", "pi=rpc:127.0.0.1:1/raspberry-pi-4",
                                 "-o", out), "cannot reach")
    assert not out.exists() and not (tmp_path / ".r-work").exists()
    assert_one_line_error(invoke(runner, "report", artifact, artifact, "-o", out), "given twice")
    assert_one_line_error(invoke(runner, "report", artifact, "-o", tmp_path / "r.json"), "not an .html file")
    assert_one_line_error(invoke(runner, "report", artifact, "--device", "host", "--device", "host", "-o", out),
                          "share a name")
    out.write_text("mine")
    assert_one_line_error(invoke(runner, "report", artifact, "-o", out), "already exists")
    assert out.read_text() == "mine" and not out.with_suffix(".json").exists()
    assert parse_device("host").address is None
    assert parse_device("pi=tracker:10.0.0.1:9190/raspberry-pi-4/fleet").address.key == "fleet"
