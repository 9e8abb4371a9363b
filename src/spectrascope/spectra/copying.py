"""The eigenvalue copying score of every attention head (Elhage et al. 2021).

A head's full OV circuit maps a token read at one position to logits written at another:

    C_h = W_U' W_O^h W_V^h' W_E            (vocab x vocab)

with W_E = E^T the token embeddings (d x vocab), W_V^h' = W_V^g diag(gamma_attn) the value
projection of head h's key/value head g behind its layer's input norm gain, W_O^h the head's
slice of the output projection, and W_U' = W_U diag(gamma_final) the unembedding behind the
final norm gain (RMSNorm's per-token 1/rms is a positive scalar and does not change the
eigenvalues' signs). A head that copies (raises the logit of the token it attends to) has
eigenvalues with large positive real parts. The score is

    copying = sum_i lambda_i / sum_i |lambda_i|      (in [-1, 1]; 1 = pure copying)

(the sum of eigenvalues is real: it is the trace). The nonzero eigenvalues of AB equal those
of BA, so they are computed from the head_dim x head_dim matrix

    W_V^h' (E^T W_U') W_O^h

with the d x d matrix E^T W_U' formed once, never a vocab x vocab matrix. float64.

The per-head table of a checkpoint is :func:`spectrascope.weights.copying.copying_table`.
"""

from __future__ import annotations

import numpy as np


def copying_score(W_V: np.ndarray, W_O: np.ndarray, embed_unembed: np.ndarray) -> float:
    """The copying score of one head.

    Args:
        W_V: (d_head, d) the value projection (norm gain folded in).
        W_O: (d, d_head) the head's output projection.
        embed_unembed: (d, d) ``E^T W_U'`` (E: (vocab, d) embeddings, W_U': (vocab, d) unembedding).
    """
    small = W_V.astype(np.float64) @ embed_unembed @ W_O.astype(np.float64)
    eigenvalues = np.linalg.eigvals(small)
    total = np.abs(eigenvalues).sum()
    return float(eigenvalues.sum().real / total) if total > 0 else float("nan")
