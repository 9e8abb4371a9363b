"""Bootstrap confidence intervals over texts (the unit that varies), not over tokens.

Tokens of one text are correlated, so resampling tokens understates the uncertainty of a
domain-level number. Every interval here resamples *units* (texts, or sequences) with
replacement and recomputes the statistic from per-unit sufficient statistics:

- a weighted mean over units, ``sum_u v_u w_u / sum_u w_u`` (a token-weighted loss: v_u the
  text's mean loss, w_u its token count): :func:`weighted_mean_interval`;
- a ratio of sums, ``sum_u a_u / sum_u b_u`` (a variance share: a_u a text's variance in a
  subspace, b_u its total variance): :func:`ratio_interval`;
- paired differences of weighted means on the same resampled units (an ablation's effect:
  ablated minus clean loss, both on the same texts): pass ``v_u = v_ablated - v_clean``.

Intervals are percentile intervals (2.5 % and 97.5 % quantiles for ``level=0.95``) from
``n_boot`` resamples drawn by one seeded generator; the same ``seed`` gives the same unit
draws, so intervals of different statistics over the same units are computed on the same
resamples.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

DEFAULT_N_BOOT = 1000
DEFAULT_LEVEL = 0.95
MIN_INTERVAL_UNITS = 8
"""Fewer units (texts) than this give no interval in the study's tables: resampling two or three
texts gives a range, not a 95 % interval."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval; ``n_units`` resampled units."""

    estimate: float
    lo: float
    hi: float
    n_units: int

    def excludes(self, value: float = 0.0) -> bool:
        """Whether the interval lies entirely above or below ``value``."""
        return bool(self.lo > value or self.hi < value)

    def columns(self, name: str) -> dict[str, float]:
        """``{name: estimate, name_lo: lo, name_hi: hi}`` for a table row."""
        return {name: self.estimate, f"{name}_lo": self.lo, f"{name}_hi": self.hi}


@lru_cache(maxsize=32)
def resample_counts(n_units: int, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, n_units) multiplicities of each unit in each resample (rows sum to n_units).

    Cached (read-only): every statistic over the same units and seed uses the same resamples."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_units, size=(n_boot, n_units))
    counts = np.zeros((n_boot, n_units), dtype=np.float64)
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    counts.setflags(write=False)
    return counts


def ratio_interval(
    numerators: np.ndarray,
    denominators: np.ndarray,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Interval:
    """``sum a / sum b`` over units and its bootstrap interval (units resampled with replacement).

    Args:
        numerators, denominators: (n_units,) per-unit sums a_u and b_u (b_u >= 0).
    """
    a = np.asarray(numerators, dtype=np.float64)
    b = np.asarray(denominators, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"numerators {a.shape} and denominators {b.shape} must be 1-D of one length")
    n = a.size
    total = b.sum()
    estimate = float(a.sum() / total) if total > 0 else float("nan")
    if n < 2 or not np.isfinite(estimate):
        return Interval(estimate, float("nan"), float("nan"), n)
    counts = resample_counts(n, n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = (counts @ a) / (counts @ b)
    alpha = (1.0 - level) / 2
    lo, hi = np.nanquantile(stats, [alpha, 1.0 - alpha])
    return Interval(estimate, float(lo), float(hi), n)


def weighted_mean_interval(
    values: np.ndarray,
    weights: np.ndarray | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Interval:
    """``sum v w / sum w`` over units (plain mean without weights) and its bootstrap interval."""
    v = np.asarray(values, dtype=np.float64)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64)
    return ratio_interval(v * w, w, n_boot, seed, level)
