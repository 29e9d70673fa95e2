"""Decomposed GELU recognized and replaced by ONNX's Gelu op (opset 20).

    exact:  GELU(x) = 0.5 · x · (1 + erf(x / √2))
    tanh:   GELU(x) ≈ 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))   (approximate="tanh")

Exporters write these as chains of Div/Mul, Erf or Tanh, Add and Mul, with the 0.5 and
the x multiplied in either order; every order is matched (the rule set commutes Add and
Mul), and x/√2 may also appear as x·(1/√2).
"""

from __future__ import annotations

import math

from onnxscript.rewriter import MatchResult, RewriteRuleClassBase, RewriteRuleSet

from dlc.passes.rules import opset_failure

GELU_OPSET = 20
_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class _GeluBase(RewriteRuleClassBase):
    approximate = "none"

    def inner(self, op, x):
        raise NotImplementedError

    def check(self, context, x, **_) -> MatchResult:
        failure = opset_failure(context, GELU_OPSET, "Gelu")
        return failure if failure is not None else MatchResult()

    def rewrite(self, op, x, **_):
        return op.Gelu(x, approximate=self.approximate)


class _HalfOutside(_GeluBase):
    def pattern(self, op, x):  # x · (0.5 · (1 + f(x)))
        return op.Mul(x, op.Mul(0.5, op.Add(self.inner(op, x), 1.0)))


class _HalfWithX(_GeluBase):
    def pattern(self, op, x):  # (0.5 · x) · (1 + f(x))
        return op.Mul(op.Mul(x, 0.5), op.Add(self.inner(op, x), 1.0))


class _HalfLast(_GeluBase):
    def pattern(self, op, x):  # 0.5 · (x · (1 + f(x)))
        return op.Mul(0.5, op.Mul(x, op.Add(self.inner(op, x), 1.0)))


def _erf_div(op, x):
    return op.Erf(op.Div(x, _SQRT2))


def _erf_mul(op, x):
    return op.Erf(op.Mul(x, 1.0 / _SQRT2))


def _tanh(op, x):
    return op.Tanh(op.Mul(_SQRT_2_OVER_PI, op.Add(x, op.Mul(0.044715, op.Pow(x, 3.0)))))


def _rules():
    rules = []
    for inner, approximate in ((_erf_div, "none"), (_erf_mul, "none"), (_tanh, "tanh")):
        for shape in (_HalfOutside, _HalfWithX, _HalfLast):
            cls = type(f"Gelu{approximate.title()}{shape.__name__}", (shape,),
                       {"inner": staticmethod(inner), "approximate": approximate})
            rules.append(cls.rule())
    return rules


fuse_gelu_rules = RewriteRuleSet(_rules(), commute=True)
