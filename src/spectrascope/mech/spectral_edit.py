"""A weight matrix rebuilt from part of its SVD: the edit of a spectral ablation."""

from __future__ import annotations

import torch

from spectrascope.errors import NumericalError, OptionError
from spectrascope.mech.components import SpectralKeep


def spectral_edit(weight: torch.Tensor, keep: SpectralKeep | str, k: int = 1) -> tuple[torch.Tensor, int]:
    """(edited matrix in ``weight``'s dtype, number of singular directions kept).

    The SVD is computed in float64. ``drop_top``: ``W - U_k S_k V_k^T``; ``tail``:
    ``U_t S_t V_t^T`` over the power-law tail ``sigma^2 >= xmin``; ``bulk``: ``W`` minus the tail.

    Raises:
        SpectrascopeError: ``k`` out of range, or the power-law fit of the ESD failed.
    """
    keep = SpectralKeep(keep)
    W = weight.detach().to(torch.float64)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    n = S.numel()
    if keep is SpectralKeep.DROP_TOP:
        if not 1 <= k <= n:
            raise OptionError(f"k must be between 1 and {n} (got {k})")
        removed = (U[:, :k] * S[:k]) @ Vh[:k]
        return (W - removed).to(weight.dtype), n - k
    from spectrascope.spectra.powerlaw import fit_power_law

    evals = (S**2).cpu().numpy()
    fit = fit_power_law(evals)
    if not fit.ok:
        raise NumericalError(f"the power-law fit of the matrix's ESD failed ({fit.reason}): no tail to keep")
    tail = torch.from_numpy(evals >= fit.xmin).to(S.device)
    tail_part = (U[:, tail] * S[tail]) @ Vh[tail]
    if keep is SpectralKeep.TAIL:
        return tail_part.to(weight.dtype), int(tail.sum())
    return (W - tail_part).to(weight.dtype), int((~tail).sum())
