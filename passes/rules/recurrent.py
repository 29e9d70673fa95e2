"""ONNX LSTM and GRU lowered to MatMul, Add, Split, Sigmoid, Tanh and Mul, unrolled over time.

TVM's ONNX importer has neither op. With a static sequence length S the recurrence
unrolls: the input projection is one MatMul over all steps, X·Wᵀ + Wb → [S, B, gates·H],
then each step adds H_{t−1}·Rᵀ + Rb and applies the gate equations (ONNX's defaults:
sigmoid gates, tanh cell):

    LSTM (gate order i, o, f, c):   C_t = f ⊙ C_{t−1} + i ⊙ tanh(c)     H_t = o ⊙ tanh(C_t)
    GRU  (gate order z, r, h):      n = tanh(x_h + r ⊙ (H_{t−1}·R_hᵀ + Rb_h))   (linear_before_reset=1)
                                    n = tanh(x_h + (r ⊙ H_{t−1})·R_hᵀ + Rb_h)   (linear_before_reset=0)
                                    H_t = (1 − z) ⊙ n + z ⊙ H_{t−1}

A reverse direction walks t from S−1 to 0 and writes its outputs at t. Missing initial
states are zeros of shape [B, H] (B may be symbolic). Y is [S, dirs, B, H], Y_h and Y_c
[dirs, B, H]. Non-default activations, clip, input_forget, peepholes, sequence_lens and
layout=1 (which ONNX Runtime, the reference, cannot run) are refused by the check, with the reason.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet

_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_GATES = {"LSTM": 4, "GRU": 3}


def _const(op, array) -> ir.Value:
    return op.Constant(value=ir.tensor(np.asarray(array)))


class _Recurrent:
    """Walks one recurrent node's weights and emits its unrolled graph with the rewriter's `op` builder."""

    def __init__(self, op, node: ir.Node, x: ir.Value):
        self.op, self.node = op, node
        self.hidden = node.attributes.get_int("hidden_size")
        self.reverse_only = node.attributes.get_string("direction", "forward") == "reverse"
        self.w, self.r = (node.inputs[i].const_value.numpy() for i in (1, 2))
        self.b = node.inputs[3].const_value.numpy() if _present(node, 3) else None
        self.dirs = self.w.shape[0]
        self.x = x  # [S, B, I]
        self.steps = x.shape[0]

    def initial(self, index: int, d: int) -> ir.Value:
        """Direction d's initial state from input `index`, or zeros [B, H]."""
        op = self.op
        if _present(self.node, index):
            return self.unstack(self.node.inputs[index], self.dirs)[d]
        batch = op.Shape(self.x, start=1, end=2)
        return op.ConstantOfShape(op.Concat(batch, _const(op, np.array([self.hidden], np.int64)), axis=0),
                                  value=ir.tensor(np.zeros(1, self.w.dtype)))

    def projected(self, d: int) -> ir.Value:
        """X·W_dᵀ + Wb_d for every step at once: [S, B, gates·H]."""
        gates = self.w.shape[1]
        bias = self.b[d, :gates] if self.b is not None else np.zeros(gates, self.w.dtype)
        return self.op.Add(self.op.MatMul(self.x, _const(self.op, self.w[d].T.copy())), _const(self.op, bias))

    def recurrent_bias(self, d: int) -> np.ndarray:
        gates = self.w.shape[1]
        return self.b[d, gates:] if self.b is not None else np.zeros(gates, self.w.dtype)

    def order(self, d: int) -> list[int]:
        backward = self.reverse_only or d == 1
        return list(range(self.steps))[::-1] if backward else list(range(self.steps))

    def split(self, value: ir.Value, parts: int) -> list[ir.Value]:
        sizes = _const(self.op, np.full(parts, self.hidden, np.int64))
        return list(self.op.Split(value, sizes, axis=-1, _outputs=parts))

    def unstack(self, value: ir.Value, n: int) -> list[ir.Value]:
        """`value` split along axis 0 into its n slices, that axis dropped (Split rather than n Gathers)."""
        op = self.op
        if n == 1:
            return [op.Squeeze(value, _const(op, np.array([0], np.int64)))]
        parts = op.Split(value, _const(op, np.ones(n, np.int64)), axis=0, _outputs=n)
        return [op.Squeeze(p, _const(op, np.array([0], np.int64))) for p in parts]

    def outputs(self, per_direction: list[dict[int, ir.Value]], finals: list[list[ir.Value]]):
        """Y [S, dirs, B, H] and each final state [dirs, B, H]."""
        op = self.op
        axis0 = _const(op, np.array([0], np.int64))
        ys = [op.Concat(*[op.Unsqueeze(h[t], axis0) for t in range(self.steps)], axis=0) for h in per_direction]
        y = op.Concat(*[op.Unsqueeze(y_d, _const(op, np.array([1], np.int64))) for y_d in ys], axis=1)
        states = [op.Concat(*[op.Unsqueeze(s, axis0) for s in final], axis=0) for final in finals]
        return y, states


def _present(node: ir.Node, index: int) -> bool:
    return len(node.inputs) > index and node.inputs[index] is not None


