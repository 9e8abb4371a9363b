"""Llama (``llama``, ``mistral``; Llama 2 and 3, Mistral, SmolLM): pre-norm, RMSNorm, gated MLP.

Block ``model.layers[L]`` (``LlamaDecoderLayer``):

=====================  ==========================================================
``hook_resid_pre``     input of the block (the residual stream entering it)
``attn.hook_z``        input of ``self_attn.o_proj``, split ``(H, d_head)``
``attn.hook_pattern``  second output of ``self_attn`` (eager attention only)
``hook_attn_out``      first output of ``self_attn`` (= ``o_proj`` output)
``hook_resid_mid``     input of ``post_attention_layernorm``: ``resid_pre + attn_out``
``mlp.hook_post``      input of ``mlp.down_proj``: ``act(gate_proj(x)) * up_proj(x)``
``hook_mlp_out``       output of ``mlp`` (= ``down_proj`` output)
``hook_resid_post``    output of the block, ``resid_mid + mlp_out``
=====================  ==========================================================

Handled config attributes: ``num_key_value_heads`` (GQA), ``head_dim``, biases, RoPE
scaling and Mistral's ``sliding_window`` (all inside HF's own forward, which the sites hook).
GGUF files of arch ``llama`` (also written for Mistral) have their q/k rows rotary-permuted.
"""

from __future__ import annotations

from spectrascope.arch.common import (
    GATED_MLP,
    LLAMA_ATTENTION,
    LLAMA_GGUF_BLOCK,
    LLAMA_GGUF_GLOBALS,
    LLAMA_READERS,
    PRE_NORM_POINTS,
    fixed,
)
from spectrascope.arch.spec import ArchSpec, BlockKind, GgufNames, Readout

LLAMA = ArchSpec(
    name="llama",
    block=BlockKind.PRE_NORM,
    layers="layers",
    points=PRE_NORM_POINTS,
    weights=LLAMA_ATTENTION + GATED_MLP,
    readers=LLAMA_READERS,
    readout=Readout(final_norm="norm"),
    gguf=GgufNames(block=LLAMA_GGUF_BLOCK, globals=LLAMA_GGUF_GLOBALS, rotary_permuted=True),
    resumable=True,
    handled=("num_key_value_heads", "head_dim", "sliding_window", "rope_scaling"),
)


spec = fixed(LLAMA)
