"""Statistics of timing samples that a CI can act on.

- Warm-up until the timings settle: runs go on in windows until the median of a window is
  within `tolerance` of the previous window's (caches, page faults, the CPU's clock and
  thread pools have reached their steady state), or a time limit says they will not.
- The median with a distribution-free 95 % confidence interval (binomial order statistics:
  no assumption of normal timings, which they are not: they are skewed and multi-modal).
- Outliers counted with Tukey's fences (beyond 1.5 IQR from the quartiles), kept in the
  statistics but reported, so a noisy run shows as one.
- Two sets of samples compared with the Mann-Whitney U test (no fixed percentage): a
  change is a regression only when the samples say so at `alpha` and the medians differ
  by more than `min_effect` (a real but negligible shift is not flagged).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np


def sample_stats(times_ms) -> dict[str, Any]:
    """mean, std, min, p50, p90, p99, max; the median's 95 % interval; outliers; the sample count."""
    times = np.asarray(times_ms, dtype=np.float64)
    if times.size == 0:
        return {"n": 0}
    q1, q3 = np.percentile(times, [25, 75])
    fence = 1.5 * (q3 - q1)
    low, high = median_interval(times)
    stats = {"mean": times.mean(), "std": times.std(), "min": times.min(), "p50": np.percentile(times, 50),
             "p90": np.percentile(times, 90), "p99": np.percentile(times, 99), "max": times.max(),
             "p50_ci95_low": low, "p50_ci95_high": high}
    return {**{k: round(float(v), 4) for k, v in stats.items()}, "n": int(times.size),
            "outliers": int(((times < q1 - fence) | (times > q3 + fence)).sum())}


def median_interval(times, confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median: the order statistics that bracket it.

    With n samples, the number below the true median is Binomial(n, 1/2); the interval runs from
    the j-th to the (n-j+1)-th smallest sample, j the largest with P(Binomial < j) ≤ (1-confidence)/2.
    Fewer than 6 samples cannot give a 95 % interval: it is then the whole range.
    """
    from fractions import Fraction

    ordered = np.sort(np.asarray(times, dtype=np.float64))
    n = ordered.size
    tail = Fraction((1.0 - confidence) / 2.0).limit_denominator(10 ** 6)
    limit = tail * (1 << n)  # exact integers: 2**n overflows a float from n = 1024
    cumulative, j = 0, 0
    for k in range(n + 1):
        cumulative += math.comb(n, k)
        if cumulative > limit:
            break
        j = k + 1
    if j == 0:
        return float(ordered[0]), float(ordered[-1])
    return float(ordered[j - 1]), float(ordered[n - j])


def warm_up(run: Callable[[], None], minimum: int, window: int = 10, tolerance: float = 0.05,
            limit_s: float = 10.0) -> dict[str, Any]:
    """Runs `run` at least `minimum` times, then in windows until two windows' medians agree within `tolerance`.

    Returns {"runs": how many, "settled": whether they agreed before `limit_s`}.
    """
    start, count, previous = time.perf_counter(), 0, None
    for _ in range(minimum):
        run()
        count += 1
    while True:
        times = []
        for _ in range(window):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        count += window
        median = float(np.median(times))
        if previous is not None and abs(median - previous) <= tolerance * previous:
            return {"runs": count, "settled": True}
        if time.perf_counter() - start > limit_s:
            return {"runs": count, "settled": False}
        previous = median


def compare_samples(old, new, alpha: float = 0.01, min_effect: float = 0.05) -> dict[str, Any]:
    """Whether `new` is slower (a regression) or faster than `old`: Mann-Whitney U, two-sided, normal approximation.

    {"change": "regression" | "improvement" | "same", "ratio": new median / old median, "p_value": ...}
    """
    a, b = np.asarray(old, dtype=np.float64), np.asarray(new, dtype=np.float64)
    if a.size < 5 or b.size < 5:
        return {"change": "unknown", "ratio": None, "p_value": None, "why": "fewer than 5 samples on a side"}
    ranks = _ranks(np.concatenate([a, b]))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2.0
    mean = a.size * b.size / 2.0
    ties = np.unique(np.concatenate([a, b]), return_counts=True)[1]
    n = a.size + b.size
    variance = a.size * b.size / 12.0 * ((n + 1) - (ties ** 3 - ties).sum() / (n * (n - 1)))
    z = (u - mean) / math.sqrt(variance) if variance > 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2.0))
    ratio = float(np.median(b) / np.median(a)) if np.median(a) > 0 else None
    change = "same"
    if p < alpha and ratio is not None and abs(ratio - 1.0) > min_effect:
        change = "regression" if ratio > 1.0 else "improvement"
    return {"change": change, "ratio": None if ratio is None else round(ratio, 4), "p_value": float(f"{p:.3g}")}


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def load_context() -> dict[str, Any]:
    """What else was running, and how the CPU was clocked: the load averages and the frequency governor."""
    import os
    from pathlib import Path

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        gov = governor.read_text().strip()
    except OSError:
        gov = "unknown (no cpufreq: a virtual machine, or a container without /sys/devices/system/cpu/cpu0/cpufreq)"
    return {"load_average": load, "governor": gov}
