"""The model's own readout: final norm + unembedding, applied to any residual-stream vector.

A language model turns the residual stream leaving its last block into logits with the
modules its family's spec names (``ArchSpec.readout``, :mod:`spectrascope.arch`), which
:func:`unembed` borrows (the model's modules themselves, never a copy, so the lens at the
last layer is the model's own computation):

- the final norm, below ``base_model`` (``norm`` for Llama-style models, ``ln_f`` for GPT-2
  and GPT-J, ``final_layer_norm`` for GPT-NeoX, none for BERT, whose blocks end normalized);
- the unembedding, below the top-level model (``lm_head``; the masked-LM head ``cls`` of BERT);
- Gemma-2's ``final_logit_softcapping``: ``cap * tanh(logits / cap)``, computed as HF does;
- a logit multiplier when the family has one.

A model without an unembedding (``LlamaModel``, ``BertModel``) or of an unsupported family
raises :class:`~spectrascope.errors.SpectrascopeError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from spectrascope.arch import Capability
from spectrascope.errors import ArchitectureError, SpectrascopeError
from spectrascope.models.handle import ModelLike, as_model


@dataclass(frozen=True)
class Unembed:
    """The final norm and the unembedding of one model.

    Attributes:
        norm: the final normalisation module (RMSNorm or LayerNorm), or None (BERT).
        lm_head: the unembedding, ``d_model -> vocab``.
        softcap: the final-logit softcap (None: none).
        scale: a logit multiplier (None: none).
    """

    norm: nn.Module | None
    lm_head: nn.Module
    softcap: float | None = None
    scale: float | None = None

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        """Logits of residual-stream vectors: (..., d_model) -> (..., vocab), the model's dtype."""
        logits = self.lm_head(resid if self.norm is None else self.norm(resid))
        if self.softcap is not None:
            logits = logits / self.softcap
            logits = torch.tanh(logits)
            logits = logits * self.softcap
        if self.scale is not None:
            logits = logits * self.scale
        return logits


def unembed_parts(model: ModelLike) -> Unembed:
    """The final norm and unembedding of a language model (anything ``as_model`` accepts).

    Raises:
        SpectrascopeError: unsupported family, or no LM head (a base model).
    """
    handle = as_model(model)
    hf = handle.hf
    try:
        spec = handle.spec
        spec.require(Capability.LENS, "the logit lens")
    except ArchitectureError as err:
        raise ArchitectureError(f"the logit lens / unembedding is not available: {err}") from None
    readout = spec.readout
    if readout is None:
        raise ArchitectureError(f"the logit lens / unembedding is not available for the {spec.name} family")
    base = getattr(hf, "base_model", hf)
    try:
        norm = base.get_submodule(readout.final_norm) if readout.final_norm else None
    except AttributeError:
        raise SpectrascopeError(f"{type(hf).__name__} has no final norm {readout.final_norm!r}") from None
    head = next((hf.get_submodule(path) for path in readout.unembed if _has(hf, path)), None)
    if head is None or hf is base:
        raise SpectrascopeError(
            f"{type(hf).__name__} has no unembedding ({' or '.join(readout.unembed)}): the lens needs the causal-LM "
            "model (e.g. LlamaForCausalLM, GPT2LMHeadModel) or the masked LM (BertForMaskedLM), not the base model"
        )
    config = handle.config
    softcap = getattr(config, readout.softcap, None) if readout.softcap else None
    scale = getattr(config, readout.scale, None) if readout.scale else None
    return Unembed(norm=norm, lm_head=head, softcap=softcap, scale=scale)


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True


def unembed(model: ModelLike, resid: torch.Tensor) -> torch.Tensor:
    """Residual stream through the final norm and the unembedding: (..., d_model) -> (..., vocab) logits."""
    return unembed_parts(model)(resid)
