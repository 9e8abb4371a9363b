"""Massive-activation tokens: detect and leave them out, as the attention sink is.

Some tokens carry residual-stream vectors hundreds of times longer than the rest (Sun et al.
2024, "Massive activations in large language models"); in SmolLM2-135M at
``blocks.15.hook_resid_post`` about 0.2 % of tokens (mostly at position 1, right after the
sink) have norms near 26,000 against a median of about 170, almost all of it in one channel.
They would hold ~97 % of the activations' total variance: an SAE would spend its capacity
on them and explained variance would measure little else.

A token is *massive* when its vector's L2 norm exceeds ``factor`` times the median norm of
the tokens it is seen with (a batch). The trainer drops such rows; evaluation and feature
statistics leave them unedited and uncounted, like the first position; every table says how
many were left out.
"""

from __future__ import annotations

import torch

MASSIVE_FACTOR = 10.0
"""Norm above this many times the batch median marks a massive token."""


def massive_mask(vectors: torch.Tensor, factor: float | None = MASSIVE_FACTOR) -> torch.Tensor:
    """(n,) bool: rows of (n, d) ``vectors`` whose norm exceeds ``factor`` x the median norm
    (all False when ``factor`` is None or there are no rows)."""
    if factor is None or vectors.shape[0] == 0:
        return torch.zeros(vectors.shape[0], dtype=torch.bool, device=vectors.device)
    norms = vectors.float().norm(dim=-1)
    return norms > factor * norms.median()
