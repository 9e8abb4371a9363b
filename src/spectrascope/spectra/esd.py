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


LARGE_M = 1024
"""From this many columns (the short side) on, a matrix takes the large-matrix path: the
Gram matrix is accumulated over row chunks (no full-size float64 copy of W) and the
eigenvalues come from LAPACK's two-stage tridiagonal reduction when available (about 2x
faster than the one-stage ``syevd`` for M in the thousands; same eigenvalues to rounding).
Smaller matrices (every matrix of the bundled models) keep the original arithmetic
bit for bit."""

GRAM_CHUNK_BYTES = 64 * 2**20
"""Row chunks of W are converted to the working dtype this many bytes at a time."""


def row_chunks(n_rows: int, n_cols: int, itemsize: int, chunk_bytes: int = GRAM_CHUNK_BYTES):
    """Yield (start, stop) row ranges of about ``chunk_bytes`` each."""
    step = max(1, chunk_bytes // max(1, n_cols * itemsize))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def gram_matrix(W: np.ndarray, precision: Precision = "exact") -> np.ndarray:
    """X = A^T A for A = W long side first, in float64 ("exact") or float32 ("fast").

    A matrix with M >= LARGE_M whose dtype differs from the working dtype is converted
    chunk by chunk (peak extra memory: one chunk plus the M x M result).
    """
    dtype = np.float64 if precision == "exact" else np.float32
    A = oriented(np.asarray(W))
    if A.dtype == dtype or A.shape[1] < LARGE_M:
        A = A.astype(dtype, copy=False)
        return A.T @ A
    G = np.zeros((A.shape[1], A.shape[1]), dtype=dtype)
    for start, stop in row_chunks(A.shape[0], A.shape[1], np.dtype(dtype).itemsize):
        chunk = A[start:stop].astype(dtype)
        G += chunk.T @ chunk
    return G


_TWO_STAGE: dict = {}


def _two_stage_routine(dtype):
    """LAPACKE ``?syevd_2stage`` from the OpenBLAS that scipy bundles, or None.

    scipy does not wrap the two-stage drivers; they are found by symbol name in scipy's
    own OpenBLAS (``scipy_LAPACKE_dsyevd_2stage``) and every failure (another BLAS, a
    different symbol prefix) falls back to ``scipy.linalg.eigvalsh``.
    """
    key = np.dtype(dtype).char
    if key in _TWO_STAGE:
        return _TWO_STAGE[key]
    routine = None
    try:
        import ctypes
        import glob
        import os

        libs = os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs")
        prefix = "d" if key == "d" else "s"
        for path in sorted(glob.glob(os.path.join(libs, "libscipy_openblas*.so*"))):
            lib = ctypes.CDLL(path)
            fn = getattr(lib, f"scipy_LAPACKE_{prefix}syevd_2stage", None)
            if fn is not None:
                ctype = ctypes.c_double if key == "d" else ctypes.c_float
                fn.restype = ctypes.c_int
                fn.argtypes = [
                    ctypes.c_int,
                    ctypes.c_char,
                    ctypes.c_char,
                    ctypes.c_int,
                    ctypes.POINTER(ctype),
                    ctypes.c_int,
                    ctypes.POINTER(ctype),
                ]
                routine = (fn, ctype)
                break
    except Exception:  # noqa: BLE001 - any loader problem: use scipy
        routine = None
    _TWO_STAGE[key] = routine
    return routine


def symmetric_eigenvalues(G: np.ndarray) -> np.ndarray:
    """Eigenvalues (ascending, G's dtype) of a symmetric matrix; G is overwritten.

    M >= LARGE_M: LAPACK's two-stage ``syevd`` when available; otherwise (and for
    smaller M) ``scipy.linalg.eigvalsh(driver="evd")``.
    """
    n = G.shape[0]
    routine = _two_stage_routine(G.dtype) if n >= LARGE_M and G.dtype in (np.float32, np.float64) else None
    if routine is not None:
        import ctypes

        fn, ctype = routine
        A = np.asfortranarray(G)
        w = np.empty(n, dtype=G.dtype)
        ptr = ctypes.POINTER(ctype)
        info = fn(102, b"N", b"L", n, A.ctypes.data_as(ptr), n, w.ctypes.data_as(ptr))
        if info == 0:
            return w
    return scipy.linalg.eigvalsh(G, driver="evd", check_finite=False, overwrite_a=True)


def gram_eigenvalues(W: np.ndarray, precision: Precision = "exact") -> np.ndarray:
    """Eigenvalues of W^T W (long side first), ascending, float64, clipped at 0.

    Args:
        W: matrix, shape (N, M) in either orientation, any float dtype.
        precision: "exact" (float64) or "fast" (float32 Gram and eigensolver).
    Returns:
        array of shape (min(N, M),), the squared singular values of W.
    """
    if min(np.shape(W)) >= LARGE_M:
        evals = symmetric_eigenvalues(gram_matrix(W, precision))
        return np.clip(evals.astype(np.float64), 0.0, None)
    dtype = np.float64 if precision == "exact" else np.float32
    A = oriented(np.asarray(W)).astype(dtype, copy=False)
    G = A.T @ A
    evals = scipy.linalg.eigvalsh(G, driver="evd", check_finite=False, overwrite_a=True)
    return np.clip(evals.astype(np.float64), 0.0, None)


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
