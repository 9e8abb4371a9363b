"""Transformer-aware spectra: per-head slices and QK / OV circuits.

For each block, q, k, v and o are split by head (all in the HF Linear layout (out, in)):

    W_Q^h = q[h*hd:(h+1)*hd, :]         (hd, d)     query head h
    W_K^g = k[g*hd:(g+1)*hd, :]         (hd, d)     key/value head g = h // group_size (GQA)
    W_V^g = v[g*hd:(g+1)*hd, :]         (hd, d)
    W_O^h = o[:, h*hd:(h+1)*hd]         (d, hd)

    QK^h = W_Q^h^T W_K^g                (d, d), rank <= hd: x^T QK y is the attention score
    OV^h = W_O^h W_V^g                  (d, d), rank <= hd: what head h writes per token read

The circuits' nonzero spectra come from the small (hd, hd) factors (esd.py), never from a
d x d matrix. Fused projections are split first: GPT-2's Conv1D ``c_attn`` (d, 3d) stores
x @ W, so q = W[:, :d].T; GPT-NeoX's ``query_key_value`` (3d, d) is laid out per head as
(n_heads, 3, hd, d).

Rows: one per (block, head, circuit) with circuit in q, o, qk, ov (``head`` = query head),
and one per (block, kv head, circuit) for k and v (``head`` = key/value head), with the
same metrics as whole matrices. For circuits N = d and M = hd (the nonzero spectrum).
"""

from __future__ import annotations

import numpy as np

from ..models.roles import HeadGeometry
from .esd import gram_eigenvalues, small_factor_product_eigenvalues
from .metrics import spectrum_metrics

CIRCUITS = ("q", "k", "v", "o", "qk", "ov")


def split_projections(tensors: dict[str, np.ndarray], family: str, geom: HeadGeometry) -> dict[str, np.ndarray]:
    """q, k, v, o of one block in HF Linear layout from the block's tensors by role.

    Args:
        tensors: role -> tensor; roles q, k, v, o (separate) or qkv, o (fused).
        family: architecture family ("llama", "gpt2", "gpt_neox", "bert").
    Returns:
        dict with q (n_heads*hd, d), k and v (n_kv*hd, d), o (d, n_heads*hd).
    """
    d, hd, nh = geom.d_model, geom.head_dim, geom.n_heads
    if family == "gpt2":
        qkv = tensors["qkv"].T  # Conv1D (d, 3d) -> (3d, d)
        q, k, v = qkv[:d], qkv[d : 2 * d], qkv[2 * d :]
        return {"q": q, "k": k, "v": v, "o": tensors["o"].T}
    if family == "gpt_neox":
        per_head = tensors["qkv"].reshape(nh, 3, hd, d)
        q, k, v = (per_head[:, i].reshape(nh * hd, d) for i in range(3))
        return {"q": q, "k": k, "v": v, "o": tensors["o"]}
    return {r: tensors[r] for r in ("q", "k", "v", "o")}


def head_rows(proj: dict[str, np.ndarray], geom: HeadGeometry, block: int) -> list[dict]:
    """Per-head spectra of one block (see module docstring for the row layout)."""
    hd, d = geom.head_dim, geom.d_model
    rows = []

    def add(head: int, kv_head: int, circuit: str, evals: np.ndarray, N: int, M: int) -> None:
        rows.append({"block": block, "head": head, "kv_head": kv_head, "circuit": circuit,
                     "N": N, "M": M, "Q": N / M, **spectrum_metrics(evals, N, M)})

    for g in range(geom.n_kv_heads):
        rows_g = slice(g * hd, (g + 1) * hd)
        add(g, g, "k", gram_eigenvalues(proj["k"][rows_g]), d, hd)
        add(g, g, "v", gram_eigenvalues(proj["v"][rows_g]), d, hd)
    for h in range(geom.n_heads):
        g = h // geom.group_size
        rows_h, rows_g = slice(h * hd, (h + 1) * hd), slice(g * hd, (g + 1) * hd)
        W_Q, W_K, W_V = proj["q"][rows_h], proj["k"][rows_g], proj["v"][rows_g]
        W_O = proj["o"][:, rows_h]
        add(h, g, "q", gram_eigenvalues(W_Q), d, hd)
        add(h, g, "o", gram_eigenvalues(W_O), d, hd)
        add(h, g, "qk", small_factor_product_eigenvalues(W_Q.T, W_K.T), d, hd)
        add(h, g, "ov", small_factor_product_eigenvalues(W_O, W_V.T), d, hd)
    return rows
