"""Phi-1, Phi-1.5, Phi-2 (``phi``): a *parallel* block with one LayerNorm::

    post = pre + resid_dropout(self_attn(input_layernorm(pre))) + resid_dropout(mlp(input_layernorm(pre)))

=====================  ==========================================================
``hook_resid_pre``     input of the block
``attn.hook_z``        input of ``self_attn.dense``, split ``(H, d_head)``
``attn.hook_pattern``  second output of ``self_attn`` (eager attention only)
``hook_attn_out``      first output of ``self_attn``
``mlp.hook_post``      input of ``mlp.fc2``: ``act(fc1(x))``
``hook_mlp_out``       output of ``mlp``
``hook_resid_post``    output of the block, ``resid_pre + attn_out + mlp_out``
=====================  ==========================================================

There is no ``hook_resid_mid``. ``qk_layernorm`` (one LayerNorm over ``head_dim`` shared by
the heads) is folded into the per-head QK circuit (centering and gain).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from spectrascope.arch.common import block_points, layer_norm, readers, wp
from spectrascope.arch.spec import (
    ArchSpec,
    AttentionSpec,
    BlockKind,
    NormKind,
    QkNorm,
    Readout,
    config_get,
)

_WEIGHTS = (
    wp(r"self_attn\.q_proj\.weight", "q"),
    wp(r"self_attn\.k_proj\.weight", "k"),
    wp(r"self_attn\.v_proj\.weight", "v"),
    wp(r"self_attn\.dense\.weight", "o"),
    wp(r"self_attn\.q_layernorm\.weight", "q_norm"),
    wp(r"self_attn\.k_layernorm\.weight", "k_norm"),
    wp(r"mlp\.fc1\.weight", "mlp_in"),
    wp(r"mlp\.fc2\.weight", "mlp_out"),
)

PHI = ArchSpec(
    name="phi",
    block=BlockKind.PARALLEL,
    layers="layers",
    points=block_points("self_attn", "self_attn.dense", "mlp.fc2", resid_mid=None),
    weights=_WEIGHTS,
    readers=readers(layer_norm("input_layernorm"), layer_norm("input_layernorm")),
    readout=Readout(final_norm="final_layernorm"),
    resumable=True,
    handled=("parallel attention and MLP", "partial_rotary_factor"),
)

PHI_QK_LAYERNORM = replace(
    PHI,
    attention=AttentionSpec(qk_norm=QkNorm.PER_HEAD, qk_norm_kind=NormKind.LAYER),
    handled=PHI.handled + ("qk_layernorm (folded into the QK circuit)",),
)


def spec(config: Any) -> ArchSpec:
    """Phi, with the q/k LayerNorm folded into the QK circuit when ``qk_layernorm`` is set."""
    return PHI_QK_LAYERNORM if config_get(config, "qk_layernorm", False) else PHI
