"""ERG / TRACE-LOG tail: hand cases, definition check, no overflow."""

import math

import numpy as np
import pytest

from spectrascope.spectra.erg import erg_tail, normalize_to_unit_mean


def test_hand_computed_tail():
    # mean 1 already; descending 3.5, 0.3, 0.15, 0.05:
    # ln 3.5 = 1.2528 > 0; + ln 0.3 = 0.0488 > 0; + ln 0.15 = -1.848 < 0 -> tail of 3, lambda_min 0.15
    tail = erg_tail(np.array([0.05, 0.15, 0.3, 3.5]))
    assert tail.num == 3
    assert tail.lambda_min == pytest.approx(0.15)
    assert tail.scale == pytest.approx(1.0)


def test_normalization_is_scale_free():
    evals = np.array([0.05, 0.15, 0.3, 3.5])
    a, b = erg_tail(evals), erg_tail(evals * 1234.5)
    assert (a.num, a.lambda_min) == (b.num, pytest.approx(b.lambda_min))
    normalized, scale = normalize_to_unit_mean(evals * 10)
    assert normalized.mean() == pytest.approx(1.0) and scale == pytest.approx(0.1)


def test_never_negative_means_whole_spectrum():
    tail = erg_tail(np.array([1.0, 1.0, 1.0, 1.0000001]))
    assert tail.num == 4


def test_ten_thousand_heavy_tailed_eigenvalues_do_not_overflow():
    rng = np.random.default_rng(0)
    evals = rng.pareto(1.2, 10_000) + 1e-3
    normalized, _ = normalize_to_unit_mean(np.sort(evals))
    with np.errstate(over="ignore", under="ignore"):
        product = np.cumprod(normalized[::-1])
    assert not np.all(np.isfinite(product)) or np.any(product == 0)  # the naive product breaks
    tail = erg_tail(evals)
    assert 1 <= tail.num <= 10_000 and tail.lambda_min > 0
    desc = normalized[::-1]
    # definition: the tail's log-sum is < 0, the tail without its last element is >= 0
    assert math.fsum(np.log(desc[: tail.num])) < 0
    assert math.fsum(np.log(desc[: tail.num - 1])) >= -1e-9
