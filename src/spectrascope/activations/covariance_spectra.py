"""Spectra of activation covariances: the same metrics as weights, plus effective rank.

From a site's streaming moments (count n, mean, covariance C, d x d, float64):

    ESD                 eigenvalues of C (ascending), analyzed like a weight ESD with N = n
                        tokens and M = d (so Q = n / d); activation scales are arbitrary, so
                        the fit's lower cut is 1e-5 x the mean eigenvalue (weights use
                        weightwatcher's absolute 1e-5)
    effective_rank      exp(-sum p ln p), p = lambda / sum lambda (spectral entropy, nats)
    participation_ratio (sum lambda)^2 / sum lambda^2
    top_share           lambda_max / sum lambda
    trace_log_energy    see spectrascope.spectra.metrics

Weight rows carry weightwatcher's ``warning`` ('over-trained' / 'under-trained' from alpha);
those labels are about training a weight matrix and mean nothing for an activation
covariance, so activation rows do not have the column.
"""

from __future__ import annotations

import numpy as np
import torch

from ..spectra.metrics import spectrum_metrics
from ..spectra.powerlaw import EVALS_THRESHOLD
from ..trace.moments import RunningMoments


def covariance_eigenvalues(moments: RunningMoments, keep: np.ndarray | None = None) -> np.ndarray:
    """Eigenvalues of the (ddof=1) covariance (of the channels ``keep`` only, when given),
    ascending, float64, clipped at 0."""
    cov = moments.covariance(ddof=1).double().cpu()
    if keep is not None:
        keep = np.asarray(keep)
        index = torch.as_tensor(np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.int64))
        cov = cov[index][:, index]
    # torch's own LAPACK, not numpy's: alternating the two libraries' thread pools on a 2-core
    # machine made each 576 x 576 eigvalsh ~3x slower (33 vs 11 ms) than either alone
    return np.clip(torch.linalg.eigvalsh(cov).numpy(), 0.0, None)


def shape_metrics(evals: np.ndarray) -> dict:
    """effective_rank, participation_ratio and top_share of a spectrum."""
    total = evals.sum()
    if total <= 0:
        return {"effective_rank": np.nan, "participation_ratio": np.nan, "top_share": np.nan}
    p = evals[evals > 0] / total
    return {
        "effective_rank": float(np.exp(-np.sum(p * np.log(p)))),
        "participation_ratio": float(total**2 / np.sum(evals**2)),
        "top_share": float(evals.max() / total),
    }


def activation_spectrum_row(moments: RunningMoments, keep: np.ndarray | None = None) -> dict:
    """One table row of metrics for one site's moments: n_tokens, d (the channels analyzed:
    ``keep`` when given), n_over_d, then the metrics."""
    n = int(moments.count)
    evals = covariance_eigenvalues(moments, keep)
    d = evals.size
    row = {"n_tokens": n, "d": d, "n_over_d": n / d if d else np.nan}
    threshold = EVALS_THRESHOLD * float(evals.mean()) if evals.size else EVALS_THRESHOLD
    metrics = spectrum_metrics(evals, max(n, d), d, threshold=threshold)
    metrics.pop("warning")
    row.update(metrics)
    row.update(shape_metrics(evals))
    return row


def effective_rank_replicates(
    total: RunningMoments, groups: list[RunningMoments], keep: np.ndarray | None = None
) -> np.ndarray:
    """(G,) effective rank of ``total``'s covariance without each group's vectors in turn (the
    replicates of a delete-a-group jackknife over groups of texts; ``total`` is their sum)."""
    return np.array([shape_metrics(covariance_eigenvalues(total.without(g), keep))["effective_rank"] for g in groups])
