"""Partial spectra (partial.py): block Lanczos eigenvalues, adaptive k, metrics vs the exact
full spectrum, the spectrum/k/approx columns, and the max_evals filter under partial spectra."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spectrascope.spectra.esd import gram_eigenvalues
from spectrascope.spectra.metrics import spectrum_metrics
from spectrascope.spectra.partial import (
    BlockLanczos,
    GramOperator,
    PartialConfig,
    partial_metrics,
    partial_spectrum,
    truncated_spectrum,
)
from spectrascope.weights.analysis import analyze_matrix, skip_reason, uses_partial
from spectrascope.weights.options import WeightsOptions

EXACT_COLUMNS = [
    "alpha",
    "xmin",
    "xmax",
    "D",
    "sigma",
    "num_pl_spikes",
    "alpha_weighted",
    "lambda_max",
    "log_spectral_norm",
    "log_norm",
    "stable_rank",
    "pl_lambda_min",
]


def planted(N: int, M: int, alpha: float, rank: int, seed: int) -> np.ndarray:
    """Gaussian bulk + a planted power law of ``rank`` singular values (tail exponent ~alpha)."""
    rng = np.random.default_rng(seed)
    s = 6 * (1 + math.sqrt(M / N)) * np.arange(1, rank + 1) ** (-1 / (2 * (alpha - 1)))
    U = rng.standard_normal((N, rank)) / math.sqrt(N)
    V = rng.standard_normal((M, rank)) / math.sqrt(M)
    return rng.standard_normal((N, M)) / math.sqrt(N) + (U * s) @ V.T


def pareto(N: int, M: int, mu: float, seed: int) -> np.ndarray:
    """Entries with a Pareto tail of exponent mu and random signs (Martin-Mahoney heavy tails)."""
    rng = np.random.default_rng(seed)
    return rng.pareto(mu, (N, M)) * rng.choice([-1.0, 1.0], (N, M))


MATRICES = {
    "planted-a2.5": planted(600, 256, 2.5, 40, 1),
    "planted-a3.5": planted(640, 224, 3.5, 30, 2),
    "planted-a5": planted(500, 256, 5.0, 24, 3),
    "pareto-mu2.5": pareto(500, 200, 2.5, 4),
    "pareto-mu4": pareto(450, 256, 4.0, 5),
}


@pytest.fixture(scope="module")
def exact_rows():
    return {name: spectrum_metrics(gram_eigenvalues(W), max(W.shape), min(W.shape)) for name, W in MATRICES.items()}


def test_block_lanczos_complete_basis_gives_exact_eigenvalues():
    W = planted(300, 120, 3.0, 20, 7)
    lanczos = BlockLanczos(GramOperator(W, "exact"), 120, np.float64, 16, 0)
    lanczos.extend(120)
    np.testing.assert_allclose(lanczos.ritz_values(), gram_eigenvalues(W)[::-1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("operator", ["matvec", "gram"])
def test_top_eigenvalues_match_exact(operator):
    W = MATRICES["planted-a2.5"]
    ps = partial_spectrum(W, "exact", PartialConfig(operator=operator, max_fraction=1.0, block=16), force_k=24)
    exact = gram_eigenvalues(W)[::-1]
    assert ps.kind == "partial" and 24 <= ps.k < 256
    np.testing.assert_allclose(ps.top, exact[: ps.k], rtol=1e-6)
    assert ps.trace == pytest.approx(exact.sum(), rel=1e-12)  # ||W||_F^2, exact
    if operator == "gram":
        assert ps.sumsq_exact and ps.sumsq == pytest.approx(np.sum(exact**2), rel=1e-10)
    else:  # exact on the Krylov space, Hutchinson on its complement
        assert not ps.sumsq_exact and ps.sumsq == pytest.approx(np.sum(exact**2), rel=0.05)


@pytest.mark.parametrize("name", list(MATRICES))
@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_partial_metrics_match_full(name, precision, exact_rows):
    W = MATRICES[name]
    ps = partial_spectrum(W, precision, PartialConfig(max_fraction=1.0))
    row = partial_metrics(ps, eps=np.finfo(np.float64 if precision == "exact" else np.float32).eps)
    full = exact_rows[name]
    assert row["status"] == full["status"] == "success"
    assert row["spectrum"] == "partial" and row["k"] == ps.k <= min(W.shape)
    assert abs(row["alpha"] - full["alpha"]) <= 0.05
    rel = 1e-8 if precision == "exact" else 1e-3
    for col in ["lambda_max", "log_spectral_norm", "log_norm", "stable_rank"]:
        assert row[col] == pytest.approx(full[col], rel=rel), col
    if ps.k < min(W.shape):  # a genuinely partial spectrum
        assert math.isnan(row["entropy"]) and math.isnan(row["matrix_rank"]) and math.isnan(row["trace_log_energy"])
        assert "log_alpha_norm" in row["approx"]
        assert row["log_alpha_norm"] == pytest.approx(full["log_alpha_norm"], rel=0.02)


def test_adaptive_k_puts_xmin_inside_with_margin():
    W = planted(800, 320, 2.2, 80, 11)  # a long tail: k has to grow past its start
    config = PartialConfig(max_fraction=1.0, k0=16, k0_fraction=0.0, block=16)
    ps = partial_spectrum(W, "exact", config)
    row = partial_metrics(ps)
    assert len(ps.checkpoints) > 2 and ps.k > 2 * 16  # it grew
    assert row["num_pl_spikes"] <= (1 - config.margin) * ps.k  # xmin inside, with the margin
    full = spectrum_metrics(gram_eigenvalues(W), 800, 320)
    assert row["xmin"] == pytest.approx(full["xmin"], rel=1e-8)
    assert row["num_pl_spikes"] == full["num_pl_spikes"]


def test_truncated_exact_spectrum_gives_full_fit_columns(exact_rows):
    """With exact eigenvalues, the fit on a window containing xmin is the full fit."""
    for name, W in MATRICES.items():
        evals = gram_eigenvalues(W)
        full = exact_rows[name]
        k = min(evals.size - 1, 4 * full["num_pl_spikes"])
        row = partial_metrics(truncated_spectrum(evals, k, max(W.shape)))
        if row["alpha"] != pytest.approx(full["alpha"], rel=1e-12):
            continue  # the window missed a deeper minimum of D (what the trend rule guards against)
        for col in EXACT_COLUMNS:
            assert row[col] == pytest.approx(full[col], rel=1e-10), (name, col)


def test_erg_uses_exact_trace_and_is_exact_when_the_tail_closes_inside():
    evals = np.concatenate([np.geomspace(50, 2, 30), np.full(70, 0.01)])  # ERG closes within the top
    full = spectrum_metrics(evals, 300, 100)
    row = partial_metrics(truncated_spectrum(evals, 60, 300))
    assert full["erg_num"] <= 60
    assert "erg_num" not in row["approx"]
    for col in ["erg_num", "erg_lambda_min", "pl_lambda_min", "erg_delta"]:
        assert row[col] == pytest.approx(full[col], rel=1e-12), col


def test_rank_deficient_matrix_is_fully_resolved():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((400, 25)) @ rng.standard_normal((25, 250))
    ps = partial_spectrum(W, "exact", PartialConfig(max_fraction=1.0))
    row = partial_metrics(ps)
    full = spectrum_metrics(gram_eigenvalues(W), 400, 250)
    assert row["matrix_rank"] == full["matrix_rank"] == 25
    assert row["approx"] == ""
    assert row["entropy"] == pytest.approx(full["entropy"], rel=1e-8)


def test_falls_back_to_full_when_the_basis_would_be_too_big():
    W = pareto(500, 300, 2.5, 9)
    ps = partial_spectrum(W, "exact", PartialConfig(max_fraction=0.2, k0=64))
    assert ps.kind == "full" and ps.k == 300
    row = partial_metrics(ps)
    assert row["spectrum"] == "full" and row["k"] == 300
    assert row["alpha"] == pytest.approx(spectrum_metrics(gram_eigenvalues(W), 500, 300)["alpha"], rel=1e-12)


def test_partial_is_seeded_and_reproducible():
    W = MATRICES["planted-a3.5"]
    a = partial_spectrum(W, "exact", PartialConfig(max_fraction=1.0, seed=3), force_k=30)
    b = partial_spectrum(W, "exact", PartialConfig(max_fraction=1.0, seed=3), force_k=30)
    np.testing.assert_array_equal(a.top, b.top)


def test_spectrum_option_and_max_evals_filter():
    full = WeightsOptions(spectrum="full", max_evals=200)
    auto = WeightsOptions(spectrum="auto", max_evals=200)
    forced = WeightsOptions(spectrum="partial")
    assert skip_reason((500, 300), full).startswith("M=300 > max_evals")
    assert skip_reason((500, 300), auto) == "" and uses_partial((500, 300), auto)  # analyzed, partially
    assert not uses_partial((500, 150), auto)  # small: full spectrum
    assert uses_partial((500, 150), forced) and not uses_partial((500, 40), forced)
    assert skip_reason((60_000, 100), WeightsOptions(spectrum="full")).startswith("N=60000 > max_N")
    assert skip_reason((60_000, 100), WeightsOptions()) == ""


def test_analyze_matrix_columns_full_and_partial():
    W = MATRICES["planted-a3.5"]
    full_row = analyze_matrix("w", W, WeightsOptions(spectrum="full"))
    part_row = analyze_matrix("w", W, WeightsOptions(spectrum="partial", mp_fit=True))
    assert full_row["spectrum"] == "full" and full_row["k"] == 224 and full_row["approx"] == ""
    assert part_row["spectrum"] in ("partial", "full") and part_row["status"] == "success"
    assert abs(part_row["alpha"] - full_row["alpha"]) <= 0.05
    if part_row["spectrum"] == "partial":
        assert math.isnan(part_row["sigma_mp"])  # MP needs the bulk: NaN on partial rows
