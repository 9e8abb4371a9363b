"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity
with JumpReLU Sparse Autoencoders").

    f_i  = pre_i * H(pre_i - theta_i)            (JumpReLU; H the Heaviside step)
    loss = ||x - x^||^2 + lambda * sum_i H(pre_i - theta_i)          (an L0 penalty)

H has zero gradient almost everywhere, so theta is trained with straight-through
estimators built on the rectangle kernel K(u) = 1{-1/2 < u < 1/2} of bandwidth eps
(the paper's equations 11-12):

    d JumpReLU(z; theta) / d theta  :=  -(theta / eps) K((z - theta) / eps)
    d H(z - theta) / d theta        :=  -(1 / eps) K((z - theta) / eps)

and the gradient with respect to z is the ordinary one (H(z - theta) for JumpReLU, 0 for
the L0 term: only the threshold learns from the sparsity penalty). One departure, stated:
theta is a parameter itself (projected onto theta >= 0 after each step) instead of
exp(log theta): Adam moves a parameter by about lr per step, so log theta needs thousands of
steps to move theta by orders of magnitude, more than a CPU budget allows (SAELens made the
same change). Inference computes ReLU(pre) * (pre > theta), SAELens's formula (equal to the
above for theta >= 0). ``lambda`` is fixed or follows a target L0 (``k``).
"""

from __future__ import annotations

from typing import Any

import torch

from .base import SparseAutoencoder, TrainingOutput, check_k, squared_error
from .sparsity import SparsityCoefficient

DEFAULT_L0 = 1e-3
"""Starting L0 coefficient, for inputs scaled to unit mean squared norm."""
DEFAULT_BANDWIDTH = 1e-3
"""The kernel bandwidth eps, in the same units (the paper's value)."""
DEFAULT_THRESHOLD = 1e-3
"""Initial theta (the paper's value)."""


def rectangle(u: torch.Tensor) -> torch.Tensor:
    """K(u) = 1 for -1/2 < u < 1/2, else 0 (same dtype as u)."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    """z * H(z - theta) with the pseudo-derivative -(theta/eps) K((z - theta)/eps) for theta."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return z * (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        grad_z = (z > theta).to(z.dtype) * grad
        grad_theta = (-(theta / eps) * rectangle((z - theta) / eps) * grad).reshape(-1, z.shape[-1]).sum(dim=0)
        return grad_z, grad_theta, None


class StepFunction(torch.autograd.Function):
    """H(z - theta) with the pseudo-derivative -(1/eps) K((z - theta)/eps) for theta, 0 for z."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, theta: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(z, theta)
        ctx.eps = eps
        return (z > theta).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        z, theta = ctx.saved_tensors
        eps = ctx.eps
        grad_theta = (-(1.0 / eps) * rectangle((z - theta) / eps) * grad).reshape(-1, z.shape[-1]).sum(dim=0)
        return None, grad_theta, None


class JumpReluSAE(SparseAutoencoder):
    """JumpReLU SAE with an L0 penalty and a learned per-feature threshold.

    Args:
        l0_coefficient: lambda (None: :data:`DEFAULT_L0`, adapted to ``k``).
        k: target L0 that lambda follows when ``l0_coefficient`` is None.
        bandwidth: eps of the pseudo-derivatives (units of the scaled inputs).
        initial_threshold: theta at initialization.
    """

    architecture = "jumprelu"
    saelens_architecture = "jumprelu"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        k: float | None = None,
        l0_coefficient: float | None = None,
        bandwidth: float = DEFAULT_BANDWIDTH,
        initial_threshold: float = DEFAULT_THRESHOLD,
        **kwargs: Any,
    ) -> None:
        super().__init__(d_in, d_sae, **kwargs)
        target = check_k(k, d_sae, "the target L0 (k)") if k is not None and l0_coefficient is None else None
        self.sparsity = SparsityCoefficient(DEFAULT_L0 if l0_coefficient is None else float(l0_coefficient), target)
        self.bandwidth = float(bandwidth)
        self.threshold = torch.nn.Parameter(torch.full((d_sae,), float(initial_threshold)))

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre) * (pre > self.threshold).to(pre.dtype)

    def training_output(self, x: torch.Tensor, dead: torch.Tensor | None = None) -> TrainingOutput:
        pre = self.pre_activations(x)
        codes = JumpReLUFunction.apply(pre, self.threshold, self.bandwidth)
        reconstruction = self.decode(codes)
        mse = squared_error(x, reconstruction)
        l0 = self.sparsity.value * StepFunction.apply(pre, self.threshold, self.bandwidth).sum(dim=-1).mean()
        return TrainingOutput(reconstruction, codes, pre, mse + l0, {"mse": mse, "l0": l0})

    @torch.no_grad()
    def after_step(self, output: TrainingOutput) -> None:
        self.threshold.clamp_(min=0.0)
        self.sparsity.update(float((output.codes > 0).sum(dim=-1).float().mean()))

    def firing_cutoffs(self, offset: float = 0.0) -> torch.Tensor:
        """(d_sae,) pre-activation above which each feature fires once shifted by ``offset``:
        max(theta + offset, 0)."""
        return (self.threshold + offset).clamp(min=0.0)

    @torch.no_grad()
    def shift_cutoffs(self, offset: float) -> None:
        """Raise every threshold by ``offset`` (clamped at 0)."""
        self.threshold.copy_(self.firing_cutoffs(offset))

    def hyperparameters(self) -> dict[str, Any]:
        return {"l0_coefficient": self.sparsity.value, "target_l0": self.sparsity.target, "bandwidth": self.bandwidth}
