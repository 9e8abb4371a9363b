"""Analyze one weight matrix: filters, sanity checks, ESD, fit and optional extras -> one row."""

from __future__ import annotations

import zlib

import numpy as np

from .esd import gram_eigenvalues, gram_eigenvalues_torch
from .marchenko_pastur import fit_marchenko_pastur
from .metrics import spectrum_metrics
from .options import WeightsOptions
from .traps import correlation_traps

MP_COLUMNS = ["num_spikes", "sigma_mp", "bulk_max", "mp_softrank"]
TRAP_COLUMNS = ["rand_lambda_max", "rand_distance", "num_traps", "num_rand_spikes"]


def skip_reason(shape: tuple[int, ...], options: WeightsOptions) -> str:
    """Why a matrix of this shape is not analyzed ('' if it is)."""
    N, M = max(shape), min(shape)
    if M < options.min_evals:
        return f"M={M} < min_evals={options.min_evals}"
    if M > options.max_evals:
        return f"M={M} > max_evals={options.max_evals}"
    if N > options.max_N:
        return f"N={N} > max_N={options.max_N}"
    return ""


def matrix_seed(name: str, seed: int) -> int:
    """A per-matrix seed derived from the run's seed and the tensor name (reproducible)."""
    return (zlib.crc32(name.encode()) + 1_000_003 * seed) % (2**32)


def analyze_matrix(name: str, W: np.ndarray, options: WeightsOptions, device: str = "cpu") -> dict:
    """All weight metrics of one matrix.

    Args:
        name: tensor name (used for the per-matrix randomization seed).
        W: the matrix, shape (N, M) in either orientation.
    Returns:
        a dict with N, M, Q, the metric columns, status and reason; never raises for
        degenerate input (NaN/Inf, all-zero, rank 1): those give status 'failed'.
    """
    N, M = max(W.shape), min(W.shape)
    row: dict = {"N": N, "M": M, "Q": N / M}
    if not np.all(np.isfinite(W)):
        return {**row, **spectrum_metrics(np.array([np.nan]), N, M), "reason": "tensor has NaN or Inf entries"}
    if device == "cuda":
        evals = gram_eigenvalues_torch(W, options.precision, device="cuda")
    else:
        evals = gram_eigenvalues(W, options.precision)
    row.update(spectrum_metrics(evals, N, M, eps=options.eps))
    if options.mp_fit:
        if row["status"] == "success":
            mp = fit_marchenko_pastur(evals, N, M)
            row.update(num_spikes=mp.num_spikes, sigma_mp=mp.sigma_mp, bulk_max=mp.bulk_max, mp_softrank=mp.mp_softrank)
        else:
            row.update({c: np.nan for c in MP_COLUMNS})
    if options.randomize:
        if row["status"] == "success":
            traps = correlation_traps(W, evals, seed=matrix_seed(name, options.seed), precision=options.precision)
            row.update(rand_lambda_max=traps.rand_lambda_max, rand_distance=traps.rand_distance,
                       num_traps=traps.num_traps, num_rand_spikes=traps.num_rand_spikes)
        else:
            row.update({c: np.nan for c in TRAP_COLUMNS})
    return row
