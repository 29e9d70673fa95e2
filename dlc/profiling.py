"""Profiles on the device's roofline, and one report for several models on several devices: accuracy, size,
latency, memory, per-layer times, rooflines.

For every artifact × device: on the host, `dlc bench`'s measurement of TVM and ONNX Runtime
(each in a fresh process: latency samples, peak memory) and a `dlc profile` of the TVM
build (per-kernel times on the host's roofline); on a device over TVM RPC, a `dlc profile`
there (whole-model samples by `time_evaluator`, per-kernel times on the device's roofline).
An artifact built for another target than the device's is compiled for it first from its
own ONNX file (untuned, cached under the report's work folder), and the report says so.

Accuracy comes from the reports the pipeline wrote: `dlc quantize`'s and `dlc prune`'s
beside the ONNX file the artifact was compiled from, else the test accuracy that training
recorded in the exported model. With a baseline (an earlier report's JSON), each row's
samples are compared with the Mann-Whitney U test (dlc.runtime.stats.compare_samples).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dlc.errors import DlcError
from dlc.runtime.profile import profile
from dlc.runtime.rpc import DeviceAddress, host_port
from dlc.runtime.stats import compare_samples
from dlc.version import __version__

DEVICE_FORM = "host, or NAME=rpc:HOST:PORT/TARGET[/KEY] or NAME=tracker:HOST:PORT/TARGET[/KEY]"


@dataclass(frozen=True)
class ReportDevice:
    name: str
    target: str = "host"
    address: DeviceAddress | None = None


def parse_device(text: str) -> ReportDevice:
    """`host`, or `pi4=tracker:HOST:PORT/raspberry-pi-4` (the key is the target's name unless a third part names it)."""
    from dlc.target import resolve_target

    if text == "host":
        return ReportDevice("host")
    match = re.fullmatch(r"([\w.-]+)=(rpc|tracker):([^/]+)/([\w.-]+)(?:/([\w.-]+))?", text)
    if not match:
        raise DlcError(f"--device {text!r} is not {DEVICE_FORM}; e.g. --device pi4=rpc:127.0.0.1:9190/raspberry-pi-4")
    name, kind, where, target, key = match.groups()
    host_port(where, f"--device {name}={kind}:")
    resolve_target(target)  # an unknown target is named now, not after the host's measurements
    address = DeviceAddress(rpc=where if kind == "rpc" else None, tracker=where if kind == "tracker" else None,
                            key=key or target)
    return ReportDevice(name, target, address)


def profile_with_peak(artifact_path: str | Path, config, roofline: bool = True,
                      log=lambda message: None) -> dict[str, Any]:
    """`profile`, with the device's peak (measured once per device, then cached) when `roofline`."""
    from dlc.compiler.peak import device_peak
    from dlc.runtime.profile import profilable

    artifact = profilable(artifact_path, config)  # refused before the peak is measured
    peak = device_peak(artifact.target.name, config.device, timeout=config.timeout, log=log) if roofline else None
    log(f"profiling {artifact_path}")
    return profile(artifact_path, config, peak)


def build_report(artifacts: list[Path], devices: list[ReportDevice], work: Path, runs: int = 100,
                 baseline: dict[str, Any] | None = None, timeout: float = 900.0, trust: Path | None = None,
                 log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """The report as a JSON-ready dict (see the module's docstring)."""
    from dlc.artifact import Artifact

    if len({Path(a).resolve() for a in artifacts}) < len(artifacts):
        raise DlcError("an artifact is given twice: give each once")
    names = [_model_name(Path(a)) for a in artifacts]
    if len(set(names)) < len(names):
        raise DlcError(f"two artifacts share a name ({', '.join(names)}): give each its own folder name")
    loaded = [Artifact.load(a, trust=trust) for a in artifacts]  # every artifact checked before any measurement
    for artifact in loaded:
        why = artifact.target.why_not_here()
        if any(d.address is None for d in devices) and why:
            raise DlcError(f"{artifact.path} cannot run on the host ({why}): give an artifact compiled for the host "
                           "(a device's build is made from it), or name only devices (--device NAME=rpc:...)")
    for device in devices:  # an unreachable device fails now, not after the host's measurements and a build
        if device.address is not None:
            from dlc.runtime.rpc import reachable

            reachable(*host_port(device.address.rpc or device.address.tracker, "--device"), device.address, timeout)
    rows, profiles, peaks = [], [], {}
    for artifact, name in zip(loaded, names):
        accuracy = accuracy_of(artifact)
        for device in devices:
            log(f"{name} on {device.name}")
            rows_here, profile = _measure(artifact, name, device, work, runs, timeout, trust, log)
            for row in rows_here:
                row["accuracy"] = accuracy
            rows += rows_here
            profiles.append(_profile_summary(name, device.name, profile))
            peaks[device.name] = profile.get("peak")
    report = {"dlc_version": __version__, "runs": runs, "devices": [d.name for d in devices], "models": names,
              "rows": rows, "profiles": profiles, "peaks": peaks}
    if baseline is not None:
        report["baseline"] = compare_with(baseline, rows)
    return report


def _model_name(path: Path) -> str:
    path = path.resolve() if not path.name else path
    return path.name.removesuffix(".dlc") or path.name


def _measure(artifact, name: str, device: ReportDevice, work: Path, runs: int, timeout: float, trust, log):
    from dlc.runtime.bench import BenchConfig, benchmark
    from dlc.runtime.profile import ProfileConfig

    if device.address is None:
        bench = benchmark(artifact.path, BenchConfig(backends=("tvm", "onnxruntime"), runs=runs, trust=trust))
        profile = profile_with_peak(artifact.path, ProfileConfig(runs=max(10, runs // 2), onnxruntime=False,
                                                                 trust=trust), log=log)
        size = _sizes(artifact)
        rows = [{"model": name, "device": device.name, "backend": r.backend, "target": artifact.target.name,
                 "latency_ms": r.latency_ms, "samples_ms": r.samples_ms, "peak_rss_mb": r.peak_rss_mb,
                 "size_bytes": size["onnx" if r.backend == "onnxruntime" else "library"], "note": None}
                for r in bench.results]
        return rows, profile
    built, note = _for_device(artifact, name, device, work, log, trust)
    profile = profile_with_peak(built.path, ProfileConfig(runs=max(10, runs // 5), onnxruntime=False,
                                                          device=device.address, timeout=timeout), log=log)
    row = {"model": name, "device": device.name, "backend": "tvm", "target": built.target.name,
           "latency_ms": profile["e2e_ms"], "samples_ms": profile["e2e_samples_ms"], "peak_rss_mb": None,
           "size_bytes": _sizes(built)["library"], "note": note}
    return [row], profile


def _sizes(artifact) -> dict[str, int]:
    files = artifact.manifest["files"]
    return {"library": files["library"]["bytes"],
            "onnx": files["onnx"]["bytes"] + files.get("onnx_data", {}).get("bytes", 0)}


def _for_device(artifact, name: str, device: ReportDevice, work: Path, log, trust=None):
    """The artifact itself if it was built for the device's target; else its ONNX compiled for it (cached)."""
    from dlc.artifact import Artifact
    from dlc.compiler.build import CompileConfig, compile_model

    if artifact.target.name == device.target:
        return artifact, None
    out = work / f"{name}.{device.target}.{artifact.manifest['files']['onnx']['sha256'][:12]}.{__version__}.dlc"
    if not out.is_dir() or trust is not None:  # under --trust nothing unsigned is reused: built afresh
        log(f"compiling {name} for {device.target}")
        shapes = {s.name: list(s.shape) for s in artifact.inputs}
        compile_model(artifact.onnx_path, out, CompileConfig(target=device.target, shapes=shapes, force=True))
    return Artifact.load(out), f"compiled for {device.target} by dlc report from the artifact's ONNX (untuned)"


def accuracy_of(artifact) -> dict[str, Any] | None:
    """{"metric", "value", "from"}: from a quantize or prune report beside the source ONNX, else from training."""
    source = artifact.manifest.get("source_onnx")
    if source:
        source = Path(source)
        for suffix, read in ((".quantize.json", _quantized), (".prune.json", _pruned)):
            report = source.with_suffix(suffix)
            try:
                written = json.loads(report.read_text())
            except (OSError, ValueError):
                continue
            try:  # the model came from this step: training's accuracy is no longer its own
                found = read(written)
            except (KeyError, TypeError, AttributeError):
                found = None
            return {**found, "from": str(report)} if found else None
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(artifact.onnx_path), load_external_data=False).metadata_props}
    try:
        metrics = json.loads(metadata.get("dlc.metrics") or "{}")
    except ValueError:
        return None
    if isinstance(metrics, dict) and isinstance(metrics.get("test_accuracy"), (int, float)):
        return {"metric": "top-1", "value": metrics["test_accuracy"], "from": "training (test split)"}
    return None


def _quantized(report: dict[str, Any]) -> dict[str, Any] | None:
    evaluation = (report.get("accuracy") or {}).get("quantized")
    return {"metric": evaluation["metric"], "value": evaluation["value"]} if evaluation else None


def _pruned(report: dict[str, Any]) -> dict[str, Any] | None:
    metric = (report.get("after") or {}).get("metric")
    return {"metric": metric["name"], "value": metric["value"]} if metric else None


def _profile_summary(model: str, device: str, profile: dict[str, Any]) -> dict[str, Any]:
    keep = ("name", "nodes", "ops", "ms", "share", "gflops", "intensity", "attainable_gflops", "roofline_fraction")
    return {"model": model, "device": device, "kernel_sum_vs_e2e": profile["kernel_sum_vs_e2e"],
            "e2e_p50_ms": profile["e2e_ms"]["p50"], "furthest_below_roofline": profile.get("furthest_below_roofline"),
            "kernels": [{k: kernel.get(k) for k in keep} for kernel in profile["kernels"]]}


def compare_with(baseline: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per row in both reports: regression, improvement or same, by the samples (not by a fixed percentage)."""
    old = {(r.get("model"), r.get("device"), r.get("backend")): r for r in baseline.get("rows", [])
           if isinstance(r, dict) and isinstance(r.get("latency_ms"), dict) and "p50" in r["latency_ms"]}
    changes = []
    for row in rows:
        before = old.get((row["model"], row["device"], row["backend"]))
        if before is None:
            continue
        result = compare_samples(before.get("samples_ms") or [], row["samples_ms"])
        row["change"] = result["change"]
        changes.append({"model": row["model"], "device": row["device"], "backend": row["backend"],
                        "p50_before_ms": before["latency_ms"]["p50"], "p50_ms": row["latency_ms"]["p50"], **result})
    return changes


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        baseline = json.loads(Path(path).read_text())
    except OSError as e:
        raise DlcError(f"cannot read the baseline {path}: {e.strerror}; give the JSON an earlier `dlc report` "
                       "wrote") from e
    except ValueError as e:
        raise DlcError(f"the baseline {path} is not JSON; give the JSON an earlier `dlc report` wrote") from e
    rows = baseline.get("rows") if isinstance(baseline, dict) else None
    if not isinstance(rows, list) or not all(_is_row(r) for r in rows):
        raise DlcError(f"the baseline {path} is not a `dlc report` JSON (no rows of models, devices, backends and "
                       "their samples); give the JSON an earlier `dlc report` wrote")
    return baseline


def _is_row(row) -> bool:
    return isinstance(row, dict) and all(isinstance(row.get(k), str) for k in ("model", "device", "backend")) \
        and isinstance(row.get("latency_ms"), dict) and isinstance(row["latency_ms"].get("p50"), (int, float)) \
        and isinstance(row.get("samples_ms"), list) \
        and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in row["samples_ms"])
