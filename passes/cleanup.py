"""Cleanup passes: shape inference, constant folding, dead code, identities and no-ops.

Most of the work is done by onnx-ir's and onnxscript's own passes; what dlc adds is the
stats each one reports and, for shape inference, an error that names the node and the
tensor whose shape cannot be inferred instead of silently leaving the model unchanged.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes import common as ir_passes
from onnxscript.optimizer import fold_constants
from onnxscript.rewriter.rules import common as rules

from dlc.errors import InvalidModelError, first_line
from dlc.passes.infra import (
    Pass,
    PassResult,
    RewritePass,
    count_nodes,
    onnx_opset,
    quiet,
    register,
    replace_contents,
)
from dlc.passes.rules.dropout import dropout_at_inference_rules


def _initializer_count(model: ir.Model) -> int:
    return sum(len(graph.initializers) for graph in model.graphs())


def _removed(model: ir.Model, run) -> dict[str, int]:
    """Runs `run(model)` and counts the nodes and initializers it removed."""
    nodes, inits = count_nodes(model), _initializer_count(model)
    run(model)
    return {"nodes_removed": nodes - count_nodes(model), "initializers_removed": inits - _initializer_count(model)}


def _counted(model: ir.Model, run, removed: str, stat: str) -> PassResult:
    """Runs an onnx-ir pass; its one stat, `stat`, is how many nodes or initializers (`removed`) went."""
    n = _removed(model, run)[removed]
    return PassResult(model, n > 0, {stat: n})


@register
class InferShapesPass(Pass):
    """ONNX shape inference (strict, with data propagation) written into the model's value types."""

    name = "infer-shapes"
    summary = "ONNX shape and type inference; a node it fails on is named with its output tensor"

    def call(self, model: ir.Model) -> PassResult:
        require_inferable_shapes(ir.serde.serialize_model(model))
        known_before = _shaped_values(model)
        result = ir_passes.ShapeInferencePass(strict_mode=True, data_prop=True)(model)
        unknown = [v.name for v in _intermediate_values(model) if v.shape is None]
        stats = {"newly_shaped": len(_shaped_values(model) - known_before), "unknown_shapes": len(unknown),
                 "unknown_examples": unknown[:5]}
        return PassResult(model, result.modified, stats)


def require_inferable_shapes(proto: onnx.ModelProto) -> None:
    """Strict ONNX shape inference; a failure names the node and tensor it happened at."""
    try:
        onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as e:
        raise InvalidModelError(_locate_inference_failure(proto, e)) from e


def _intermediate_values(model: ir.Model) -> list[ir.Value]:
    return [out for node in model.graph for out in node.outputs if out.name]


def _shaped_values(model: ir.Model) -> set[str]:
    return {v.name for v in _intermediate_values(model) if v.shape is not None}


def _locate_inference_failure(proto: onnx.ModelProto, error: Exception) -> str:
    """Re-infers node by node (on the types that did infer) to name the first node that fails."""
    detail = _inference_detail(str(error))
    partial = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    graph = partial.graph
    types = {v.name: v.type for v in [*graph.input, *graph.value_info, *graph.output]}
    types.update({t.name: onnx.helper.make_tensor_type_proto(t.data_type, t.dims) for t in graph.initializer})
    data = {t.name: t for t in graph.initializer}
    opsets = {o.domain: o.version for o in proto.opset_import}
    for node in graph.node:
        try:
            schema = onnx.defs.get_schema(node.op_type, opsets.get(node.domain, 1), node.domain)
            onnx.shape_inference.infer_node_outputs(schema, node, types, data, opset_imports=list(proto.opset_import))
        except onnx.defs.SchemaError:
            continue  # an op ONNX does not know cannot be the one strict inference rejected
        except Exception as e:  # noqa: BLE001 - the per-node check raises the same InferenceError types
            inputs = ", ".join(f"{i}: {_describe(types.get(i))}" for i in node.input if i)
            return (f"shape inference fails at node {node.name or node.op_type!r} ({node.op_type}) producing "
                    f"tensor {', '.join(repr(o) for o in node.output if o)}: {_inference_detail(str(e))} "
                    f"(inputs {inputs}); fix the model, or leave infer-shapes out with --passes")
    return f"shape inference fails: {detail}; fix the model, or leave infer-shapes out with --passes"


def _inference_detail(message: str) -> str:
    parts = [p.strip() for p in re.split(r"\[ShapeInferenceError\]|\[TypeInferenceError\]", message) if p.strip()]
    return parts[-1] if parts else message.strip()


def _describe(type_proto) -> str:
    if type_proto is None or not type_proto.HasField("tensor_type"):
        return "unknown"
    tensor = type_proto.tensor_type
    dims = ",".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "?"
    return f"{dtype}[{dims}]"


