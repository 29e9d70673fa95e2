"""Pipelines, and the runner that verifies every pass against the model before it.

A pipeline is a plain function returning a list of passes; `-O0`…`-O3` choose one and
`--passes a,b` names passes explicitly. The runner applies them in order and records,
per pass: name, whether it changed the model, its stats, seconds, node counts, and the
largest output difference from the model before it on fixed sample inputs, run by ONNX
Runtime with its own graph optimizations off (so ONNX Runtime checks the graph as
written rather than its own rewrite of it). A pass beyond its tolerance, or one that
leaves a model the ONNX checker rejects, stops the pipeline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir

from dlc.errors import DlcError, NumericMismatchError, UnknownNameError, first_line
from dlc.numerics import Tolerance, compare
from dlc.passes.cleanup import (
    DeduplicateInitializersPass,
    EliminateCommonSubexpressionsPass,
    EliminateDeadCodePass,
    FoldConstantsPass,
    InferShapesPass,
    RemoveIdentityPass,
    RemoveNoOpsPass,
)
from dlc.passes.fusion import (
    EliminateTransposeReshapePass,
    FuseActivationChainsPass,
    FuseConvAddPass,
    FuseConvBatchNormPass,
    FuseGeluPass,
    FuseLayerNormPass,
    FuseMatMulAddPass,
    FusePadConvPass,
)
from dlc.passes.infra import REGISTRY, Pass, Stats, count_nodes

LEVELS = (0, 1, 2, 3)


def cleanup() -> list[Pass]:
    """-O1: exact simplifications every backend benefits from.

    Common subexpressions go early: exporters repeat `x - mean` and the like, and a fusion
    pattern only matches when both uses read the same value.
    """
    return [InferShapesPass(), FoldConstantsPass(), EliminateCommonSubexpressionsPass(), RemoveNoOpsPass(),
            RemoveIdentityPass(), EliminateDeadCodePass()]


def fusion() -> list[Pass]:
    """Rewrites to fewer, larger ops; shapes from cleanup's inference let the checks decide."""
    return [FuseConvBatchNormPass(), FuseConvAddPass(), FuseMatMulAddPass(), EliminateTransposeReshapePass(),
            FuseLayerNormPass(), FuseGeluPass()]


def level(n: int) -> list[Pass]:
    """The passes of optimization level `n` (0 = none, 3 = everything that keeps float32 numerics).

    -O1 cleans up, -O2 adds the fusions, -O3 the rewrites that rarely fire on exported
    models (Pad into Conv, Relu/Clip chains).
    """
    if n not in LEVELS:
        raise UnknownNameError(f"optimization level {n} does not exist; use -O0, -O1, -O2 or -O3")
    if n == 0:
        return []
    if n == 1:
        return cleanup()
    # fusions leave folded weights, zero biases and orphaned nodes behind: fold and sweep once more
    passes = [*cleanup(), *fusion(), FoldConstantsPass(), RemoveNoOpsPass(), RemoveIdentityPass(),
              DeduplicateInitializersPass(), EliminateDeadCodePass()]
    if n == 3:
        passes += [FusePadConvPass(), FuseActivationChainsPass(), EliminateDeadCodePass()]
    return passes


def from_names(names: list[str]) -> list[Pass]:
    """Passes by registered name, with default options; every unknown name is reported at once."""
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise UnknownNameError(f"unknown pass(es) {', '.join(map(repr, unknown))}; valid passes: "
                               f"{', '.join(sorted(REGISTRY))} (see `dlc optimize --list`)")
    return [REGISTRY[n]() for n in names]


@dataclass
class PassRecord:
    name: str
    modified: bool
    stats: Stats
    seconds: float
    nodes_before: int
    nodes_after: int
    max_abs_diff: float | None  # vs the model before this pass; None when not verified
    limit: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "modified": self.modified, "stats": self.stats, "seconds": round(self.seconds, 4),
                "nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
                "max_abs_diff": self.max_abs_diff, "limit": self.limit}


class Verifier:
    """Runs models on ONNX Runtime with fixed inputs and compares each with the one before."""

    def __init__(self, model: ir.Model, inputs: dict[str, np.ndarray]):
        self.inputs = inputs
        self.reference = self.run(model)

    def run(self, model: ir.Model) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(ir.serde.serialize_model(model).SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise DlcError(f"ONNX Runtime cannot load the model to verify the passes ({first_line(e)}); "
                           f"fix the model, or skip verification with --no-verify") from e
        # a pass may change input dtypes (float16 without float32 I/O): feed what the model takes
        feed = {i.name: self.inputs[i.name].astype(_np_dtype(i.type)) for i in session.get_inputs()}
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, (np.asarray(v) for v in session.run(names, feed))))

    def step(self, model: ir.Model, pass_name: str, tolerance: Tolerance | None) -> tuple[float, float | None]:
        """Max abs diff against the previous model and its limit; raises beyond the limit.

        A pass without a tolerance (quantization: it changes the numerics on purpose) has its
        difference recorded, not judged.
        """
        outputs = self.run(model)
        result = compare(outputs, self.reference, tolerance or Tolerance())
        if tolerance is None:
            self.reference = outputs
            return result.max_abs_diff, None
        if not result.ok:
            raise NumericMismatchError(f"pass {pass_name!r} changed output {'; '.join(result.failures)} on the "
                                       f"sample inputs; nothing was written (leave it out with --passes, or raise "
                                       f"--atol/--rtol if this difference is acceptable)")
        self.reference = outputs
        return result.max_abs_diff, result.limit


def _np_dtype(ort_type: str) -> np.dtype:
    names = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
             "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(uint8)": "uint8",
             "tensor(int8)": "int8"}
    return np.dtype(names.get(ort_type, "float32"))


def run_passes(model: ir.Model, passes: list[Pass], verifier: Verifier | None = None,
               tolerance: Tolerance | None = None) -> tuple[ir.Model, list[PassRecord]]:
    """Applies `passes` in order; each one is checked (ONNX checker, then outputs) before the next.

    `tolerance` overrides each pass's own; the model is changed in place.
    """
    records = []
    for p in passes:
        nodes_before, start = count_nodes(model), time.perf_counter()
        result = p(model)
        model, seconds = result.model, time.perf_counter() - start
        _check(model, p.name)
        diff, limit = verifier.step(model, p.name, tolerance or p.tolerance) if verifier else (None, None)
        records.append(PassRecord(p.name, result.modified, getattr(result, "stats", {}), seconds, nodes_before,
                                  count_nodes(model), diff, limit))
    return model, records


def _check(model: ir.Model, pass_name: str) -> None:
    try:
        onnx.checker.check_model(ir.serde.serialize_model(model), full_check=False)
    except onnx.checker.ValidationError as e:
        raise DlcError(f"pass {pass_name!r} produced a model the ONNX checker rejects ({first_line(e)}); nothing was "
                       f"written; leave the pass out with --passes and report this as a dlc bug") from e
