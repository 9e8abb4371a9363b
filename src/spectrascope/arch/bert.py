"""BERT and RoBERTa (``bert``, ``roberta``): post-norm encoders, each sub-block ends in
``LayerNorm(residual + branch)``.

Block ``encoder.layer[L]`` (``BertLayer`` / ``RobertaLayer``). Because the LayerNorm sits on
the residual stream, ``resid_mid != resid_pre + attn_out``; what holds is
``resid_mid = attention.output.LayerNorm(resid_pre + attn_out)`` and
``resid_post = output.LayerNorm(resid_mid + mlp_out)``:

=====================  ==========================================================
``hook_resid_pre``     input of the block (embeddings output for L = 0)
``attn.hook_z``        input of ``attention.output.dense``, split ``(H, d_head)``
``attn.hook_pattern``  second output of ``attention.self`` (eager attention only)
``hook_attn_out``      output of ``attention.output.dense``: the attention branch
                       *before* dropout and ``LayerNorm(resid_pre + branch)``
``hook_resid_mid``     output of ``attention.output``:
                       ``LayerNorm(resid_pre + attn_out)``, the MLP's input
``mlp.hook_post``      input of ``output.dense``: ``act(intermediate.dense(x))``
``hook_mlp_out``       output of ``output.dense``: the MLP branch *before* dropout
                       and ``LayerNorm(resid_mid + branch)``
``hook_resid_post``    output of the block, ``LayerNorm(resid_mid + mlp_out)``
=====================  ==========================================================

The readout of a masked LM is its head (``cls`` for BERT, ``lm_head`` for RoBERTa: dense,
activation, LayerNorm, decoder); there is no final norm. Not causal; the forward does not
resume at a layer (the embedding module adds position and token-type embeddings).
"""

from __future__ import annotations

from spectrascope.arch.common import IN, OUT, fixed, points, readers, wp
from spectrascope.arch.spec import ArchSpec, BlockKind, Readout, SitePoint

BERT = ArchSpec(
    name="bert",
    block=BlockKind.POST_NORM,
    layers="encoder.layer",
    points=points(
        resid_pre=SitePoint("", IN),
        z=SitePoint("attention.output.dense", IN),
        pattern=SitePoint("attention.self", OUT, index=1),
        attn_out=SitePoint("attention.output.dense", OUT),
        resid_mid=SitePoint("attention.output", OUT),
        mlp_post=SitePoint("output.dense", IN),
        mlp_out=SitePoint("output.dense", OUT),
        resid_post=SitePoint("", OUT),
    ),
    weights=(
        wp(r"attention\.self\.query\.weight", "q"),
        wp(r"attention\.self\.key\.weight", "k"),
        wp(r"attention\.self\.value\.weight", "v"),
        wp(r"attention\.output\.dense\.weight", "o"),
        wp(r"intermediate\.dense\.weight", "mlp_in"),
        wp(r"output\.dense\.weight", "mlp_out"),
    ),
    globals=(
        wp(r"(^|\.)(position|token_type)_embeddings\.weight$", "other"),
        wp(r"^lm_head\.decoder\.weight$", "unembed"),
        wp(r"^(cls\.predictions\.transform|lm_head)\.dense\.weight$", "other"),
        wp(r"(^|\.)pooler\.dense\.weight$", "other"),
    ),
    readers=readers(None, None),
    readout=Readout(final_norm=None, unembed=("cls", "lm_head")),
    resumable=False,
    causal=False,
    handled=("post-norm residual",),
)


spec = fixed(BERT)
