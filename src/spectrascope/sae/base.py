"""The sparse autoencoder module every architecture shares.

An SAE maps an activation x (d_in,) to a sparse, non-negative code f (d_sae,) and back::

    pre  = (x - b_dec [if apply_b_dec_to_input]) @ W_enc + b_enc      (d_sae,)
    f    = activation(pre)                                            (d_sae,)   the architecture
    x^   = f @ W_dec + b_dec                                          (d_in,)

The weights carry SAELens's names and shapes, so a folder written by either tool is read by
the other (:mod:`spectrascope.sae.saelens_io`): ``W_enc (d_in, d_sae)``, ``W_dec (d_sae, d_in)``
(row i is feature i's decoder direction, the "decoder column" of the x = W f convention),
``b_enc (d_sae)``, ``b_dec (d_in)``, and ``threshold (d_sae)`` for the JumpReLU family.

Training keeps every decoder row at unit L2 norm (:meth:`SparseAutoencoder.normalize_decoder`
after each step, :meth:`SparseAutoencoder.project_decoder_grad` before it), so a feature's
activation is the length of its contribution to the reconstruction.

An architecture is one subclass in its own file (``relu.py``, ``topk.py`` ...) that defines
:meth:`SparseAutoencoder.activate` (inference) and :meth:`SparseAutoencoder.training_output`
(the training forward with its loss terms), registered in :mod:`spectrascope.sae.registry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from spectrascope.errors import SpectrascopeError


class SaeError(SpectrascopeError):
    """A problem with an SAE, its file or its settings (one clear line)."""


@dataclass
class TrainingOutput:
    """One training forward pass.

    Attributes:
        reconstruction: (batch, d_in) x^.
        codes: (batch, d_sae) feature activations f (zero where inactive).
        pre: (batch, d_sae) pre-activations.
        loss: scalar to minimize (sum of ``terms``).
        terms: named scalar parts of the loss (``mse``, ``l1``, ``l0``, ``auxk`` ...).
    """

    reconstruction: torch.Tensor
    codes: torch.Tensor
    pre: torch.Tensor
    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


def squared_error(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||x - x^||^2 (summed over dimensions): the reconstruction loss."""
    return (x - reconstruction).pow(2).sum(dim=-1).mean()


class SparseAutoencoder(nn.Module):
    """Base class: weights, encode / decode, unit-norm decoder, input-scale folding.

    Args:
        d_in: width of the activations (e.g. 576 for SmolLM2's residual stream).
        d_sae: number of features.
        apply_b_dec_to_input: subtract ``b_dec`` from x before encoding (SAELens's default).
        metadata: free-form facts saved with the SAE (model, site, training tokens ...).
        generator: the torch generator of the initialization (seeded by the trainer).

    Initialization: decoder rows uniformly random on the unit sphere, ``W_enc = W_dec^T``
    (tied at start, as in Gao et al. 2024 and Conerly et al. 2024), biases zero.
    """

    architecture: ClassVar[str] = ""
    """The registry name (``relu``, ``topk``, ``batch_topk``, ``jumprelu``)."""
    saelens_architecture: ClassVar[str] = ""
    """The ``architecture`` written into SAELens's cfg.json (``standard``, ``topk``, ``jumprelu``)."""

    def __init__(
        self,
        d_in: int,
        d_sae: int,
        *,
        apply_b_dec_to_input: bool = True,
        metadata: dict[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_sizes(d_in, d_sae)
        self.d_in, self.d_sae = int(d_in), int(d_sae)
        self.apply_b_dec_to_input = bool(apply_b_dec_to_input)
        self.metadata: dict[str, Any] = dict(metadata or {})
        directions = torch.randn(d_sae, d_in, generator=generator)
        directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec = nn.Parameter(directions)
        self.W_enc = nn.Parameter(directions.T.clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    # ------------------------------------------------------------------ inference

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_sae) encoder pre-activations."""
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """The architecture's inference activation: (..., d_sae) pre -> codes."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) activations -> (..., d_sae) non-negative feature activations."""
        return self.activate(self.pre_activations(x))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., d_sae) feature activations -> (..., d_in) reconstruction."""
        return codes.to(self.W_dec.dtype) @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., d_in) -> (..., d_in) reconstruction ``decode(encode(x))``."""
        return self.decode(self.encode(x))

    # ------------------------------------------------------------------ training

    def training_output(self, x: torch.Tensor, dead: torch.Tensor | None = None) -> TrainingOutput:
        """The training forward on a (batch, d_in) batch; ``dead`` (d_sae,) bool marks the
        features that have not fired for a while (used by auxiliary losses)."""
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        """Architecture settings saved into cfg.json (``k``, coefficients ...)."""
        return {}

    def after_step(self, output: TrainingOutput) -> None:
        """Called by the trainer after each optimizer step (threshold estimates, projections)."""

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Rescale every decoder row to unit L2 norm."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the part of W_dec's gradient parallel to each (unit) row, so a step moves
        a row along the sphere (Bricken et al. 2023)."""
        if self.W_dec.grad is None:
            return
        parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
        self.W_dec.grad.sub_(parallel * self.W_dec)

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Make an SAE trained on ``scale * x`` work on raw x, decoder rows still unit norm.

        With positively homogeneous activations (ReLU, TopK, JumpReLU with the threshold
        scaled too), f_raw = f / scale: ``b_enc``, ``b_dec`` and thresholds are divided by
        ``scale``; ``W_enc`` and ``W_dec`` are unchanged.
        """
        if not math.isfinite(scale) or scale <= 0:
            raise SaeError(f"input scale must be a positive number (got {scale})")
        self.b_enc.div_(scale)
        self.b_dec.div_(scale)
        threshold = getattr(self, "threshold", None)
        if isinstance(threshold, torch.Tensor):
            threshold.div_(scale)

    # ------------------------------------------------------------------ helpers

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The weights under SAELens's names, detached, contiguous, on the CPU."""
        names = ["W_enc", "W_dec", "b_enc", "b_dec"] + (["threshold"] if hasattr(self, "threshold") else [])
        return {n: getattr(self, n).detach().cpu().contiguous() for n in names}

    def extra_repr(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"d_in={self.d_in}, d_sae={self.d_sae}" + (f", {settings}" if settings else "")


def check_sizes(d_in: Any, d_sae: Any) -> None:
    """Raise :class:`SaeError` unless d_in and d_sae are positive integers."""
    for name, value in (("d_in", d_in), ("d_sae", d_sae)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SaeError(f"{name} must be a positive integer (got {value!r})")


def check_k(k: Any, d_sae: float, name: str = "k") -> float:
    """``k`` as a float, or :class:`SaeError` unless 0 < k <= d_sae."""
    try:
        value = float(k)
    except (TypeError, ValueError):
        raise SaeError(f"{name} must be a number (got {k!r})") from None
    if not math.isfinite(value) or value <= 0 or value > d_sae:
        limit = f"d_sae = {d_sae}" if math.isfinite(d_sae) else "d_sae"
        raise SaeError(f"{name} must be between 1 and {limit} active features (got {k!r})")
    return value