def lower_lstm(op, node: ir.Node, x: ir.Value):
    rec = _Recurrent(op, node, x)
    per_direction, final_h, final_c = [], [], []
    for d in range(rec.dirs):
        steps, r_t = rec.unstack(rec.projected(d), rec.steps), _const(op, rec.r[d].T.copy())
        r_bias = _const(op, rec.recurrent_bias(d))
        h, c, hs = rec.initial(5, d), rec.initial(6, d), {}
        for t in rec.order(d):
            gates = op.Add(steps[t], op.Add(op.MatMul(h, r_t), r_bias))
            i, o, f, g = rec.split(gates, 4)
            c = op.Add(op.Mul(op.Sigmoid(f), c), op.Mul(op.Sigmoid(i), op.Tanh(g)))
            h = hs[t] = op.Mul(op.Sigmoid(o), op.Tanh(c))
        per_direction.append(hs)
        final_h.append(h)
        final_c.append(c)
    y, (y_h, y_c) = rec.outputs(per_direction, [final_h, final_c])
    return y, y_h, y_c


def lower_gru(op, node: ir.Node, x: ir.Value):
    rec = _Recurrent(op, node, x)
    before_reset = node.attributes.get_int("linear_before_reset", 0)
    hid = rec.hidden
    per_direction, final_h = [], []
    for d in range(rec.dirs):
        steps, r_bias = rec.unstack(rec.projected(d), rec.steps), rec.recurrent_bias(d)
        r_zr = _const(op, rec.r[d][:2 * hid].T.copy())
        r_h = _const(op, rec.r[d][2 * hid:].T.copy())
        b_zr, b_h = _const(op, r_bias[:2 * hid]), _const(op, r_bias[2 * hid:])
        h, hs = rec.initial(5, d), {}
        for t in rec.order(d):
            x_z, x_r, x_h = rec.split(steps[t], 3)
            h_z, h_r = rec.split(op.Add(op.MatMul(h, r_zr), b_zr), 2)
            z, r = op.Sigmoid(op.Add(x_z, h_z)), op.Sigmoid(op.Add(x_r, h_r))
            if before_reset:
                candidate = op.Mul(r, op.Add(op.MatMul(h, r_h), b_h))
            else:
                candidate = op.Add(op.MatMul(op.Mul(r, h), r_h), b_h)
            n = op.Tanh(op.Add(x_h, candidate))
            h = hs[t] = op.Add(op.Mul(op.Sub(_const(op, np.ones(1, rec.w.dtype)), z), n), op.Mul(z, h))
        per_direction.append(hs)
        final_h.append(h)
    y, (y_h,) = rec.outputs(per_direction, [final_h])
    return y, y_h


class _LowerRecurrent(RewriteRuleClassBase):
    op_type = ""
    outputs: tuple[str, ...] = ()

    def pattern(self, op, x):
        return getattr(op, self.op_type)(x, _allow_other_inputs=True, _outputs=list(self.outputs))

    def check(self, context, x, **values) -> MatchResult:
        result = MatchResult()
        node = values[self.outputs[0]].producer()
        if len(node.outputs) != len(self.outputs):  # one rule per arity; another one takes this node
            return result.fail(f"the node has {len(node.outputs)} outputs, this rule {len(self.outputs)}")
        for i in (1, 2, 3):
            if _present(node, i) and node.inputs[i].const_value is None:
                return result.fail(f"{node.inputs[i].name} (W, R or B) is not a constant", node.inputs[i])
        if x.shape is None or len(x.shape) != 3 or not isinstance(x.shape[0], int):
            return result.fail("the sequence length is not static (export with a fixed length)", x)
        return _attribute_problems(node, result)

    def rewrite(self, op, x, **values):
        node = values[self.outputs[0]].producer()
        lowered = lower_lstm(op, node, x) if self.op_type == "LSTM" else lower_gru(op, node, x)
        return lowered[:len(self.outputs)] if len(self.outputs) > 1 else lowered[0]


def _attribute_problems(node: ir.Node, result: MatchResult) -> MatchResult:
    activations = node.attributes.get_strings("activations", None)
    if activations is not None and list(activations)[:len(_DEFAULT_ACTIVATIONS[node.op_type])] != \
            _DEFAULT_ACTIVATIONS[node.op_type]:
        return result.fail(f"non-default activations {list(activations)}", node.outputs[0])
    if node.attributes.get_int("layout", 0):
        return result.fail("layout=1 (batch-first; ONNX Runtime, the reference, cannot run it)", node.outputs[0])
    if "clip" in node.attributes or node.attributes.get_int("input_forget", 0):
        return result.fail("clip or input_forget is set", node.outputs[0])
    if _present(node, 4):
        return result.fail("sequence_lens is given (variable-length batches)", node.inputs[4])
    if node.op_type == "LSTM" and _present(node, 7):
        return result.fail("peephole weights P are given", node.inputs[7])
    return result


def _rule(op_type: str, outputs: tuple[str, ...]):
    cls = type(f"Lower{op_type}{len(outputs)}", (_LowerRecurrent,), {"op_type": op_type, "outputs": outputs})
    return cls.rule()


lower_lstm_rules = RewriteRuleSet([_rule("LSTM", ("Y", "Y_h", "Y_c")), _rule("LSTM", ("Y", "Y_h")),
                                   _rule("LSTM", ("Y",))])
lower_gru_rules = RewriteRuleSet([_rule("GRU", ("Y", "Y_h")), _rule("GRU", ("Y",))])
LOWERED_OPS = tuple(_GATES)
