"""Deploying an artifact to a device over TVM RPC, verifying it there, and timing it.

The device is TVM's own RPC server (a Raspberry Pi, a phone, the emulated board),
reached directly (`--rpc HOST:PORT`) or through TVM's RPC tracker (`--tracker HOST:PORT
--key KEY`), which queues a fleet of boards by key. Every step runs under a deadline:
a device that stops answering gives a DeviceError and a retry, never a hang.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dlc.artifact import Artifact
from dlc.errors import DeviceError, DlcError, WrongArchitectureError, first_line
from dlc.numerics import Tolerance, require_close
from dlc.runtime.rpc import DeviceAddress, connect, device_info, with_deadline
from dlc.target import tvm_device


@dataclass(frozen=True)
class DeployConfig:
    rpc: str | None = None  # HOST:PORT of an RPC server
    tracker: str | None = None  # HOST:PORT of an RPC tracker (with key)
    key: str = ""  # the device key the server or tracker knows it by
    number: int = 10  # calls per timed repeat
    repeat: int = 5
    timeout: float = 300.0  # seconds for one whole attempt, upload to timing
    retries: int = 1
    atol: float = 1e-4
    rtol: float = 1e-4
    trust: Path | None = None  # a public key the artifact must be signed with (dlc.signing)

    @property
    def address(self) -> DeviceAddress:
        return DeviceAddress(self.rpc, self.tracker, self.key)


@dataclass
class DeployReport:
    artifact: str
    device: dict[str, Any]
    max_abs_diff: float
    latency_ms: dict[str, float]
    repeats_ms: list[float]  # one mean per timed repeat
    seconds: dict[str, float]
    attempts: int
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "outputs"}


def deploy(path: str | Path, config: DeployConfig) -> DeployReport:
    """Uploads the artifact's library, runs its golden inputs and times it on the device."""
    config.address.check()
    artifact = Artifact.load(path, trust=config.trust)  # the signature, every sha256, before anything leaves here
    error: DeviceError | None = None
    for attempt in range(1, config.retries + 2):
        try:
            report = with_deadline(lambda: _deploy_once(artifact, config), config.timeout, config.address)
            report.attempts = attempt
            return report
        except DeviceError as e:  # the device or the link failed: worth another try
            error = e
    raise DeviceError(f"{error} (gave up after {config.retries + 1} attempts; is the device up? "
                      "`dlc device emulate` starts an emulated one)")


def _deploy_once(artifact: Artifact, config: DeployConfig) -> DeployReport:
    import tvm
    from tvm.runtime.vm import VirtualMachine

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    remote, device = connect_to_run(artifact, config.address, config.timeout)
    seconds["connect"] = _lap(t0)
    try:
        lib = upload(remote, artifact, "library")
        dev = tvm_device(artifact.device, remote)
        vm = VirtualMachine(lib, dev)
        seconds["upload_and_load"] = _lap(t0, seconds)
        runs = []  # every golden case: a dynamic artifact's at each size it was verified at
        for golden_in, golden_out in artifact.golden_cases():
            args = [tvm.runtime.tensor(golden_in[s.name], dev) for s in artifact.inputs]
            result = vm["main"](*args)
            values = [result] if hasattr(result, "numpy") else list(result)
            runs.append((args, {s.name: v.numpy() for s, v in zip(artifact.outputs, values)}, golden_out))
        args, outputs, _ = runs[0]  # the first case is what is timed
        timer = vm.time_evaluator("main", dev, number=config.number, repeat=config.repeat)(*args)
        seconds["run_and_time"] = _lap(t0, seconds)
    except DlcError:
        raise
    except Exception as e:
        raise DeviceError(f"{config.address} failed during the run: {first_line(e)}") from e
    quantized = artifact.manifest.get("verification", {}).get("quantized_tolerance") or {}  # int8: a few steps
    tolerance = Tolerance(max(config.atol, quantized.get("atol", 0.0)), max(config.rtol, quantized.get("rtol", 0.0)))
    diff = max(require_close(got, want, tolerance,
                             "the device's outputs and ONNX Runtime's (golden)", "check the target it was compiled for")
               for _, got, want in runs)
    runs = np.asarray(timer.results) * 1000.0
    latency = {"mean": float(runs.mean()), "median": float(np.median(runs)), "min": float(runs.min()),
               "max": float(runs.max()), "std": float(runs.std()), "number": config.number, "repeat": config.repeat}
    return DeployReport(str(artifact.path), device, diff, latency, [round(float(r), 4) for r in runs], seconds, 1,
                        outputs)


def connect_to_run(artifact: Artifact, address: DeviceAddress, timeout: float):
    """(RPC session, what the device says it is), refused before anything is uploaded if it cannot run `artifact`."""
    remote = connect(address, timeout)
    device = device_info(remote)
    check_architecture(artifact, device)
    return remote, device


def upload(remote, artifact: Artifact, role: str):
    """Uploads the artifact's file of `role` ("library", "kernels") under its hash, and loads it there."""
    entry = artifact.manifest["files"][role]
    name = f"dlc-{entry['sha256'][:16]}.so"
    remote.upload(str(artifact.path / entry["path"]), target=name)
    return remote.load_module(name)


def check_architecture(artifact: Artifact, device: dict[str, Any]) -> None:
    want = artifact.target.arch
    if device.get("arch") and device["arch"] != want:
        raise WrongArchitectureError(
            f"artifact {artifact.path} is built for {want} but the device is {device['arch']}; nothing was "
            f"uploaded. Recompile for it, e.g. `dlc compile MODEL.onnx --target {device.get('board') or 'TARGET'}`")


def _lap(t0: float, seconds: dict[str, float] | None = None) -> float:
    return round(time.perf_counter() - t0 - sum((seconds or {}).values()), 3)
