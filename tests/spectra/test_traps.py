"""Correlation traps: seeded, reproducible, and a planted huge entry is found."""

import numpy as np

from spectrascope.spectra.esd import gram_eigenvalues
from spectrascope.spectra.matrix_analysis import analyze_matrix
from spectrascope.spectra.options import WeightsOptions
from spectrascope.spectra.traps import correlation_traps, spectrum_distance


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
    assert clean.num_traps == 0 and clean.num_rand_spikes == 0
    trapped = W.copy()
    trapped[5, 7], trapped[100, 300] = 300.0, -250.0  # a few huge entries survive any shuffle
    report = correlation_traps(trapped, gram_eigenvalues(trapped), seed=0)
    assert report.num_traps >= 2


def test_spectrum_distance_bounds():
    x = np.linspace(1, 10, 200)
    assert spectrum_distance(x, x) == 0.0
    assert spectrum_distance(x, x * 1e6) > 0.8  # disjoint supports: sqrt(ln 2) ~ 0.83
