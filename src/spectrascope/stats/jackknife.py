"""Delete-a-group jackknife intervals: for statistics with no resampling-friendly form
(debiased CKA, whose unbiased estimator breaks on duplicated tokens; an effective rank, which
needs an eigendecomposition per replicate), each group of texts is left out in turn.

With G replicates r_g (the statistic without group g),

    SE^2 = (G - 1) / G x sum_g (r_g - mean r)^2

and the interval is estimate -/+ z SE (normal, 95 % by default). For a statistic bounded by
-1 and 1 (a correlation, CKA) :func:`bounded_jackknife_interval` takes the interval of
atanh(statistic) (Fisher's z) and maps its ends back with tanh: it stays inside (-1, 1), where
the plain interval of a CKA of 0.9998 reached 1.0004.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from .bootstrap import DEFAULT_LEVEL


def jackknife_interval(estimate: float, replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """(lo, hi) of ``estimate`` from its G leave-one-group-out ``replicates`` (NaN when G < 2 or
    a replicate is not finite)."""
    r = np.asarray(replicates, dtype=np.float64)
    g = r.size
    if g < 2 or not np.isfinite(r).all():
        return float("nan"), float("nan")
    se = float(np.sqrt((g - 1) / g * np.sum((r - r.mean()) ** 2)))
    z = float(norm.ppf(0.5 + level / 2))
    return estimate - z * se, estimate + z * se


def bounded_jackknife_interval(
    estimate: float, replicates: np.ndarray, level: float = DEFAULT_LEVEL
) -> tuple[float, float]:
    """(lo, hi) of a statistic in (-1, 1): :func:`jackknife_interval` of ``atanh`` of the estimate
    and replicates, its ends mapped back with ``tanh`` (NaN when any of them is outside (-1, 1))."""
    r = np.asarray(replicates, dtype=np.float64)
    values = np.append(r, estimate)
    if not np.isfinite(values).all() or (np.abs(values) >= 1).any():
        return float("nan"), float("nan")
    lo, hi = jackknife_interval(float(np.arctanh(estimate)), np.arctanh(r), level)
    return float(np.tanh(lo)), float(np.tanh(hi))
