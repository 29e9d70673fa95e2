"""What every CPU schedule rule needs to know: the target's vector width, registers and cores,
and how to read a kernel's blocks (which to inline, which one does the work)."""

from __future__ import annotations

import functools
from dataclasses import dataclass


class CpuRule:
    """A default schedule for one kernel family on CPUs: `apply` returns a Schedule, or None if
    the kernel is not of its family (the next rule is tried), as DLight's rules do for GPUs.

    A rule implements `schedule(sch, blocks, traits) -> bool` on the kernel's blocks in normal
    form (one loop per block axis); False declines the kernel.
    """

    family: str = ""  # what it schedules, for reports

    def apply(self, func, target, tunable: bool):
        from tvm import s_tir
        from tvm.s_tir.dlight.analysis import normalize_prim_func

        if target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        blocks = normalize_prim_func(sch)
        if not blocks:
            return None
        return sch if self.schedule(sch, blocks, cpu_traits(target)) else None

    def schedule(self, sch, blocks, traits: CpuTraits) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class CpuTraits:
    """The few facts about a CPU target that decide a schedule's shape."""

    vector_bits: int  # 512 (AVX-512), 256 (AVX2/AVX), 128 (NEON, SSE)
    registers: int  # vector registers: 32 (AVX-512, AArch64), 16 (AVX2, SSE, ARMv7 as q registers)
    cores: int
    int8_dot: str | None = None  # its integer dot product (dlc.compiler.int8_dot.DOT_PRODUCTS), if it has one

    def lanes(self, dtype_bits: int = 32) -> int:
        return max(self.vector_bits // dtype_bits, 1)


# the integer dot products of dlc.compiler.int8_dot, best first, with the CPU features each needs
INT_DOT_FEATURES = (("vnni", {"avx512vnni", "avx512bw"}), ("pmaddwd512", {"avx512bw"}), ("pmaddwd256", {"avx2"}))


@functools.lru_cache(maxsize=64)
def _traits(target_json: str) -> CpuTraits:
    import json

    import tvm
    from tvm.target import codegen

    spec = json.loads(target_json)
    features = codegen.llvm_get_cpu_features(tvm.target.Target(spec))
    triple = spec.get("mtriple", "")
    if "avx512f" in features:
        bits, registers = 512, 32
    elif "avx" in features:
        bits, registers = 256, 16
    else:  # SSE, NEON, anything else with 128-bit vectors
        bits, registers = 128, 32 if triple.startswith("aarch64") or "neon" in features and "fp-armv8" in features else 16
    dot = next((name for name, needs in INT_DOT_FEATURES if needs <= features), None)
    return CpuTraits(bits, registers, int(spec.get("num-cores", 1)), dot)


def cpu_traits(target) -> CpuTraits:
    """`target` (a tvm.target.Target of kind llvm) as CpuTraits; LLVM expands its mcpu and mattr."""
    import json

    spec = dict(target.export())
    plain = {k: [str(x) for x in v] if k == "mattr" else v if isinstance(v, int) else str(v)
             for k, v in spec.items() if k in ("kind", "mtriple", "mcpu", "mattr", "num-cores")}
    return _traits(json.dumps(plain, sort_keys=True))


def divisor_at_most(extent: int, limit: int, choices=(64, 48, 32, 24, 16, 12, 8, 6, 4, 3, 2, 1)) -> int:
    """The largest of `choices` that divides `extent` and is at most `limit` (1 at worst)."""
    return next(c for c in choices if c <= limit and extent % c == 0)


def inline_what_can_be(sch, blocks, keep_pads: bool = True):
    """Inlines injective blocks into their consumers; with `keep_pads`, not those that pad.

    A padding block inlined into a convolution puts an `if` in its innermost loop; kept, it
    costs one copy of the input. Returns the blocks left: the padding producers, the blocks
    that do the work, and the last of each elementwise chain after them (the epilogue).
    """
    from tvm_ffi import get_global_func

    has_if = get_global_func("s_tir.schedule.HasIfThenElse")
    remaining = []
    for info in blocks:
        block = info.block_rv
        pads = keep_pads and has_if(sch.get(block))
        if info.is_injective() and not pads and sch.get_consumers(block):
            try:
                sch.compute_inline(block)
                continue
            except Exception:  # noqa: BLE001 - TVM says why with a ScheduleError; the block stays as it is
                pass
        remaining.append(info)
    return remaining


def int_extent(sch, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if hasattr(extent, "value") or isinstance(extent, int) else None
