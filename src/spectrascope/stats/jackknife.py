"""Delete-a-group jackknife intervals: for statistics with no resampling-friendly form
(debiased CKA, whose unbiased estimator breaks on duplicated tokens; an effective rank, which
needs an eigendecomposition per replicate), each group of texts is left out in turn.

With G replicates r_g (the statistic without group g),

    SE^2 = (G - 1) / G x sum_g (r_g - mean r)^2

and the interval is estimate -/+ z SE (normal, 95 % by default).
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
