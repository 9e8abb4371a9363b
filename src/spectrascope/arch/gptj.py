"""GPT-J (``gptj``): a *parallel* block with one LayerNorm::

    post = pre + attn(ln_1(pre)) + mlp(ln_1(pre))

=====================  ==========================================================
``hook_resid_pre``     input of the block
``attn.hook_z``        input of ``attn.out_proj``, split ``(H, d_head)``
``attn.hook_pattern``  second output of ``attn`` (eager attention only)
``hook_attn_out``      first output of ``attn``
``mlp.hook_post``      input of ``mlp.fc_out``: ``act(fc_in(x))``
``hook_mlp_out``       output of ``mlp``
``hook_resid_post``    output of the block, ``resid_pre + attn_out + mlp_out``
=====================  ==========================================================

There is no ``hook_resid_mid``. ``rotary_dim`` (partial rotary) runs inside HF's forward.
"""

from __future__ import annotations

from spectrascope.arch.common import block_points, fixed, layer_norm, readers, wp
from spectrascope.arch.spec import ArchSpec, BlockKind, Readout

GPTJ = ArchSpec(
    name="gptj",
    block=BlockKind.PARALLEL,
    layers="h",
    points=block_points("attn", "attn.out_proj", "mlp.fc_out", resid_mid=None),
    weights=(
        wp(r"attn\.q_proj\.weight", "q"),
        wp(r"attn\.k_proj\.weight", "k"),
        wp(r"attn\.v_proj\.weight", "v"),
        wp(r"attn\.out_proj\.weight", "o"),
        wp(r"mlp\.fc_in\.weight", "mlp_in"),
        wp(r"mlp\.fc_out\.weight", "mlp_out"),
    ),
    readers=readers(layer_norm("ln_1"), layer_norm("ln_1")),
    readout=Readout(final_norm="ln_f"),
    resumable=True,
    handled=("parallel attention and MLP", "rotary_dim"),
)


spec = fixed(GPTJ)
