"""Per-spectrum metrics: the columns of a weights (or activations) table.

Everything here is a function of an ESD (eigenvalues of W^T W, shape (M,)) and the matrix
shape. Column names and definitions follow weightwatcher where it has them:

    alpha, xmin, xmax, D, sigma, num_pl_spikes   power-law fit (see powerlaw.py)
    lambda_max                                    largest eigenvalue
    log_norm           log10(sum lambda)            (log10 of the squared Frobenius norm)
    log_spectral_norm  log10(lambda_max)
    alpha_weighted     alpha * log10(lambda_max)    (alpha-hat)
    log_alpha_norm     log10(sum lambda^alpha)
    stable_rank        sum lambda / lambda_max
    matrix_rank        eigenvalues above the numerical tolerance of the eigensolver
    entropy            -sum p ln p / ln(matrix_rank), p = lambda / sum lambda (+1e-10, as ww)
    warning            'over-trained' if alpha < 2, 'under-trained' if alpha > 6, '' otherwise
                       (a failed fit is status 'failed', never 'over-trained')
    erg_num            size of the ERG / TRACE-LOG tail (erg.py)
    erg_lambda_min     smallest ERG-tail eigenvalue, normalized units (mean eigenvalue = 1)
    pl_lambda_min      xmin in the same normalized units
    erg_delta          pl_lambda_min - erg_lambda_min (ideal: near 0)
    trace_log_energy   -(1/r) sum ln(lambda_i * r / sum lambda) over the r numerically nonzero
                       eigenvalues: minus the mean log of the unit-mean spectrum, i.e.
                       -log det(X~)/r for X normalized to trace r. 0 for an exactly
                       isotropic spectrum, growing as the variance concentrates in few
                       directions; the ERG tail is where partial sums of the same logs cross
                       0, so both sit on one axis for weights and activations alike. A
                       *sample* covariance of isotropic noise is not isotropic: from n
                       vectors in d dimensions its value is ~0.36 at n/d = 1.8 and ~0.06 at
                       n/d = 8, so activation tables carry the noise value at their n/d as
                       a control (``trace_log_energy_null``).
"""

from __future__ import annotations

import numpy as np

from .erg import erg_tail
from .powerlaw import EVALS_THRESHOLD, fit_power_law

OVER_TRAINED_ALPHA = 2.0
UNDER_TRAINED_ALPHA = 6.0
_ENTROPY_EPS = 1e-10

METRIC_COLUMNS = [
    "alpha",
    "xmin",
    "xmax",
    "D",
    "sigma",
    "num_pl_spikes",
    "alpha_weighted",
    "log_norm",
    "log_spectral_norm",
    "log_alpha_norm",
    "stable_rank",
    "entropy",
    "matrix_rank",
    "lambda_max",
    "erg_num",
    "erg_lambda_min",
    "pl_lambda_min",
    "erg_delta",
    "trace_log_energy",
    "warning",
]


def trace_log_energy(evals: np.ndarray) -> float:
    """-(1/r) sum ln(lambda_i r / sum lambda) over the r eigenvalues given (all must be > 0)."""
    evals = np.asarray(evals, dtype=np.float64)
    return float(-np.mean(np.log(evals * evals.size / evals.sum())))


def numerical_rank_tolerance(lambda_max: float, N: int, M: int, eps: float) -> float:
    """Eigenvalues of a Gram matrix below this are indistinguishable from 0.

    Rounding in W^T W and in the eigensolver leaves errors of order M * eps * lambda_max.
    """
    return 10.0 * M * eps * lambda_max


def training_warning(alpha: float) -> str:
    """weightwatcher's warning label for a successful fit."""
    if alpha < OVER_TRAINED_ALPHA:
        return "over-trained"
    if alpha > UNDER_TRAINED_ALPHA:
        return "under-trained"
    return ""


def spectrum_metrics(
    evals: np.ndarray, N: int, M: int, eps: float = np.finfo(np.float64).eps, threshold: float = EVALS_THRESHOLD
) -> dict:
    """All per-spectrum metrics of one ESD.

    Args:
        evals: eigenvalues, shape (M,), nonnegative, any order (raw units).
        N, M: the matrix shape with N >= M (Q = N / M).
        eps: machine epsilon of the precision the eigenvalues were computed in.
        threshold: eigenvalues at or below it are left out of the power-law fit
            (weightwatcher's absolute 1e-5 by default).
    Returns:
        dict with the columns in METRIC_COLUMNS plus ``status`` ('success' or 'failed')
        and ``reason`` (why it failed, '' on success).
    Raises nothing: a degenerate spectrum gives status 'failed' and a reason.
    """
    evals = np.sort(np.asarray(evals, dtype=np.float64))
    row: dict = {c: np.nan for c in METRIC_COLUMNS}
    row["warning"] = ""
    if evals.size == 0 or not np.all(np.isfinite(evals)):
        return {**row, "status": "failed", "reason": "spectrum is empty or not finite"}
    lambda_max = float(evals[-1])
    if lambda_max <= 0.0:
        return {**row, "status": "failed", "reason": "all-zero matrix"}
    total = float(evals.sum())
    tol = numerical_rank_tolerance(lambda_max, N, M, eps)
    rank = int(np.count_nonzero(evals > tol))
    p = evals / total + _ENTROPY_EPS
    row.update(
        lambda_max=lambda_max,
        log_norm=float(np.log10(total)),
        log_spectral_norm=float(np.log10(lambda_max)),
        stable_rank=total / lambda_max,
        matrix_rank=rank,
        entropy=float(-np.sum(p * np.log(p)) / np.log(rank + _ENTROPY_EPS)) if rank > 1 else 0.0,
        trace_log_energy=trace_log_energy(evals[evals > tol]) if rank else np.nan,
    )
    if rank < 2:
        return {**row, "status": "failed", "reason": f"numerical rank {rank}: no spectrum to fit"}
    fit = fit_power_law(evals[evals > tol], threshold=threshold)
    if not fit.ok:
        return {**row, "status": "failed", "reason": f"power-law fit failed: {fit.reason}"}
    erg = erg_tail(evals)
    pl_lambda_min = fit.xmin * erg.scale
    row.update(
        alpha=fit.alpha,
        xmin=fit.xmin,
        xmax=fit.xmax,
        D=fit.D,
        sigma=fit.sigma,
        num_pl_spikes=int(np.count_nonzero(evals >= fit.xmin)),
        alpha_weighted=fit.alpha * np.log10(lambda_max),
        log_alpha_norm=float(np.log10(np.sum(evals**fit.alpha))),
        erg_num=erg.num,
        erg_lambda_min=erg.lambda_min,
        pl_lambda_min=pl_lambda_min,
        erg_delta=pl_lambda_min - erg.lambda_min,
        warning=training_warning(fit.alpha),
    )
    return {**row, "status": "success", "reason": ""}
