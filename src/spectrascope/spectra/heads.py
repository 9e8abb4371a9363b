"""Transformer-aware spectra: per-head slices and QK / OV circuits (the numerics).

For each block, q, k, v and o are split by head (all in the HF Linear layout (out, in)):

    W_Q^h = q[h*hd:(h+1)*hd, :]         (hd, d)     query head h
    W_K^g = k[g*hd:(g+1)*hd, :]         (hd, d)     key/value head g = h // group_size (GQA)
    W_V^g = v[g*hd:(g+1)*hd, :]         (hd, d)
    W_O^h = o[:, h*hd:(h+1)*hd]         (d, hd)

    QK^h = W_Q^h^T W_K^g                (d, d), rank <= hd: x^T QK y is the attention score
    OV^h = W_O^h W_V^g                  (d, d), rank <= hd: what head h writes per token read

The circuits' nonzero spectra come from the small (hd, hd) factors (esd.py), never from a
d x d matrix. The projections arrive already split from fused tensors and with the q/k norms
folded in (:mod:`spectrascope.weights.projections`, which knows the families' layouts).

Rows: one per (block, head, circuit) with circuit in q, o, qk, ov (``head`` = query head),
and one per (block, kv head, circuit) for k and v (``head`` = key/value head), with the
same metrics as whole matrices. For circuits N = d and M = hd (the nonzero spectrum).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .esd import gram_eigenvalues, small_factor_product_eigenvalues
from .metrics import spectrum_metrics

if TYPE_CHECKING:
    from ..arch import HeadGeometry

CIRCUITS = ("q", "k", "v", "o", "qk", "ov")


def head_rows(proj: dict[str, np.ndarray], geom: HeadGeometry, block: int) -> list[dict]:
    """Per-head spectra of one block (see module docstring for the row layout); the QK circuit
    uses ``q_eff`` / ``k_eff`` when ``proj`` has them
    (:func:`~spectrascope.weights.projections.fold_qk_norms`)."""
    hd, d = geom.head_dim, geom.d_model
    rows = []

    def add(head: int, kv_head: int, circuit: str, evals: np.ndarray, N: int, M: int) -> None:
        rows.append(
            {
                "block": block,
                "head": head,
                "kv_head": kv_head,
                "circuit": circuit,
                "N": N,
                "M": M,
                "Q": N / M,
                **spectrum_metrics(evals, N, M),
            }
        )

    for g in range(geom.n_kv_heads):
        rows_g = slice(g * hd, (g + 1) * hd)
        add(g, g, "k", gram_eigenvalues(proj["k"][rows_g]), d, hd)
        add(g, g, "v", gram_eigenvalues(proj["v"][rows_g]), d, hd)
    for h in range(geom.n_heads):
        g = h // geom.group_size
        rows_h, rows_g = slice(h * hd, (h + 1) * hd), slice(g * hd, (g + 1) * hd)
        W_Q, W_V = proj["q"][rows_h], proj["v"][rows_g]
        W_O = proj["o"][:, rows_h]
        W_Qe, W_Ke = proj.get("q_eff", proj["q"])[rows_h], proj.get("k_eff", proj["k"])[rows_g]
        add(h, g, "q", gram_eigenvalues(W_Q), d, hd)
        add(h, g, "o", gram_eigenvalues(W_O), d, hd)
        add(h, g, "qk", small_factor_product_eigenvalues(W_Qe.T, W_Ke.T), d, hd)
        add(h, g, "ov", small_factor_product_eigenvalues(W_O, W_V.T), d, hd)
    return rows
