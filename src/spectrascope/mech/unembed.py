"""The model's own readout: final norm + unembedding, applied to any residual-stream vector.

A causal LM turns the residual stream leaving its last block into next-token logits with
two modules, which :func:`unembed` borrows (the model's modules themselves, never a copy,
so the lens at the last layer is the model's own computation):

==========================================  ======================  ===========
family (``config.model_type``)              final norm              unembedding
==========================================  ======================  ===========
Llama (``llama``, ``mistral``, ``qwen2``,   ``model.norm``          ``lm_head``
``qwen3``)                                  (RMSNorm)
GPT-2 (``gpt2``)                            ``transformer.ln_f``    ``lm_head``
                                            (LayerNorm)
==========================================  ======================  ===========

Any other model (BERT, a model without an LM head such as ``LlamaModel``) raises
:class:`~spectrascope.errors.SpectrascopeError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spectrascope.errors import SpectrascopeError

_LAYOUTS: dict[str, tuple[str, str]] = {
    "llama": ("model.norm", "lm_head"),
    "mistral": ("model.norm", "lm_head"),
    "qwen2": ("model.norm", "lm_head"),
    "qwen3": ("model.norm", "lm_head"),
    "gpt2": ("transformer.ln_f", "lm_head"),
}
"""``config.model_type`` -> (final norm path, unembedding path) below the causal-LM model."""


@dataclass(frozen=True)
class Unembed:
    """The final norm and the unembedding of one model.

    Attributes:
        norm: the final normalisation module (RMSNorm or LayerNorm), applied per vector.
        lm_head: the unembedding, ``d_model -> vocab``.
    """

    norm: nn.Module
    lm_head: nn.Module

    def __call__(self, resid: torch.Tensor) -> torch.Tensor:
        """Logits of residual-stream vectors: (..., d_model) -> (..., vocab), the model's dtype."""
        return self.lm_head(self.norm(resid))


def hf_model_of(model: Any) -> nn.Module:
    """The Hugging Face model of a :class:`~spectrascope.models.loaded.LoadedModel` (``.hf``) or the model itself."""
    return getattr(model, "hf", model)


def unembed_parts(model: Any) -> Unembed:
    """The final norm and unembedding of a causal LM (LoadedModel or Hugging Face model).

    Raises:
        SpectrascopeError: unsupported architecture, or no LM head (a base model).
    """
    hf = hf_model_of(model)
    model_type = getattr(getattr(hf, "config", None), "model_type", None)
    supported = ", ".join(sorted(_LAYOUTS))
    if model_type not in _LAYOUTS:
        raise SpectrascopeError(
            f"the logit lens / unembedding is not available for model type {model_type!r} "
            f"({type(hf).__name__}); supported causal LMs: {supported}"
        )
    norm_path, head_path = _LAYOUTS[model_type]
    try:
        norm, lm_head = hf.get_submodule(norm_path), hf.get_submodule(head_path)
    except AttributeError:
        raise SpectrascopeError(
            f"{type(hf).__name__} has no {norm_path} + {head_path}: the unembedding needs the causal-LM "
            "model (e.g. LlamaForCausalLM, GPT2LMHeadModel), not the base model"
        ) from None
    return Unembed(norm=norm, lm_head=lm_head)


def unembed(model: Any, resid: torch.Tensor) -> torch.Tensor:
    """Residual stream through the final norm and the unembedding: (..., d_model) -> (..., vocab) logits."""
    return unembed_parts(model)(resid)
