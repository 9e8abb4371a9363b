"""Continuous power-law fit of an ESD tail (Clauset-style MLE, weightwatcher's default).

Given eigenvalues x > ``threshold`` sorted ascending (n of them), for every candidate
xmin = x_i (all but the last), with n_i = n - i tail points:

    alpha_i = 1 + n_i / (sum_{j >= i} ln x_j - n_i ln x_i)
    D_i     = max_{k < n_i} | 1 - (x_{i+k} / x_i)^(1 - alpha_i) - k / n_i |   (D_i = 1 if alpha_i <= 1)

and the fit is the candidate with the smallest Kolmogorov-Smirnov distance D. Reported:
alpha, xmin, xmax (largest eigenvalue), D, sigma = (alpha - 1) / sqrt(n_i) and
num_pl_spikes = number of eigenvalues >= xmin.

The naive loop is O(n^2) in Python; here candidates are evaluated in vectorized blocks, and
a lower bound on each D prunes the candidates that cannot be the minimum (same argmin, a
fraction of the arithmetic).

For fewer than 20 points weightwatcher (0.7.7, ``WW_powerlaw.WWFit``) switches to a
bias-corrected small-sample fit: alpha_i = 1 + (n_i - 1) / sum_{j >= i} ln(x_j / x_i), only
for tails of at least 8 points; it scores each candidate by J_i = D_i - 0.868 / sqrt(n_i),
but the fit object then re-selects the candidate with the smallest KS distance D (candidates
it skipped keep D = 1), and that re-selected candidate is what it reports. This module
reproduces that final choice (smallest D, first one on ties), so small fits match too.
Fewer than 8 points are too few for any tail: the fit fails (weightwatcher would fall back on
the whole sample, but its ``min_evals`` filter never lets such a matrix reach the fit).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EVALS_THRESHOLD = 1e-5
"""Eigenvalues at or below this are ignored by the fit (weightwatcher's EVALS_THRESH)."""

SMALL_N = 20
"""Below this many eigenvalues the small-sample fit is used (as weightwatcher does)."""

SMALL_N_MIN_TAIL = 8
"""Smallest tail the small-sample fit scores (weightwatcher's ``k_min``)."""

_BLOCK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class PowerLawFit:
    """Result of a power-law fit. ``ok`` is False when the fit failed (then alpha is NaN)."""

    alpha: float
    xmin: float
    xmax: float
    D: float
    sigma: float
    num_pl_spikes: int
    ok: bool
    reason: str = ""


def _failed(reason: str) -> PowerLawFit:
    nan = float("nan")
    return PowerLawFit(nan, nan, nan, nan, nan, 0, False, reason)


def _ks_rows(
    logs: np.ndarray, alphas: np.ndarray, tail_n: np.ndarray, rows: np.ndarray, cols: np.ndarray | None = None
) -> np.ndarray:
    """KS distance of each candidate in ``rows`` over its tail points (all j >= i, or only
    those in ``cols``: then a lower bound). Vectorized in blocks of bounded size."""
    n = logs.size
    out = np.empty(rows.size)
    all_cols = cols is None
    block = max(1, _BLOCK_ELEMENTS // (n if all_cols else max(cols.size, 1)))
    for start in range(0, rows.size, block):
        r = rows[start : start + block]
        c = np.arange(r.min(), n) if all_cols else cols
        k = c[None, :] - r[:, None]  # offset of point j in candidate i's tail
        dlog = logs[c][None, :] - logs[r][:, None]
        with np.errstate(over="ignore", invalid="ignore"):
            gap = np.abs(1.0 - np.exp((1.0 - alphas[r])[:, None] * dlog) - k / tail_n[r][:, None])
        gap[k < 0] = 0.0
        out[start : start + block] = gap.max(axis=1)
    return out


def _standard_candidates(x: np.ndarray, prune: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """alpha_i and D_i for every candidate xmin = x[i], i < n - 1 (x ascending, positive).

    With ``prune``, D is computed exactly only where it can still be the minimum: a cheap
    lower bound (the KS gap on every 8th point and the last) orders the candidates, and exact
    distances are computed in that order until the bound exceeds the best exact D found.
    The argmin (and its D) is the same as without pruning; other entries of D then hold
    either the exact value or a lower bound.
    """
    n = x.size
    logs = np.log(x)
    suffix = np.cumsum(logs[::-1])[::-1]  # suffix[i] = sum_{j >= i} ln x_j
    idx = np.arange(n - 1)
    tail_n = (n - idx).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        alphas = 1.0 + tail_n / (suffix[:-1] - tail_n * logs[:-1])
    Ds = np.ones(n - 1)
    valid = np.flatnonzero(alphas > 1.0)
    if valid.size == 0:
        return alphas, Ds
    if not prune or valid.size < 64:
        Ds[valid] = _ks_rows(logs, alphas, tail_n, valid)
        return alphas, Ds
    sample = np.unique(np.concatenate([np.arange(0, n, 8), [n - 1]]))
    bound = _ks_rows(logs, alphas, tail_n, valid, sample)
    Ds[valid] = bound
    order = valid[np.argsort(bound, kind="stable")]
    best = np.inf
    for start in range(0, order.size, 32):
        chunk = order[start : start + 32]
        if Ds[chunk[0]] > best:  # every remaining bound exceeds the best exact D
            break
        Ds[chunk] = _ks_rows(logs, alphas, tail_n, chunk)
        best = min(best, Ds[chunk].min())
    return alphas, Ds


def _small_n_candidates(x: np.ndarray, k_min: int = SMALL_N_MIN_TAIL) -> tuple[np.ndarray, np.ndarray]:
    """alpha_i (bias-corrected, 1 + (n_i - 1) / S_i) and D_i of the small-sample fit.

    Candidates with fewer than ``k_min`` tail points, S_i <= 1e-12 or alpha_i <= 1 keep D = 1
    (weightwatcher's initial value).
    """
    n = x.size
    logs = np.log(x)
    alphas = np.zeros(n - 1)
    Ds = np.ones(n - 1)
    for i in range(n - k_min + 1):
        tail = n - i
        s = logs[i:].sum() - tail * logs[i]
        if s <= 1e-12:
            continue
        a = 1.0 + (tail - 1.0) / s
        alphas[i] = a
        if a > 1.0:
            fit_cdf = 1.0 - (x[i:] / x[i]) ** (1.0 - a)
            Ds[i] = float(np.max(np.abs(np.arange(tail) / tail - fit_cdf)))
    return alphas, Ds


def fit_power_law(evals: np.ndarray, threshold: float = EVALS_THRESHOLD) -> PowerLawFit:
    """Fit a power law to the tail of an ESD.

    Args:
        evals: eigenvalues, shape (M,), any order; values <= ``threshold`` are ignored.
        threshold: lower cut on the eigenvalues used by the fit.
    Returns:
        the :class:`PowerLawFit`; ``num_pl_spikes`` counts all of ``evals`` >= xmin.
    """
    evals = np.asarray(evals, dtype=np.float64)
    if not np.all(np.isfinite(evals)):
        return _failed("eigenvalues are not finite")
    x = np.sort(evals[evals > threshold])
    n = x.size
    if n < 2:
        return _failed(f"only {n} eigenvalue(s) above {threshold:g}")
    if x[0] == x[-1]:
        return _failed("all eigenvalues are equal: no tail to fit")
    if n < SMALL_N_MIN_TAIL:
        return _failed(f"too few eigenvalues ({n}) for a power-law fit (at least {SMALL_N_MIN_TAIL})")
    alphas, Ds = _small_n_candidates(x) if n < SMALL_N else _standard_candidates(x)
    best = int(np.argmin(Ds))
    alpha = float(alphas[best])
    if not np.isfinite(alpha) or alpha <= 1.0:
        return _failed("no candidate tail gave alpha > 1")
    xmin = float(x[best])
    tail_n = n - best
    return PowerLawFit(
        alpha=alpha,
        xmin=xmin,
        xmax=float(x[-1]),
        D=float(Ds[best]),
        sigma=float((alpha - 1.0) / np.sqrt(tail_n)),
        num_pl_spikes=int(np.count_nonzero(evals >= xmin)),
        ok=True,
    )
