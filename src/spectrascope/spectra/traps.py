"""Correlation traps: compare W's ESD with that of W with its entries shuffled.

Shuffling the entries of W (with a seeded generator, so results are reproducible) destroys
its correlations but keeps the entry distribution. The randomized ESD should then be pure
Marchenko-Pastur bulk. A randomized ESD that still has eigenvalues beyond its own MP edge
reveals a *correlation trap*: a few huge entries that carry large eigenvalues on their own.

Columns:

- ``rand_lambda_max``: the largest randomized eigenvalue (weightwatcher's ``max_rand_eval``);
- ``rand_distance``: weightwatcher's definition: the Jensen-Shannon distance (base e) between
  the two eigenvalue vectors, each sorted ascending and normalized to sum 1, read as
  distributions over the eigenvalue index (:func:`weightwatcher_rand_distance`);
- ``rand_log_distance``: this project's distance between the two *spectra*: Jensen-Shannon
  distance (base e) between histograms of log10 eigenvalues on common bins (0 = same
  spectrum, sqrt(ln 2) ~ 0.83 = disjoint supports; :func:`spectrum_distance`);
- ``num_traps``: randomized eigenvalues beyond the randomized matrix's fitted MP bulk edge plus
  the Tracy-Widom margin (weightwatcher's ``rand_num_spikes`` / ``num_traps``): large entries
  that make spikes on their own, wherever they sit;
- ``num_structure_spikes``: eigenvalues of W beyond everything its shuffle produces: beyond
  the larger of the randomized MP edge (+ Tracy-Widom margin) and ``rand_lambda_max``. Trap
  eigenvalues survive the shuffle, so they are not counted; what is counted is correlation
  structure that shuffling destroys. An unstructured heavy-tailed matrix (iid Student-t(2.5)
  entries, 600 x 300) gives about 1 on average (its top eigenvalues and its shuffle's are draws
  from one law, so a few of W's exceed the shuffle's maximum by chance), where a count beyond
  the randomized MP edge alone gives about 10; a planted rank-r signal above the noise gives r.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

from .esd import Precision, gram_eigenvalues
from .marchenko_pastur import TW_MARGIN_SDS, fit_marchenko_pastur, tracy_widom_sd

_BINS = 100


@dataclass(frozen=True)
class TrapReport:
    """The trap columns of one matrix (see the module docstring)."""

    rand_lambda_max: float
    rand_distance: float
    rand_log_distance: float
    num_traps: int
    num_structure_spikes: int


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


def weightwatcher_rand_distance(evals: np.ndarray, rand_evals: np.ndarray) -> float:
    """weightwatcher's ``rand_distance`` (``RMT_Util.jensen_shannon_distance``): with p, q the
    two eigenvalue vectors sorted ascending (same length M) and m = (p + q) / 2 (raw, so the
    mixture weights each vector by its trace), sqrt((KL(p^ || m^) + KL(q^ || m^)) / 2) in nats,
    where ^ normalizes to sum 1."""
    p, q = np.sort(np.asarray(evals, float)), np.sort(np.asarray(rand_evals, float))
    if p.size != q.size or p.size == 0 or p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    m = (p + q) / 2
    return float(np.sqrt((entropy(p, m) + entropy(q, m)) / 2))


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
    evals = np.asarray(evals)
    beyond_shuffle = max(mp.bulk_max + margin, float(rand.max()))
    return TrapReport(
        rand_lambda_max=float(rand.max()),
        rand_distance=weightwatcher_rand_distance(evals, rand),
        rand_log_distance=spectrum_distance(evals, rand),
        num_traps=mp.num_spikes,
        num_structure_spikes=int(np.count_nonzero(evals > beyond_shuffle)),
    )
