"""The one output comparison every stage uses: export, passes, compile, bench and deploy.

Two sets of named outputs agree when, for each output, the largest absolute difference
is at most `atol + rtol * max|reference|`: a tolerance that scales with the output's
magnitude as a whole rather than element by element, so logits near zero are not held
to a tighter bound than their neighbours. A non-finite difference never agrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dlc.errors import NumericMismatchError


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-4

    def limit(self, reference_scale: float) -> float:
        return self.atol + self.rtol * reference_scale

    def __str__(self) -> str:
        return f"atol={self.atol:g}, rtol={self.rtol:g}"


@dataclass
class Comparison:
    max_abs_diff: float  # over every output
    limit: float  # the limit of the output with the largest difference
    failures: list[str] = field(default_factory=list)  # "name by 0.003 (limit 0.0001)", one per failing output

    @property
    def ok(self) -> bool:
        return not self.failures


def compare(got: dict[str, np.ndarray], want: dict[str, np.ndarray], tolerance: Tolerance = Tolerance(),
            label: str = "") -> Comparison:
    """Compares every output in `want` with the one of the same name in `got` (float64 arithmetic).

    `label` qualifies the failure texts ("at batch 3").
    """
    worst, worst_limit, failures = 0.0, tolerance.limit(0.0), []
    for name, expected in want.items():
        reference = np.asarray(expected, dtype=np.float64)
        diff = max_abs_diff(got[name], reference)
        limit = tolerance.limit(float(np.abs(reference).max(initial=0.0)))
        if not diff <= limit:  # also catches NaN
            failures.append(f"{name!r}{' ' + label if label else ''} by {diff:.3g} (limit {limit:.3g})")
        if diff >= worst or not np.isfinite(diff):
            worst, worst_limit = diff, limit
    return Comparison(worst, worst_limit, failures)


def require_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], tolerance: Tolerance, what: str,
                  advice: str) -> float:
    """`compare`, raising one NumericMismatchError that names every failing output: "{what} differ ...; {advice}"."""
    result = compare(got, want, tolerance)
    if not result.ok:
        raise NumericMismatchError(f"{what} differ beyond {tolerance}: {'; '.join(result.failures)}; {advice}")
    return result.max_abs_diff


def max_abs_diff(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(np.asarray(got, dtype=np.float64) - np.asarray(want, dtype=np.float64)).max(initial=0.0))
