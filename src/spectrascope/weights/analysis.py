"""Analyze one weight matrix: filters, sanity checks, ESD, fit and optional extras -> the
metric columns of its row (spectra/ does the numerics; this module decides what to run)."""

from __future__ import annotations

import zlib
from dataclasses import asdict

import numpy as np

from ..spectra.esd import gram_eigenvalues
from ..spectra.marchenko_pastur import fit_marchenko_pastur
from ..spectra.metrics import spectrum_metrics
from ..spectra.partial import PartialConfig, partial_metrics, partial_spectrum
from ..spectra.traps import correlation_traps
from .options import Device, Spectrum, WeightsOptions

MP_COLUMNS = ["num_spikes", "sigma_mp", "bulk_max", "mp_softrank"]
TRAP_COLUMNS = ["rand_lambda_max", "rand_distance", "rand_log_distance", "num_traps", "num_structure_spikes"]
PARTIAL_MIN_COLUMNS = 64
"""Below this many columns a "partial" request computes the full spectrum (it is cheaper)."""


def uses_partial(shape: tuple[int, ...], options: WeightsOptions) -> bool:
    """Whether a matrix of this shape gets a partial spectrum under these options."""
    N, M = max(shape), min(shape)
    if options.spectrum is Spectrum.FULL or M < PARTIAL_MIN_COLUMNS:
        return False
    if options.spectrum is Spectrum.PARTIAL:
        return True
    return M > options.partial_min_m or M > options.max_evals or N > options.max_N


def skip_reason(shape: tuple[int, ...], options: WeightsOptions) -> str:
    """Why a matrix of this shape is not analyzed ('' if it is).

    The max_evals / max_N filters apply only to full spectra: a matrix that gets a partial
    spectrum (spectrum "partial", or "auto" for huge matrices) is never skipped for size.
    """
    N, M = max(shape), min(shape)
    if M < options.min_evals:
        return f"M={M} < min_evals={options.min_evals}"
    if uses_partial(shape, options):
        return ""
    if M > options.max_evals:
        return f"M={M} > max_evals={options.max_evals}"
    if N > options.max_N:
        return f"N={N} > max_N={options.max_N}"
    return ""


def matrix_seed(name: str, seed: int) -> int:
    """A per-matrix seed derived from the run's seed and the tensor name (reproducible)."""
    return (zlib.crc32(name.encode()) + 1_000_003 * seed) % (2**32)


def _all_finite(W: np.ndarray) -> bool:
    """np.isfinite over row chunks (no full-size boolean temporary for huge matrices)."""
    W = np.asarray(W)
    step = max(1, (16 * 2**20) // max(1, W.shape[-1]))
    return all(bool(np.isfinite(W[i : i + step]).all()) for i in range(0, W.shape[0], step))


def analyze_matrix(
    name: str, W: np.ndarray, options: WeightsOptions, device: str = "cpu", evals: np.ndarray | None = None
) -> dict:
    """All weight metrics of one matrix.

    Args:
        name: tensor name (used for the per-matrix randomization seed).
        W: the matrix, shape (N, M) in either orientation.
        evals: its full ESD when already computed (e.g. batched on a GPU).
    Returns:
        a dict with N, M, Q, the metric columns, ``spectrum`` ('full' or 'partial'), ``k``
        (eigenvalues computed), ``approx`` (columns approximated on a partial row), status
        and reason; never raises for degenerate input (NaN/Inf, all-zero, rank 1): those
        give status 'failed'. A partial row has NaN in the MP and trap columns.
    """
    N, M = max(W.shape), min(W.shape)
    row: dict = {"N": N, "M": M, "Q": N / M}
    if not _all_finite(W):
        return {
            **row,
            **spectrum_metrics(np.array([np.nan]), N, M),
            "spectrum": "full",
            "k": 0,
            "approx": "",
            "reason": "tensor has NaN or Inf entries",
        }
    if evals is None and uses_partial(W.shape, options):  # partial spectra run on the CPU
        ps = partial_spectrum(W, options.precision, PartialConfig(seed=options.seed))
        row.update(partial_metrics(ps, eps=options.eps))
        if ps.kind == "full":
            evals = ps.top[::-1]
        else:
            for flag, cols in ((options.mp_fit, MP_COLUMNS), (options.randomize, TRAP_COLUMNS)):
                if flag:
                    row.update({c: np.nan for c in cols})
            return row
    else:
        if evals is None:
            if device == Device.CUDA:
                from .torch_kernels import gram_eigenvalues_torch

                evals = gram_eigenvalues_torch(W, options.precision, device="cuda")
            else:
                evals = gram_eigenvalues(W, options.precision)
        row.update(spectrum_metrics(evals, N, M, eps=options.eps), spectrum="full", k=M, approx="")
    if options.mp_fit:
        if row["status"] == "success":
            mp = fit_marchenko_pastur(evals, N, M)
            row.update(num_spikes=mp.num_spikes, sigma_mp=mp.sigma_mp, bulk_max=mp.bulk_max, mp_softrank=mp.mp_softrank)
        else:
            row.update({c: np.nan for c in MP_COLUMNS})
    if options.randomize:
        if row["status"] == "success":
            traps = correlation_traps(W, evals, seed=matrix_seed(name, options.seed), precision=options.precision)
            row.update(asdict(traps))
        else:
            row.update({c: np.nan for c in TRAP_COLUMNS})
    return row
