"""SETOL's ERG / TRACE-LOG condition, computed in log space.

Normalize the eigenvalues to mean 1 (lambda_i * M / sum lambda). The effective correlation
space (ECS) is the tail that satisfies det X_ECS = 1, i.e. sum over the tail of ln lambda = 0.
Operationally: grow the tail from the largest eigenvalue downward; the ERG tail ends at the
first eigenvalue where the running sum of logs drops below 0 (that eigenvalue is kept).
If the running sum never drops below 0, the tail is the whole spectrum.

Working with sums of logs avoids the overflow of a product of thousands of eigenvalues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ErgTail:
    """The ERG tail of a spectrum.

    Attributes:
        num: number of eigenvalues in the ERG tail.
        lambda_min: smallest tail eigenvalue, in normalized units (mean eigenvalue = 1).
        scale: the factor M / sum(lambda) that normalizes raw eigenvalues.
    """

    num: int
    lambda_min: float
    scale: float


def normalize_to_unit_mean(evals: np.ndarray) -> tuple[np.ndarray, float]:
    """Return (evals * scale, scale) with scale = len(evals) / sum(evals), so the mean is 1."""
    evals = np.asarray(evals, dtype=np.float64)
    total = float(evals.sum())
    if total <= 0:
        raise ValueError("spectrum has zero trace")
    scale = evals.size / total
    return evals * scale, scale


def erg_tail(evals: np.ndarray) -> ErgTail:
    """Find the ERG / TRACE-LOG tail of a spectrum.

    Args:
        evals: eigenvalues, shape (M,), nonnegative, any order.
    Returns:
        :class:`ErgTail`.
    """
    normalized, scale = normalize_to_unit_mean(np.sort(np.asarray(evals, dtype=np.float64)))
    descending = normalized[::-1]
    with np.errstate(divide="ignore"):
        running = np.cumsum(np.log(descending))
    below = np.flatnonzero(running < 0.0)
    num = int(below[0]) + 1 if below.size else normalized.size
    return ErgTail(num=num, lambda_min=float(descending[num - 1]), scale=scale)
