"""TopK SAE with the AuxK loss (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    f    = the k largest entries of ReLU(pre) per token, the rest zero
    loss = ||x - x^||^2 + alpha * ||e - e^||^2                                   (AuxK)

where e = x - x^ (detached) is the residual and e^ = TopK_{k_aux}(pre restricted to dead
features) @ W_dec: the dead features are trained to explain what the live ones miss, which
revives them. Defaults as in the paper: k_aux = d_in / 2, alpha = 1/32. The selection does
not depend on decoder norms because rows are unit norm (SAELens's
``rescale_acts_by_decoder_norm=False`` is then equivalent). Saved as SAELens ``topk``.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import SaeError, SparseAutoencoder, TrainingOutput, check_k, squared_error

AUX_COEFFICIENT = 1 / 32


def topk_codes(pre: torch.Tensor, k: int) -> torch.Tensor:
    """(..., d_sae) -> codes keeping the k largest ReLU(pre) per row, zeros elsewhere."""
    values, indices = torch.topk(pre, k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, indices, torch.relu(values))


def auxk_loss(
    sae: SparseAutoencoder,
    x: torch.Tensor,
    reconstruction: torch.Tensor,
    pre: torch.Tensor,
    dead: torch.Tensor | None,
    k_aux: int,
) -> torch.Tensor:
    """||e - e^||^2 with e = x - x^ (detached) and e^ decoded from the top ``k_aux`` dead
    features' pre-activations (zero when no feature is dead). See the module docstring."""
    if dead is None or not bool(dead.any()):
        return pre.new_zeros(())
    residual = (x.to(reconstruction.dtype) - reconstruction).detach()
    k = min(k_aux, int(dead.sum()))
    masked = pre.masked_fill(~dead, float("-inf"))
    codes = topk_codes(masked, k)
    return squared_error(residual, codes @ sae.W_dec)


class TopKSAE(SparseAutoencoder):
    """TopK SAE: exactly ``k`` (or fewer, when fewer pre-activations are positive) features per token.

    Args:
        k: active features per token (an integer, 1 <= k <= d_sae).
        k_aux: features of the AuxK reconstruction (None: d_in // 2).
        aux_coefficient: alpha of the AuxK loss.
    """

    architecture = "topk"
    saelens_architecture = "topk"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        k: float | None = None,
        k_aux: int | None = None,
        aux_coefficient: float = AUX_COEFFICIENT,
        **kwargs: Any,
    ) -> None:
        super().__init__(d_in, d_sae, **kwargs)
        value = check_k(k, d_sae)
        if value != int(value):
            raise SaeError(f"TopK needs a whole number of active features (got k={k}); batch_topk takes fractions")
        self.k = int(value)
        self.k_aux = int(k_aux) if k_aux is not None else max(1, d_in // 2)
        self.aux_coefficient = float(aux_coefficient)

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        return topk_codes(pre, self.k)

    def training_output(self, x: torch.Tensor, dead: torch.Tensor | None = None) -> TrainingOutput:
        pre = self.pre_activations(x)
        codes = topk_codes(pre, self.k)
        reconstruction = self.decode(codes)
        mse = squared_error(x, reconstruction)
        aux = self.aux_coefficient * auxk_loss(self, x, reconstruction, pre, dead, self.k_aux)
        return TrainingOutput(reconstruction, codes, pre, mse + aux, {"mse": mse, "auxk": aux})

    def hyperparameters(self) -> dict[str, Any]:
        return {"k": self.k, "k_aux": self.k_aux, "aux_coefficient": self.aux_coefficient}
