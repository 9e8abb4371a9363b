"""StarCoder2 (``starcoder2``): the Llama block (see :mod:`spectrascope.arch.llama` for its
sites) with LayerNorm and an ungated MLP: ``mlp.c_fc`` (``mlp_in``), ``mlp.c_proj``
(``mlp_out``); ``mlp.hook_post`` is the input of ``mlp.c_proj``, ``act(c_fc(x))``.
Handled: biases (``use_bias``), ``sliding_window`` (inside HF's forward).
"""

from __future__ import annotations

from spectrascope.arch.common import (
    IN,
    LLAMA_ATTENTION,
    PRE_NORM_POINTS,
    fixed,
    layer_norm,
    readers,
    with_points,
    wp,
)
from spectrascope.arch.spec import ArchSpec, BlockKind, Readout, SitePoint

STARCODER2 = ArchSpec(
    name="starcoder2",
    block=BlockKind.PRE_NORM,
    layers="layers",
    points=with_points(PRE_NORM_POINTS, mlp_post=SitePoint("mlp.c_proj", IN)),
    weights=LLAMA_ATTENTION + (wp(r"mlp\.c_fc\.weight", "mlp_in"), wp(r"mlp\.c_proj\.weight", "mlp_out")),
    readers=readers(layer_norm("input_layernorm"), layer_norm("post_attention_layernorm")),
    readout=Readout(final_norm="norm"),
    resumable=True,
    handled=("num_key_value_heads", "use_bias", "sliding_window"),
)


spec = fixed(STARCODER2)
