"""Compilation targets: named presets, each a TVM JSON target plus how to link for it.

TVM 0.27 takes targets as JSON dicts and rejects "-mcpu=native", so `host` is detected
with LLVM (`llvm_get_system_cpu`). Cross targets are linked with the GNU cross compilers
from Debian (`scripts/setup-edge` installs them), Android with LLVM's lld.

Whether a target's code runs on this machine is decided before any of it is loaded:
the same architecture is not enough (code for `x86-64-avx512` dies with SIGILL on an
AVX2-only CPU), so the target's instruction-set features, as LLVM expands its `mcpu`
and `mattr`, are compared with the features this CPU reports (/proc/cpuinfo, which
also reflects what a hypervisor hides).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlc.errors import DlcError, UnknownNameError, first_line

SETUP_EDGE = "./scripts/setup-edge"


@dataclass(frozen=True)
class Linker:
    """How to turn TVM's object files into a shared library for a target."""

    command: str  # the executable, e.g. "aarch64-linux-gnu-gcc"
    package: str  # the Debian package providing it
    style: str = "gcc"  # "gcc" (a compiler driver) or "lld" (ld.lld called directly)
    options: tuple[str, ...] = ()

    def fcompile(self):
        """A function for `export_library(fcompile=...)`, or a clear error if the tool is absent."""
        from tvm.support import cc

        if shutil.which(self.command) is None:
            raise DlcError(f"the linker {self.command} is not installed; install Debian's {self.package} "
                           f"(run {SETUP_EDGE})")
        if self.style == "lld":
            return cc.cross_compiler(_lld_create_shared(self.command), list(self.options))
        return cc.cross_compiler(self.command, list(self.options))


@dataclass(frozen=True)
class TargetSpec:
    name: str
    tvm: dict[str, Any]  # what tvm.target.Target() takes
    arch: str  # machine the host code runs on, as platform.machine() spells it
    device: str = "cpu"  # "cpu" or "cuda": where the kernels run
    linker: Linker | None = None  # None: the host's default C compiler
    description: str = ""
    tags: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tvm": self.tvm, "arch": self.arch, "device": self.device,
                "linker": self.linker.command if self.linker else None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TargetSpec":
        """The target recorded in a manifest (the inverse of `to_dict`; the linker by its command)."""
        linker = next((l for l in _LINKERS if l.command == d.get("linker")), None)
        return cls(d["name"], d["tvm"], d["arch"], d.get("device", "cpu"), linker)

    def why_not_here(self) -> str | None:
        """None if this machine can run the target's code, else why not ("this CPU lacks avx512f")."""
        if self.arch != host_arch():
            return f"the library runs on {self.arch}, this machine is {host_arch()}"
        if self.device == "cuda" and not cuda_present():
            return "the library runs on a CUDA GPU and this machine has none"
        missing = missing_cpu_features(self.tvm)
        if missing:
            return f"this CPU lacks {', '.join(missing)}"
        return None

    def tvm_target(self):
        return self._tvm_target

    @functools.cached_property
    def _tvm_target(self):  # built once per spec: TVM parses and validates the JSON each time
        import tvm

        return tvm.target.Target(self.tvm)

    def fcompile(self):
        return self.linker.fcompile() if self.linker else None


