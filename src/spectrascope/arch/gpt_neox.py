"""GPT-NeoX and Pythia (``gpt_neox``): LayerNorm, fused per-head ``query_key_value``.

Block ``gpt_neox.layers[L]`` (``GPTNeoXLayer``). With ``use_parallel_residual`` (the
default, all Pythia models) the block is *parallel*::

    post = pre + attention(input_layernorm(pre)) + mlp(post_attention_layernorm(pre))

and has no ``hook_resid_mid``; without it the block is pre-norm and ``hook_resid_mid`` is
the input of ``post_attention_layernorm`` (``resid_pre + attn_out``).

=====================  ==========================================================
``attn.hook_z``        input of ``attention.dense``, split ``(H, d_head)``
``attn.hook_pattern``  second output of ``attention`` (eager attention only)
``hook_attn_out``      first output of ``attention``
``mlp.hook_post``      input of ``mlp.dense_4h_to_h``: ``act(dense_h_to_4h(x))``
``hook_mlp_out``       output of ``mlp``
=====================  ==========================================================

``attention.query_key_value`` ``(3d, d)`` is laid out per head, ``(H, 3, hd)``
(:attr:`QkvLayout.PER_HEAD`). The unembedding is ``embed_out`` in Pythia checkpoints,
``lm_head`` in transformers 5 modules.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from spectrascope.arch.common import K, block_points, layer_norm, readers, without, wp
from spectrascope.arch.spec import (
    ArchSpec,
    AttentionSpec,
    BlockKind,
    QkvLayout,
    Readout,
    config_get,
)

GPT_NEOX_SEQUENTIAL = ArchSpec(
    name="gpt_neox",
    block=BlockKind.PRE_NORM,
    layers="layers",
    points=block_points("attention", "attention.dense", "mlp.dense_4h_to_h", "post_attention_layernorm"),
    weights=(
        wp(r"attention\.query_key_value\.weight", "qkv"),
        wp(r"attention\.dense\.weight", "o"),
        wp(r"mlp\.dense_h_to_4h\.weight", "mlp_in"),
        wp(r"mlp\.dense_4h_to_h\.weight", "mlp_out"),
    ),
    attention=AttentionSpec(qkv=QkvLayout.PER_HEAD),
    readers=readers(layer_norm("input_layernorm"), layer_norm("post_attention_layernorm")),
    readout=Readout(final_norm="final_layer_norm", unembed=("lm_head", "embed_out")),
    resumable=True,
    handled=("use_parallel_residual", "rotary_pct"),
)

GPT_NEOX_PARALLEL = replace(
    GPT_NEOX_SEQUENTIAL, block=BlockKind.PARALLEL, points=without(GPT_NEOX_SEQUENTIAL.points, K.RESID_MID)
)


def spec(config: Any) -> ArchSpec:
    """Parallel or sequential residual, by ``use_parallel_residual`` (default True)."""
    return GPT_NEOX_PARALLEL if config_get(config, "use_parallel_residual", True) else GPT_NEOX_SEQUENTIAL
