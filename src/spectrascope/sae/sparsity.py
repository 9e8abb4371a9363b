"""A sparsity coefficient that can steer itself to a target L0.

ReLU (L1 penalty) and JumpReLU (L0 penalty) SAEs control sparsity through a coefficient,
not a k. To compare architectures at matched L0 the coefficient can follow a target: after
every step it is multiplied by ``exp(gain * clip((L0 - target) / target, -1, 1))``, so it
grows while features fire too often and shrinks while they fire too rarely (a multiplicative
integral controller). With ``target=None`` the coefficient stays fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .base import SaeError

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
