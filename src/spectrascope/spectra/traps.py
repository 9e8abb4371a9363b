"""Correlation traps: compare W's ESD with that of W with its entries shuffled.

Shuffling the entries of W (with a seeded generator, so results are reproducible) destroys
its correlations but keeps the entry distribution. The randomized ESD should then be pure
Marchenko-Pastur bulk. A randomized ESD that still has eigenvalues beyond its own MP edge
reveals a *correlation trap*: a few huge entries that carry large eigenvalues on their own.

Columns: rand_lambda_max (largest randomized eigenvalue), rand_distance (Jensen-Shannon
distance, base e, between histograms of log10 eigenvalues of W and of its shuffle, on common
bins: 0 = same spectrum, sqrt(ln 2) ~ 0.83 = disjoint), num_traps (randomized eigenvalues
beyond the randomized MP edge + Tracy-Widom margin), num_rand_spikes (eigenvalues of W
beyond the randomized matrix's fitted MP bulk edge plus the Tracy-Widom margin: structure that
shuffling destroys; the fitted edge is far less noisy than the randomized lambda_max).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon

from .esd import Precision, gram_eigenvalues
from .marchenko_pastur import TW_MARGIN_SDS, fit_marchenko_pastur, tracy_widom_sd

_BINS = 100


@dataclass(frozen=True)
class TrapReport:
    rand_lambda_max: float
    rand_distance: float
    num_traps: int
    num_rand_spikes: int


def shuffled(W: np.ndarray, seed: int) -> np.ndarray:
    """W with its entries permuted uniformly at random (same shape, seeded)."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.asarray(W).ravel()).reshape(W.shape)


def spectrum_distance(evals_a: np.ndarray, evals_b: np.ndarray, threshold: float = 1e-10) -> float:
    """Jensen-Shannon distance between histograms of log10 eigenvalues on common bins."""
    a = np.log10(evals_a[evals_a > threshold])
    b = np.log10(evals_b[evals_b > threshold])
    if a.size == 0 or b.size == 0:
        return float("nan")
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    if hi <= lo:
        return 0.0
    edges = np.linspace(lo, hi, _BINS + 1)
    pa, _ = np.histogram(a, edges)
    pb, _ = np.histogram(b, edges)
    return float(jensenshannon(pa, pb))


def correlation_traps(W: np.ndarray, evals: np.ndarray, seed: int = 0, precision: Precision = "exact") -> TrapReport:
    """Randomize W and report traps.

    Args:
        W: weight matrix, shape (N, M) either orientation.
        evals: W's ESD, shape (min(N, M),).
        seed: seed of the shuffle.
    """
    N, M = max(W.shape), min(W.shape)
    rand = gram_eigenvalues(shuffled(W, seed), precision)
    mp = fit_marchenko_pastur(rand, N, M)
    margin = TW_MARGIN_SDS * tracy_widom_sd(N, M, mp.sigma_mp) * rand.sum() / rand.size  # raw units
    return TrapReport(
        rand_lambda_max=float(rand.max()),
        rand_distance=spectrum_distance(np.asarray(evals), rand),
        num_traps=mp.num_spikes,
        num_rand_spikes=int(np.count_nonzero(np.asarray(evals) > mp.bulk_max + margin)),
    )
