"""Benjamini-Hochberg q-values for a family of tests.

For m p-values sorted ascending p_(1) <= ... <= p_(m), the BH-adjusted value of p_(i) is

    q_(i) = min_{j >= i} min(1, m p_(j) / j)

and rejecting every test with q <= 0.05 controls the false discovery rate at 5% (for
independent or positively dependent tests). NaN p-values are left out of m and get a NaN q.
"""

from __future__ import annotations

import numpy as np


def bh_qvalues(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values, same shape and order as ``p_values``; NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return q
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    return q
