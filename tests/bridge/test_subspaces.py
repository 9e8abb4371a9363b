"""Singular subspaces (spectrascope.bridge.subspaces): the Gram-matrix SVD against LAPACK's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectrascope.bridge.subspaces import matrix_subspaces, thin_svd


@pytest.mark.parametrize("shape", [(48, 120), (120, 48), (64, 64), (16, 64)])
def test_gram_svd_equals_lapack(shape):
    gen = torch.Generator().manual_seed(sum(shape))
    W = torch.randn(*shape, generator=gen, dtype=torch.float64)
    U, s, Vt = thin_svd(W)
    _, s0, Vt0 = torch.linalg.svd(W, full_matrices=False)
    r = min(shape)
    assert U.shape == (shape[0], r) and s.shape == (r,) and Vt.shape == (r, shape[1])
    torch.testing.assert_close(s, s0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(U @ torch.diag(s) @ Vt, W, rtol=0, atol=1e-10)
    torch.testing.assert_close(U.T @ U, torch.eye(r, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(Vt @ Vt.T, torch.eye(r, dtype=torch.float64), rtol=0, atol=1e-10)
    # singular vectors agree up to sign (distinct singular values of a Gaussian matrix)
    torch.testing.assert_close((Vt * Vt0).sum(1).abs(), torch.ones(r, dtype=torch.float64), rtol=0, atol=1e-8)


def test_hand_computable_case():
    """W = diag(3, 2) padded with a zero column: s = (3, 2), V^T rows e1, e2 (up to sign)."""
    W = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    U, s, Vt = thin_svd(W)
    torch.testing.assert_close(s, torch.tensor([3.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(Vt.abs(), torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64))
    torch.testing.assert_close(U.abs(), torch.eye(2, dtype=torch.float64))


def test_rank_deficient_matrices_take_the_full_svd():
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(40, 3, generator=gen, dtype=torch.float64) @ torch.randn(3, 60, generator=gen, dtype=torch.float64)
    U, s, Vt = thin_svd(W)
    torch.testing.assert_close(U @ torch.diag(s) @ Vt, W, rtol=0, atol=1e-10)
    torch.testing.assert_close(Vt @ Vt.T, torch.eye(40, dtype=torch.float64), rtol=0, atol=1e-10)
    sub = matrix_subspaces(W.numpy())
    assert sub.rank == 40 and np.isfinite(sub.Vt).all()
