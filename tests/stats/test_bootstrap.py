import numpy as np
import pytest

from spectrascope.stats.bootstrap import Interval, ratio_interval, resample_counts, weighted_mean_interval


def test_resample_counts_are_multiplicities():
    counts = resample_counts(5, n_boot=100, seed=1)
    assert counts.shape == (100, 5)
    np.testing.assert_array_equal(counts.sum(axis=1), 5)
    np.testing.assert_array_equal(counts, resample_counts(5, n_boot=100, seed=1))


def test_ratio_of_sums_by_hand():
    iv = ratio_interval(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    assert iv.estimate == pytest.approx(1.0) and iv.n_units == 3
    assert iv.lo <= iv.estimate <= iv.hi


def test_identical_units_give_a_zero_width_interval():
    iv = weighted_mean_interval(np.full(10, 2.5), np.arange(1.0, 11.0))
    assert iv.estimate == pytest.approx(2.5) and iv.lo == pytest.approx(2.5) and iv.hi == pytest.approx(2.5)


def test_coverage_of_a_mean_over_units():
    """95% intervals of a mean over 40 units cover the true mean in ~95% of samples."""
    rng = np.random.default_rng(0)
    covered = 0
    trials = 300
    for t in range(trials):
        x = rng.exponential(1.0, 40)
        iv = weighted_mean_interval(x, n_boot=400, seed=t)
        covered += iv.lo <= 1.0 <= iv.hi
    assert 0.88 <= covered / trials <= 0.99


def test_units_not_tokens():
    """Correlated tokens within a unit: the interval reflects the number of units."""
    rng = np.random.default_rng(1)
    unit_means = rng.normal(0, 1, 20)
    few = weighted_mean_interval(unit_means, np.full(20, 100.0))  # 20 texts of 100 identical tokens
    assert few.hi - few.lo > 0.5  # ~ 2 * 1.96 / sqrt(20) = 0.88, not / sqrt(2000)


def test_interval_helpers():
    iv = Interval(1.0, 0.2, 1.8, 10)
    assert iv.excludes(0.0) and not iv.excludes(1.0)
    assert iv.columns("damage") == {"damage": 1.0, "damage_lo": 0.2, "damage_hi": 1.8}
    assert np.isnan(ratio_interval(np.array([1.0]), np.array([1.0])).lo)
