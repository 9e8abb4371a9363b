"""q, k, v and o of one block from its stored tensors, in HF Linear layout (out, in), ready
for the per-head spectra of :mod:`spectrascope.spectra.heads`.

Fused projections are split by the family's :class:`~spectrascope.arch.QkvLayout` (GPT-2's
Conv1D ``c_attn`` (d, 3d) stores x @ W and is transposed first, so q = W[:, :d].T; GPT-NeoX's
``query_key_value`` (3d, d) is laid out per head as (n_heads, 3, hd, d); Phi-3's ``qkv_proj``
is [q | k | v]; Falcon's grouped layout is (n_kv, group + 2, hd, d)).

q/k norms (Qwen3, Gemma-3, OLMo-2, Phi with ``qk_layernorm``) normalize q and k before the
scores: ``score = (g_q * P q / s_q) . (g_k * P k / s_k)`` with ``s`` a per-token scale, ``g``
the gain and ``P`` the centering of a LayerNorm (identity for RMSNorm). The QK circuit uses
``diag(g_q) P W_Q^h`` and ``diag(g_k) P W_K^g`` (:func:`fold_qk_norms`): the bilinear form of
the scores up to a positive factor per token pair. The q and k rows stay the raw slices.
"""

from __future__ import annotations

import numpy as np

from ..arch import (
    ArchSpec,
    HeadGeometry,
    NormKind,
    QkNorm,
    QkvLayout,
    spec_for_model_type,
)


def _spec(family: str | ArchSpec) -> ArchSpec:
    return family if isinstance(family, ArchSpec) else spec_for_model_type(family)


def split_projections(
    tensors: dict[str, np.ndarray], family: str | ArchSpec, geom: HeadGeometry
) -> dict[str, np.ndarray]:
    """q, k, v, o of one block in HF Linear layout from the block's tensors by role.

    Args:
        tensors: role -> tensor as stored; roles q, k, v, o (separate) or qkv, o (fused).
        family: the family's spec, or its model type (``"gpt2"``, ``"gpt_neox"`` ...).
    Returns:
        dict with q (n_heads*hd, d), k and v (n_kv*hd, d), o (d, n_heads*hd).
    """
    spec = _spec(family)
    transposed = {p.role for p in spec.weights if p.transposed}
    stored = {role: W.T if role in transposed else W for role, W in tensors.items()}
    hd, nh, nkv = geom.head_dim, geom.n_heads, geom.n_kv_heads
    out = {"o": stored["o"]}
    if "qkv" not in stored:
        return {**out, **{r: stored[r] for r in ("q", "k", "v")}}
    qkv = stored["qkv"]
    d = qkv.shape[1]
    layout = spec.attention.qkv if spec.attention is not None else QkvLayout.SEPARATE
    if layout is QkvLayout.CONTIGUOUS:
        q, k, v = np.split(qkv, [nh * hd, (nh + nkv) * hd])
    elif layout is QkvLayout.PER_HEAD:
        per_head = qkv.reshape(nh, 3, hd, d)
        q, k, v = (per_head[:, i].reshape(nh * hd, d) for i in range(3))
    elif layout is QkvLayout.GROUPED:
        grouped = qkv.reshape(nkv, geom.group_size + 2, hd, d)
        q = grouped[:, :-2].reshape(nh * hd, d)
        k, v = grouped[:, -2].reshape(nkv * hd, d), grouped[:, -1].reshape(nkv * hd, d)
    else:
        raise ValueError(f"{spec.name}: a fused qkv tensor but no qkv layout")
    return {**out, "q": q, "k": k, "v": v}


def _fold(W: np.ndarray, weight: np.ndarray, kind: NormKind, placement: QkNorm, n: int, hd: int) -> np.ndarray:
    """``diag(gain) P W`` per head of an (n*hd, d) projection (see the module docstring)."""
    per_head = W.reshape(n, hd, -1)
    if kind is NormKind.LAYER:
        per_head = per_head - per_head.mean(axis=1, keepdims=True)
    gain = kind.gain(np.asarray(weight, dtype=np.float64))
    gain = gain.reshape(n, hd) if placement is QkNorm.FULL_WIDTH else np.broadcast_to(gain, (n, hd))
    return (per_head * gain[:, :, None]).reshape(W.shape)


def fold_qk_norms(
    proj: dict[str, np.ndarray], tensors: dict[str, np.ndarray], family: str | ArchSpec, geom: HeadGeometry
) -> dict[str, np.ndarray]:
    """``proj`` plus ``q_eff`` / ``k_eff``, the projections with the q/k norm folded in, when the
    family normalizes q and k (and ``tensors`` hold ``q_norm`` / ``k_norm``); else ``proj``."""
    spec = _spec(family)
    attention = spec.attention
    if attention is None or attention.qk_norm is None or not {"q_norm", "k_norm"} <= tensors.keys():
        return proj
    kind, placement = attention.qk_norm_kind, attention.qk_norm
    return {
        **proj,
        "q_eff": _fold(proj["q"], tensors["q_norm"], kind, placement, geom.n_heads, geom.head_dim),
        "k_eff": _fold(proj["k"], tensors["k_norm"], kind, placement, geom.n_kv_heads, geom.head_dim),
    }
