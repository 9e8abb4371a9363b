"""Architecture roles: what each 2-D tensor is (block index, role) and the head geometry.

Roles:
    embed      token embedding (vocab, d_model)
    unembed    output projection to the vocabulary, when not tied
    q, k, v    attention query / key / value projections (HF Linear layout (out, in))
    o          attention output projection
    qkv        fused q, k, v projection (GPT-2 ``c_attn``, GPT-NeoX ``query_key_value``)
    mlp_gate   gated-MLP gate projection (Llama family)
    mlp_up     gated-MLP up projection
    mlp_down   gated-MLP down projection
    mlp_in     ungated MLP input projection (GPT-2, GPT-NeoX, BERT)
    mlp_out    ungated MLP output projection
    other      anything else (position embeddings, poolers, unknown architectures)

Supported families: Llama (Llama, Qwen2, Mistral, SmolLM), GPT-2, GPT-NeoX and BERT. An
unknown architecture still gets every matrix analyzed, with role ``other`` and the block
index read from the name when it has one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROLES = (
    "embed", "unembed", "q", "k", "v", "o", "qkv",
    "mlp_gate", "mlp_up", "mlp_down", "mlp_in", "mlp_out", "other",
)

# (name suffix regex after the block prefix, role) per family, first match wins.
_FAMILY_PATTERNS: dict[str, list[tuple[str, str]]] = {
    "llama": [
        (r"self_attn\.q_proj\.weight", "q"), (r"self_attn\.k_proj\.weight", "k"),
        (r"self_attn\.v_proj\.weight", "v"), (r"self_attn\.o_proj\.weight", "o"),
        (r"mlp\.gate_proj\.weight", "mlp_gate"), (r"mlp\.up_proj\.weight", "mlp_up"),
        (r"mlp\.down_proj\.weight", "mlp_down"),
    ],
    "gpt2": [
        (r"attn\.c_attn\.weight", "qkv"), (r"attn\.c_proj\.weight", "o"),
        (r"mlp\.c_fc\.weight", "mlp_in"), (r"mlp\.c_proj\.weight", "mlp_out"),
    ],
    "gpt_neox": [
        (r"attention\.query_key_value\.weight", "qkv"), (r"attention\.dense\.weight", "o"),
        (r"mlp\.dense_h_to_4h\.weight", "mlp_in"), (r"mlp\.dense_4h_to_h\.weight", "mlp_out"),
    ],
    "bert": [
        (r"attention\.self\.query\.weight", "q"), (r"attention\.self\.key\.weight", "k"),
        (r"attention\.self\.value\.weight", "v"), (r"attention\.output\.dense\.weight", "o"),
        (r"intermediate\.dense\.weight", "mlp_in"), (r"output\.dense\.weight", "mlp_out"),
    ],
}
_FAMILY_OF = {
    "llama": "llama", "qwen2": "llama", "qwen3": "llama", "mistral": "llama", "smollm": "llama",
    "gpt2": "gpt2", "gpt_neox": "gpt_neox", "bert": "bert",
}
_EMBED = re.compile(r"(^|\.)(embed_tokens|wte|embed_in|word_embeddings)\.weight$")
_UNEMBED = re.compile(r"(^|\.)(lm_head|embed_out)\.weight$|^cls\.predictions\.decoder\.weight$")
_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class HeadGeometry:
    """Attention head shapes: n_heads query heads, n_kv_heads key/value heads (GQA)."""

    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_model: int

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.n_heads // self.n_kv_heads


def family(config: dict) -> str | None:
    """The architecture family of a HF config dict, or None if unsupported."""
    return _FAMILY_OF.get(str(config.get("model_type", "")).lower())


def tensor_role(name: str, config: dict) -> tuple[int, str]:
    """(block index or -1, role) of a tensor given its HF name and the model config."""
    if _EMBED.search(name):
        return -1, "embed"
    if _UNEMBED.search(name):
        return -1, "unembed"
    m = _BLOCK.search(name)
    if not m:
        return -1, "other"
    block, rest = int(m.group(1)), m.group(2)
    for pattern, role in _FAMILY_PATTERNS.get(family(config) or "", []):
        if re.fullmatch(pattern, rest):
            return block, role
    return block, "other"


def head_geometry(config: dict) -> HeadGeometry | None:
    """Head geometry from a HF config dict, or None when the config does not give it."""
    n_heads = config.get("num_attention_heads", config.get("n_head"))
    d_model = config.get("hidden_size", config.get("n_embd"))
    if not n_heads or not d_model:
        return None
    n_kv = config.get("num_key_value_heads") or n_heads
    head_dim = config.get("head_dim") or d_model // n_heads
    return HeadGeometry(int(n_heads), int(n_kv), int(head_dim), int(d_model))
