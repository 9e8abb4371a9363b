"""The standard SAE: ReLU activation and an L1 penalty (Bricken et al. 2023; Conerly et al. 2024).

    f    = ReLU(pre)
    loss = ||x - x^||^2 + lambda * sum_i f_i ||W_dec[i]||

With unit-norm decoder rows the penalty is lambda * ||f||_1. ``lambda`` is fixed, or follows a
target L0 (:class:`~spectrascope.sae.sparsity.SparsityCoefficient`; ``k`` sets the target).
Saved as SAELens architecture ``standard``.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import SparseAutoencoder, TrainingOutput, check_k, squared_error
from .sparsity import SparsityCoefficient

DEFAULT_L1 = 0.05
"""Starting L1 coefficient, in units of inputs scaled to unit mean squared norm."""


class ReluSAE(SparseAutoencoder):
    """ReLU SAE with an L1 sparsity penalty.

    Args:
        l1_coefficient: the L1 coefficient lambda (None: :data:`DEFAULT_L1`, adapted to ``k``).
        k: target L0 (active features per token) that lambda follows when ``l1_coefficient``
            is None; None keeps lambda fixed.
    """

    architecture = "relu"
    saelens_architecture = "standard"

    def __init__(
        self, d_in: int, d_sae: int, *, k: float | None = None, l1_coefficient: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(d_in, d_sae, **kwargs)
        target = check_k(k, d_sae, "the target L0 (k)") if k is not None and l1_coefficient is None else None
        self.sparsity = SparsityCoefficient(DEFAULT_L1 if l1_coefficient is None else float(l1_coefficient), target)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def training_output(self, x: torch.Tensor, dead: torch.Tensor | None = None) -> TrainingOutput:
        pre = self.pre_activations(x)
        codes = torch.relu(pre)
        reconstruction = self.decode(codes)
        mse = squared_error(x, reconstruction)
        l1 = self.sparsity.value * (codes * self.W_dec.norm(dim=1)).sum(dim=-1).mean()
        return TrainingOutput(reconstruction, codes, pre, mse + l1, {"mse": mse, "l1": l1})

    def after_step(self, output: TrainingOutput) -> None:
        self.sparsity.update(float((output.codes > 0).sum(dim=-1).float().mean()))

    def firing_cutoffs(self, offset: float = 0.0) -> torch.Tensor:
        """(d_sae,) pre-activation above which each feature fires once shifted by ``offset``."""
        return torch.full((self.d_sae,), float(offset), dtype=self.b_enc.dtype, device=self.b_enc.device)

    @torch.no_grad()
    def shift_cutoffs(self, offset: float) -> None:
        """Raise every feature's firing cutoff by ``offset`` (``b_enc -= offset``)."""
        self.b_enc.sub_(offset)

    def hyperparameters(self) -> dict[str, Any]:
        return {"l1_coefficient": self.sparsity.value, "target_l0": self.sparsity.target}
