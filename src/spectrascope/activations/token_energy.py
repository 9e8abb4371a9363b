"""Token energy under a reference Gaussian.

With a reference Gaussian at a site (mean mu, covariance C, from a general corpus), the
energy of a token's activation x (d-dimensional) is

    E(x) = 1/2 (x - mu)^T (C + eps I)^-1 (x - mu) / d,     eps = ridge * trace(C) / d.

For x drawn from the reference itself E averages 1/2 (exactly, for eps = 0); a domain whose
tokens sit at high energy in a layer is one that layer treats as unusual. Computed in the
eigenbasis of C: E = 1/2 sum_k ((x - mu) . u_k)^2 / (lambda_k + eps) / d.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..trace.moments import RunningMoments

DEFAULT_RIDGE = 1e-4


@dataclass
class ReferenceGaussian:
    """mu (d,), eigenvectors U (d, d) and eigenvalues lam (d,) of C, and eps. float64."""

    mu: torch.Tensor
    U: torch.Tensor
    lam: torch.Tensor
    eps: float

    @classmethod
    def from_moments(cls, moments: RunningMoments, ridge: float = DEFAULT_RIDGE) -> ReferenceGaussian:
        cov = moments.covariance(ddof=1).double().cpu()
        lam, U = torch.linalg.eigh(cov)
        lam = lam.clamp_min(0.0)
        eps = ridge * float(lam.sum()) / lam.numel()
        return cls(moments.mean.double().cpu(), U, lam, eps)

    @classmethod
    def from_arrays(cls, mu: np.ndarray, cov: np.ndarray, ridge: float = DEFAULT_RIDGE) -> ReferenceGaussian:
        lam, U = torch.linalg.eigh(torch.as_tensor(cov, dtype=torch.float64))
        lam = lam.clamp_min(0.0)
        return cls(torch.as_tensor(mu, dtype=torch.float64), U, lam, ridge * float(lam.sum()) / lam.numel())

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Energies of token vectors x (n, d) -> (n,), float64."""
        z = (x.double().cpu() - self.mu) @ self.U
        return 0.5 * (z.square() / (self.lam + self.eps)).sum(dim=-1) / self.mu.numel()


def energy_summary(energies: np.ndarray) -> dict:
    """Mean and 10/50/90 % quantiles of token energies."""
    if energies.size == 0:
        return {"energy_mean": np.nan, "energy_p10": np.nan, "energy_p50": np.nan, "energy_p90": np.nan}
    q10, q50, q90 = np.quantile(energies, [0.1, 0.5, 0.9])
    return {
        "energy_mean": float(energies.mean()),
        "energy_p10": float(q10),
        "energy_p50": float(q50),
        "energy_p90": float(q90),
    }
