"""Statistics of timing samples: the median's interval, outliers, warm-up, and comparing two runs."""

import numpy as np

from dlc.runtime.stats import compare_samples, median_interval, sample_stats, warm_up


def test_the_median_interval_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_median = np.log(2.0)  # of an exponential(1): skewed, like timings
    covered = 0
    for _ in range(400):
        low, high = median_interval(rng.exponential(1.0, 60))
        covered += low <= true_median <= high
    assert 0.92 <= covered / 400 <= 0.99


def test_too_few_samples_give_the_whole_range_and_many_do_not_overflow():
    assert median_interval([3.0, 1.0, 2.0]) == (1.0, 3.0)
    low, high = median_interval(np.arange(5000.0))  # 2**5000 is past a float: the sums are exact integers
    assert 2400 < low < 2500 < high < 2600


def test_outliers_are_counted_and_every_statistic_is_there():
    stats = sample_stats([1.0] * 20 + [1.1] * 20 + [9.0, 12.0])
    assert stats["outliers"] == 2 and stats["n"] == 42
    assert stats["p50_ci95_low"] <= stats["p50"] <= stats["p50_ci95_high"]
    assert stats["min"] <= stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]


def test_a_slower_run_is_a_regression_and_noise_is_not():
    rng = np.random.default_rng(1)
    old = 1.0 + rng.exponential(0.1, 100)
    assert compare_samples(old, 1.0 + rng.exponential(0.1, 100))["change"] == "same"
    slower = compare_samples(old, 1.25 + rng.exponential(0.1, 100))
    assert slower["change"] == "regression" and slower["ratio"] > 1.15 and slower["p_value"] < 1e-6
    assert compare_samples(old, 0.8 + rng.exponential(0.1, 100))["change"] == "improvement"
    # a real but tiny shift (1 %) on tight samples is significant yet below the effect that matters
    tight = 1.0 + rng.normal(0, 0.001, 200)
    assert compare_samples(tight, tight * 1.01)["change"] == "same"
    assert compare_samples([1.0, 2.0], [3.0, 4.0])["change"] == "unknown"


def test_false_alarms_stay_rare_over_many_noisy_comparisons():
    rng = np.random.default_rng(2)
    alarms = sum(compare_samples(1 + rng.lognormal(0, 0.5, 50), 1 + rng.lognormal(0, 0.5, 50))["change"] != "same"
                 for _ in range(200))
    assert alarms <= 4  # alpha 0.01 and the effect threshold: about 1 in 100 or fewer


def test_warm_up_runs_until_two_windows_agree():
    calls = []

    def run():
        calls.append(1)
        if len(calls) < 25:  # a slow start: the first runs pay for caches and page faults
            sum(range(20000))

    result = warm_up(run, minimum=3, window=10, tolerance=0.5, limit_s=10)
    assert result["settled"] and result["runs"] >= 23
