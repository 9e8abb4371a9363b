"""Change points: hand-computable splits, exact permutation p-values, planted changes, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from spectrascope.dynamics.changepoints import (
    best_split,
    bh_q_values,
    change_points,
    detect_changes,
    permutation_test,
)
from spectrascope.errors import SpectrascopeError


def test_planted_step_is_split_exactly():
    # 0 0 0 0 1 1 1 1: the split after position 4 explains all of the cost (R = 1) in both models
    step = [0, 0, 0, 0, 1, 1, 1, 1]
    assert best_split(step, "mean") == best_split(step, "linear")
    split = best_split(step, "mean")
    assert (split.start, split.stop, split.share) == (0, 4, 1.0)


def test_share_is_the_explained_fraction_of_the_cost():
    # y = 0 0 3 3 3 with min_size 2: cost = 5 * var = 10.8; split at 2 leaves 0 -> R = 1.
    # y = 0 1 0 1 3 3: total mean 8/6, cost = 0+1+0+1+9+9 - 64/6 = 9.333...; best arc = last two
    # (3, 3) vs the rest (mean 0.5): gain = 6 * (6 - 2 * 8/6)^2 / (2 * 4) = 8.333... -> R = 8.333/9.333
    y = np.array([0, 1, 0, 1, 3, 3], dtype=float)
    split = best_split(y, "mean")
    assert (split.start, split.stop) == (4, 6)
    assert split.share == pytest.approx((6 * (6 - 2 * 8 / 6) ** 2 / 8) / (20 - 64 / 6))


def test_exact_permutation_p_values_of_a_step():
    # Of the 70 arrangements of four 0s and four 1s, R = 1 exactly when the 1s form one piece and
    # every other piece has at least min_size = 2 points. Single splits (linear model):
    # 00001111 and 11110000 -> 2/70. Arcs (mean model) add 00111100 and 11000011 -> 4/70.
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=float)
    n_perm = 20000
    for model, exact in (("mean", 4 / 70), ("linear", 2 / 70)):
        _, p = permutation_test(y, model, n_perm=n_perm, seed=1)
        sd = np.sqrt(exact * (1 - exact) / n_perm)
        assert abs(p - exact) < 4 * sd, (model, p, exact)


def test_a_transient_bump_gives_two_change_points():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(10), np.full(10, 3.0), np.zeros(10)] + rng.normal(0, 0.3, 30)
    steps = np.arange(30) * 100
    changes = detect_changes(y, steps, "mean", n_perm=499)
    assert [c.step for c in changes[:2]] == [1000, 2000]
    assert [c.step_before for c in changes[:2]] == [900, 1900]
    assert all(c.test == 1 and c.p_value < 0.01 for c in changes[:2])
    assert changes[0].delta == pytest.approx(3.0, abs=0.5)
    assert changes[1].delta == pytest.approx(-3.0, abs=0.5)


def test_a_kink_is_found_by_the_linear_model():
    x = np.arange(24, dtype=float)
    y = np.where(x < 15, 0.1 * x, 1.5 + 2.0 * (x - 15)) + np.random.default_rng(1).normal(0, 0.05, 24)
    (first, *_) = detect_changes(y, model="linear", n_perm=499)
    # the point at the kink lies on both lines: a split just before or just after it fits
    assert first.index in (15, 16) and first.p_value < 0.01


def test_rate_model_finds_a_transition_and_ignores_a_steady_drift():
    x = np.arange(30, dtype=float)
    noise = np.random.default_rng(4).normal(0, 0.02, 30)
    drift = 0.1 * x + noise
    assert not detect_changes(drift, model="rate", n_perm=499)[0].p_value < 0.05
    assert detect_changes(drift, model="mean", n_perm=499)[0].p_value < 0.01  # the level test flags any trend
    # drift plus a rise of 2 spread over the four intervals into positions 16..19 (a transition)
    ramp = drift + 2.0 * np.clip((x - 15) / 4, 0.0, 1.0)
    changes = detect_changes(ramp, x * 10, model="rate", n_perm=499)
    assert [(c.step_before, c.step) for c in changes[:2]] == [(150, 160), (190, 200)]
    assert changes[0].p_value < 0.01 and changes[0].after == pytest.approx(0.6, abs=0.05)
    # the null permutes increments: k large ones among n - 1 are adjacent with probability about
    # (n - 1) / C(n - 1, k), so a two-interval transition cannot reach p < 0.05 (29 / 406 = 0.07)
    jump = drift + np.where(x >= 19, 2.0, np.where(x >= 18, 1.0, 0.0))
    assert detect_changes(jump, model="rate", n_perm=499)[0].p_value > 0.05


def test_noise_p_values_are_calibrated():
    # under the null (no order) the permutation p-value is uniform: about 5% fall below 0.05
    rng = np.random.default_rng(2)
    p = np.array([permutation_test(rng.normal(size=20), "mean", n_perm=99, seed=i)[1] for i in range(200)])
    assert 0.01 <= np.mean(p < 0.05) <= 0.10
    assert 0.4 <= np.mean(p < 0.5) <= 0.6


def test_constant_and_short_series_have_no_change():
    assert detect_changes([2.0] * 10) == []
    assert detect_changes([1.0, 2.0, 3.0]) == []  # fewer than 2 * min_size points
    with pytest.raises(SpectrascopeError, match="NaN"):
        detect_changes([1.0, np.nan, 2.0, 3.0, 4.0])
    with pytest.raises(SpectrascopeError, match="unknown change-point model"):
        best_split([1.0, 2.0, 3.0, 4.0], "quadratic")


def test_bh_q_values_by_hand():
    # p sorted: 0.01, 0.03, 0.04, 0.5 (m = 4): p * m / rank = 0.04, 0.06, 0.0533, 0.5 -> cumulative
    # minimum from the top: 0.04, 0.0533, 0.0533, 0.5
    q = bh_q_values([0.04, 0.01, 0.5, 0.03, np.nan])
    assert q[:4] == pytest.approx([0.16 / 3, 0.04, 0.5, 0.16 / 3])
    assert np.isnan(q[4])


def test_change_points_of_a_tidy_table():
    rng = np.random.default_rng(3)
    steps = np.arange(16)
    rows = []
    for name, jump in (("moves", 5.0), ("flat", 0.0)):
        values = np.where(steps >= 9, jump, 0.0) + rng.normal(0, 0.2, steps.size)
        rows += [{"name": name, "step": int(s) * 10, "alpha": v, "other": 1.0} for s, v in zip(steps, values)]
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter
    out = change_points(table, ["alpha", "other"], by=["name"], n_perm=199)
    whole = out[out["test"] == 1].drop_duplicates("name").set_index("name")  # an arc has two rows
    assert set(whole.index) == {"moves", "flat"}  # "other" is constant: no row
    assert whole.loc["moves", "step"] == 90 and whole.loc["moves", "step_before"] == 80
    assert bool(whole.loc["moves", "significant"]) and not bool(whole.loc["flat", "significant"])
    assert whole["q_value"].notna().all()
    with pytest.raises(SpectrascopeError, match="no column 'beta'"):
        change_points(table, ["beta"], by=["name"])
