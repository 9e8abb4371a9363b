"""Phi-3 (``phi3``; Phi-3 and Phi-3.5 mini/medium, Phi-4): the Llama block (see
:mod:`spectrascope.arch.llama` for its sites) with fused projections.

- ``self_attn.qkv_proj`` ``((H + 2G) hd, d)``: rows ``[q | k | v]`` (:attr:`QkvLayout.CONTIGUOUS`);
- ``mlp.gate_up_proj`` ``(2 d_ff, d)``: rows ``[gate | up]`` (role ``mlp_gate_up``);
  ``mlp.hook_post`` is the input of ``mlp.down_proj``, ``up * act(gate)``.

The residual adds go through ``resid_attn_dropout`` / ``resid_mlp_dropout`` (identities in
``eval()``), so ``hook_resid_mid`` is still the input of ``post_attention_layernorm``.
Handled: partial rotary factor, sliding window, LongRoPE scaling (inside HF's forward).
"""

from __future__ import annotations

from spectrascope.arch.common import LLAMA_READERS, PRE_NORM_POINTS, fixed, wp
from spectrascope.arch.spec import (
    ArchSpec,
    AttentionSpec,
    BlockKind,
    QkvLayout,
    Readout,
)

PHI3 = ArchSpec(
    name="phi3",
    block=BlockKind.PRE_NORM,
    layers="layers",
    points=PRE_NORM_POINTS,
    weights=(
        wp(r"self_attn\.qkv_proj\.weight", "qkv"),
        wp(r"self_attn\.o_proj\.weight", "o"),
        wp(r"mlp\.gate_up_proj\.weight", "mlp_gate_up"),
        wp(r"mlp\.down_proj\.weight", "mlp_down"),
    ),
    attention=AttentionSpec(qkv=QkvLayout.CONTIGUOUS),
    readers=LLAMA_READERS,
    readout=Readout(final_norm="norm"),
    resumable=True,
    handled=("num_key_value_heads", "fused qkv / gate_up", "partial_rotary_factor", "sliding_window", "rope_scaling"),
)


spec = fixed(PHI3)
