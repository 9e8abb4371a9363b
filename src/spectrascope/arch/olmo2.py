"""OLMo-2 (``olmo2``): norms only *after* each sub-block, and q/k norms over all heads::

    mid  = pre + post_attention_layernorm(self_attn(pre))
    post = mid + post_feedforward_layernorm(mlp(mid))

=====================  ==========================================================
``hook_attn_out``      output of ``post_attention_layernorm`` (what is added)
``hook_resid_mid``     input of ``mlp`` (the residual itself; edited in place)
``hook_mlp_out``       output of ``post_feedforward_layernorm`` (what is added)
=====================  ==========================================================

(``hook_resid_pre``, ``attn.hook_z``, ``attn.hook_pattern``, ``mlp.hook_post``,
``hook_resid_post`` as in Llama.) So ``resid_mid = resid_pre + attn_out`` and
``resid_post = resid_mid + mlp_out`` hold. q/k/v and the MLP read the raw residual stream
(no norm before them). ``self_attn.q_norm`` is one RMSNorm over all ``H * hd`` query
channels (``k_norm`` over ``G * hd``): the per-head QK circuit folds each head's slice of
the gains in (exact up to a positive factor per token pair).
"""

from __future__ import annotations

from spectrascope.arch.common import (
    GATED_MLP,
    IN,
    LLAMA_ATTENTION,
    OUT,
    PRE_NORM_POINTS,
    QK_NORMS,
    fixed,
    readers,
    with_points,
)
from spectrascope.arch.spec import (
    ArchSpec,
    AttentionSpec,
    BlockKind,
    QkNorm,
    Readout,
    SitePoint,
)

OLMO2 = ArchSpec(
    name="olmo2",
    block=BlockKind.POST_SUBLAYER,
    layers="layers",
    points=with_points(
        PRE_NORM_POINTS,
        attn_out=SitePoint("post_attention_layernorm", OUT),
        resid_mid=SitePoint("mlp", IN, in_place=True),
        mlp_out=SitePoint("post_feedforward_layernorm", OUT),
    ),
    weights=LLAMA_ATTENTION + QK_NORMS + GATED_MLP,
    attention=AttentionSpec(qk_norm=QkNorm.FULL_WIDTH),
    readers=readers(None, None),
    readout=Readout(final_norm="norm"),
    resumable=True,
    handled=("norms after each sub-block", "q/k norms over all heads (gains folded into the QK circuit)"),
)


spec = fixed(OLMO2)
