"""Levels, pass names, and the runner: per-pass records, and stopping on a pass that breaks numerics."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from dlc.errors import DlcError, NumericMismatchError, UnknownNameError
from dlc.onnxio import io_specs
from dlc.passes import (
    Pass,
    PassResult,
    Tolerance,
    Verifier,
    from_names,
    level,
    run_passes,
)
from dlc.specs import random_inputs
from tests.passes.helpers import bn_params, parse, weights

MODEL = '<ir_version: 9, opset_import: ["" : 18]>' + """
    g (float[N,3,6,6] x) => (float[N,4,6,6] y) {
        i = Identity(x)  c = Conv<pads = [1, 1, 1, 1]>(i, w)  b = BatchNormalization(c, gamma, beta, mean, var)
        y = Relu(b) }"""


def _model():
    proto = parse(MODEL, w=weights(4, 3, 3, 3), **bn_params(4))
    return ir.serde.deserialize_model(proto), random_inputs(io_specs(proto)[0], batch=2)


def test_levels_grow_from_nothing_to_everything():
    names = {n: [p.name for p in level(n)] for n in range(4)}
    assert names[0] == []
    assert names[1][:2] == ["infer-shapes", "fold-constants"] and "fuse-conv-bn" not in names[1]
    assert "fuse-conv-bn" in names[2] and "fuse-gelu" in names[2]
    assert set(names[2]) < set(names[3]) and "fuse-pad-conv" in names[3]
    assert "to-float16" not in names[3]  # float16 changes numerics: only on request
    with pytest.raises(UnknownNameError, match="-O0, -O1, -O2 or -O3"):
        level(4)


def test_unknown_pass_names_are_all_reported_with_the_valid_ones():
    with pytest.raises(UnknownNameError) as e:
        from_names(["fold-constants", "fuse-cnv-bn", "nope"])
    assert "'fuse-cnv-bn', 'nope'" in str(e.value) and "fuse-conv-bn" in str(e.value)


def test_runner_records_every_pass_and_verifies_it():
    model, inputs = _model()
    model, records = run_passes(model, level(2), Verifier(model, inputs))
    assert [r.name for r in records] == [p.name for p in level(2)]
    assert all(a.nodes_after == b.nodes_before for a, b in zip(records, records[1:]))
    assert records[0].nodes_before == 4 and records[-1].nodes_after == 2  # Conv (BN folded in) + Relu
    fused = next(r for r in records if r.name == "fuse-conv-bn")
    assert fused.modified and fused.stats == {"conv-bn": 1} and 0 < fused.max_abs_diff <= fused.limit
    assert all(r.max_abs_diff is not None and r.seconds >= 0 for r in records)


class _ScaleWeights(Pass):
    """A deliberately wrong pass: multiplies every initializer by 1.01."""

    name = "scale-weights"
    summary = "test only"

    def call(self, model):
        for value in model.graph.initializers.values():
            value.const_value = ir.tensor(value.const_value.numpy() * np.float32(1.01))
        return PassResult(model, True, {})


def test_a_pass_that_breaks_numerics_stops_the_pipeline_naming_it():
    model, inputs = _model()
    with pytest.raises(NumericMismatchError, match=r"pass 'scale-weights' changed output 'y' by .* \(limit"):
        run_passes(model, [*level(1), _ScaleWeights(), *level(1)], Verifier(model, inputs))


def test_a_looser_tolerance_lets_an_intended_change_through():
    model, inputs = _model()
    _, records = run_passes(model, [_ScaleWeights()], Verifier(model, inputs), Tolerance(atol=1.0, rtol=0.1))
    assert 0 < records[0].max_abs_diff <= records[0].limit


class _Corrupt(Pass):
    name = "corrupt"
    summary = "test only"

    def call(self, model):
        next(iter(model.graph)).op_type = "NoSuchOp"
        return PassResult(model, True, {})


def test_a_pass_that_breaks_the_model_is_named():
    model, inputs = _model()
    with pytest.raises(DlcError, match="pass 'corrupt' produced a model the ONNX checker rejects"):
        run_passes(model, [_Corrupt()], Verifier(model, inputs))


def test_every_registered_pass_has_its_own_test():
    from pathlib import Path

    from dlc.passes import REGISTRY

    sources = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    missing = [cls.__name__ for cls in REGISTRY.values() if f"{cls.__name__}(" not in sources]
    assert not missing, f"passes without a test: {missing}"
