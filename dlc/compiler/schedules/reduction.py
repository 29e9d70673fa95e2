"""Reductions over the innermost axis (softmax, layer norm, sums and means over the last axis),
and the fallback for every kernel no other rule takes.

Row reductions use TVM's own CPU rule (DLight's `cpu.Reduction`: rows shared out over the
cores, the elementwise steps vectorized). The fallback only parallelizes: each block's
leading spatial loops are shared out over the cores, and an injective block is vectorized;
it never leaves a kernel worse than TVM's default (a scalar, single-threaded loop nest).
"""

from __future__ import annotations

from dlc.compiler.schedules.base import CpuRule, inline_what_can_be, int_extent
from dlc.compiler.schedules.tiled import PARALLEL_MIN_WORK, schedule_injective


class RowReduction(CpuRule):
    family = "row reduction (softmax, layer norm)"

    def apply(self, func, target, tunable):  # TVM's own rule, as it is
        from tvm.s_tir import dlight

        return dlight.cpu.Reduction().apply(func, target, tunable) if target.kind.name == "llvm" else None


class Fallback(CpuRule):
    family = "fallback (parallel outer loops)"

    def schedule(self, sch, blocks, traits) -> bool:
        for info in inline_what_can_be(sch, blocks):
            if info.is_injective():
                schedule_injective(sch, info, traits)
            else:
                _parallel_leading_spatial(sch, info, traits)
        return True


def _parallel_leading_spatial(sch, info, traits) -> None:
    spatial = []
    for iteration in info.iters:
        if iteration.kind != "S":
            break
        spatial.append(iteration.loop_rv)
    work = 1
    for iteration in info.iters:
        work *= int_extent(sch, iteration.loop_rv) or 1
    if not spatial or traits.cores < 2 or work < PARALLEL_MIN_WORK:
        return
    fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
    if (int_extent(sch, fused) or 0) > 1:
        sch.parallel(fused)
