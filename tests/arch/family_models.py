"""Tiny random models of every registered family, built from transformers config objects.

2 layers, d_model 32, 4 query heads and 2 key/value heads where the family has GQA, eager
attention, seeded, weights drawn with std 0.2 (transformers' 0.02 makes the 8-dimensional
head circuits' eigenvalues fall below the fit's 1e-5 floor); nothing is downloaded. (A plain module, not conftest, so test files can
import it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import transformers as tf

VOCAB, D, D_MLP, LAYERS, HEADS, KV = 64, 32, 48, 2, 4, 2
SLIDING = 4
"""Sliding window of the families that have one: shorter than the test sequences (9 tokens)."""

_DECODER = {
    "vocab_size": VOCAB,
    "hidden_size": D,
    "intermediate_size": D_MLP,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV,
    "max_position_embeddings": 64,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}


@dataclass(frozen=True)
class Case:
    """A family's tiny model and what its geometry must read.

    Attributes:
        family: the spec name the registry must give.
        config: the transformers config class name; model: the model class name.
        kwargs: config arguments.
        heads: (n_heads, n_kv_heads, head_dim) the spec must read.
        d_mlp: width of ``mlp.hook_post`` (None: the family has no such site).
        roles: the roles every block must have.
        moe: a mixture of experts.
    """

    family: str
    config: str
    model: str
    kwargs: dict
    heads: tuple[int, int, int]
    d_mlp: int | None
    roles: frozenset[str]
    moe: bool = False

    def build(self) -> torch.nn.Module:
        config = getattr(tf, self.config)(**self.kwargs, initializer_range=0.2, attn_implementation="eager")
        torch.manual_seed(0)
        model = getattr(tf, self.model)(config).eval()
        with torch.no_grad():  # q/k norm weights start at 1 (or 0 for offset norms): make them vary
            for name, param in model.named_parameters():
                if param.ndim == 1 and ("norm" in name or "layernorm" in name):
                    param.add_(0.1 * torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))))
        return model


LLAMA_ROLES = frozenset({"q", "k", "v", "o", "mlp_gate", "mlp_up", "mlp_down"})
MOE_ROLES = frozenset({"q", "k", "v", "o", "router", "mlp_gate_up", "mlp_down"})
UNGATED = frozenset({"q", "k", "v", "o", "mlp_in", "mlp_out"})
FUSED_UNGATED = frozenset({"qkv", "o", "mlp_in", "mlp_out"})

CASES: dict[str, Case] = {
    "llama2": Case(
        "llama",
        "LlamaConfig",
        "LlamaForCausalLM",
        {**_DECODER, "num_key_value_heads": HEADS},
        (HEADS, HEADS, 8),
        D_MLP,
        LLAMA_ROLES,
    ),
    "llama3": Case(
        "llama",
        "LlamaConfig",
        "LlamaForCausalLM",
        {
            **_DECODER,
            "tie_word_embeddings": True,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        },
        (HEADS, KV, 8),
        D_MLP,
        LLAMA_ROLES,
    ),
    "mistral": Case(
        "llama",
        "MistralConfig",
        "MistralForCausalLM",
        {**_DECODER, "sliding_window": SLIDING},
        (HEADS, KV, 8),
        D_MLP,
        LLAMA_ROLES,
    ),
    "mixtral": Case(
        "mixtral",
        "MixtralConfig",
        "MixtralForCausalLM",
        {**_DECODER, "num_local_experts": 4, "num_experts_per_tok": 2},
        (HEADS, KV, 8),
        None,
        MOE_ROLES,
        moe=True,
    ),
    "qwen2": Case("qwen2", "Qwen2Config", "Qwen2ForCausalLM", _DECODER, (HEADS, KV, 8), D_MLP, LLAMA_ROLES),
    "qwen2_moe": Case(
        "qwen2_moe",
        "Qwen2MoeConfig",
        "Qwen2MoeForCausalLM",
        {
            **_DECODER,
            "num_experts": 4,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 24,
            "shared_expert_intermediate_size": 40,
            "mlp_only_layers": [1],
        },
        (HEADS, KV, 8),
        None,
        frozenset({"q", "k", "v", "o", "mlp_gate", "mlp_up", "mlp_down"}),
        moe=True,
    ),
    "qwen3": Case(
        "qwen3", "Qwen3Config", "Qwen3ForCausalLM", {**_DECODER, "head_dim": 16}, (HEADS, KV, 16), D_MLP, LLAMA_ROLES
    ),
    "qwen3_moe": Case(
        "qwen3_moe",
        "Qwen3MoeConfig",
        "Qwen3MoeForCausalLM",
        {**_DECODER, "head_dim": 16, "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 24},
        (HEADS, KV, 16),
        None,
        MOE_ROLES,
        moe=True,
    ),
    "gemma": Case(
        "gemma", "GemmaConfig", "GemmaForCausalLM", {**_DECODER, "head_dim": 16}, (HEADS, KV, 16), D_MLP, LLAMA_ROLES
    ),
    "gemma2": Case(
        "gemma2",
        "Gemma2Config",
        "Gemma2ForCausalLM",
        {
            **_DECODER,
            "head_dim": 8,
            "sliding_window": SLIDING,
            "final_logit_softcapping": 5.0,
            "attn_logit_softcapping": 10.0,
        },
        (HEADS, KV, 8),
        D_MLP,
        LLAMA_ROLES,
    ),
    "gemma3_text": Case(
        "gemma3_text",
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {
            **_DECODER,
            "head_dim": 8,
            "sliding_window": SLIDING,
            "final_logit_softcapping": 5.0,
            "layer_types": ["sliding_attention", "full_attention"],
        },
        (HEADS, KV, 8),
        D_MLP,
        LLAMA_ROLES,
    ),
    "phi3": Case(
        "phi3",
        "Phi3Config",
        "Phi3ForCausalLM",
        _DECODER,
        (HEADS, KV, 8),
        D_MLP,
        frozenset({"qkv", "o", "mlp_gate_up", "mlp_down"}),
    ),
    "phi": Case(
        "phi",
        "PhiConfig",
        "PhiForCausalLM",  # head_dim 16: its centered QK circuit has rank 15
        {**_DECODER, "qk_layernorm": True, "num_attention_heads": 2, "num_key_value_heads": 1},
        (2, 1, 16),
        D_MLP,
        UNGATED,
    ),
    "gpt2": Case(
        "gpt2",
        "GPT2Config",
        "GPT2LMHeadModel",
        {
            "vocab_size": VOCAB,
            "n_embd": D,
            "n_layer": LAYERS,
            "n_head": HEADS,
            "n_inner": D_MLP,
            "n_positions": 64,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
        (HEADS, HEADS, 8),
        D_MLP,
        FUSED_UNGATED,
    ),
    "gpt_neox": Case(
        "gpt_neox",
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        {
            "vocab_size": VOCAB,
            "hidden_size": D,
            "intermediate_size": D_MLP,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "max_position_embeddings": 64,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
        (HEADS, HEADS, 8),
        D_MLP,
        FUSED_UNGATED,
    ),
    "gpt_neox_sequential": Case(
        "gpt_neox",
        "GPTNeoXConfig",
        "GPTNeoXForCausalLM",
        {
            "vocab_size": VOCAB,
            "hidden_size": D,
            "intermediate_size": D_MLP,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "max_position_embeddings": 64,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "use_parallel_residual": False,
        },
        (HEADS, HEADS, 8),
        D_MLP,
        FUSED_UNGATED,
    ),
    "gptj": Case(
        "gptj",
        "GPTJConfig",
        "GPTJForCausalLM",
        {
            "vocab_size": VOCAB,
            "n_embd": D,
            "n_layer": LAYERS,
            "n_head": HEADS,
            "n_inner": D_MLP,
            "n_positions": 64,
            "rotary_dim": 4,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
        (HEADS, HEADS, 8),
        D_MLP,
        UNGATED,
    ),
    "olmo2": Case("olmo2", "Olmo2Config", "Olmo2ForCausalLM", _DECODER, (HEADS, KV, 8), D_MLP, LLAMA_ROLES),
    "stablelm": Case("stablelm", "StableLmConfig", "StableLmForCausalLM", _DECODER, (HEADS, KV, 8), D_MLP, LLAMA_ROLES),
    "stablelm_parallel": Case(
        "stablelm",
        "StableLmConfig",
        "StableLmForCausalLM",
        {**_DECODER, "use_parallel_residual": True},
        (HEADS, KV, 8),
        D_MLP,
        LLAMA_ROLES,
    ),
    "starcoder2": Case(
        "starcoder2",
        "Starcoder2Config",
        "Starcoder2ForCausalLM",
        {**_DECODER, "sliding_window": SLIDING},
        (HEADS, KV, 8),
        D_MLP,
        frozenset({"q", "k", "v", "o", "mlp_in", "mlp_out"}),
    ),
    "bert": Case(
        "bert",
        "BertConfig",
        "BertForMaskedLM",
        {
            "vocab_size": VOCAB,
            "hidden_size": D,
            "intermediate_size": D_MLP,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "max_position_embeddings": 64,
        },
        (HEADS, HEADS, 8),
        D_MLP,
        UNGATED,
    ),
    "roberta": Case(
        "bert",
        "RobertaConfig",
        "RobertaForMaskedLM",
        {
            "vocab_size": VOCAB,
            "hidden_size": D,
            "intermediate_size": D_MLP,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "max_position_embeddings": 64,
            "pad_token_id": 1,
        },
        (HEADS, HEADS, 8),
        D_MLP,
        UNGATED,
    ),
    "falcon": Case(
        "falcon",
        "FalconConfig",
        "FalconForCausalLM",
        {
            "vocab_size": VOCAB,
            "hidden_size": D,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "ffn_hidden_size": D_MLP,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
        (HEADS, 1, 8),
        D_MLP,
        FUSED_UNGATED,
    ),
    "falcon_new": Case(
        "falcon",
        "FalconConfig",
        "FalconForCausalLM",
        {
            "vocab_size": VOCAB,
            "hidden_size": D,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "ffn_hidden_size": D_MLP,
            "new_decoder_architecture": True,
            "num_kv_heads": KV,
            "bos_token_id": 1,
            "eos_token_id": 2,
        },
        (HEADS, KV, 8),
        D_MLP,
        FUSED_UNGATED,
    ),
}
"""Test name -> :class:`Case`. Every registered ``model_type`` but ``mamba`` (no attention)
and the aliases ``smollm`` (a Llama) appears at least once."""


@cache
def model(name: str) -> torch.nn.Module:
    """The tiny model of ``CASES[name]`` (built once; tests must leave it unchanged)."""
    return CASES[name].build()


def mamba() -> torch.nn.Module:
    """A tiny Mamba (a state-space model: no attention)."""
    torch.manual_seed(0)
    config = tf.MambaConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        num_hidden_layers=LAYERS,
        state_size=4,
        expand=2,
        conv_kernel=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return tf.MambaForCausalLM(config).eval()


def ids(batch: int = 2, pos: int = 9, seed: int = 1) -> torch.Tensor:
    """(batch, pos) random token ids (no special tokens)."""
    return torch.randint(3, VOCAB, (batch, pos), generator=torch.Generator().manual_seed(seed))
