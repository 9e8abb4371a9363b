"""Tiny random Hugging Face models for the tracer tests (no downloads, seeded)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

VOCAB = 100
N_LAYERS = 3
D_MODEL = 64
N_HEADS = 4
D_MLP = 128

_SHARED = {"vocab_size": VOCAB, "num_hidden_layers": N_LAYERS, "num_attention_heads": N_HEADS}
_DECODER = dict(
    _SHARED, hidden_size=D_MODEL, intermediate_size=D_MLP, num_key_value_heads=2, max_position_embeddings=64
)


def _build(family: str, attn: str) -> nn.Module:
    if family == "llama":
        return LlamaForCausalLM(LlamaConfig(**_DECODER, attn_implementation=attn))
    if family == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**_DECODER, attn_implementation=attn))
    if family == "qwen3":  # head_dim (32) != hidden_size / heads (16)
        return Qwen3ForCausalLM(Qwen3Config(**_DECODER, head_dim=32, attn_implementation=attn))
    if family == "mistral":
        return MistralForCausalLM(MistralConfig(**_DECODER, attn_implementation=attn))
    if family == "gpt2":
        config = GPT2Config(
            vocab_size=VOCAB,
            n_layer=N_LAYERS,
            n_head=N_HEADS,
            n_embd=D_MODEL,
            n_inner=D_MLP,
            n_positions=64,
            bos_token_id=0,
            eos_token_id=0,
            attn_implementation=attn,
        )
        return GPT2LMHeadModel(config)
    bert = BertConfig(
        **_SHARED,
        hidden_size=D_MODEL,
        intermediate_size=D_MLP,
        max_position_embeddings=64,
        attn_implementation=attn,
    )
    if family == "bert":
        return BertModel(bert)
    if family == "bert_mlm":
        return BertForMaskedLM(bert)
    raise ValueError(family)


def _make_model(family: str, attn: str = "eager", seed: int = 0) -> nn.Module:
    """A fresh tiny model in eval mode; same seed, same weights."""
    torch.manual_seed(seed)
    return _build(family, attn).eval()


def _make_ids(batch: int = 2, pos: int = 9, seed: int = 1) -> torch.Tensor:
    """(batch, pos) random token ids."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, VOCAB, (batch, pos), generator=generator)


def _hook_state(model: nn.Module) -> dict[str, tuple]:
    """Every module's hook dictionaries' keys, to compare before and after."""
    attrs = (
        "_forward_hooks",
        "_forward_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_backward_hooks",
    )
    return {name: tuple(tuple(getattr(module, a).keys()) for a in attrs) for name, module in model.named_modules()}


def _no_hooks(model: nn.Module) -> bool:
    """No module of the model has a forward hook or forward pre-hook."""
    return all(not module._forward_hooks and not module._forward_pre_hooks for module in model.modules())


@pytest.fixture
def make_model() -> Callable[..., nn.Module]:
    """``make_model(family, attn="eager", seed=0)``: a fresh tiny model in eval mode.

    Families: llama, qwen2, qwen3, mistral, gpt2, bert (``BertModel``), bert_mlm (``BertForMaskedLM``).
    """
    return _make_model


@pytest.fixture
def make_ids() -> Callable[..., torch.Tensor]:
    """``make_ids(batch=2, pos=9, seed=1)``: (batch, pos) random token ids."""
    return _make_ids


@pytest.fixture
def hook_state() -> Callable[[nn.Module], dict[str, tuple]]:
    """``hook_state(model)``: every module's hook-dict keys, to compare before and after."""
    return _hook_state


@pytest.fixture
def no_hooks() -> Callable[[nn.Module], bool]:
    """``no_hooks(model)``: no module has a forward hook or forward pre-hook."""
    return _no_hooks
