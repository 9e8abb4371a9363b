"""Power-law fit: hand-computable cases, a naive reference loop, and known answers."""

import math

import numpy as np
import pytest

from spectrascope.spectra.powerlaw import _standard_candidates, fit_power_law


def naive_fit(x):
    """The DESIGN.md formula, written as the obvious O(n^2) loop."""
    x = np.sort(x)
    n = len(x)
    best = None
    for i in range(n - 1):
        tail = x[i:]
        m = len(tail)
        alpha = 1 + m / (np.sum(np.log(tail)) - m * np.log(x[i]))
        D = 1.0
        if alpha > 1:
            D = max(abs(1 - (tail[k] / x[i]) ** (1 - alpha) - k / m) for k in range(m))
        if best is None or D < best[1]:
            best = (alpha, D, x[i], m)
    return best


def test_two_point_candidate_by_hand():
    # tail {1, e} from xmin = 1: alpha = 1 + 2 / (ln 1 + ln e - 2 ln 1) = 3
    # D = max(|1 - 1 - 0|, |1 - e^(-2) - 1/2|) = 1/2 - e^-2
    alphas, Ds = _standard_candidates(np.array([1.0, math.e]))
    assert alphas[0] == pytest.approx(3.0, rel=1e-15)
    assert Ds[0] == pytest.approx(0.5 - math.exp(-2), rel=1e-14)


def test_matches_naive_loop_on_random_spectra():
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.pareto(1.0 + 2 * rng.random(), 200) + 0.1
        alpha, D, xmin, m = naive_fit(x)
        fit = fit_power_law(x)
        assert fit.alpha == pytest.approx(alpha, rel=1e-10)
        assert fit.D == pytest.approx(D, rel=1e-10)
        assert fit.xmin == xmin
        assert fit.sigma == pytest.approx((alpha - 1) / math.sqrt(m), rel=1e-10)
        assert fit.num_pl_spikes == m


def test_pareto_samples_recover_alpha():
    rng = np.random.default_rng(0)
    x = rng.pareto(1.5, 5000) + 1.0  # density ~ x^-2.5 on [1, inf)
    assert fit_power_law(x).alpha == pytest.approx(2.5, abs=0.1)


def test_threshold_and_failures():
    assert not fit_power_law(np.array([1e-9, 2e-9, 3e-9])).ok  # everything below 1e-5
    assert not fit_power_law(np.full(50, 2.0)).ok  # no tail
    assert not fit_power_law(np.array([1.0, np.nan, 2.0])).ok
    fit = fit_power_law(np.concatenate([np.full(10, 1e-7), np.linspace(1, 50, 100)]))
    assert fit.ok and fit.num_pl_spikes <= 100


def test_blocking_and_pruning_keep_the_argmin(monkeypatch):
    import spectrascope.spectra.powerlaw as pl

    rng = np.random.default_rng(1)
    for x in [np.sort(rng.pareto(2.0, 3000) + 1), np.sort(rng.standard_normal((400, 300)).std(0) ** 2 * 50)]:
        a_full, d_full = pl._standard_candidates(x, prune=False)
        a_pruned, d_pruned = pl._standard_candidates(x, prune=True)
        best = int(np.argmin(d_full))
        assert int(np.argmin(d_pruned)) == best and d_pruned[best] == d_full[best]
        np.testing.assert_array_equal(a_full, a_pruned)
        assert np.all(d_pruned <= d_full + 1e-15)  # elsewhere a lower bound or exact
        monkeypatch.setattr(pl, "_BLOCK_ELEMENTS", x.size * 7)  # many small blocks
        _a_blocked, d_blocked = pl._standard_candidates(x, prune=False)
        np.testing.assert_array_equal(d_blocked, d_full)
        monkeypatch.undo()


def test_small_sample_alpha_is_bias_corrected_by_hand():
    # 8 points (the smallest tail scored): x = e^0 .. e^7, xmin = 1 is the only candidate with
    # a tail of 8; S = sum ln x = 28, alpha = 1 + (8 - 1) / 28 = 1.25
    x = np.exp(np.arange(8.0))
    fit = fit_power_law(x)
    assert fit.alpha == pytest.approx(1.25, rel=1e-14)
    assert fit.xmin == 1.0 and fit.num_pl_spikes == 8


def _weightwatcher_small_fit(x):
    import contextlib
    import io

    from weightwatcher.WW_powerlaw import WWFit  # a test extra: the reference implementation

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "SMALL N PL FIT"
        return WWFit(np.sort(x))


@pytest.mark.parametrize("seed", range(4))
def test_small_sample_fits_match_weightwatcher(seed):
    """200 random spectra of 9 to 19 eigenvalues per seed (800 in all): alpha, xmin, D and sigma
    equal weightwatcher 0.7.7's small-N fit (its reported candidate is the one with the smallest D)."""
    rng = np.random.default_rng(100 + seed)
    compared = 0
    for _ in range(200):
        n = int(rng.integers(9, 20))
        kind = rng.integers(3)
        if kind == 0:
            x = rng.pareto(0.5 + 3 * rng.random(), n) + 0.05
        elif kind == 1:
            x = rng.chisquare(2 + 10 * rng.random(), n)
        else:
            x = np.exp(rng.normal(0, 1 + rng.random(), n))
        ref = _weightwatcher_small_fit(x)
        fit = fit_power_law(x)
        if not (ref.alpha > 1):
            assert not fit.ok
            continue
        compared += 1
        assert fit.alpha == pytest.approx(ref.alpha, rel=1e-12)
        assert fit.xmin == ref.xmin
        assert fit.D == pytest.approx(ref.D, rel=1e-12)
        assert fit.sigma == pytest.approx(ref.sigma, rel=1e-12)
        assert fit.num_pl_spikes == int(np.count_nonzero(x >= ref.xmin))
    assert compared >= 190
