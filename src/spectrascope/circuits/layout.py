"""Where the circuit tools find things in a model: the one place that knows a block layout.

Edge patching and edge attribution hook a handful of modules of each block and need the
head geometry. Only the Llama family is supported (SmolLM2 and the toy models are Llama);
any other model is refused with one line. When the architecture registry of the project
grows these facts, :func:`llama_layout` is what moves there.

Llama block ``model.layers[L]`` (pre-norm, RMSNorm, gated MLP; HF ``LlamaDecoderLayer``)::

    x_pre  = block input                      (the residual stream entering the block)
    n      = input_layernorm(x_pre)
    q, k, v = q_proj(n), k_proj(n), v_proj(n) (k, v: n_kv heads, shared by groups of query heads)
    z      = attention(q, k, v)               (input of o_proj, one d_head slice per query head)
    x_mid  = x_pre + o_proj(z)                (input of post_attention_layernorm)
    x_post = x_mid + mlp(post_attention_layernorm(x_mid))
    logits = lm_head(norm(x_post of the last block))

Head ``h`` writes ``z_h W_O[:, h]^T`` (its slice of ``o_proj``); ``o_proj``'s bias, if any, is
written by no node (it is the same in every run, so no edge carries it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spectrascope.errors import SpectrascopeError

SUPPORTED_MODEL_TYPES = ("llama",)
"""``config.model_type`` values the circuit tools accept (tested: Llama; SmolLM2 is one)."""


class CircuitArchitectureError(SpectrascopeError):
    """The model's architecture is not supported by edge patching."""


@dataclass(frozen=True)
class LlamaLayout:
    """The modules and head geometry of a Llama-family causal LM.

    Attributes:
        hf: the ``LlamaForCausalLM``.
        blocks: its decoder layers (held here: a forward may swap the model's list for a tail).
        n_layers, n_heads, n_kv_heads, head_dim, d_model: geometry (``n_heads`` query heads;
            ``n_kv_heads`` key/value heads, each shared by ``group`` query heads).
    """

    hf: nn.Module
    blocks: tuple[nn.Module, ...]
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_model: int

    @property
    def group(self) -> int:
        """Query heads per key/value head (1 without GQA)."""
        return self.n_heads // self.n_kv_heads

    def block(self, layer: int) -> nn.Module:
        return self.blocks[layer]

    def attention(self, layer: int) -> nn.Module:
        return self.block(layer).self_attn

    def input_norm(self, layer: int) -> nn.Module:
        """The norm in front of the attention (``input_layernorm``)."""
        return self.block(layer).input_layernorm

    def mlp_norm(self, layer: int) -> nn.Module:
        """The norm in front of the MLP (``post_attention_layernorm``): its input is ``x_mid``."""
        return self.block(layer).post_attention_layernorm

    def projection(self, layer: int, kind: str) -> nn.Linear:
        """``q_proj``, ``k_proj``, ``v_proj`` or ``o_proj`` of ``layer`` (kind q, k, v, o)."""
        return getattr(self.attention(layer), f"{kind}_proj")

    def mlp(self, layer: int) -> nn.Module:
        return self.block(layer).mlp

    @property
    def final_norm(self) -> nn.Module:
        return self.hf.model.norm

    @property
    def embed(self) -> nn.Embedding:
        return self.hf.model.embed_tokens

    @property
    def unembed(self) -> nn.Linear:
        return self.hf.lm_head

    def head_rows(self, head: int, kind: str) -> slice:
        """Rows of the ``kind`` (q, k, v) projection's weight that compute query head ``head``'s
        input (for k and v: its key/value head's rows)."""
        index = head if kind == "q" else head // self.group
        return slice(index * self.head_dim, (index + 1) * self.head_dim)

    def o_columns(self, layer: int) -> torch.Tensor:
        """(n_heads, d_model, head_dim) ``W_O`` split by head: head ``h`` writes ``z_h @ W[h].T``."""
        weight = self.projection(layer, "o").weight
        return weight.view(self.d_model, self.n_heads, self.head_dim).permute(1, 0, 2)


def llama_layout(hf: nn.Module) -> LlamaLayout:
    """The layout of a Llama-family causal LM; :class:`CircuitArchitectureError` otherwise."""
    config = getattr(hf, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise CircuitArchitectureError(
            f"circuits support the Llama family only (model type {model_type!r}; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    try:
        layers = hf.model.layers
        hf.model.norm, hf.model.embed_tokens, hf.lm_head  # noqa: B018 - presence check
        for block in layers:
            for path in (
                "input_layernorm",
                "post_attention_layernorm",
                "mlp",
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.o_proj",
            ):
                block.get_submodule(path)
    except AttributeError as missing:
        raise CircuitArchitectureError(
            f"{type(hf).__name__} does not have the Llama module layout the circuit tools hook ({missing})"
        ) from None
    n_heads = int(config.num_attention_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
    d_model = int(config.hidden_size)
    head_dim = int(getattr(config, "head_dim", None) or d_model // n_heads)
    return LlamaLayout(
        hf=hf,
        blocks=tuple(layers),
        n_layers=len(layers),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        d_model=d_model,
    )


def model_handle(model: Any) -> Any:
    """The project's model handle (:func:`spectrascope.models.handle.as_model`) of anything the
    circuit API takes: ``"toy-induction"``, a bundled name or path, a loaded model or a bare
    Hugging Face module. A model left in training mode (dropout) is refused."""
    from spectrascope.models.handle import as_model

    handle = as_model(model)
    if handle.hf.training:
        raise SpectrascopeError("the model is in training mode (dropout); call .eval() first")
    return handle


def circuit_model(model: Any) -> tuple[nn.Module, Any, str]:
    """(HF model, tokenizer or None, display name) of anything :func:`model_handle` takes."""
    handle = model_handle(model)
    return handle.hf, getattr(handle, "tokenizer", None), str(getattr(handle, "name", "") or type(handle.hf).__name__)
