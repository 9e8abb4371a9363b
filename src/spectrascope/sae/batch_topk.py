"""BatchTopK SAE (Bussmann, Leask & Nanda 2024, "BatchTopK Sparse Autoencoders").

Training keeps the ``k * batch`` largest ReLU(pre) entries over the whole batch, so k is the
*average* number of active features per token and a token may use more or fewer. Inference
cannot depend on the batch: it uses one global threshold theta, a JumpReLU
``f = ReLU(pre) * (pre > theta)``, with theta estimated during training as an exponential
moving average of the smallest activation the batch selection kept (the paper averages it;
SAELens does the same EMA). Saved as SAELens ``jumprelu`` with ``threshold = theta`` for
every feature, exactly how SAELens saves its own BatchTopK SAEs. AuxK as in
:mod:`spectrascope.sae.topk`.
"""

from __future__ import annotations

from typing import Any

import torch

from .base import SparseAutoencoder, TrainingOutput, check_k, squared_error
from .topk import AUX_COEFFICIENT, auxk_loss

THRESHOLD_RATE = 0.01
"""EMA rate of the global threshold estimate."""


def batch_topk_codes(pre: torch.Tensor, k: float) -> torch.Tensor:
    """(batch, d_sae) -> codes keeping the round(k * batch) largest ReLU(pre) of the whole batch."""
    acts = torch.relu(pre)
    flat = acts.flatten()
    keep = max(1, min(flat.numel(), round(k * acts.shape[0])))
    values, indices = torch.topk(flat, keep, sorted=False)
    return torch.zeros_like(flat).scatter_(0, indices, values).view_as(acts)


class BatchTopKSAE(SparseAutoencoder):
    """BatchTopK SAE; ``k`` may be fractional (mean active features per token).

    Attributes:
        threshold: (d_sae,) buffer, every entry the global threshold theta used at inference.
    """

    architecture = "batch_topk"
    saelens_architecture = "jumprelu"

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        k: float | None = None,
        k_aux: int | None = None,
        aux_coefficient: float = AUX_COEFFICIENT,
        threshold_rate: float = THRESHOLD_RATE,
        **kwargs: Any,
    ) -> None:
        super().__init__(d_in, d_sae, **kwargs)
        self.k = check_k(k, d_sae)
        self.k_aux = int(k_aux) if k_aux is not None else max(1, d_in // 2)
        self.aux_coefficient = float(aux_coefficient)
        self.threshold_rate = float(threshold_rate)
        self.register_buffer("threshold", torch.zeros(d_sae))
        self._threshold_seen = False

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre) * (pre > self.threshold)

    def training_output(self, x: torch.Tensor, dead: torch.Tensor | None = None) -> TrainingOutput:
        pre = self.pre_activations(x)
        codes = batch_topk_codes(pre, self.k)
        reconstruction = self.decode(codes)
        mse = squared_error(x, reconstruction)
        aux = self.aux_coefficient * auxk_loss(self, x, reconstruction, pre, dead, self.k_aux)
        return TrainingOutput(reconstruction, codes, pre, mse + aux, {"mse": mse, "auxk": aux})

    @torch.no_grad()
    def after_step(self, output: TrainingOutput) -> None:
        positive = output.codes[output.codes > 0]
        if positive.numel() == 0:
            return
        smallest = float(positive.min())
        rate = 1.0 if not self._threshold_seen else self.threshold_rate
        self.threshold.mul_(1 - rate).add_(rate * smallest)
        self._threshold_seen = True

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "k_aux": self.k_aux,
            "aux_coefficient": self.aux_coefficient,
            "batch_threshold": float(self.threshold[0]) if self.d_sae else 0.0,
        }
