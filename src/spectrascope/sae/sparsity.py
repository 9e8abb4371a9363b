"""A sparsity coefficient that can steer itself to a target L0.

ReLU (L1 penalty) and JumpReLU (L0 penalty) SAEs control sparsity through a coefficient,
not a k. To compare architectures at matched L0 the coefficient can follow a target: after
every step it is multiplied by ``exp(gain * clip((L0 - target) / target, -1, 1))``, so it
grows while features fire too often and shrinks while they fire too rarely (a multiplicative
integral controller). With ``target=None`` the coefficient stays fixed.

The controller steers the L0 only through gradient steps, so it lags (on SmolLM2, 390 steps
ended a JumpReLU at L0 17.6 for a target of 32). :func:`match_l0` then closes the gap once,
after training: every feature's firing cutoff (the pre-activation above which it fires) is
moved by one common offset, found by bisection on training rows so that the mean L0 there
equals the target. For JumpReLU the cutoff is the threshold theta_i (clamped at 0); for
ReLU it is 0, and the offset is subtracted from ``b_enc``, which also shifts the size of
every active code by the same amount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .base import SaeError, SparseAutoencoder

DEFAULT_GAIN = 0.02
"""Largest relative change of the coefficient per step (about 2 %)."""


@dataclass
class SparsityCoefficient:
    """The current coefficient, and the L0 it follows (None: fixed)."""

    value: float
    target: float | None = None
    gain: float = DEFAULT_GAIN

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value < 0:
            raise SaeError(f"a sparsity coefficient must be a non-negative number (got {self.value})")
        if self.target is not None and not self.target > 0:
            raise SaeError(f"a target L0 must be positive (got {self.target})")

    def update(self, l0: float) -> None:
        """Move the coefficient after a step whose mean L0 (active features per token) was ``l0``."""
        if self.target is None:
            return
        error = max(-1.0, min(1.0, (l0 - self.target) / self.target))
        self.value = max(self.value * math.exp(self.gain * error), 1e-12)


def active_count(pre: torch.Tensor, cutoffs: torch.Tensor) -> float:
    """Mean number of features per row with a pre-activation above its cutoff.

    Args:
        pre: (n, d_sae) encoder pre-activations.
        cutoffs: (d_sae,) firing cutoffs.
    """
    return float((pre > cutoffs).sum(dim=-1).double().mean())


@torch.no_grad()
def match_l0(sae: SparseAutoencoder, x: torch.Tensor, target: float, iterations: int = 60) -> dict[str, float]:
    """Move ``sae``'s firing cutoffs by one common offset so its mean L0 on ``x`` is ``target``.

    Args:
        sae: an SAE with ``firing_cutoffs(offset)`` and ``shift_cutoffs(offset)`` (ReLU, JumpReLU).
        x: (n, d_in) rows in the units the SAE is trained on.
        target: the wanted mean number of active features per row.
        iterations: bisection steps on the offset.
    Returns:
        ``{"l0_before", "l0_after", "offset"}``: the mean L0 on ``x`` before and after, and
        the offset applied (pre-activation units; positive raises the cutoffs).
    """
    pre = sae.pre_activations(x)
    before = active_count(pre, sae.firing_cutoffs(0.0))
    # L0 does not increase with the offset: at lo every feature that can fire does, at hi none.
    lo, hi = -float(pre.abs().max()) - 1.0, float(pre.max()) + 1.0
    best, best_error = 0.0, abs(before - target)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        l0 = active_count(pre, sae.firing_cutoffs(mid))
        if abs(l0 - target) < best_error:
            best, best_error = mid, abs(l0 - target)
        if l0 > target:
            lo = mid
        else:
            hi = mid
    sae.shift_cutoffs(best)
    after = active_count(sae.pre_activations(x), sae.firing_cutoffs(0.0))
    return {"l0_before": before, "l0_after": after, "offset": best}
