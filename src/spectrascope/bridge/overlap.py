"""Eigenmode overlap: how much of a domain's input variance a matrix's tail reads.

For a weight matrix W and a domain with input covariance C (d_in x d_in, the covariance of
the vectors W multiplies, see matrix_inputs.py), and an orthonormal basis B (d_in x k) of a
subspace of W's right singular vectors:

    share(B)   = tr(B^T C B) / tr(C)       the fraction of the domain's variance in span(B)
    random     = k / d_in                  the expected share for a random k-dim subspace
    enrichment = share / random

computed for the power-law tail (ECS), the ERG tail and the bulk. Per mode i (one right
singular vector v_i): share_i = v_i^T C v_i / tr(C); ``mode_table`` lists the top modes'
shares per domain and a specificity = max over domains / mean over domains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .subspaces import MatrixSubspaces

PARTS = ("tail", "erg", "bulk")


def variance_share(C: np.ndarray, basis: np.ndarray) -> float:
    """tr(B^T C B) / tr(C) for an orthonormal basis B (d, k) and covariance C (d, d)."""
    total = float(np.trace(C))
    if basis.shape[1] == 0 or total <= 0:
        return 0.0
    return float(np.sum((C @ basis) * basis) / total)


def all_mode_shares(sub: MatrixSubspaces, C: np.ndarray) -> np.ndarray:
    """v_i^T C v_i / tr(C) for every right singular vector v_i of the matrix, shape (rank,).

    One (rank, d) x (d, d) product; a part's share is then the sum over its modes (the parts
    are runs of consecutive modes), so all parts cost one product per (matrix, domain).
    """
    total = float(np.trace(C))
    if total <= 0:
        return np.zeros(sub.rank)
    return np.sum((sub.Vt @ C) * sub.Vt, axis=1) / total


def overlap_rows(name: str, sub: MatrixSubspaces, covariances: dict[str, np.ndarray]) -> list[dict]:
    """One row per (domain, part) for one matrix."""
    d_in = sub.Vt.shape[1]
    rows = []
    for domain, C in covariances.items():
        per_mode = all_mode_shares(sub, C)
        for part in PARTS:
            modes = sub.part_slice(part)
            k = len(range(sub.rank)[modes])
            share = float(per_mode[modes].sum())
            random = k / d_in
            rows.append({"name": name, "domain": domain, "part": part, "k": k, "d_in": d_in,
                         "share": share, "random_share": random,
                         "enrichment": share / random if random > 0 else np.nan})
    return rows


def mode_shares(sub: MatrixSubspaces, C: np.ndarray, top: int = 10) -> np.ndarray:
    """Variance share v_i^T C v_i / tr(C) of each of the top right-singular modes, shape (k,)."""
    V = sub.Vt[: min(top, sub.rank)]
    return np.sum((V @ C) * V, axis=1) / np.trace(C)


def mode_table(name: str, shares: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per top mode: its variance share in each domain (from :func:`mode_shares`), the domain
    with the largest share and the specificity (max over domains / mean over domains)."""
    df = pd.DataFrame(shares)
    df.insert(0, "mode", np.arange(len(df)))
    df.insert(0, "name", name)
    values = df[list(shares)].to_numpy()
    df["top_domain"] = np.array(list(shares))[values.argmax(axis=1)]
    df["specificity"] = values.max(axis=1) / np.maximum(values.mean(axis=1), 1e-300)
    return df
