"""GPT-2 (``gpt2``): pre-norm, LayerNorm, ``Conv1D`` weights stored ``(in, out)``.

Block ``transformer.h[L]`` (``GPT2Block``):

=====================  ==========================================================
``hook_resid_pre``     input of the block
``attn.hook_z``        input of ``attn.c_proj`` (a ``Conv1D``), split ``(H, d_head)``
``attn.hook_pattern``  second output of ``attn`` (eager attention only)
``hook_attn_out``      first output of ``attn``: ``resid_dropout(c_proj(z))``
``hook_resid_mid``     input of ``ln_2``: the residual after the attention add
``mlp.hook_post``      input of ``mlp.c_proj``: ``act(c_fc(x))``
``hook_mlp_out``       output of ``mlp`` (``c_proj`` then dropout)
``hook_resid_post``    output of the block
=====================  ==========================================================

``attn.c_attn`` ``(d, 3d)`` holds ``[q | k | v]`` columns (transposed: rows after ``.T``).
The forward does not resume at a layer: ``GPT2Model`` adds position embeddings to
``inputs_embeds``.
"""

from __future__ import annotations

from spectrascope.arch.common import block_points, fixed, layer_norm, readers, wp
from spectrascope.arch.spec import (
    ArchSpec,
    AttentionSpec,
    BlockKind,
    QkvLayout,
    Readout,
)

GPT2 = ArchSpec(
    name="gpt2",
    block=BlockKind.PRE_NORM,
    layers="h",
    points=block_points("attn", "attn.c_proj", "mlp.c_proj", "ln_2"),
    weights=(
        wp(r"attn\.c_attn\.weight", "qkv", transposed=True),
        wp(r"attn\.c_proj\.weight", "o", transposed=True),
        wp(r"mlp\.c_fc\.weight", "mlp_in", transposed=True),
        wp(r"mlp\.c_proj\.weight", "mlp_out", transposed=True),
    ),
    globals=(wp(r"(^|\.)wpe\.weight$", "other"),),
    attention=AttentionSpec(qkv=QkvLayout.CONTIGUOUS),
    readers=readers(layer_norm("ln_1"), layer_norm("ln_2")),
    readout=Readout(final_norm="ln_f"),
    resumable=False,
    handled=("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"),
)


spec = fixed(GPT2)
