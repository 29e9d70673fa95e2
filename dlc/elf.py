"""Reading the ELF header of a compiled library: which machine and ABI it was built for.

Enough to refuse an artifact for the wrong architecture before it is uploaded or
opened; no third-party ELF parser needed for the three fields dlc checks.
"""

from __future__ import annotations

from pathlib import Path

from dlc.errors import InvalidModelError

MACHINES = {0x03: "i686", 0x28: "armv7l", 0x3E: "x86_64", 0xB7: "aarch64", 0xF3: "riscv64"}
OS_ABIS = {0: "SYSV", 3: "GNU/Linux"}


def read_elf_header(path: str | Path) -> dict:
    """`{"class": 64, "endian": "little", "machine": "aarch64", "os_abi": "SYSV"}` for an ELF file."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise InvalidModelError(f"{path} is not an ELF shared library; recompile the artifact with `dlc compile`")
    endian = "little" if head[5] == 1 else "big"
    machine = int.from_bytes(head[18:20], endian)
    return {"class": 64 if head[4] == 2 else 32, "endian": endian,
            "machine": MACHINES.get(machine, hex(machine)), "os_abi": OS_ABIS.get(head[7], str(head[7]))}
