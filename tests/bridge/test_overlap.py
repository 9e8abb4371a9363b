"""Eigenmode overlap: planted domains, hand cases, random baseline."""

import numpy as np
import pytest

from spectrascope.bridge.overlap import mode_shares, mode_table, overlap_rows, variance_share
from spectrascope.bridge.subspaces import matrix_subspaces


def test_variance_share_by_hand():
    C = np.diag([4.0, 1.0, 0.0])
    e1 = np.array([[1.0], [0.0], [0.0]])
    assert variance_share(C, e1) == pytest.approx(0.8)
    assert variance_share(C, np.eye(3)) == pytest.approx(1.0)
    assert variance_share(C, np.zeros((3, 0))) == 0.0


def _planted_matrix(d_in=200, d_out=300, k=8, seed=0):
    """Low-rank heavy signal (k strong directions) plus noise: a clear power-law-ish tail."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((d_out, k)))[0]
    V = np.linalg.qr(rng.standard_normal((d_in, k)))[0]
    W = U @ np.diag(np.geomspace(200, 40, k)) @ V.T + rng.standard_normal((d_out, d_in))
    return W, V


def test_domain_planted_in_top_singular_subspace():
    W, V = _planted_matrix()
    sub = matrix_subspaces(W)
    rng = np.random.default_rng(1)
    top = sub.Vt[: sub.n_tail].T  # the matrix's own tail read-directions
    X_in = rng.standard_normal((5000, top.shape[1])) @ top.T  # domain living in the tail
    X_out = rng.standard_normal((5000, 200))  # isotropic domain
    covs = {"planted": np.cov(X_in.T), "isotropic": np.cov(X_out.T)}
    rows = {(r["domain"], r["part"]): r for r in overlap_rows("W", sub, covs)}
    assert sub.n_tail >= 1
    assert rows[("planted", "tail")]["share"] == pytest.approx(1.0, abs=1e-6)
    assert rows[("planted", "bulk")]["share"] == pytest.approx(0.0, abs=1e-6)
    iso = rows[("isotropic", "tail")]
    assert iso["share"] == pytest.approx(iso["random_share"], abs=0.03)
    assert iso["random_share"] == pytest.approx(sub.n_tail / 200)
    modes = mode_table("W", {d: mode_shares(sub, C, top=5) for d, C in covs.items()})
    assert (modes["top_domain"].iloc[: min(5, sub.n_tail)] == "planted").all()


def test_part_shares_equal_the_projection_onto_each_part():
    """overlap_rows sums per-mode shares; it must equal tr(B^T C B) / tr(C) for each part's basis,
    including a wide matrix whose rank is below d_in (the bulk stops at the rank)."""
    rng = np.random.default_rng(3)
    for shape in [(60, 40), (30, 50)]:
        sub = matrix_subspaces(rng.standard_t(3, size=shape))
        A = rng.standard_normal((200, shape[1])) * rng.uniform(0.2, 3, size=shape[1])
        C = np.cov(A.T)
        rows = {r["part"]: r for r in overlap_rows("W", sub, {"d": C})}
        for part in ("tail", "erg", "bulk"):
            B = sub.reads(part)
            assert rows[part]["k"] == B.shape[1]
            assert rows[part]["share"] == pytest.approx(variance_share(C, B), rel=1e-10, abs=1e-14)
        assert rows["tail"]["k"] + rows["bulk"]["k"] == min(shape)
