"""Reaching a device over TVM RPC: directly (`--rpc HOST:PORT`) or through TVM's RPC tracker
(`--tracker HOST:PORT --key KEY`), under a deadline, and asking it what it is."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from dlc.errors import DeviceError, DlcError, first_line


@dataclass(frozen=True)
class DeviceAddress:
    rpc: str | None = None  # HOST:PORT of an RPC server
    tracker: str | None = None  # HOST:PORT of an RPC tracker (with key)
    key: str = ""  # the device key the server or tracker knows it by

    def check(self) -> None:
        if bool(self.rpc) == bool(self.tracker):
            raise DlcError("name the device with exactly one of --rpc HOST:PORT or --tracker HOST:PORT --key KEY")
        if self.tracker and not self.key:
            raise DlcError("--tracker needs --key, the device key boards registered with (e.g. raspberry-pi-4)")
        host_port(self.rpc or self.tracker, "--rpc" if self.rpc else "--tracker")

    def __str__(self) -> str:
        return f"RPC server {self.rpc}" if self.rpc else f"tracker {self.tracker} (key {self.key})"


def connect(address: DeviceAddress, timeout: float):
    """An RPC session to the device; connection failures become DeviceError."""
    from tvm import rpc

    try:
        if address.rpc:
            host, port = host_port(address.rpc, "--rpc")
            reachable(host, port, address, timeout)
            return rpc.connect(host, port, key=address.key, session_timeout=int(timeout))
        host, port = host_port(address.tracker, "--tracker")
        reachable(host, port, address, timeout)  # TVM's tracker client retries for a minute, logging each try
        return rpc.connect_tracker(host, port).request(address.key, session_timeout=int(timeout), max_retry=3)
    except DlcError:
        raise
    except Exception as e:  # TVM raises TVMError, RuntimeError or OSError for an unreachable device
        raise DeviceError(f"cannot reach {address}: {first_line(e)}") from e


def reachable(host: str, port: int, address, timeout: float) -> None:
    """Fails in seconds, with DeviceError, where nothing listens at HOST:PORT."""
    import socket

    try:
        socket.create_connection((host, port), timeout=min(timeout, 10.0)).close()
    except OSError as e:
        raise DeviceError(f"cannot reach {address}: {e.strerror or e}") from e


def with_deadline(fn, timeout: float, where: str):
    """Runs fn in a daemon thread; a device that stops answering cannot block past `timeout`."""
    box: dict[str, Any] = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller's thread below
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise DeviceError(f"{where} did not finish within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def device_info(remote) -> dict[str, Any]:
    """What the device says about itself; boards started by dlc answer `dlc.device_info`."""
    try:
        return json.loads(remote.get_function("dlc.device_info")())
    except Exception:  # a plain TVM RPC server has no such function
        return {"arch": None, "note": "the device did not report its architecture (not started by dlc)"}


def host_port(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DlcError(f"{flag} {text!r} is not HOST:PORT (a port from 1 to 65535); e.g. 127.0.0.1:9190")
    return host, int(port)
