"""Qwen2, Qwen2.5, Qwen3 and their mixtures of experts (``qwen2``, ``qwen3``, ``qwen2_moe``,
``qwen3_moe``): the Llama block (see :mod:`spectrascope.arch.llama` for its sites).

- Qwen2 adds q/k/v biases (ignored by the weight spectra, kept by the forward).
- Qwen3 normalizes q and k per head (``self_attn.q_norm`` / ``k_norm``, RMSNorm over
  ``head_dim``) before the scores: the per-head QK circuit folds their gains in
  (:mod:`spectrascope.weights.projections`), exact up to a positive factor per token pair.
- The MoE variants replace the MLP of sparse layers by ``mlp.gate`` (the router, role
  ``router``) and ``mlp.experts`` (one gated MLP per expert); Qwen2-MoE adds a dense
  ``mlp.shared_expert`` and its scalar gate ``mlp.shared_expert_gate``. Layers listed in
  ``mlp_only_layers`` (or off the ``decoder_sparse_step``) keep a dense MLP. ``mlp.hook_post``
  does not exist on MoE models (there is no single MLP hidden activation); ``hook_mlp_out``
  is the MoE block's output (shared expert included).

Expert weights: on disk one matrix per expert (``mlp.experts.{e}.gate_proj.weight``); a
transformers 5 module stacks them (``mlp.experts.gate_up_proj`` ``(E, 2 d_ff, d)``).
GGUF files of arch ``qwen2`` / ``qwen3`` are read without rotary un-permutation.
"""

from __future__ import annotations

from dataclasses import replace

from spectrascope.arch.common import (
    GATED_MLP,
    LLAMA_ATTENTION,
    LLAMA_GGUF_BLOCK,
    LLAMA_GGUF_GLOBALS,
    LLAMA_READERS,
    PRE_NORM_POINTS,
    QK_NORMS,
    K,
    fixed,
    without,
    wp,
)
from spectrascope.arch.spec import (
    ArchSpec,
    AttentionSpec,
    BlockKind,
    GgufNames,
    MoESpec,
    QkNorm,
    Readout,
)

QWEN_EXPERTS = (
    wp(r"mlp\.gate\.weight", "router"),
    wp(r"mlp\.shared_expert_gate\.weight", "router"),
    wp(r"mlp\.shared_expert\.gate_proj\.weight", "mlp_gate"),
    wp(r"mlp\.shared_expert\.up_proj\.weight", "mlp_up"),
    wp(r"mlp\.shared_expert\.down_proj\.weight", "mlp_down"),
    wp(r"mlp\.experts\.(?P<expert>\d+)\.gate_proj\.weight", "mlp_gate"),
    wp(r"mlp\.experts\.(?P<expert>\d+)\.up_proj\.weight", "mlp_up"),
    wp(r"mlp\.experts\.(?P<expert>\d+)\.down_proj\.weight", "mlp_down"),
    wp(r"mlp\.experts\.gate_up_proj", "mlp_gate_up", stacked=True),
    wp(r"mlp\.experts\.down_proj", "mlp_down", stacked=True),
)

QWEN2 = ArchSpec(
    name="qwen2",
    block=BlockKind.PRE_NORM,
    layers="layers",
    points=PRE_NORM_POINTS,
    weights=LLAMA_ATTENTION + GATED_MLP,
    readers=LLAMA_READERS,
    readout=Readout(final_norm="norm"),
    gguf=GgufNames(block=LLAMA_GGUF_BLOCK, globals=LLAMA_GGUF_GLOBALS, rotary_permuted=False),
    resumable=True,
    handled=("num_key_value_heads", "attention biases", "use_sliding_window / layer_types"),
)

QWEN3 = replace(
    QWEN2,
    name="qwen3",
    weights=LLAMA_ATTENTION + QK_NORMS + GATED_MLP,
    attention=AttentionSpec(qk_norm=QkNorm.PER_HEAD),
    gguf=GgufNames(
        block={**LLAMA_GGUF_BLOCK, "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"},
        globals=LLAMA_GGUF_GLOBALS,
        rotary_permuted=False,
    ),
    handled=QWEN2.handled + ("head_dim", "q/k norms (gains folded into the QK circuit)"),
)

_MOE = MoESpec(router="mlp.gate", n_experts=("num_experts",))

QWEN2_MOE = replace(
    QWEN2,
    name="qwen2_moe",
    points=without(PRE_NORM_POINTS, K.MLP_POST),
    weights=LLAMA_ATTENTION + GATED_MLP + QWEN_EXPERTS,
    moe=_MOE,
    gguf=None,
    handled=QWEN2.handled + ("shared expert", "mlp_only_layers / decoder_sparse_step"),
)

QWEN3_MOE = replace(
    QWEN3,
    name="qwen3_moe",
    points=without(PRE_NORM_POINTS, K.MLP_POST),
    weights=LLAMA_ATTENTION + QK_NORMS + GATED_MLP + QWEN_EXPERTS,
    moe=_MOE,
    gguf=None,
    handled=QWEN3.handled + ("mlp_only_layers / decoder_sparse_step",),
)


qwen2 = fixed(QWEN2)
qwen3 = fixed(QWEN3)
qwen2_moe = fixed(QWEN2_MOE)
qwen3_moe = fixed(QWEN3_MOE)
