"""The pass infrastructure every dlc graph pass plugs into.

A pass is a small class on onnx-ir's pass base: options go in `__init__`, `call(model)`
returns a `PassResult` that carries a stats dict, and nothing touches files or prints.
Fusions are not hand-written loops: they are onnxscript rewrite rules (pattern, a check
that returns a reason, rewrite) that one `RewritePass` applies until none matches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, ClassVar

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass, RemoveUnusedOpsetsPass
from onnxscript.rewriter import RewriteRule, RewriteRuleSet

from dlc.numerics import Tolerance

Stats = dict[str, Any]


@dataclasses.dataclass
class PassResult(ir.passes.PassResult):
    """onnx-ir's result plus what the pass did, e.g. `{"conv-bn": 3}`."""

    stats: Stats = dataclasses.field(default_factory=dict)


class Pass(ir.passes.InPlacePass):
    """A dlc pass: in place on an `ir.Model`, registered under `name` for `--passes`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    tolerance: ClassVar[Tolerance | None] = Tolerance()  # what the runner accepts against the model before; None:
    # the pass changes numerics on purpose (quantization), its difference is recorded, not judged

    def call(self, model: ir.Model) -> PassResult:
        raise NotImplementedError


class RewritePass(Pass):
    """Applies the class's named rules until none matches; stats count the rewrites per rule.

    Each rule runs on its own so that the stats say which fusion fired; a round repeats
    while any rule fired, because one rewrite can expose another (BN into a Conv that
    a later Add is merged into). Initializers the rewrites orphaned are removed.
    """

    rules: ClassVar[dict[str, RewriteRule | RewriteRuleSet]]  # a set for rules that commute Add/Mul
    max_rounds: ClassVar[int] = 8

    def call(self, model: ir.Model) -> PassResult:
        counts = dict.fromkeys(self.rules, 0)
        for _ in range(self.max_rounds):
            fired = 0
            for rule_name, rule in self.rules.items():
                ruleset = rule if isinstance(rule, RewriteRuleSet) else RewriteRuleSet([rule])
                n = ruleset.apply_to_model(model)
                counts[rule_name] += n
                fired += n
            if not fired:
                break
        modified = any(counts.values())
        if modified:
            RemoveUnusedNodesPass()(model)
            RemoveUnusedOpsetsPass()(model)
        return PassResult(model, modified, {k: v for k, v in counts.items() if v})


REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: makes the pass available by its `name` in pipelines and `--passes`."""
    if cls.name in REGISTRY:
        raise ValueError(f"pass name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def count_nodes(model: ir.Model) -> int:
    """Nodes of the main graph and of every subgraph and function."""
    graphs = [model.graph, *model.functions.values()]
    return sum(1 for graph in graphs for _ in ir.traversal.RecursiveGraphIterator(graph))


def onnx_opset(model: ir.Model) -> int:
    """The model's default-domain (ai.onnx) opset version; 0 if it imports none."""
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))


@contextlib.contextmanager
def quiet(logger_name: str):
    """Messages below ERROR from the logger `logger_name` ("" is the root logger) dropped while inside."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def replace_contents(model: ir.Model, new: ir.Model) -> None:
    """Makes `model` hold `new` (a pass that rebuilds the model through another library stays in place)."""
    model.graph = new.graph  # opset imports live on the graph
    model.ir_version = new.ir_version
    model.functions.clear()
    model.functions.update(new.functions)
