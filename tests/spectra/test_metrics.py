"""Per-spectrum metrics: a hand-computable matrix, known answers, invariances, failures."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spectrascope.spectra.esd import gram_eigenvalues
from spectrascope.spectra.metrics import spectrum_metrics
from spectrascope.weights.analysis import analyze_matrix
from spectrascope.weights.options import WeightsOptions


def test_diagonal_matrix_by_hand():
    W = np.zeros((5, 3))
    W[0, 0], W[1, 1], W[2, 2] = 3.0, 2.0, 1.0  # eigenvalues of W^T W: 1, 4, 9
    evals = gram_eigenvalues(W)
    np.testing.assert_allclose(evals, [1, 4, 9], rtol=1e-14)
    m = spectrum_metrics(evals, 5, 3)
    assert m["lambda_max"] == pytest.approx(9)
    assert m["log_norm"] == pytest.approx(math.log10(14))
    assert m["log_spectral_norm"] == pytest.approx(math.log10(9))
    assert m["stable_rank"] == pytest.approx(14 / 9)
    assert m["matrix_rank"] == 3
    p = np.array([1, 4, 9]) / 14
    assert m["entropy"] == pytest.approx(-(p * np.log(p)).sum() / math.log(3), rel=1e-8)
    # three eigenvalues are too few for a power-law fit (weightwatcher's small-sample fit needs 8)
    assert m["status"] == "failed" and "too few" in m["reason"] and math.isnan(m["alpha"])


def test_fit_derived_columns():
    evals = np.arange(1.0, 41.0) ** 2  # 40 eigenvalues 1, 4, ..., 1600
    m = spectrum_metrics(evals, 50, 40)
    assert m["status"] == "success"
    assert m["alpha_weighted"] == pytest.approx(m["alpha"] * math.log10(1600))
    assert m["log_alpha_norm"] == pytest.approx(math.log10(sum(v ** m["alpha"] for v in evals)))
    assert m["pl_lambda_min"] == pytest.approx(m["xmin"] * 40 / evals.sum())
    assert m["erg_delta"] == pytest.approx(m["pl_lambda_min"] - m["erg_lambda_min"])
    assert m["num_pl_spikes"] == int((evals >= m["xmin"]).sum())


def test_gaussian_matrix_has_no_power_law_tail():
    W = np.random.default_rng(0).standard_normal((2000, 500))
    row = analyze_matrix("g", W, WeightsOptions(mp_fit=True))
    assert row["status"] == "success"
    assert row["alpha"] > 6 and row["warning"] == "under-trained"  # MP hard edge: a steep 'tail'
    assert row["num_spikes"] == 0


def test_heavy_tailed_entries_give_heavy_tail():
    W = np.random.default_rng(0).standard_t(2.5, size=(2000, 500))
    row = analyze_matrix("t", W, WeightsOptions())
    assert row["status"] == "success" and row["alpha"] < 6.5


@pytest.mark.parametrize(
    "W, status, reason",
    [
        (np.full((40, 20), np.nan), "failed", "NaN"),
        (np.where(np.eye(40, 20) > 0, np.inf, 1.0), "failed", "NaN or Inf"),
        (np.zeros((40, 20)), "failed", "all-zero"),
        (np.outer(np.arange(1, 41), np.arange(1, 21)).astype(float), "failed", "rank 1"),
    ],
)
def test_degenerate_matrices_fail_with_reason(W, status, reason):
    row = analyze_matrix("bad", W, WeightsOptions())
    assert row["status"] == status and reason in row["reason"]
    assert row["warning"] != "over-trained"


def _alpha(W):
    return spectrum_metrics(gram_eigenvalues(W), max(W.shape), min(W.shape))["alpha"]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(30, 70),
    m=st.integers(20, 30),
    c=st.floats(0.1, 50.0),
)
def test_alpha_invariances(seed, n, m, c):
    rng = np.random.default_rng(seed)
    W = rng.standard_t(3.0, size=(n, m))
    a = _alpha(W)
    assert _alpha(c * W) == pytest.approx(a, rel=1e-6)
    assert _alpha(W.T) == pytest.approx(a, rel=1e-9)
    assert _alpha(W[rng.permutation(n)]) == pytest.approx(a, rel=1e-6)
    assert _alpha(W[:, rng.permutation(m)]) == pytest.approx(a, rel=1e-6)
