"""Gemma, Gemma-2 and Gemma-3 text models (``gemma``, ``gemma2``, ``gemma3_text``).

All: RMSNorm with weights stored as offsets from 1 (``x / rms(x) * (1 + g)``), token
embeddings multiplied by ``sqrt(d_model)`` inside ``embed_tokens`` (so ``hook_resid_pre``
of block 0 holds the scaled embeddings and the forward resumes from it unchanged), tied
unembedding by default.

Gemma: the Llama block (see :mod:`spectrascope.arch.llama`); the MLP reads
``post_attention_layernorm``.

Gemma-2 and Gemma-3: *sandwich* norms, a norm before and after each sub-block::

    mid  = pre + post_attention_layernorm(self_attn(input_layernorm(pre)))
    post = mid + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(mid)))

so the sites that keep ``resid_mid = resid_pre + attn_out`` and
``resid_post = resid_mid + mlp_out`` are:

=====================  ==========================================================
``hook_attn_out``      output of ``post_attention_layernorm`` (what is added)
``hook_resid_mid``     input of ``pre_feedforward_layernorm`` (edited in place)
``hook_mlp_out``       output of ``post_feedforward_layernorm`` (what is added)
=====================  ==========================================================

(``attn.hook_z``, ``attn.hook_pattern``, ``mlp.hook_post`` as in Llama.) The MLP reads
``pre_feedforward_layernorm``. ``final_logit_softcapping`` (Gemma-2: 30) is applied by the
readout: ``cap * tanh(logits / cap)``; attention softcapping, ``query_pre_attn_scalar`` and
alternating sliding-window layers run inside HF's forward (``hook_pattern`` holds the
probabilities after the cap; the per-head QK circuit is the bilinear form of the scores
before the monotone cap and the scalar scale). Gemma-3 normalizes q and k per head
(RMSNorm with offset weights): the per-head QK circuit folds their gains in.
"""

from __future__ import annotations

from dataclasses import replace

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
    NormKind,
    NormSpec,
    QkNorm,
    Readout,
    SitePoint,
)


def _norm(module: str) -> NormSpec:
    return NormSpec(module, NormKind.RMS_OFFSET)


GEMMA = ArchSpec(
    name="gemma",
    block=BlockKind.PRE_NORM,
    layers="layers",
    points=PRE_NORM_POINTS,
    weights=LLAMA_ATTENTION + GATED_MLP,
    readers=readers(_norm("input_layernorm"), _norm("post_attention_layernorm")),
    readout=Readout(final_norm="norm"),
    resumable=True,
    embed_scale="sqrt(d_model)",
    handled=("head_dim", "embedding scale sqrt(d_model) (inside embed_tokens)"),
)

SANDWICH_POINTS = with_points(
    PRE_NORM_POINTS,
    attn_out=SitePoint("post_attention_layernorm", OUT),
    resid_mid=SitePoint("pre_feedforward_layernorm", IN, in_place=True),
    mlp_out=SitePoint("post_feedforward_layernorm", OUT),
)

GEMMA2 = replace(
    GEMMA,
    name="gemma2",
    block=BlockKind.SANDWICH,
    points=SANDWICH_POINTS,
    readers=readers(_norm("input_layernorm"), _norm("pre_feedforward_layernorm")),
    readout=Readout(final_norm="norm", softcap="final_logit_softcapping"),
    handled=GEMMA.handled
    + (
        "sandwich norms",
        "final_logit_softcapping (readout)",
        "attn_logit_softcapping",
        "query_pre_attn_scalar",
        "alternating sliding windows (layer_types)",
    ),
)

GEMMA3 = replace(
    GEMMA2,
    name="gemma3_text",
    weights=LLAMA_ATTENTION + QK_NORMS + GATED_MLP,
    attention=AttentionSpec(qk_norm=QkNorm.PER_HEAD, qk_norm_kind=NormKind.RMS_OFFSET),
    handled=GEMMA2.handled + ("q/k norms (gains folded into the QK circuit)", "local/global RoPE"),
)


gemma = fixed(GEMMA)
gemma2 = fixed(GEMMA2)
gemma3_text = fixed(GEMMA3)
