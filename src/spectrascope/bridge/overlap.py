"""Eigenmode overlap: how much of a domain's input variance a matrix's tail reads.

For a weight matrix W and a domain with input covariance C (d_in x d_in, the covariance of
the vectors W multiplies, see matrix_inputs.py), and an orthonormal basis B (d_in x k) of a
subspace of W's right singular vectors (computed from per-text sums in one pass with
intervals over texts: input_shares.py):

    share(B)   = tr(B^T C B) / tr(C)       the fraction of the domain's variance in span(B)
    random     = k / d_in                  the expected share for a random k-dim subspace
    enrichment = share / random

for the power-law tail (ECS), the ERG tail and the bulk. Per mode i (one right singular
vector v_i): share_i = v_i^T C v_i / tr(C); ``mode_table`` lists the top modes' shares per
domain and a specificity = max over domains / mean over domains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def variance_share(C: np.ndarray, basis: np.ndarray) -> float:
    """tr(B^T C B) / tr(C) for an orthonormal basis B (d, k) and covariance C (d, d)."""
    total = float(np.trace(C))
    if basis.shape[1] == 0 or total <= 0:
        return 0.0
    return float(np.sum((C @ basis) * basis) / total)


def mode_table(name: str, shares: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per top mode: its variance share in each domain (top-mode shares of
    :meth:`~spectrascope.bridge.input_shares.InputShares.finish`), the domain
    with the largest share and the specificity (max over domains / mean over domains)."""
    df = pd.DataFrame(shares)
    df.insert(0, "mode", np.arange(len(df)))
    df.insert(0, "name", name)
    values = df[list(shares)].to_numpy()
    df["top_domain"] = np.array(list(shares))[values.argmax(axis=1)]
    df["specificity"] = values.max(axis=1) / np.maximum(values.mean(axis=1), 1e-300)
    return df
