"""Do spectra predict mechanisms? Rank correlation with a permutation p-value.

Spearman's rho between a spectral metric and a causal importance across components
(layers or heads), with a two-sided permutation p-value: the share of random relabelings
whose |rho| is at least the observed |rho| ((count + 1) / (n_perm + 1)). Reported whatever
the sign; NaN pairs are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else np.nan


def rank_residuals(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Centered ranks of ``x`` minus their least-squares fit on the centered ranks of ``z`` (n,)."""
    rx, rz = rankdata(x) - (len(x) + 1) / 2, rankdata(z) - (len(z) + 1) / 2
    zz = float((rz**2).sum())
    return rx - (float((rx * rz).sum()) / zz) * rz if zz > 0 else rx


def partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Spearman correlation of x and y given z: the correlation of their ranks' residuals on z's ranks,
    (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)) in terms of the three rank correlations."""
    ex, ey = rank_residuals(x, z), rank_residuals(y, z)
    denom = np.sqrt((ex**2).sum() * (ey**2).sum())
    return float((ex * ey).sum() / denom) if denom > 1e-12 else np.nan


def permutation_test(x: np.ndarray, y: np.ndarray, n_perm: int = 2000, seed: int = 0) -> tuple[float, float]:
    """(rho, two-sided permutation p-value)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        return np.nan, np.nan
    rho = spearman(x, y)
    if not np.isfinite(rho):
        return rho, np.nan
    rng = np.random.default_rng(seed)
    rx = rankdata(x) - (x.size + 1) / 2
    ry = rankdata(y) - (y.size + 1) / 2
    denom = np.sqrt((rx**2).sum() * (ry**2).sum())
    perms = np.array([rng.permutation(ry) for _ in range(n_perm)])
    null = np.abs(perms @ rx / denom)
    p = (np.count_nonzero(null >= abs(rho) - 1e-12) + 1) / (n_perm + 1)
    return rho, float(p)


def correlation_table(
    df: pd.DataFrame,
    metrics: list[str],
    targets: list[str],
    group: str | None = None,
    n_perm: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Spearman rho and permutation p for every (metric, target) pair, optionally per group.

    Returns columns [group], metric, target, n, rho, p_value.
    """
    groups = [(None, df)] if group is None else list(df.groupby(group))
    rows = []
    for key, g in groups:
        for m in metrics:
            for t in targets:
                if m not in g or t not in g:
                    continue
                x, y = g[m].to_numpy(float), g[t].to_numpy(float)
                n = int(np.count_nonzero(np.isfinite(x) & np.isfinite(y)))
                rho, p = permutation_test(x, y, n_perm, seed)
                row = {"metric": m, "target": t, "n": n, "rho": rho, "p_value": p}
                if group is not None:
                    row = {group: key, **row}
                rows.append(row)
    return pd.DataFrame(rows)