@register
class FoldConstantsPass(Pass):
    """Evaluates nodes whose inputs are all constant, then lifts Constant nodes to initializers.

    Every Constant form is lifted (value_ints, value_float... too): TVM's importer reads only
    the `value` form, and an initializer is what every backend takes.
    """

    name = "fold-constants"
    summary = "evaluate constant subgraphs (Shape, Expand, CastLike on constants...) and lift Constants"

    def __init__(self, output_size_limit: int = 1 << 20):
        super().__init__()
        self.output_size_limit = output_size_limit  # elements; larger results stay as computed

    def call(self, model: ir.Model) -> PassResult:
        before = count_nodes(model)
        with quiet("onnxscript.optimizer._constant_folding"):  # it warns, unhandled, for each multi-output op
            fold_constants(model, input_size_limit=self.output_size_limit, output_size_limit=self.output_size_limit)
        ir_passes.RemoveUnusedNodesPass()(model)  # the inputs of folded nodes
        folded = before - count_nodes(model)
        lifted = _removed(model, ir_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0))
        stats = {"nodes_folded": folded, "constants_lifted": lifted["nodes_removed"]}
        return PassResult(model, folded > 0 or lifted["nodes_removed"] > 0, stats)


@register
class EliminateDeadCodePass(Pass):
    """Removes nodes, initializers, functions and opset imports nothing uses."""

    name = "eliminate-dead-code"
    summary = "remove nodes and initializers that no graph output depends on"

    def call(self, model: ir.Model) -> PassResult:
        def run(m):
            for p in (ir_passes.RemoveUnusedNodesPass(), ir_passes.RemoveUnusedFunctionsPass(),
                      ir_passes.RemoveUnusedOpsetsPass()):
                p(m)

        stats = _removed(model, run)
        return PassResult(model, any(stats.values()), stats)


@register
class RemoveIdentityPass(Pass):
    """Removes Identity nodes (those between a graph input and output must stay)."""

    name = "remove-identity"
    summary = "remove Identity nodes, rewiring their consumers to the input"

    def call(self, model: ir.Model) -> PassResult:
        return _counted(model, ir_passes.IdentityEliminationPass(), "nodes_removed", "identities_removed")


@register
class RemoveNoOpsPass(RewritePass):
    """Rewrites ops that compute nothing at inference into Identity (remove-identity then drops them)."""

    name = "remove-no-ops"
    summary = ("Dropout at inference, x+0, x-0, x*1, x/1, Cast to its own type, Expand to its own shape → "
               "Identity; all-zero Conv/Gemm biases dropped")
    rules = {
        "dropout-inference": dropout_at_inference_rules,
        "add-0": rules.add_0_rule,
        "sub-0": rules.sub_0_rule,
        "mul-1": rules.mul_by_1_rule,
        "div-1": rules.div_by_1_rule,
        "cast-same-type": rules.no_op_cast_rule,
        "expand-same-shape": rules.no_op_expand_rule,
        "conv-zero-bias": rules.remove_optional_bias_from_conv_rule,
        "convtranspose-zero-bias": rules.remove_optional_bias_from_conv_transpose_rule,
        "gemm-zero-bias": rules.remove_optional_bias_from_gemm_rule,
    }


@register
class EliminateCommonSubexpressionsPass(Pass):
    """Merges nodes that compute the same op on the same inputs with the same attributes."""

    name = "eliminate-common-subexpressions"
    summary = "merge nodes that compute the same thing twice"

    def call(self, model: ir.Model) -> PassResult:
        return _counted(model, ir_passes.CommonSubexpressionEliminationPass(), "nodes_removed", "nodes_merged")


@register
class DeduplicateInitializersPass(Pass):
    """Makes initializers with identical contents one initializer."""

    name = "deduplicate-initializers"
    summary = "share one copy of initializers with identical dtype, shape and contents"

    def call(self, model: ir.Model) -> PassResult:
        _make_contiguous(model)  # onnx-ir hashes the raw buffer; a transposed view cannot be hashed
        return _counted(model, ir_passes.DeduplicateHashedInitializersPass(), "initializers_removed",
                        "initializers_merged")


def _make_contiguous(model: ir.Model) -> None:
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if isinstance(tensor, ir.Tensor) and isinstance(tensor.raw, np.ndarray) \
                    and not tensor.raw.flags.c_contiguous:
                value.const_value = ir.tensor(np.ascontiguousarray(tensor.raw), name=value.name)


@register
class ConvertOpsetPass(Pass):
    """Moves the model to another default-domain opset with ONNX's version converter."""

    name = "convert-opset"
    summary = "convert to another ONNX opset (e.g. 20, which has the fused Gelu op)"

    def __init__(self, opset: int = 20):
        super().__init__()
        self.opset = opset

    def call(self, model: ir.Model) -> PassResult:
        current = onnx_opset(model)
        if current == self.opset:
            return PassResult(model, False, {"opset": current})
        try:
            converted = onnx.version_converter.convert_version(ir.serde.serialize_model(model), self.opset)
        except Exception as e:  # noqa: BLE001 - the converter raises RuntimeError/ValueError per op adapter
            raise InvalidModelError(f"cannot convert opset {current} to {self.opset}: {first_line(e)}; "
                                    f"export at --opset {self.opset} instead") from e
        replace_contents(model, ir.serde.deserialize_model(converted))
        return PassResult(model, True, {"opset_before": current, "opset": self.opset})
