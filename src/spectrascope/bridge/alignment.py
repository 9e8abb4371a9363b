"""Cross-layer alignment: do the directions layer L writes match those later layers read?

Writers: left singular vectors (output space, d_model) of the tails of o_proj and
down_proj-like matrices (roles o, mlp_down, mlp_out). Readers: right singular vectors (input
space, d_model) of the tails of q, k, v, gate, up (roles q, k, v, mlp_gate, mlp_up, mlp_in).
For orthonormal bases A (d, a) and B (d, b) of a writer's and a reader's tail:

    overlap  = ||A^T B||_F^2 / min(a, b)      mean squared cosine, in [0, 1]
    random   = max(a, b) / d                  expectation for random subspaces
    enrichment = overlap / random

Also CKA between the layers' activations (on a sample of tokens, debiased: see cka.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .subspaces import MatrixSubspaces

WRITERS = ("o", "mlp_down", "mlp_out")
READERS = ("q", "k", "v", "mlp_gate", "mlp_up", "mlp_in")


def subspace_overlap(A: np.ndarray, B: np.ndarray) -> float:
    """||A^T B||_F^2 / min(a, b) for orthonormal bases A (d, a), B (d, b); 0 if either is empty."""
    if A.shape[1] == 0 or B.shape[1] == 0:
        return 0.0
    return float(np.sum((A.T @ B) ** 2) / min(A.shape[1], B.shape[1]))


def alignment_table(
    subspaces: dict[str, MatrixSubspaces],
    roles: dict[str, tuple[int, str]],
    part: str = "tail",
    max_gap: int | None = None,
) -> pd.DataFrame:
    """Writer (layer L) x reader (layer L' > L) overlaps of their ``part`` subspaces.

    Args:
        subspaces: weight name -> MatrixSubspaces.
        roles: weight name -> (block, role).
        max_gap: only reader layers L' <= L + max_gap (None: all later layers).
    Returns:
        columns writer, reader, writer_layer, reader_layer, writer_role, reader_role, k_writer,
        k_reader, overlap, random_overlap, enrichment.
    """
    writers = [(n, roles[n]) for n in subspaces if roles[n][1] in WRITERS]
    readers = [(n, roles[n]) for n in subspaces if roles[n][1] in READERS]
    rows = []
    for wname, (wl, wrole) in writers:
        A = subspaces[wname].writes(part)
        for rname, (rl, rrole) in readers:
            if rl <= wl or (max_gap is not None and rl - wl > max_gap):
                continue
            B = subspaces[rname].reads(part)
            if A.shape[0] != B.shape[0]:
                continue
            ov = subspace_overlap(A, B)
            rnd = max(A.shape[1], B.shape[1]) / A.shape[0]
            rows.append(
                {
                    "writer": wname,
                    "reader": rname,
                    "writer_layer": wl,
                    "reader_layer": rl,
                    "writer_role": wrole,
                    "reader_role": rrole,
                    "k_writer": A.shape[1],
                    "k_reader": B.shape[1],
                    "overlap": ov,
                    "random_overlap": rnd,
                    "enrichment": ov / rnd if rnd > 0 else np.nan,
                }
            )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class LayerHsics:
    """The HSIC of every pair of layers' activations, per variant (see :func:`layer_hsics`).

    Attributes:
        keys: the layers, sorted.
        keeps: variant -> layer -> the kept channels (None: all).
        terms: (variant, layer) -> its :class:`~spectrascope.bridge.cka.TokenTerms` (None: biased CKA).
        hsic: (variant, a, b) -> HSIC of layers a <= b.
    """

    keys: list[int]
    keeps: dict[str, dict[int, np.ndarray | None]]
    terms: dict[tuple[str, int], Any]
    hsic: dict[tuple[str, int, int], float]

    def cka(self, variant: str, a: int, b: int, cross_hsic: float | None = None) -> float:
        """CKA of layers a and b (NaN for a constant layer); ``cross_hsic`` replaces their HSIC
        (each layer's own HSIC stays: a permutation of one layer's tokens leaves it unchanged)."""
        own_a, own_b = self.hsic[variant, a, a], self.hsic[variant, b, b]
        xy = self.hsic[variant, min(a, b), max(a, b)] if cross_hsic is None else cross_hsic
        return float(xy / np.sqrt(own_a * own_b)) if own_a > 0 and own_b > 0 else float("nan")


def layer_hsics(
    layers: dict[int, np.ndarray], debiased: bool = True, excluded: dict[int, np.ndarray] | None = None
) -> LayerHsics:
    """HSIC between every pair of layers' activations of the same tokens (see :func:`cka_matrix`)."""
    from ..activations.massive import keep_channels
    from .cka import TokenTerms, hsic_from_cross

    keys = sorted(layers)
    X = {k: np.asarray(layers[k]) for k in keys}
    if not debiased:
        X = {k: v - v.mean(axis=0) for k, v in X.items()}
    keeps: dict[str, dict[int, np.ndarray | None]] = {"raw": dict.fromkeys(keys)}
    if excluded is not None:
        keeps["robust"] = {
            k: keep_channels(X[k].shape[1], np.asarray(excluded.get(k, ()), dtype=np.int64)) for k in keys
        }
    terms = {
        (variant, k): (TokenTerms.of(X[k], keep[k]) if debiased else None)
        for variant, keep in keeps.items()
        for k in keys
    }
    hsic: dict[tuple[str, int, int], float] = {}
    for i, a in enumerate(keys):
        for b in keys[i:]:
            cross = (X[a].T @ X[b]).astype(np.float64)
            for variant, keep in keeps.items():
                part = cross if keep[a] is None else cross[np.ix_(keep[a], keep[b])]
                hsic[variant, a, b] = hsic_from_cross(part, terms[variant, a], terms[variant, b])
    return LayerHsics(keys, keeps, terms, hsic)


def cka_matrix(
    layers: dict[int, np.ndarray], debiased: bool = True, excluded: dict[int, np.ndarray] | None = None
) -> pd.DataFrame:
    """CKA (:func:`~spectrascope.bridge.cka.cka`) between every pair of layers' activations of the
    same tokens: long table layer_a, layer_b, cka, variant (symmetric, both orders).

    Variant ``raw``; and with ``excluded`` (layer -> channels), also ``robust``: those channels
    left out of each layer (the same CKA as setting them to 0), from the same cross products
    X_a^T X_b with the excluded rows and columns dropped, so both variants cost one (d, n) x (n, d)
    product per pair (the self-HSICs are the pairs (a, a)). The activations stay in their dtype
    (float32 from the study: a model's worth of float64 copies would be ~0.6 GB at 4,096 tokens
    x 30 layers x 576); the per-token terms are float64, and the float32 rounding of the
    products moves CKA by ~1e-7.
    """
    return cka_table(layer_hsics(layers, debiased, excluded))


def cka_table(hsics: LayerHsics) -> pd.DataFrame:
    """The long table of :func:`cka_matrix` from :func:`layer_hsics`."""
    rows = []
    keys = hsics.keys
    for variant in hsics.keeps:
        for i, a in enumerate(keys):
            for b in keys[i:]:
                c = hsics.cka(variant, a, b)
                rows.append({"layer_a": a, "layer_b": b, "cka": c, "variant": variant})
                if a != b:
                    rows.append({"layer_a": b, "layer_b": a, "cka": c, "variant": variant})
    return pd.DataFrame(rows)
