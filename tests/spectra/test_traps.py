"""Correlation traps: seeded, reproducible, and a planted huge entry is found."""

import numpy as np
import pytest

from spectrascope.spectra.esd import gram_eigenvalues
from spectrascope.spectra.traps import correlation_traps, spectrum_distance, weightwatcher_rand_distance
from spectrascope.weights.analysis import analyze_matrix
from spectrascope.weights.options import WeightsOptions


def test_reproducible_and_seed_dependent():
    W = np.random.default_rng(0).standard_normal((300, 100))
    opts = WeightsOptions(randomize=True, seed=7)
    a, b = analyze_matrix("w", W, opts), analyze_matrix("w", W, opts)
    assert a["rand_lambda_max"] == b["rand_lambda_max"]
    c = analyze_matrix("w", W, WeightsOptions(randomize=True, seed=8))
    assert c["rand_lambda_max"] != a["rand_lambda_max"]


def test_gaussian_has_no_trap_and_planted_entries_do():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((800, 400))
    clean = correlation_traps(W, gram_eigenvalues(W), seed=0)
    assert clean.num_traps == 0 and clean.num_structure_spikes == 0
    trapped = W.copy()
    trapped[5, 7], trapped[100, 300] = 300.0, -250.0  # a few huge entries survive any shuffle
    report = correlation_traps(trapped, gram_eigenvalues(trapped), seed=0)
    assert report.num_traps >= 2


def test_spectrum_distance_bounds():
    x = np.linspace(1, 10, 200)
    assert spectrum_distance(x, x) == 0.0
    assert spectrum_distance(x, x * 1e6) > 0.8  # disjoint supports: sqrt(ln 2) ~ 0.83


def test_unstructured_heavy_tailed_matrix_has_traps_but_no_structure():
    """iid Student-t(2.5) entries: large entries make spikes that survive the shuffle (traps),
    but there is no correlation structure to count (the old count beyond the MP edge gave 12)."""
    counts = []
    for seed in range(6):
        W = np.random.default_rng(seed).standard_t(2.5, (600, 300))
        report = correlation_traps(W, gram_eigenvalues(W), seed=seed)
        assert report.num_traps >= 3
        counts.append(report.num_structure_spikes)
    assert max(counts) <= 3 and np.mean(counts) <= 1.5


def test_planted_low_rank_structure_is_counted():
    rng = np.random.default_rng(4)
    U, V = rng.standard_normal((600, 3)), rng.standard_normal((3, 300))
    W = rng.standard_normal((600, 300)) + 0.5 * U @ V  # rank-3 signal well above the noise edge
    report = correlation_traps(W, gram_eigenvalues(W), seed=0)
    assert report.num_structure_spikes == 3 and report.num_traps == 0


def test_rand_distance_is_weightwatchers():
    from weightwatcher.RMT_Util import jensen_shannon_distance  # a test extra: the reference

    rng = np.random.default_rng(2)
    a, b = rng.chisquare(3, 200), rng.chisquare(5, 200)
    assert weightwatcher_rand_distance(a, b) == pytest.approx(
        jensen_shannon_distance(np.sort(a), np.sort(b)), rel=1e-12
    )
    assert weightwatcher_rand_distance(a, a[::-1]) == 0.0
