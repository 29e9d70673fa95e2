"""Elementwise, broadcast, transpose, reshape, concatenation, padding: kernels without a reduction.

Chains of such blocks are inlined into the last one, which then runs as one flat loop over
its output: vectorized over the innermost vector's worth, shared out over the cores when
it is large enough to pay for waking them.
"""

from __future__ import annotations

from dlc.compiler.schedules.base import CpuRule, inline_what_can_be
from dlc.compiler.schedules.tiled import schedule_injective


class Injective(CpuRule):
    family = "injective (elementwise, transpose, pad)"

    def schedule(self, sch, blocks, traits) -> bool:
        if not all(b.is_injective() for b in blocks):
            return False
        for info in inline_what_can_be(sch, blocks, keep_pads=False):
            schedule_injective(sch, info, traits)
        return True
