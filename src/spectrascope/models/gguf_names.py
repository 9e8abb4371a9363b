"""GGUF (llama.cpp) tensor names and layouts -> Hugging Face names and layouts.

Results are reported under HF names for every format, so a GGUF and a safetensors copy of the
same model give the same rows. llama.cpp's converter also permutes the rows of q and k
inside each head (to interleave the rotary halves); :func:`unpermute_rotary` undoes it so a
dequantized tensor equals the HF tensor element for element.
"""

from __future__ import annotations

import re

import numpy as np

LLAMA_FAMILY = {"llama", "qwen2", "qwen3", "mistral", "smollm"}
"""Architectures whose GGUF tensor names map to HF's Llama-style names."""

ROTARY_PERMUTED = {"llama"}
"""Architectures whose q/k rows (weights and biases) llama.cpp's converter permutes
(Mistral is written as "llama"; Qwen2/Qwen3 are not permuted)."""

_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output.weight": "lm_head.weight",
    "output_norm.weight": "model.norm.weight",
}
_BLOCK = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


def hf_name(gguf_name: str, arch: str) -> str:
    """The HF name of a GGUF tensor for Llama-family architectures; other names unchanged."""
    if arch not in LLAMA_FAMILY:
        return gguf_name
    if gguf_name in _GLOBAL:
        return _GLOBAL[gguf_name]
    m = _BLOCK_RE.match(gguf_name)
    if m and m.group(2) in _BLOCK:
        return f"model.layers.{m.group(1)}.{_BLOCK[m.group(2)]}.{m.group(3)}"
    return gguf_name


def rotary_permute(W: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's permutation of q/k rows (HF layout -> GGUF layout), shape (n_heads*hd, d)."""
    rows = W.shape[0]
    return W.reshape(n_heads, 2, rows // n_heads // 2, *W.shape[1:]).swapaxes(1, 2).reshape(W.shape)


def unpermute_rotary(W: np.ndarray, n_heads: int) -> np.ndarray:
    """Inverse of :func:`rotary_permute` (GGUF layout -> HF layout)."""
    rows = W.shape[0]
    return W.reshape(n_heads, rows // n_heads // 2, 2, *W.shape[1:]).swapaxes(1, 2).reshape(W.shape)
