"""Marchenko-Pastur (MP) fit of the bulk of an ESD.

Eigenvalues are rescaled to mean 1 (lambda * M / sum lambda). For an N x M random matrix
(Q = N / M >= 1) with i.i.d. entries of variance sigma^2, the eigenvalues of W^T W / N follow
the MP law on [sigma^2 (1 - 1/sqrt Q)^2, sigma^2 (1 + 1/sqrt Q)^2] with density

    rho(x) = Q / (2 pi sigma^2 x) * sqrt((lambda_+ - x)(x - lambda_-)).

The bulk scale sigma_mp is fitted by minimizing the Kolmogorov-Smirnov distance between the
empirical CDF of all eigenvalues and the MP CDF over the bulk's support (eigenvalues beyond
the edge count as misfit mass, so the fit cannot shrink the bulk to explain them away).
The bulk edge is lambda_+ = sigma_mp^2 (1 + 1/sqrt Q)^2; a spike is an eigenvalue beyond the
edge plus a Tracy-Widom margin of 3 standard deviations of the largest eigenvalue of a white
Wishart matrix (Johnstone 2001). mp_softrank = lambda_+ / lambda_max.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

TW_MARGIN_SDS = 3.0
_GRID = 513


@dataclass(frozen=True)
class MPFit:
    """MP fit result. ``bulk_max``/``bulk_min`` are in the raw (un-normalized) units."""

    sigma_mp: float
    bulk_min: float
    bulk_max: float
    num_spikes: int
    mp_softrank: float
    D: float


def mp_edges(Q: float, sigma: float = 1.0) -> tuple[float, float]:
    """(lambda_-, lambda_+) of the MP law with aspect ratio Q = N/M >= 1 and scale sigma."""
    r = 1.0 / np.sqrt(Q)
    return sigma**2 * (1.0 - r) ** 2, sigma**2 * (1.0 + r) ** 2


def mp_cdf(x: np.ndarray, Q: float, sigma: float = 1.0) -> np.ndarray:
    """MP cumulative distribution at points x (vectorized), by quadrature in the angle
    variable x = a + (b - a)(1 - cos t)/2, which removes the square-root endpoints."""
    a, b = mp_edges(Q, sigma)
    t = np.linspace(0.0, np.pi, _GRID)
    grid_x = a + (b - a) * (1.0 - np.cos(t)) / 2.0
    half = (b - a) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        integrand = Q * half**2 * np.sin(t) ** 2 / (2.0 * np.pi * sigma**2 * grid_x)
    if a == 0.0:  # Q == 1: sin(t)^2 / x -> 4 / b as t -> 0
        integrand[0] = Q * half**2 * 4.0 / (2.0 * np.pi * sigma**2 * b)
    cdf = np.concatenate([[0.0], np.cumsum((integrand[1:] + integrand[:-1]) / 2.0 * np.diff(t))])
    cdf /= cdf[-1]
    return np.interp(x, grid_x, cdf, left=0.0, right=1.0)


def tracy_widom_sd(N: int, M: int, sigma: float = 1.0) -> float:
    """Standard deviation scale of the largest eigenvalue of W^T W / N (white Wishart),
    W of shape (N, M) with entries of variance sigma^2 (Johnstone's centering/scaling)."""
    n, p = float(N), float(M)
    return sigma**2 * (np.sqrt(n) + np.sqrt(p)) * (1.0 / np.sqrt(n) + 1.0 / np.sqrt(p)) ** (1.0 / 3.0) / n


def _ks_bulk(sigma: float, x: np.ndarray, Q: float) -> float:
    """sup |F_emp - F_MP| over the bulk support [0, lambda_+] (x sorted, normalized)."""
    _, edge = mp_edges(Q, sigma)
    n = x.size
    inside = x[x <= edge]
    F = mp_cdf(inside, Q, sigma)
    upper = np.arange(1, inside.size + 1) / n
    lower = np.arange(0, inside.size) / n
    d_inside = max(np.max(np.abs(upper - F), initial=0.0), np.max(np.abs(lower - F), initial=0.0))
    d_edge = 1.0 - inside.size / n  # mass beyond the edge
    return float(max(d_inside, d_edge))


def fit_marchenko_pastur(evals: np.ndarray, N: int, M: int) -> MPFit:
    """Fit the MP bulk of an ESD.

    Args:
        evals: eigenvalues of W^T W, shape (M,), raw units.
        N, M: matrix shape, N >= M.
    Returns:
        :class:`MPFit`.
    """
    evals = np.sort(np.asarray(evals, dtype=np.float64))
    Q = N / M
    scale = evals.size / evals.sum()
    x = evals * scale
    grid = np.linspace(0.05, 1.5, 59)
    scores = np.array([_ks_bulk(s, x, Q) for s in grid])
    i = int(np.argmin(scores))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = minimize_scalar(_ks_bulk, bounds=(lo, hi), args=(x, Q), method="bounded", options={"xatol": 1e-4})
    sigma = float(res.x) if res.fun <= scores[i] else float(grid[i])
    D = float(min(res.fun, scores[i]))
    bulk_min, bulk_max = mp_edges(Q, sigma)
    margin = TW_MARGIN_SDS * tracy_widom_sd(N, M, sigma)
    num_spikes = int(np.count_nonzero(x > bulk_max + margin))
    return MPFit(
        sigma_mp=sigma,
        bulk_min=bulk_min / scale,
        bulk_max=bulk_max / scale,
        num_spikes=num_spikes,
        mp_softrank=float(bulk_max / x[-1]),
        D=D,
    )
