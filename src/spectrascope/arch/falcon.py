"""Falcon (``falcon``; Falcon-7B/40B/180B, Falcon-RW), in its three layouts.

Key/value heads, by the config: the new decoder architecture (Falcon-40B/180B,
``new_decoder_architecture``) has ``num_kv_heads`` (checkpoints: ``n_head_kv``) groups;
otherwise ``multi_query`` (the default, Falcon-7B) means one key/value head, and without it
every head has its own. ``self_attention.query_key_value`` is split accordingly:
:attr:`QkvLayout.GROUPED`, :attr:`QkvLayout.CONTIGUOUS` or :attr:`QkvLayout.PER_HEAD`.

Block ``transformer.h[L]`` (``FalconDecoderLayer``). With ``parallel_attn`` (the default) or
the new decoder architecture the block is *parallel*: the MLP reads ``ln_mlp`` (new
architecture, two norms) or the same ``input_layernorm`` as attention, and
``post = pre + attn_out + mlp_out`` (no ``hook_resid_mid``). HF computes that sum as
``mlp_output += attention_output``, **in place** on the MLP's output tensor: a cached
``hook_mlp_out`` must be a copy (:func:`spectrascope.trace.run_with_cache` always copies).
Otherwise the block is pre-norm with ``hook_resid_mid`` at the input of
``post_attention_layernorm``.

=====================  ==========================================================
``attn.hook_z``        input of ``self_attention.dense``, split ``(H, d_head)``
``attn.hook_pattern``  second output of ``self_attention`` (eager attention only)
``hook_attn_out``      first output of ``self_attention``
``mlp.hook_post``      input of ``mlp.dense_4h_to_h``: ``act(dense_h_to_4h(x))``
``hook_mlp_out``       output of ``mlp``, before attention is added into it
=====================  ==========================================================

``alibi`` positions run inside HF's forward.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from spectrascope.arch.common import K, block_points, layer_norm, readers, without, wp
from spectrascope.arch.spec import (
    ArchSpec,
    AttentionSpec,
    BlockKind,
    HeadKeys,
    QkvLayout,
    Readout,
    config_get,
)

_KEYS = HeadKeys(n_heads=("num_attention_heads", "n_head"), n_kv_heads=("num_kv_heads", "n_head_kv"))


def kv_heads(config: Any) -> int | None:
    """Key/value heads: ``num_kv_heads`` (new architecture), 1 (multi-query) or the query heads."""
    n_heads = config_get(config, _KEYS.n_heads)
    if config_get(config, "new_decoder_architecture", False):
        return config_get(config, _KEYS.n_kv_heads, n_heads)
    return 1 if config_get(config, "multi_query", True) else n_heads


SEQUENTIAL = ArchSpec(
    name="falcon",
    block=BlockKind.PRE_NORM,
    layers="h",
    points=block_points("self_attention", "self_attention.dense", "mlp.dense_4h_to_h", "post_attention_layernorm"),
    weights=(
        wp(r"self_attention\.query_key_value\.weight", "qkv"),
        wp(r"self_attention\.dense\.weight", "o"),
        wp(r"mlp\.dense_h_to_4h\.weight", "mlp_in"),
        wp(r"mlp\.dense_4h_to_h\.weight", "mlp_out"),
    ),
    readers=readers(layer_norm("input_layernorm"), layer_norm("post_attention_layernorm")),
    readout=Readout(final_norm="ln_f"),
    resumable=True,
    handled=("new_decoder_architecture", "multi_query", "parallel_attn", "num_ln_in_parallel_attn", "alibi"),
)


def spec(config: Any) -> ArchSpec:
    """The layout of this config (see the module docstring)."""
    new = bool(config_get(config, "new_decoder_architecture", False))
    if new:
        qkv = QkvLayout.GROUPED
    else:
        qkv = QkvLayout.CONTIGUOUS if config_get(config, "multi_query", True) else QkvLayout.PER_HEAD
    attention = AttentionSpec(qkv=qkv, keys=_KEYS, kv_heads=kv_heads)
    if not new and not config_get(config, "parallel_attn", True):
        return replace(SEQUENTIAL, attention=attention)
    two_norms = new and config_get(config, "num_ln_in_parallel_attn", 2) == 2
    attn_norm, mlp_norm = ("ln_attn", "ln_mlp") if two_norms else ("input_layernorm", "input_layernorm")
    return replace(
        SEQUENTIAL,
        block=BlockKind.PARALLEL,
        points=without(SEQUENTIAL.points, K.RESID_MID),
        attention=attention,
        readers=readers(layer_norm(attn_norm), layer_norm(mlp_norm)),
    )
