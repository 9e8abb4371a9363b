"""The Gram eigenvalue kernels in torch (a GPU, or the CPU in tests): one matrix, or a batch
of matrices of one shape stacked into one ``bmm`` and one batched ``eigvalsh``.

They return what :func:`spectrascope.spectra.esd.gram_eigenvalues` returns (float64 numpy,
ascending, clipped at 0), up to floating-point rounding.
"""

from __future__ import annotations

import numpy as np

from ..spectra.esd import Precision, oriented


def _dtype(precision: Precision):
    import torch

    return torch.float64 if precision == "exact" else torch.float32


def gram_eigenvalues_torch(W, precision: Precision = "fast", device: str = "cuda") -> np.ndarray:
    """Eigenvalues of W^T W (long side first) computed with torch on ``device``.

    Args:
        W: torch tensor or numpy array, shape (N, M).
    Returns:
        float64 numpy array of shape (min(N, M),), ascending.
    """
    import torch

    A = torch.as_tensor(W).to(device=device, dtype=_dtype(precision))
    if A.shape[0] < A.shape[1]:
        A = A.T
    evals = torch.linalg.eigvalsh(A.T @ A)
    return np.clip(evals.double().cpu().numpy(), 0.0, None)


def batched_gram_eigenvalues(
    mats: list[np.ndarray], precision: Precision = "fast", device: str = "cuda"
) -> list[np.ndarray]:
    """Eigenvalues of A^T A (A = W long side first) for matrices of one oriented shape.

    Args:
        mats: matrices whose oriented shapes are all equal.
        precision: "exact" (float64) or "fast" (float32).
        device: torch device ("cuda", "cuda:1", "cpu").
    Returns:
        one float64 numpy array per matrix, ascending, clipped at 0.
    """
    import torch

    A = torch.stack([torch.from_numpy(np.ascontiguousarray(oriented(np.asarray(W)))) for W in mats])
    A = A.to(device=device, dtype=_dtype(precision))
    G = A.transpose(1, 2) @ A
    del A
    evals = torch.linalg.eigvalsh(G)
    out = evals.to("cpu", torch.float64).numpy()
    return [np.clip(e, 0.0, None) for e in out]
