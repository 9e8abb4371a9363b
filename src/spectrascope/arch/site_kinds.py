"""The kinds of TransformerLens site in one block (``hook_resid_pre``, ``attn.hook_z`` ...).

The vocabulary shared by the architecture specs (:mod:`spectrascope.arch`, which say where
each kind lives in a family's modules) and the tracer (:mod:`spectrascope.trace`, which
parses site names and hooks them). It lives here, below both, so that the specs need no
import of the tracer.
"""

from __future__ import annotations

from enum import Enum


class SiteKind(str, Enum):
    """The kinds of site in one block, in the order a forward pass reaches them.

    Each member's note gives its shape: ``d_model`` the residual width, ``H`` the number
    of query heads, ``d_head`` the head width, ``d_mlp`` the MLP hidden width.
    """

    RESID_PRE = "hook_resid_pre"
    """(batch, pos, d_model): the residual stream entering the block."""
    Z = "attn.hook_z"
    """(batch, pos, H, d_head): per-head attention outputs, the input of the output projection."""
    PATTERN = "attn.hook_pattern"
    """(batch, H, query_pos, key_pos): attention probabilities (needs eager attention)."""
    ATTN_OUT = "hook_attn_out"
    """(batch, pos, d_model): the attention sub-block's contribution to the residual stream."""
    RESID_MID = "hook_resid_mid"
    """(batch, pos, d_model): the residual stream between attention and MLP."""
    MLP_POST = "mlp.hook_post"
    """(batch, pos, d_mlp): MLP hidden activation after the nonlinearity (and gate)."""
    MLP_OUT = "hook_mlp_out"
    """(batch, pos, d_model): the MLP sub-block's contribution to the residual stream."""
    RESID_POST = "hook_resid_post"
    """(batch, pos, d_model): the residual stream leaving the block."""
