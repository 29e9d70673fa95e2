"""An emulated Raspberry Pi: an arm64 Debian userland run by qemu-user, serving TVM RPC.

Built once and cached (about 350 MB under ~/.cache/dlc/boards/):
  1. `debootstrap --foreign --arch=arm64 --variant=minbase --include=python3` downloads
     Debian's arm64 packages; unpacking every .deb gives a usable root without the
     second stage (which would need binfmt_misc, absent here).
  2. pip (on the host) installs the aarch64 wheels of apache-tvm, apache-tvm-ffi and
     numpy into ROOT/opt/dlc/site.
  3. a sitecustomize.py and the RPC server script go into ROOT/opt/dlc.
Started as: qemu-aarch64-static -cpu CPU -L ROOT ROOT/usr/bin/python3.11 board_server.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dlc.errors import BackendUnavailableError, DeviceError, UnknownNameError
from dlc.fileio import atomic_path

SUITE = "bookworm"
GUEST_PYTHON = "/usr/bin/python3.11"
WHEELS = ("apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1", "numpy", "ml_dtypes",
          "typing_extensions", "psutil", "cloudpickle")
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_24_aarch64",
             "manylinux_2_17_aarch64", "manylinux2014_aarch64")
FILES = Path(__file__).parent / "board_files"
SETUP_HINT = "run ./scripts/setup-edge"


@dataclass(frozen=True)
class Board:
    name: str
    qemu_cpu: str  # qemu-user's -cpu model, matching the board's cores
    target: str  # the dlc target preset to compile for it


BOARDS = {b.name: b for b in [
    Board("raspberry-pi-3", "cortex-a53", "raspberry-pi-3"),
    Board("raspberry-pi-4", "cortex-a72", "raspberry-pi-4"),
    Board("raspberry-pi-5", "cortex-a76", "raspberry-pi-5"),
]}


def get_board(name: str) -> Board:
    if name not in BOARDS:
        raise UnknownNameError(f"unknown board {name!r}; emulated boards: {', '.join(BOARDS)}")
    return BOARDS[name]


def cache_dir() -> Path:
    return Path(os.environ.get("DLC_CACHE", Path.home() / ".cache" / "dlc"))


def root_dir() -> Path:
    return cache_dir() / "boards" / f"debian-{SUITE}-arm64"


def ensure_root(log: Callable[[str], None] = lambda line: None) -> Path:
    """Builds the arm64 root unless a complete one is cached; returns its path."""
    root = root_dir()
    if (root / "opt" / "dlc" / "READY").is_file():
        _install_board_files(root)  # keeps the server script in step with this dlc
        return root
    _require_tools("qemu-aarch64-static", "debootstrap", "dpkg-deb")
    with atomic_path(root, directory=True) as tmp:
        log(f"debootstrap arm64 Debian {SUITE} (first time only)")
        _debootstrap(tmp)
        log("installing the aarch64 wheels of apache-tvm and numpy")
        _install_wheels(tmp)
        _install_board_files(tmp)
        (tmp / "opt" / "dlc" / "READY").write_text(" ".join(WHEELS) + "\n")
    return root


def _require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BackendUnavailableError(f"the emulated board needs {', '.join(missing)}: {SETUP_HINT}")


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DeviceError(f"{what} failed (exit {proc.returncode}): {tail[0]}")


def _debootstrap(root: Path) -> None:
    mirror = os.environ.get("DLC_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    _run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3",
          SUITE, str(root), mirror], "debootstrap of the arm64 root")
    for deb in sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"unpacking {deb.name}")
    if not (root / GUEST_PYTHON.lstrip("/")).exists():
        raise DeviceError(f"the arm64 root has no {GUEST_PYTHON} after unpacking; delete {root} and retry")


def _install_wheels(root: Path) -> None:
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--only-binary=:all:",
          "--python-version", "3.11", "--implementation", "cp", *platforms,
          "--target", str(root / "opt" / "dlc" / "site"), *WHEELS], "pip install of the aarch64 wheels")


def _install_board_files(root: Path) -> None:
    for name in ("sitecustomize.py", "board_server.py"):
        shutil.copyfile(FILES / name, root / "opt" / "dlc" / name)


class EmulatedBoard:
    """A running emulated board; use as a context manager, or call `stop()`."""

    def __init__(self, board: Board, root: Path, port: int, key: str, tracker: str | None = None,
                 log_path: Path | None = None):
        self.board, self.root, self.port, self.key = board, root, port, key
        self.wrapper = self._write_wrapper()
        log_path = log_path or cache_dir() / "boards" / f"{board.name}-{port}.log"
        self.log_path = log_path
        env = {**os.environ, "DLC_BOARD_PYTHON": str(self.wrapper), "DLC_BOARD": board.name,
               "DLC_BOARD_CPU": board.qemu_cpu, "PYTHONPATH": "/opt/dlc:/opt/dlc/site",
               "PYTHONDONTWRITEBYTECODE": "1"}
        cmd = [str(self.wrapper), "/opt/dlc/board_server.py", "--port", str(port), "--key", key]
        if tracker:
            cmd += ["--tracker", tracker]
        self._log = open(log_path, "w")
        # A session of its own, so stop() can end the server and every worker it spawned.
        self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                        start_new_session=True)

    def _write_wrapper(self) -> Path:
        wrapper = self.root.parent / f"python-{self.board.qemu_cpu}"
        qemu = shutil.which("qemu-aarch64-static")
        text = (f'#!/bin/sh\nexec "{qemu}" -cpu {self.board.qemu_cpu} -L "{self.root}" '
                f'"{self.root}{GUEST_PYTHON}" "$@"\n')
        if not wrapper.exists() or wrapper.read_text() != text:
            with atomic_path(wrapper) as tmp:
                tmp.write_text(text)
        if not os.access(wrapper, os.X_OK):  # atomic_path gives a new file the mode open() would: not executable
            wrapper.chmod(0o755)
        return wrapper

    def wait_ready(self, timeout: float = 180.0) -> "EmulatedBoard":
        """Blocks until the RPC server listens (importing TVM under qemu takes ~10-20 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("DLC-BOARD-READY"):
                return self
            if not line and self.process.poll() is not None:
                break
        self.stop()
        raise DeviceError(f"the emulated {self.board.name} did not start within {timeout:.0f} s; "
                          f"see {self.log_path}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def __enter__(self) -> "EmulatedBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_board(name: str, port: int = 9190, key: str | None = None, tracker: str | None = None,
                log: Callable[[str], None] = lambda line: None) -> EmulatedBoard:
    """Builds (once) and starts the emulated board `name`; returns it once it accepts RPC."""
    board = get_board(name)
    root = ensure_root(log)
    log(f"starting TVM's RPC server on the emulated {name} (qemu -cpu {board.qemu_cpu})")
    return EmulatedBoard(board, root, port, key if key is not None else name, tracker).wait_ready()
