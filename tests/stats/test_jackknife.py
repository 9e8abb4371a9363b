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


def test_bounded_interval_by_hand_and_inside_minus_one_one():
    """On the atanh scale: replicates atanh(0.5), atanh(0.6), atanh(0.7) and estimate 0.6 give
    tanh(atanh(0.6) -/+ z SE); near 1 the plain interval passes 1 and the bounded one does not."""
    from spectrascope.stats.jackknife import bounded_jackknife_interval

    r = np.array([0.5, 0.6, 0.7])
    z = np.arctanh(r)
    se = np.sqrt(2 / 3 * ((z - z.mean()) ** 2).sum())
    lo, hi = bounded_jackknife_interval(0.6, r)
    assert (lo, hi) == pytest.approx(
        (np.tanh(np.arctanh(0.6) - 1.959964 * se), np.tanh(np.arctanh(0.6) + 1.959964 * se))
    )
    near = np.array([0.9990, 0.9998, 0.99995, 0.9993])
    assert jackknife_interval(0.9998, near)[1] > 1
    lo, hi = bounded_jackknife_interval(0.9998, near)
    assert lo < 0.9998 < hi < 1
    assert all(np.isnan(bounded_jackknife_interval(1.0, near)))
    assert all(np.isnan(bounded_jackknife_interval(0.5, np.array([0.4, 1.2]))))
