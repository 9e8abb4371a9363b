import numpy as np

from spectrascope.stats.multiple_testing import bh_qvalues


def test_bh_by_hand():
    # m = 4: sorted p 0.01, 0.02, 0.03, 0.5 -> m p / rank = 0.04, 0.04, 0.04, 0.5 (already monotone)
    q = bh_qvalues([0.03, 0.5, 0.01, 0.02])
    np.testing.assert_allclose(q, [0.04, 0.5, 0.04, 0.04])


def test_bh_is_monotone_and_capped():
    # m p / rank = 0.2, 0.1 -> the step-up minimum makes both 0.1; caps at 1
    np.testing.assert_allclose(bh_qvalues([0.1, 0.1]), [0.1, 0.1])
    np.testing.assert_allclose(bh_qvalues([0.05, 0.9, 0.95]), [0.15, 0.95, 0.95])
    assert bh_qvalues([0.9, 0.8])[0] <= 1.0


def test_nan_p_values_are_left_out_of_the_family():
    q = bh_qvalues([0.01, np.nan, 0.04])
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2]], [0.02, 0.04])


def test_uniform_p_values_rarely_survive():
    rng = np.random.default_rng(0)
    survivors = [np.sum(bh_qvalues(rng.uniform(size=76)) < 0.05) for _ in range(200)]
    assert np.mean(survivors) < 0.2  # ~3.8 of 76 have p < 0.05, but almost never q < 0.05
