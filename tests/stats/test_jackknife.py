import numpy as np
import pytest

from spectrascope.stats.jackknife import jackknife_interval


def test_jackknife_interval_by_hand():
    """Replicates 1, 2, 3: SE^2 = (3 - 1) / 3 x (1 + 0 + 1) = 4/3; 95 %: estimate -/+ 1.95996 x SE."""
    lo, hi = jackknife_interval(2.5, np.array([1.0, 2.0, 3.0]))
    half = 1.959964 * np.sqrt(4 / 3)
    assert (lo, hi) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-6)


def test_jackknife_interval_needs_two_finite_replicates():
    assert all(np.isnan(jackknife_interval(1.0, np.array([1.0]))))
    assert all(np.isnan(jackknife_interval(1.0, np.array([1.0, np.nan]))))
