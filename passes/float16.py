"""float32 → float16 conversion, by onnxconverter-common's converter.

Initializers and intermediate tensors become float16, halving the weights; ops that have
no float16 kernel in ONNX Runtime stay float32 behind Casts (the converter's block list).
With `keep_io_types` the model still takes and returns float32, so callers do not change.
The result is not bit-equal to the float32 model, so the runner holds it to a looser
tolerance than the exact passes.
"""

from __future__ import annotations

import onnx_ir as ir

from dlc.passes.infra import (
    Pass,
    PassResult,
    Tolerance,
    count_nodes,
    register,
    replace_contents,
)


@register
class ToFloat16Pass(Pass):
    name = "to-float16"
    summary = "store and compute float32 tensors in float16 (float32 inputs/outputs kept by default)"
    tolerance = Tolerance(atol=1e-2, rtol=1e-2)

    def __init__(self, keep_io_types: bool = True):
        super().__init__()
        self.keep_io_types = keep_io_types

    def call(self, model: ir.Model) -> PassResult:
        from onnxconverter_common import float16

        floats = [v for g in model.graphs() for v in g.initializers.values() if v.dtype == ir.DataType.FLOAT]
        if not floats:
            return PassResult(model, False, {"initializers_converted": 0})
        bytes_before = sum(v.const_value.nbytes for v in floats)
        nodes_before = count_nodes(model)
        # float16's own range; the converter's default clamps weights at 1e4
        proto = float16.convert_float_to_float16(ir.serde.serialize_model(model), keep_io_types=self.keep_io_types,
                                                 max_finite_val=65504.0)
        replace_contents(model, ir.serde.deserialize_model(proto))
        stats = {"initializers_converted": len(floats), "weight_bytes_before": bytes_before,
                 "weight_bytes_after": bytes_before // 2, "casts_inserted": count_nodes(model) - nodes_before,
                 "float32_io": self.keep_io_types}
        return PassResult(model, True, stats)
