"""Do spectra predict mechanisms? Rank correlation with a permutation p-value.

Spearman's rho between a spectral metric and a causal importance across components
(layers or heads), with a two-sided permutation p-value: the share of random relabelings
whose |rho| is at least the observed |rho| ((count + 1) / (n_perm + 1)). Reported whatever
the sign; NaN pairs are dropped.

Random relabeling treats the components as exchangeable. Layers are not: neighbouring layers
resemble each other and both series may drift with depth, and the first and last blocks are
often extremes of their own (SmolLM2's L0 MLP costs 5 nats when removed, the next largest 1).
For components in an order (``ordered=True``) three checks try to break each correlation:

- ``rho_given_order``, ``p_given_order``: the partial rank correlation given the position in
  the order (a shared trend with depth is not evidence), its p-value from permuting one
  series' residuals;
- ``p_shift``: the observed |rho| against every circular shift of one series along the order
  (each series keeps its own smoothness; the smallest possible p is 1 / n);
- ``rho_trimmed``, ``p_trimmed``: rho and its permutation p without the first and last
  component.
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
    x, y = _finite_pairs(x, y)
    if x.size < 3:
        return np.nan, np.nan
    rho = spearman(x, y)
    if not np.isfinite(rho):
        return rho, np.nan
    rx = rankdata(x) - (x.size + 1) / 2
    ry = rankdata(y) - (y.size + 1) / 2
    return rho, _permutation_p(rx, ry, abs(rho), n_perm, seed)


def _finite_pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _permutation_p(ex: np.ndarray, ey: np.ndarray, observed: float, n_perm: int, seed: int) -> float:
    """Two-sided p of |corr(ex, ey)| = ``observed`` against ``n_perm`` shuffles of ``ey``."""
    denom = np.sqrt((ex**2).sum() * (ey**2).sum())
    if not denom > 1e-12:
        return np.nan
    rng = np.random.default_rng(seed)
    perms = np.array([rng.permutation(ey) for _ in range(n_perm)])
    null = np.abs(perms @ ex / denom)
    return float((np.count_nonzero(null >= observed - 1e-12) + 1) / (n_perm + 1))


def circular_shift_test(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p of Spearman's |rho| of x and y (in their order) against the n - 1 circular
    shifts of x: (shifts with |rho| >= the observed + 1) / n. NaN pairs are dropped first."""
    x, y = _finite_pairs(x, y)
    if x.size < 3:
        return np.nan
    rho = spearman(x, y)
    if not np.isfinite(rho):
        return np.nan
    shifted = [abs(spearman(np.roll(x, k), y)) for k in range(1, x.size)]
    return float((np.count_nonzero(np.array(shifted) >= abs(rho) - 1e-12) + 1) / x.size)


def order_checks(x: np.ndarray, y: np.ndarray, n_perm: int = 2000, seed: int = 0) -> dict[str, float]:
    """The checks of an ordered correlation (module docstring): rho_given_order,
    p_given_order, p_shift, rho_trimmed, p_trimmed. x, y (n,) in the components' order."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    order = np.arange(x.size, dtype=float)[keep]
    x, y = x[keep], y[keep]
    out = dict.fromkeys(ORDER_COLUMNS, np.nan)
    if x.size < 5:
        return out
    ex, ey = rank_residuals(x, order), rank_residuals(y, order)
    partial = partial_spearman(x, y, order)
    out["rho_given_order"] = partial
    if np.isfinite(partial):
        out["p_given_order"] = _permutation_p(ex, ey, abs(partial), n_perm, seed)
    out["p_shift"] = circular_shift_test(x, y)
    out["rho_trimmed"], out["p_trimmed"] = permutation_test(x[1:-1], y[1:-1], n_perm, seed)
    return out


ORDER_COLUMNS = ("rho_given_order", "p_given_order", "p_shift", "rho_trimmed", "p_trimmed")
"""Columns of :func:`order_checks` (NaN for components without an order, such as heads)."""


def correlation_table(
    df: pd.DataFrame,
    metrics: list[str],
    targets: list[str],
    group: str | None = None,
    n_perm: int = 2000,
    seed: int = 0,
    ordered: bool = False,
) -> pd.DataFrame:
    """Spearman rho and permutation p for every (metric, target) pair, optionally per group.

    Returns columns [group], metric, target, n, rho, p_value and :data:`ORDER_COLUMNS`
    (computed when ``ordered``: ``df``'s rows are the components in their order, such as
    layers; NaN otherwise).
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
                checks = order_checks(x, y, n_perm, seed) if ordered else dict.fromkeys(ORDER_COLUMNS, np.nan)
                row = {"metric": m, "target": t, "n": n, "rho": rho, "p_value": p, **checks}
                if group is not None:
                    row = {group: key, **row}
                rows.append(row)
    return pd.DataFrame(rows)
