"""StableLM (``stablelm``; StableLM-2, StableLM-3B-4E1T): the Llama module names with LayerNorm.

With ``use_parallel_residual`` False (the default) the block is the Llama pre-norm block (see
:mod:`spectrascope.arch.llama` for its sites). With it the block is *parallel* and both
sub-blocks read ``input_layernorm``::

    post = pre + self_attn(input_layernorm(pre)) + mlp(input_layernorm(pre))

(no ``hook_resid_mid``). ``qk_layernorm`` (a separate LayerNorm per head on q and k) is
refused for per-head spectra: its per-head weights are not folded into the QK circuits.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from spectrascope.arch.common import (
    GATED_MLP,
    LLAMA_ATTENTION,
    PRE_NORM_POINTS,
    K,
    layer_norm,
    readers,
    without,
)
from spectrascope.arch.spec import ArchSpec, BlockKind, Capability, Readout, config_get

STABLELM = ArchSpec(
    name="stablelm",
    block=BlockKind.PRE_NORM,
    layers="layers",
    points=PRE_NORM_POINTS,
    weights=LLAMA_ATTENTION + GATED_MLP,
    readers=readers(layer_norm("input_layernorm"), layer_norm("post_attention_layernorm")),
    readout=Readout(final_norm="norm"),
    resumable=True,
    handled=(
        "use_parallel_residual",
        "partial_rotary_factor",
        "use_qkv_bias",
        "qk_layernorm (per-head spectra refused)",
    ),
)

STABLELM_PARALLEL = replace(
    STABLELM,
    block=BlockKind.PARALLEL,
    points=without(PRE_NORM_POINTS, K.RESID_MID),
    readers=readers(layer_norm("input_layernorm"), layer_norm("input_layernorm")),
)


def spec(config: Any) -> ArchSpec:
    """Sequential or parallel by ``use_parallel_residual``; per-head spectra refused with ``qk_layernorm``."""
    chosen = STABLELM_PARALLEL if config_get(config, "use_parallel_residual", False) else STABLELM
    if config_get(config, "qk_layernorm", False):
        chosen = chosen.refusing(
            {
                Capability.HEADS: "stablelm with qk_layernorm: per-head q/k LayerNorms are not "
                "folded into the QK circuits, so per-head spectra are refused"
            }
        )
    return chosen
