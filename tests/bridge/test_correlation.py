import numpy as np
import pandas as pd
import pytest

from spectrascope.bridge.correlation import correlation_table, permutation_test, spearman


def test_spearman_hand_cases():
    assert spearman(np.arange(5), np.arange(5) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(5), -np.arange(5)) == pytest.approx(-1.0)
    # ranks x: 1..4, y: 2,1,4,3 -> d = (-1,1,-1,1), rho = 1 - 6*4/(4*15) = 0.6
    assert spearman(np.array([1, 2, 3, 4]), np.array([2, 1, 4, 3])) == pytest.approx(0.6)


def test_permutation_p_values():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(40)
    rho, p = permutation_test(x, x + 0.1 * rng.standard_normal(40), n_perm=999)
    assert rho > 0.9 and p == pytest.approx(1 / 1000)
    rho, p = permutation_test(x, rng.standard_normal(40), n_perm=999)
    assert p > 0.01
    assert np.isnan(permutation_test(np.array([1.0, np.nan]), np.array([1.0, 2.0]))[0])


def test_table_per_group():
    df = pd.DataFrame(
        {"g": ["a"] * 10 + ["b"] * 10, "m": list(range(10)) * 2, "t": list(range(10)) + list(range(10, 0, -1))}
    )
    t = correlation_table(df, ["m"], ["t"], group="g", n_perm=199)
    assert t.set_index("g").loc["a", "rho"] == pytest.approx(1.0)
    assert t.set_index("g").loc["b", "rho"] == pytest.approx(-1.0)


def test_partial_spearman_hand_case():
    """r_xy = 0.8, r_xz = 0.8, r_yz = 0.4: (0.8 - 0.32) / sqrt(0.36 * 0.84) = 0.8729."""
    from spectrascope.bridge.correlation import partial_spearman

    x, y, z = np.array([1, 2, 3, 4]), np.array([1, 3, 2, 4]), np.array([1, 2, 4, 3])
    assert partial_spearman(x, y, z) == pytest.approx(0.48 / np.sqrt(0.36 * 0.84), abs=1e-12)


def test_partial_spearman_removes_a_shared_trend():
    """x and y both follow z and nothing else: rho is large, the partial correlation near 0."""
    from spectrascope.bridge.correlation import partial_spearman, spearman

    rng = np.random.default_rng(0)
    z = np.arange(400.0)
    x, y = z + rng.normal(0, 60, 400), -z + rng.normal(0, 60, 400)
    assert spearman(x, y) < -0.7
    assert abs(partial_spearman(x, y, z)) < 0.1
    assert np.isnan(partial_spearman(z, -z, z))  # nothing left once z is removed
