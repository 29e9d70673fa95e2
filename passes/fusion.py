"""Fusion passes: each is a named table of rewrite rules that one `RewritePass` applies.

The rules come from onnxscript's rewriter where it has them (BatchNormalization into
Conv/ConvTranspose/Gemm, MatMul+Add into Gemm, Transpose and Reshape chains, the
LayerNormalization pattern) and from `dlc.passes.rules` where it does not (BatchNorm
into MatMul, Add into a Conv's bias, GELU, a Reshape to its own shape).
"""

from __future__ import annotations

from onnxscript.rewriter.rules import common as rules

from dlc.passes.infra import RewritePass, register
from dlc.passes.rules.batchnorm import fuse_batchnorm_into_matmul_rule
from dlc.passes.rules.conv_add import fuse_add_into_conv_bias_rules
from dlc.passes.rules.gelu import fuse_gelu_rules
from dlc.passes.rules.layernorm import layer_norm_bias_rule, layer_norm_rules
from dlc.passes.rules.reshape import reshape_to_same_shape_rule


@register
class FuseConvBatchNormPass(RewritePass):
    name = "fuse-conv-bn"
    summary = "fold BatchNormalization into the Conv, ConvTranspose, Gemm or MatMul before it"
    rules = {
        "conv-bn": rules.fuse_batchnorm_into_conv_rule,
        "convtranspose-bn": rules.fuse_batchnorm_into_conv_transpose_rule,
        "gemm-bn": rules.fuse_batchnorm_into_gemm_rule,
        "matmul-bn": fuse_batchnorm_into_matmul_rule,
    }


@register
class FuseConvAddPass(RewritePass):
    name = "fuse-conv-add"
    summary = "merge a per-channel constant Add after a Conv into the Conv's bias"
    rules = {"conv-add": fuse_add_into_conv_bias_rules}


@register
class FuseMatMulAddPass(RewritePass):
    name = "fuse-matmul-add"
    summary = "MatMul (with or without Transposes of its inputs) + Add of a bias → Gemm, for rank-2 inputs"
    rules = {
        "matmul-add": rules.matmul_add_to_gemm_rule,
        "transpose-a-matmul-add": rules.transpose_a_matmul_add_to_gemm_rule,
        "transpose-b-matmul-add": rules.transpose_b_matmul_add_to_gemm_rule,
        "transpose-ab-matmul-add": rules.transpose_ab_matmul_add_to_gemm_rule,
    }


@register
class EliminateTransposeReshapePass(RewritePass):
    name = "eliminate-transpose-reshape"
    summary = ("drop identity Transposes and Reshapes, merge Transpose/Reshape/Unsqueeze chains, and make a "
               "Reshape's computed shape a constant where inference knows it")
    rules = {
        "transpose-identity": rules.no_op_transpose_rule,
        "transpose-transpose": rules.transpose_transpose_rule,
        "reshape-reshape": rules.reshape_reshape_rule,
        "reshape-same-shape": reshape_to_same_shape_rule,
        "reshape-materialize-shape": rules.materialize_reshape_shape_rule,
        "unsqueeze-unsqueeze": rules.unsqueeze_unsqueeze_rule,
    }


@register
class FuseLayerNormPass(RewritePass):
    name = "fuse-layernorm"
    summary = "decomposed layer norm (ReduceMean, Sub, Pow, Sqrt, Div, Mul, Add) → LayerNormalization"
    rules = {"layernorm": layer_norm_rules, "layernorm-bias": layer_norm_bias_rule}


@register
class FuseGeluPass(RewritePass):
    name = "fuse-gelu"
    summary = "decomposed GELU (Erf or Tanh form) → Gelu (needs opset 20)"
    rules = {"gelu": fuse_gelu_rules}


@register
class FusePadConvPass(RewritePass):
    name = "fuse-pad-conv"
    summary = "merge a constant zero Pad into the Conv after it"
    rules = {"pad-conv": rules.fuse_pad_into_conv_rule, "normalize-pads": rules.normalize_pad_format_conv_rule}


@register
class FuseActivationChainsPass(RewritePass):
    name = "fuse-activation-chains"
    summary = "collapse Relu(Relu(x)), Clip(Clip(x)) and Relu/Clip pairs into one op"
    rules = {
        "relu-relu": rules.successive_relu_rule,
        "clip-clip": rules.successive_clip_rule,
        "clip-relu": rules.successive_clip_relu_rule,
        "relu-clip": rules.successive_relu_clip_rule,
    }
