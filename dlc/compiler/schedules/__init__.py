"""Default CPU schedules: what DLight is for GPUs, for the kernels dlc compiles for CPUs.

TVM 0.27's CPU pipeline legalizes and fuses but schedules nothing, so every kernel runs
as a scalar, single-threaded loop nest. Each rule here takes one kernel family (a rule
returns None for a kernel that is not its own) and they are tried in order:

    Int8Dot          int8 conv2d and dense over packed weights (dlc.compiler.int8_dot): VNNI dot products
    TiledReduction   matmul, dense, batch matmul, NHWC conv2d (depthwise too), pooling, means
    RowReduction     softmax, layer norm, reductions over the innermost axis (TVM's own rule)
    Injective        elementwise, transposes, padding, concatenation
    Fallback         anything else: outer loops shared out over the cores

Kernels a tuning database has a record for keep their tuned schedule. Every scheduled
kernel carries the attribute `dlc.schedule` (its rule's family, or "tuned") so that a
compile can say what it scheduled and how.
"""

from __future__ import annotations

import logging
from typing import Any

_log = logging.getLogger(__name__)

SCHEDULE_ATTR = "dlc.schedule"
TUNED = "tuned"
UNSCHEDULED = "none"


def cpu_rules() -> list:
    from dlc.compiler.schedules.injective import Injective
    from dlc.compiler.schedules.int8 import Int8Dot
    from dlc.compiler.schedules.reduction import Fallback, RowReduction
    from dlc.compiler.schedules.tiled import TiledReduction

    return [Int8Dot(), TiledReduction(), RowReduction(), Injective(), Fallback()]


def apply_default_schedules(mod, target, rules=None):
    """Schedules every PrimFunc of `mod` not scheduled yet with the first rule that takes it.

    Returns a new module; a kernel no rule takes is left as it is (and reported "none").
    """
    import tvm
    from tvm import tirx

    rules = cpu_rules() if rules is None else rules
    updated = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if _is_scheduled(func):
            updated[gv] = func if SCHEDULE_ATTR in func.attrs else func.with_attr(SCHEDULE_ATTR, TUNED)
            continue
        scheduled = first_schedule(func, target, rules, gv.name_hint)
        if scheduled is not None:
            sch, rule = scheduled
            updated[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True).with_attr(SCHEDULE_ATTR, rule.family)
    result = tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
    for gv, func in updated.items():
        result[gv] = func
    return result


def first_schedule(func, target, rules=None, name: str = "main"):
    """(Schedule, rule) of the first rule that takes the PrimFunc `func`; None if none does."""
    for rule in cpu_rules() if rules is None else rules:
        try:
            sch = rule.apply(func, target, False)
        except (RuntimeError, ValueError) as e:  # TVM refused a primitive on this kernel: the next rule takes it
            _log.warning("rule %r failed on kernel %s, trying the next: %s", rule.family, name,
                         (str(e).strip().splitlines() or [""])[-1])
            continue
        if sch is not None:
            return sch, rule
    return None


def _is_scheduled(func) -> bool:
    return bool(func.attrs) and "tirx.is_scheduled" in func.attrs and bool(func.attrs["tirx.is_scheduled"])


def schedule_summary(mod) -> dict[str, Any]:
    """How each kernel was scheduled, with its share of the model's FLOPs (TVM's own estimate).

    {"kernels": {"tiled reduction (...)": 5, "none": 0, ...}, "flops": {... share ...},
     "scheduled_flops_share": 0.99, "per_kernel": [{"name", "schedule", "flops"}]}
    """
    from tvm import tirx
    from tvm.s_tir.analysis import estimate_tir_flops

    rows = []
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            how = func.attrs[SCHEDULE_ATTR] if func.attrs and SCHEDULE_ATTR in func.attrs else UNSCHEDULED
            rows.append({"name": gv.name_hint, "schedule": str(how), "flops": _flops(estimate_tir_flops, func)})
    total = sum(r["flops"] for r in rows)
    kernels: dict[str, int] = {}
    shares: dict[str, float] = {}
    for r in rows:  # a model without FLOPs (an argmax, a transpose) is shared out by kernel count
        kernels[r["schedule"]] = kernels.get(r["schedule"], 0) + 1
        share = r["flops"] / total if total else 1.0 / len(rows)
        shares[r["schedule"]] = shares.get(r["schedule"], 0.0) + share
    scheduled = sum(s for how, s in shares.items() if how != UNSCHEDULED)
    return {"kernels": kernels, "flops_share": {k: round(v, 4) for k, v in shares.items()},
            "scheduled_flops_share": round(scheduled, 4),
            "per_kernel": sorted(rows, key=lambda r: -r["flops"])}


def _flops(estimate, func) -> float:
    import tvm

    try:
        return float(estimate(tvm.IRModule({"main": func})))
    except Exception:  # noqa: BLE001 - the estimator refuses some loop forms; such a kernel counts as 0
        return 0.0
