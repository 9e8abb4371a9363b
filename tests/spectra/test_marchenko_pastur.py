"""MP fit: hand-computable edges, CDF against quadrature, known answers on synthetic matrices."""

import numpy as np
import pytest
from scipy.integrate import quad

from spectrascope.spectra.esd import gram_eigenvalues
from spectrascope.spectra.marchenko_pastur import fit_marchenko_pastur, mp_cdf, mp_edges


def test_edges_by_hand():
    assert mp_edges(4.0) == pytest.approx((0.25, 2.25))  # (1 -+ 1/2)^2
    assert mp_edges(1.0, sigma=2.0) == pytest.approx((0.0, 16.0))


@pytest.mark.parametrize("Q", [1.0, 2.0, 4.0])
def test_cdf_matches_quadrature_of_density(Q):
    lo, hi = mp_edges(Q)

    def density(x):
        return Q / (2 * np.pi * x) * np.sqrt(max((hi - x) * (x - lo), 0.0))

    for x in np.linspace(lo + 0.05, hi - 0.05, 5):
        exact, _ = quad(density, lo, x, limit=200)
        assert mp_cdf(np.array([x]), Q)[0] == pytest.approx(exact, abs=2e-3)
    assert mp_cdf(np.array([lo - 1, hi + 1]), Q) == pytest.approx([0.0, 1.0])


def test_gaussian_has_unit_bulk_and_no_spikes():
    W = np.random.default_rng(0).standard_normal((2000, 500))
    fit = fit_marchenko_pastur(gram_eigenvalues(W), 2000, 500)
    assert fit.sigma_mp == pytest.approx(1.0, abs=0.02)
    assert fit.num_spikes == 0
    assert fit.bulk_max == pytest.approx(2000 * (1 + 0.5) ** 2, rel=0.03)  # raw units: N (1 + 1/sqrt Q)^2


@pytest.mark.parametrize("k", [1, 3, 5])
def test_planted_rank_k_spikes_are_found(k):
    rng = np.random.default_rng(k)
    N, M = 2000, 500
    U = np.linalg.qr(rng.standard_normal((N, k)))[0]
    V = np.linalg.qr(rng.standard_normal((M, k)))[0]
    W = rng.standard_normal((N, M)) + U @ np.diag(np.linspace(150, 250, k)) @ V.T
    assert fit_marchenko_pastur(gram_eigenvalues(W), N, M).num_spikes == k
