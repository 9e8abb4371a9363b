"""Mamba (``mamba``): a state-space model, no attention.

Block ``backbone.layers[L]`` (``MambaBlock``): ``post = pre + mixer(norm(pre))``. Only the
residual sites exist (``hook_resid_pre``: input of the block, ``hook_resid_post``: its
output); the readout is ``backbone.norm_f`` then ``lm_head``, so the logit lens works.
Weight roles: ``mixer.in_proj`` (``ssm_in``), ``mixer.x_proj`` (``ssm_x``), ``mixer.dt_proj``
(``ssm_dt``), ``mixer.out_proj`` (``ssm_out``); ``mixer.A_log`` is a declared ``other``.
Everything that needs attention (per-head spectra, attention sites, head scores, head
ablation) is refused in one line.
"""

from __future__ import annotations

from spectrascope.arch.common import IN, OUT, fixed, points, readers, rms, wp
from spectrascope.arch.spec import ArchSpec, BlockKind, Capability, Readout, SitePoint

NO_ATTENTION = "mamba is a state-space model without attention"

MAMBA = ArchSpec(
    name="mamba",
    block=BlockKind.RECURRENT,
    layers="layers",
    points=points(resid_pre=SitePoint("", IN), resid_post=SitePoint("", OUT)),
    weights=(
        wp(r"mixer\.in_proj\.weight", "ssm_in"),
        wp(r"mixer\.x_proj\.weight", "ssm_x"),
        wp(r"mixer\.dt_proj\.weight", "ssm_dt"),
        wp(r"mixer\.out_proj\.weight", "ssm_out"),
        wp(r"mixer\.A_log", "other"),
        wp(r"mixer\.conv1d\.weight", "other"),
    ),
    globals=(wp(r"(^|\.)embeddings\.weight$", "embed"),),
    attention=None,
    readers=readers(rms("norm"), None, attn_roles=("ssm_in",), mlp_roles=()),
    readout=Readout(final_norm="norm_f"),
    resumable=True,
    refused={Capability.HEADS: NO_ATTENTION, Capability.ATTENTION: NO_ATTENTION},
    handled=("no attention: residual sites only",),
)


spec = fixed(MAMBA)
