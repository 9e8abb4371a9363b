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


def test_circular_shift_p_of_a_ramp_is_one_over_n():
    """x = y = 0..4: rho 1; its four shifts give rho 0, -0.5, -0.5, 0 (hand-computed), so only the
    identity reaches |rho| = 1 and p = 1 / 5."""
    from spectrascope.bridge.correlation import circular_shift_test

    ramp = np.arange(5.0)
    assert spearman(np.roll(ramp, 1), ramp) == pytest.approx(0.0)
    assert spearman(np.roll(ramp, 2), ramp) == pytest.approx(-0.5)
    assert circular_shift_test(ramp, ramp) == pytest.approx(0.2)


def test_the_shift_null_holds_its_level_where_relabeling_does_not():
    """Independent smooth series (moving averages of 3 over 30 layers): relabeling the layers
    rejects far more often than 5 %, the circular shift about 5 %."""
    from spectrascope.bridge.correlation import circular_shift_test

    rng = np.random.default_rng(0)
    smooth = [np.convolve(rng.standard_normal(32), np.ones(3) / 3, "valid") for _ in range(400)]
    pairs = list(zip(smooth[::2], smooth[1::2], strict=True))
    relabeled = np.mean([permutation_test(x, y, n_perm=199, seed=i)[1] < 0.05 for i, (x, y) in enumerate(pairs)])
    shifted = np.mean([circular_shift_test(x, y) <= 0.05 for x, y in pairs])
    assert relabeled > 0.1
    assert shifted < 0.08


def test_order_checks_break_a_shared_trend_and_an_end_point_correlation():
    from spectrascope.bridge.correlation import ORDER_COLUMNS, order_checks

    rng = np.random.default_rng(1)
    depth = np.arange(30.0)
    trend = order_checks(depth + rng.normal(0, 4, 30), -depth + rng.normal(0, 4, 30), n_perm=499)
    assert abs(trend["rho_given_order"]) < 0.4 and trend["p_given_order"] > 0.05
    assert trend["p_shift"] == pytest.approx(1 / 30)  # a shared ramp is the best alignment: shifts cannot see it
    # unrelated interiors, the two ends extreme in both series
    x, y = rng.standard_normal(30), rng.standard_normal(30)
    x[0], y[0], x[-1], y[-1] = 10.0, 10.0, -10.0, -10.0
    ends = order_checks(x, y, n_perm=499)
    assert permutation_test(x, y, n_perm=499)[0] > ends["rho_trimmed"]
    assert ends["p_trimmed"] > 0.05
    assert set(ends) == set(ORDER_COLUMNS)


def test_the_table_fills_the_order_checks_only_for_ordered_components():
    df = pd.DataFrame({"m": np.arange(12.0), "t": np.arange(12.0) ** 2})
    plain = correlation_table(df, ["m"], ["t"], n_perm=99)
    ordered = correlation_table(df, ["m"], ["t"], n_perm=99, ordered=True)
    assert plain[["rho_given_order", "p_shift", "rho_trimmed"]].isna().all().all()
    assert ordered.loc[0, "rho_trimmed"] == pytest.approx(1.0) and ordered.loc[0, "p_shift"] == pytest.approx(1 / 12)
