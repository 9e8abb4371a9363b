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


@pytest.mark.parametrize("shape", [(50, 50), (80, 50)])
def test_input_directions_alone_of_a_badly_conditioned_matrix(shape):
    """need_left=False: sigma_min / sigma_max = 1e-9 (far below GRAM_CONDITION) and no full SVD,
    yet V^T reconstructs W, its leading directions are the true ones (up to sign) and the rest
    spans the true rest (directions whose sigma^2 is below eps sigma_max^2 are not told apart
    one by one, which no tail, bulk or leading-mode share needs); U is not returned."""
    gen = torch.Generator().manual_seed(7)
    r = shape[1]
    U0 = torch.linalg.qr(torch.randn(shape[0], r, generator=gen, dtype=torch.float64))[0]
    V0 = torch.linalg.qr(torch.randn(r, r, generator=gen, dtype=torch.float64))[0]
    s0 = torch.logspace(0, -9, r, dtype=torch.float64)
    W = U0 @ torch.diag(s0) @ V0.T
    U, s, Vt = thin_svd(W, need_left=False)
    assert U is None
    lead = int((s0 > 1e-4).sum())
    torch.testing.assert_close(s[:lead], s0[:lead], rtol=1e-9, atol=0)
    torch.testing.assert_close(Vt @ Vt.T, torch.eye(r, dtype=torch.float64), rtol=0, atol=1e-10)
    torch.testing.assert_close(
        (Vt[:lead] * V0.T[:lead]).sum(1).abs(), torch.ones(lead, dtype=torch.float64), atol=1e-6, rtol=0
    )
    rest, rest0 = Vt[lead:].T, V0[:, lead:]
    torch.testing.assert_close(rest @ rest.T, rest0 @ rest0.T, rtol=0, atol=1e-8)
    torch.testing.assert_close(W @ Vt.T @ Vt, W, rtol=0, atol=1e-12)
    sub = matrix_subspaces(W.numpy(), left=False)
    assert sub.U is None and sub.rank == r