def _lld_create_shared(lld: str):
    import subprocess

    def create_shared(output, objects, options=None):
        cmd = [lld, "-shared", "-o", output, *objects, *(options or [])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise DlcError(f"{lld} failed to link {output}: {proc.stderr.strip().splitlines()[-1:]}")

    create_shared.output_format = "so"
    return create_shared


AARCH64_GCC = Linker("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
ARMHF_GCC = Linker("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf")
ANDROID_LLD = Linker("ld.lld", "lld", style="lld", options=("--build-id", "-z", "noexecstack"))


def _arm64(name: str, cpu: str, description: str, linker: Linker = AARCH64_GCC, triple="aarch64-linux-gnu",
           cores: int = 4):
    return TargetSpec(name, {"kind": "llvm", "mtriple": triple, "mcpu": cpu, "mattr": ["+neon"], "num-cores": cores},
                      "aarch64", linker=linker, description=description)


def _cuda(name: str, sm: str, description: str, host: dict | None = None, arch="x86_64", linker=None):
    return TargetSpec(name, {"kind": "cuda", "arch": sm, "host": host or {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}},
                      arch, device="cuda", linker=linker, description=description)


PRESETS: dict[str, TargetSpec] = {t.name: t for t in [
    TargetSpec("x86-64-avx2", {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}, "x86_64",
               description="x86-64 with AVX2 and FMA (Haswell and newer, Zen)"),
    TargetSpec("x86-64-avx512", {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"}, "x86_64",
               description="x86-64 with AVX-512 (Skylake-SP and newer servers)"),
    _arm64("raspberry-pi-3", "cortex-a53", "Raspberry Pi 3, 64-bit OS (Cortex-A53)"),
    _arm64("raspberry-pi-4", "cortex-a72", "Raspberry Pi 4, 64-bit OS (Cortex-A72)"),
    _arm64("raspberry-pi-5", "cortex-a76", "Raspberry Pi 5, 64-bit OS (Cortex-A76)"),
    TargetSpec("armv7", {"kind": "llvm", "mtriple": "armv7a-linux-gnueabihf", "mcpu": "cortex-a7",
                         "mattr": ["+neon", "+vfp4"], "mfloat-abi": "hard", "num-cores": 4}, "armv7l", linker=ARMHF_GCC,
               description="32-bit ARMv7 Linux, hard float, NEON (Cortex-A7 class; Pi 2, 32-bit Pi OS)"),
    _arm64("android-arm64", "cortex-a76", "Android phones, arm64-v8a (Cortex-A76/A78 class)",
           linker=ANDROID_LLD, triple="aarch64-linux-android", cores=8),
    _cuda("cuda-sm75", "sm_75", "NVIDIA Turing GPUs (T4, RTX 20xx)"),
    _cuda("cuda-sm80", "sm_80", "NVIDIA Ampere data-centre GPUs (A100, A30)"),
    _cuda("cuda-sm86", "sm_86", "NVIDIA Ampere consumer GPUs (RTX 30xx, A10)"),
    _cuda("cuda-sm89", "sm_89", "NVIDIA Ada GPUs (L4, L40, RTX 40xx)"),
    _cuda("cuda-sm90", "sm_90", "NVIDIA Hopper GPUs (H100, H200)"),
    _cuda("jetson-orin", "sm_87", "NVIDIA Jetson AGX Orin / Orin Nano (aarch64 host, sm_87 GPU)",
          host={"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a78"}, arch="aarch64",
          linker=AARCH64_GCC),
]}


_LINKERS = (AARCH64_GCC, ARMHF_GCC, ANDROID_LLD)


def host_arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def host_target() -> TargetSpec:
    """This CPU as LLVM names it, minus any feature of that model the CPU does not report.

    A virtual machine may hide features of the physical model (AVX-512 on a Zen 4 guest,
    say); LLVM names the model, so those features are switched off explicitly.
    """
    from tvm.target import codegen

    cpu = codegen.llvm_get_system_cpu()
    spec: dict[str, Any] = {"kind": "llvm", "mcpu": cpu, "num-cores": physical_cores()}
    hidden = missing_cpu_features(spec)
    if hidden:
        spec["mattr"] = [f"-{feature}" for feature in hidden]
    return TargetSpec("host", spec, host_arch(), description=f"this machine's CPU ({cpu})")


# LLVM's name of an instruction-set feature → the flag Linux lists in /proc/cpuinfo for it.
# Only features that add instructions are here; LLVM's tuning flags ("fast-gather") are not.
_X86_FLAGS = {
    "sse": "sse", "sse2": "sse2", "sse3": "pni", "ssse3": "ssse3", "sse4.1": "sse4_1", "sse4.2": "sse4_2",
    "sse4a": "sse4a", "popcnt": "popcnt", "avx": "avx", "avx2": "avx2", "fma": "fma", "fma4": "fma4", "f16c": "f16c",
    "bmi": "bmi1", "bmi2": "bmi2", "lzcnt": "abm", "movbe": "movbe", "aes": "aes", "pclmul": "pclmulqdq",
    "vaes": "vaes", "vpclmulqdq": "vpclmulqdq", "gfni": "gfni", "sha": "sha_ni", "adx": "adx", "rdrnd": "rdrand",
    "rdseed": "rdseed", "avx512f": "avx512f", "avx512cd": "avx512cd", "avx512bw": "avx512bw",
    "avx512dq": "avx512dq", "avx512vl": "avx512vl", "avx512ifma": "avx512ifma", "avx512vbmi": "avx512vbmi",
    "avx512vbmi2": "avx512_vbmi2", "avx512vnni": "avx512_vnni", "avx512bitalg": "avx512_bitalg",
    "avx512vpopcntdq": "avx512_vpopcntdq", "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16",
    "avxvnni": "avx_vnni", "amx-tile": "amx_tile", "amx-int8": "amx_int8", "amx-bf16": "amx_bf16",
    "amx-fp16": "amx_fp16",
}
_ARM64_FLAGS = {"neon": "asimd", "fp-armv8": "fp", "crc": "crc32", "aes": "aes", "sha2": "sha2",
                "dotprod": "asimddp", "fullfp16": "asimdhp", "i8mm": "i8mm", "bf16": "bf16", "sve": "sve",
                "sve2": "sve2", "lse": "atomics", "rcpc": "lrcpc"}
_ARM32_FLAGS = {"neon": "neon", "vfp3": "vfpv3", "vfp4": "vfpv4", "crc": "crc32", "fp16": "half"}
_FLAG_TABLES = {"x86_64": _X86_FLAGS, "aarch64": _ARM64_FLAGS, "armv7l": _ARM32_FLAGS}


def missing_cpu_features(tvm_target: dict[str, Any], features: list[str] | None = None) -> list[str]:
    """Instruction-set features the target's CPU code uses that this CPU lacks (LLVM names, sorted).

    `features`: those the code uses, as `cpu_features` gave them (an artifact records them);
    asked of LLVM when None. For a GPU target the host code is checked. Where this CPU's
    features cannot be read (no /proc/cpuinfo), nothing is reported missing.
    """
    table, flags = _FLAG_TABLES.get(host_arch(), {}), host_cpu_flags()
    if not table or not flags:
        return []
    if features is None:
        features = cpu_features(tvm_target)
    return sorted(f for f in features if f in table and table[f] not in flags)


def cpu_features(tvm_target: dict[str, Any]) -> list[str]:
    """The instruction-set features (LLVM names) the target's CPU code may use, among those dlc checks.

    Artifacts record them at compile time, so that loading one needs no LLVM: a runtime-only
    TVM (as on a deployment machine) has none.
    """
    import tvm
    from tvm.target import codegen

    host_side = tvm_target if tvm_target.get("kind") == "llvm" else tvm_target.get("host", {})
    if not host_side:
        return []
    known = set().union(*_FLAG_TABLES.values())
    return sorted(f for f in codegen.llvm_get_cpu_features(tvm.target.Target(host_side)) if f in known)


@functools.cache
def host_cpu_flags() -> frozenset[str]:
    """The CPU features Linux reports for this machine ("flags" on x86, "Features" on ARM)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def tvm_device(device: str, session=None):
    """The TVM device for a target's `device` ("cpu" or "cuda"): on this machine, or on an RPC session's."""
    import tvm

    return getattr(session or tvm, device)()


def cuda_present() -> bool:
    import tvm

    _load_cuda_runtime()
    return bool(tvm.cuda().exist)


def use_cuda_library(arch: str) -> None:
    """Readies TVM to open a CUDA library compiled for `arch` ("sm_90"): one built without a GPU holds CUDA C.

    `dlc compile --target cuda-*` needs no GPU, and TVM then keeps the kernels as CUDA C
    source, compiled with NVRTC when the library is loaded (TVM's `tvm_callback_cuda_compile`
    hook). TVM's own hook asks its compiler for the architecture, which a runtime-only TVM
    lacks ("module 'tvm.target._ffi_api' has no attribute 'TargetCurrent'"); this one is
    given the artifact's.
    """
    import tvm_ffi

    _load_cuda_runtime()

    def compile_with_nvrtc(code: str) -> bytes:
        from tvm.support.nvcc import compile_cuda

        return compile_cuda(code, target_format="cubin", arch=arch, compiler="nvrtc")

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_with_nvrtc, override=True)


def _load_cuda_runtime() -> None:
    """Loads TVM's CUDA runtime (libtvm_runtime_cuda) where TVM did not: it does so only beside its compiler.

    A runtime-only TVM (`TVM_USE_RUNTIME_LIB=1`, or the 250 MB compiler library left out, as
    on a deployment machine) would otherwise refuse every CUDA library ("a loader of that name
    is not registered"). Without a CUDA driver and runtime on the machine the load fails and
    CUDA stays absent, as before.
    """
    import tvm.base
    from tvm_ffi.libinfo import load_lib_ctypes

    loaded = tvm.base._LOADED_LIBS
    if "tvm_runtime_cuda" in loaded:
        return
    try:
        loaded["tvm_runtime_cuda"] = load_lib_ctypes(
            package="tvm", target_name="tvm_runtime_cuda", mode="RTLD_LOCAL",
            extra_lib_paths=[Path(loaded["tvm_runtime"]._name).resolve().parent])
    except (OSError, RuntimeError):  # no CUDA runtime here (FileNotFoundError is an OSError)
        pass


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def preset_names() -> list[str]:
    return ["host", *PRESETS]


def resolve_target(name: str) -> TargetSpec:
    """A preset name, or a TVM JSON target (`{"kind": "llvm", "mcpu": "skylake"}`).

    A CPU target without "num-cores" gets this machine's: MetaSchedule needs the count,
    and the default schedules split parallel work by it.
    """
    if name == "host":
        return host_target()
    if name in PRESETS:
        return _with_cores(PRESETS[name])
    if name.lstrip().startswith("{"):
        return _with_cores(_from_json(name))
    raise UnknownNameError(f"unknown target {name!r}; use one of: {', '.join(preset_names())} "
                           "(see `dlc targets`), or a TVM JSON target such as '{\"kind\": \"llvm\", \"mcpu\": \"skylake\"}'")


def _with_cores(spec: TargetSpec) -> TargetSpec:
    import dataclasses

    if spec.tvm.get("kind") != "llvm" or "num-cores" in spec.tvm:
        return spec
    return dataclasses.replace(spec, tvm={**spec.tvm, "num-cores": physical_cores()})


_TRIPLE_LINKERS = {"aarch64-linux-gnu": AARCH64_GCC, "aarch64-linux-android": ANDROID_LLD,
                   "armv7a-linux-gnueabihf": ARMHF_GCC, "arm-linux-gnueabihf": ARMHF_GCC}


def _from_json(text: str) -> TargetSpec:
    import tvm

    try:
        spec = json.loads(text)
        tvm.target.Target(spec)
    except (json.JSONDecodeError, ValueError, TypeError, RuntimeError) as e:
        raise UnknownNameError(f"invalid TVM target {text!r}: {first_line(e)}") from e
    host = spec.get("host", spec) if spec.get("kind") != "llvm" else spec
    triple = host.get("mtriple", "")
    arch = _triple_arch(triple) if triple else host_arch()
    linker = _TRIPLE_LINKERS.get(triple) if arch != host_arch() else None
    device = "cuda" if spec.get("kind") == "cuda" else "cpu"
    return TargetSpec("custom", spec, arch, device=device, linker=linker, description="a TVM JSON target")


def _triple_arch(triple: str) -> str:
    first = triple.split("-")[0]
    return "armv7l" if first.startswith("arm") else first
