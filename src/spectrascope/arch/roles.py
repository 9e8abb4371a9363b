"""Weight roles: what each tensor of a checkpoint is, from its name and its family's spec.

Roles of matrices:
    embed        token embedding (vocab, d_model)
    unembed      output projection to the vocabulary, when not tied
    q, k, v      attention query / key / value projections (HF Linear layout (out, in))
    o            attention output projection
    qkv          fused q, k, v projection (GPT-2 ``c_attn``, GPT-NeoX / Falcon
                 ``query_key_value``, Phi-3 ``qkv_proj``); split per head by the spec's
                 :class:`~spectrascope.arch.spec.QkvLayout`
    mlp_gate     gated-MLP gate projection (Llama family; one per expert in MoE models)
    mlp_up       gated-MLP up projection
    mlp_down     gated-MLP down projection
    mlp_gate_up  fused gate and up projection (Phi-3 ``gate_up_proj``, the experts of
                 transformers 5 MoE modules): rows ``[gate | up]``
    mlp_in       ungated MLP input projection (GPT-2, GPT-NeoX, GPT-J, BERT, StarCoder2)
    mlp_out      ungated MLP output projection
    router       mixture-of-experts router (n_experts, d_model), and Qwen2-MoE's
                 shared-expert gate (1, d_model)
    ssm_in       state-space mixer input projection (Mamba ``in_proj``)
    ssm_x        state-space input-dependent projections (Mamba ``x_proj``: dt, B, C)
    ssm_dt       state-space time-step projection (Mamba ``dt_proj``)
    ssm_out      state-space mixer output projection (Mamba ``out_proj``)
    other        anything else (position and token-type embeddings, MLM head transforms,
                 poolers, unknown architectures)

Roles of vectors (read with the q/k/v/o of a block; the weights table lists vectors only as
'skipped' rows):
    q_norm, k_norm   the q/k normalization weights (Qwen3, Gemma-3, OLMo-2)

Expert matrices carry the expert index: from the name of a per-expert tensor
(``block_sparse_moe.experts.3.w1.weight``) or, for a stacked ``(n_experts, out, in)``
tensor, one matrix per index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spectrascope.arch.spec import ArchSpec, WeightPattern

ROLES = (
    "embed",
    "unembed",
    "q",
    "k",
    "v",
    "o",
    "qkv",
    "mlp_gate",
    "mlp_up",
    "mlp_down",
    "mlp_gate_up",
    "mlp_in",
    "mlp_out",
    "router",
    "ssm_in",
    "ssm_x",
    "ssm_dt",
    "ssm_out",
    "other",
)
"""Roles of weight matrices (see the module docstring)."""

VECTOR_ROLES = ("q_norm", "k_norm")
"""Roles of 1-D tensors the per-head spectra read."""

ATTENTION_ROLES = ("q", "k", "v", "o", "qkv")
"""Roles a per-head split reads (with :data:`VECTOR_ROLES`)."""

_EMBED = re.compile(r"(^|\.)(embed_tokens|wte|embed_in|word_embeddings)\.weight$")
_UNEMBED = re.compile(r"(^|\.)(lm_head|embed_out)\.weight$|^cls\.predictions\.decoder\.weight$")
_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class WeightRole:
    """The role of one tensor.

    Attributes:
        block: block index, -1 outside the blocks.
        role: see :data:`ROLES` / :data:`VECTOR_ROLES`.
        expert: expert index of a per-expert tensor, None otherwise (and for stacked tensors,
            which hold every expert).
        stacked: a ``(n_experts, out, in)`` tensor, one matrix per expert.
        transposed: stored ``(in, out)`` (GPT-2 ``Conv1D``).
        known: the name matched a pattern of the family (a declared ``other`` included);
            False for tensors no pattern describes.
    """

    block: int
    role: str
    expert: int | None = None
    stacked: bool = False
    transposed: bool = False
    known: bool = True


def _from_pattern(block: int, pattern: WeightPattern, match: re.Match) -> WeightRole:
    expert = match.groupdict().get("expert")
    return WeightRole(block, pattern.role, None if expert is None else int(expert), pattern.stacked, pattern.transposed)


def block_index(name: str) -> int:
    """The block index in a tensor name (``model.layers.3.x`` -> 3), -1 when it has none."""
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else -1


def weight_role(name: str, spec: ArchSpec | None) -> WeightRole:
    """The :class:`WeightRole` of the tensor ``name`` under ``spec`` (None: unknown family).

    Global patterns of the spec first, then the generic embedding / unembedding names
    (every family), then the spec's block patterns on the name below ``<layers>.<L>.``.
    Anything else is ``other`` with ``known=False``.
    """
    for pattern in spec.globals if spec is not None else ():
        match = re.search(pattern.pattern, name)
        if match:
            return _from_pattern(-1, pattern, match)
    if _EMBED.search(name):
        return WeightRole(-1, "embed")
    if _UNEMBED.search(name):
        return WeightRole(-1, "unembed")
    block = _BLOCK.search(name)
    if not block:
        return WeightRole(-1, "other", known=False)
    index, rest = int(block.group(1)), block.group(2)
    for pattern in spec.weights if spec is not None else ():
        match = re.fullmatch(pattern.pattern, rest)
        if match:
            return _from_pattern(index, pattern, match)
    return WeightRole(index, "other", known=False)
