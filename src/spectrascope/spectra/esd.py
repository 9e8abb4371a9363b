"""Empirical spectral density (ESD) of a weight matrix.

For W of shape (N, M) with N >= M (transposed otherwise), X = W^T W (no 1/N factor) and the
ESD is its M eigenvalues lambda_i = sigma_i^2, sorted ascending. They are computed from the
M x M Gram matrix with a symmetric eigensolver: the same spectrum as an SVD at a fraction of
the cost. ``precision="exact"`` works in float64 (matches an SVD to ~1e-13 relative on the
large eigenvalues); ``"fast"`` works in float32, fine for the tail, less accurate for the
smallest eigenvalues. On CUDA the Gram matrix and eigensolver run on the GPU.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.linalg

Precision = Literal["exact", "fast"]


def oriented(W: np.ndarray) -> np.ndarray:
    """Return W with its long side first: shape (N, M), N >= M (a view, no copy)."""
    return W if W.shape[0] >= W.shape[1] else W.T


def gram_eigenvalues(W: np.ndarray, precision: Precision = "exact") -> np.ndarray:
    """Eigenvalues of W^T W (long side first), ascending, float64, clipped at 0.

    Args:
        W: matrix, shape (N, M) in either orientation, any float dtype.
        precision: "exact" (float64) or "fast" (float32 Gram and eigensolver).
    Returns:
        array of shape (min(N, M),), the squared singular values of W.
    """
    dtype = np.float64 if precision == "exact" else np.float32
    A = oriented(np.asarray(W)).astype(dtype, copy=False)
    G = A.T @ A
    evals = scipy.linalg.eigvalsh(G, driver="evd", check_finite=False, overwrite_a=True)
    return np.clip(evals.astype(np.float64), 0.0, None)


def gram_eigenvalues_torch(W, precision: Precision = "fast", device: str = "cuda") -> np.ndarray:
    """Same as :func:`gram_eigenvalues` computed with torch on ``device`` (e.g. a GPU).

    Args:
        W: torch tensor or numpy array, shape (N, M).
    Returns:
        float64 numpy array of shape (min(N, M),), ascending.
    """
    import torch

    dtype = torch.float64 if precision == "exact" else torch.float32
    A = torch.as_tensor(W).to(device=device, dtype=dtype)
    if A.shape[0] < A.shape[1]:
        A = A.T
    evals = torch.linalg.eigvalsh(A.T @ A)
    return np.clip(evals.double().cpu().numpy(), 0.0, None)


def small_factor_product_eigenvalues(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Nonzero spectrum of (A B^T)^T (A B^T) without forming the d x d product.

    A and B have shape (d, r) with r <= d (e.g. r = head_dim). With thin QR factorizations
    A = Q_a R_a and B = Q_b R_b, the singular values of A B^T are those of the r x r matrix
    R_a R_b^T, so the cost is O(d r^2) instead of O(d^3).

    Returns:
        float64 array of shape (r,), the squared singular values of A B^T, ascending.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    Ra = np.linalg.qr(A, mode="r")
    Rb = np.linalg.qr(B, mode="r")
    core = Ra @ Rb.T
    return gram_eigenvalues(core, "exact")
