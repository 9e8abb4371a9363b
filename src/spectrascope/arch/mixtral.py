"""Mixtral (``mixtral``): the Llama block (see :mod:`spectrascope.arch.llama`) with a sparse
mixture-of-experts MLP.

Modules of a transformers 5 model: ``mlp.gate`` (router, ``(E, d)``) and ``mlp.experts``
holding ``gate_up_proj`` ``(E, 2 d_ff, d)`` (rows ``[gate | up]``) and ``down_proj``
``(E, d, d_ff)``. Checkpoints on disk (and ``save_pretrained``) name them
``block_sparse_moe.gate.weight`` and ``block_sparse_moe.experts.{e}.w1/w3/w2.weight``
(gate / up / down). ``mlp.hook_post`` does not exist (no single MLP hidden activation);
``hook_mlp_out`` is the MoE block's output.
"""

from __future__ import annotations

from dataclasses import replace

from spectrascope.arch.common import STACKED_EXPERTS, K, fixed, without, wp
from spectrascope.arch.llama import LLAMA
from spectrascope.arch.spec import MoESpec

MIXTRAL_EXPERTS = (
    wp(r"(?:mlp|block_sparse_moe)\.gate\.weight", "router"),
    wp(r"block_sparse_moe\.experts\.(?P<expert>\d+)\.w1\.weight", "mlp_gate"),
    wp(r"block_sparse_moe\.experts\.(?P<expert>\d+)\.w3\.weight", "mlp_up"),
    wp(r"block_sparse_moe\.experts\.(?P<expert>\d+)\.w2\.weight", "mlp_down"),
) + STACKED_EXPERTS

MIXTRAL = replace(
    LLAMA,
    name="mixtral",
    points=without(LLAMA.points, K.MLP_POST),
    weights=LLAMA.weights[:4] + MIXTRAL_EXPERTS,
    moe=MoESpec(router="mlp.gate", n_experts=("num_local_experts",)),
    gguf=None,
    handled=LLAMA.handled + ("num_local_experts", "num_experts_per_tok"),
)


spec = fixed(MIXTRAL)
