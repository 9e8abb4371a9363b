"""Debiased CKA: the feature-space formula equals the n x n kernel formula; independent
representations give ~0 at the study's sample size; invariances."""

import numpy as np
import pytest

from spectrascope.bridge.cka import cka, cka_without_top_tokens


def _hsic_unbiased_kernel(K, L):
    """Song et al. (2012) with explicit n x n kernels (the reference formula)."""
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    one = np.ones(n)
    term = np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ K @ L @ one
    return term / (n * (n - 3))


def test_feature_space_formula_equals_the_kernel_formula():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((30, 5)), rng.standard_normal((30, 7)) + 2.0
    Y[:, 0] += X[:, 0]
    K, L = X @ X.T, Y @ Y.T
    expected = _hsic_unbiased_kernel(K, L) / np.sqrt(_hsic_unbiased_kernel(K, K) * _hsic_unbiased_kernel(L, L))
    assert cka(X, Y) == pytest.approx(expected, rel=1e-10)


def test_independent_representations_at_the_study_size_give_zero():
    """n = 4096 tokens, d = 576: debiased |CKA| < 0.05; the biased one is ~d / (n + d) = 0.12."""
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((4096, 576)), rng.standard_normal((4096, 576))
    assert abs(cka(X, Y)) < 0.05
    assert cka(X, Y, debiased=False) == pytest.approx(576 / (4096 + 576), abs=0.02)


def test_the_old_sample_size_made_noise_look_similar():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((512, 576)), rng.standard_normal((512, 576))
    assert cka(X, Y, debiased=False) > 0.5  # the 0.53
    assert abs(cka(X, Y)) < 0.05


def test_invariances_and_identity():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 10))
    R = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    assert cka(X, X) == pytest.approx(1.0)
    assert cka(X, 3 * X @ R + 5) == pytest.approx(1.0, abs=1e-9)  # rotation, scale, shift
    with pytest.raises(ValueError, match="same n"):
        cka(X, X[:-1])


def test_cka_matrix_from_float32_terms_equals_cka():
    from spectrascope.bridge.alignment import cka_matrix

    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 20)).astype(np.float32) + 1
    Y = X @ rng.standard_normal((20, 12)).astype(np.float32) + rng.standard_normal((300, 12)).astype(np.float32)
    for debiased in (True, False):
        m = cka_matrix({0: X, 1: Y}, debiased=debiased)
        got = m.query("layer_a == 0 and layer_b == 1")["cka"].item()
        assert got == pytest.approx(cka(X, Y, debiased=debiased), rel=1e-5)
        assert m.query("layer_a == 1 and layer_b == 1")["cka"].item() == pytest.approx(1.0, rel=1e-6)


def test_cka_matrix_robust_variant_equals_cka_without_the_excluded_channels():
    """The robust rows come from the raw cross products with the excluded rows and columns
    dropped; they equal CKA recomputed on the layers with those channels removed."""
    from spectrascope.bridge.alignment import cka_matrix

    rng = np.random.default_rng(8)
    X = rng.standard_normal((400, 16)).astype(np.float32)
    X[:, 3] *= 300  # a massive channel that dominates the raw kernel
    Y = (X @ rng.standard_normal((16, 12)) + rng.standard_normal((400, 12))).astype(np.float32)
    Y[:, [0, 5]] += 500 * rng.standard_normal((400, 1)).astype(np.float32)
    excluded = {0: np.array([3]), 1: np.array([0, 5])}
    m = cka_matrix({0: X, 1: Y}, excluded=excluded)
    assert set(m["variant"]) == {"raw", "robust"} and len(m) == 8
    robust = m[m["variant"] == "robust"].set_index(["layer_a", "layer_b"])["cka"]
    raw = m[m["variant"] == "raw"].set_index(["layer_a", "layer_b"])["cka"]
    Xr, Yr = np.delete(X, [3], axis=1), np.delete(Y, [0, 5], axis=1)
    assert robust[0, 1] == pytest.approx(cka(Xr, Yr), rel=1e-5)
    assert robust[1, 0] == robust[0, 1] and robust[1, 1] == pytest.approx(1.0, rel=1e-6)
    assert raw[0, 1] == pytest.approx(cka(X, Y), rel=1e-5)
    assert abs(raw[0, 1] - robust[0, 1]) > 0.05  # the massive channels moved the raw value


def test_leave_one_group_out_hsic_equals_recomputing_without_the_group():
    from spectrascope.bridge.cka import _hsic_terms, leave_one_group_out_hsic

    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((40, 5)) + 2.0, rng.standard_normal((40, 3))
    Y[:, 0] += X[:, 1]
    groups = np.repeat([0, 1, 2, 3], 10)
    got = leave_one_group_out_hsic(X, Y, groups)
    want = [_hsic_terms(X[groups != g], Y[groups != g]) for g in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_adjacent_replicates_equal_cka_without_each_group():
    from spectrascope.bridge.cka import adjacent_cka_replicates, cka

    rng = np.random.default_rng(8)
    A = rng.standard_normal((60, 6))
    B = A @ rng.standard_normal((6, 6)) + 0.5 * rng.standard_normal((60, 6))
    C = rng.standard_normal((60, 4))
    groups = np.arange(60) * 5 // 60
    reps = adjacent_cka_replicates([A, B, C], groups)
    assert reps.shape == (2, 5)
    for g in range(5):
        keep = groups != g
        assert reps[0, g] == pytest.approx(cka(A[keep], B[keep]), rel=1e-9)
        assert reps[1, g] == pytest.approx(cka(B[keep], C[keep]), rel=1e-9, abs=1e-12)


def test_replicates_by_variant_equal_the_replicates_without_the_excluded_channels():
    """A variant leaving channels out (one of them 1,000x the others, so its squares dominate the
    sums it is subtracted from) gives the replicates of the layers with those channels deleted."""
    from spectrascope.bridge.cka import adjacent_cka_replicates, adjacent_replicates_by_variant

    rng = np.random.default_rng(9)
    A = rng.standard_normal((80, 7))
    B = A @ rng.standard_normal((7, 6)) + 0.5 * rng.standard_normal((80, 6))
    C = B[:, :5] + rng.standard_normal((80, 5))
    A[:, 2] *= 1000.0
    B[:, 0] *= 1000.0
    groups = np.arange(80) * 8 // 80
    dropped = [np.array([2]), np.array([0, 4]), None]
    got = adjacent_replicates_by_variant([A, B, C], groups, {"raw": [None] * 3, "robust": dropped})
    np.testing.assert_allclose(got["raw"], adjacent_cka_replicates([A, B, C], groups), rtol=1e-12)
    kept = [np.delete(A, [2], axis=1), np.delete(B, [0, 4], axis=1), C]
    np.testing.assert_allclose(got["robust"], adjacent_cka_replicates(kept, groups), rtol=1e-9)
    assert np.abs(got["robust"] - got["raw"]).max() > 0.01  # the dropped channels mattered


def test_a_few_tokens_of_large_norm_that_set_cka_alone_are_found_by_leaving_them_out():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 8))
    Y = X @ np.linalg.qr(rng.standard_normal((8, 8)))[0]  # the same representation rotated: CKA 1
    X[:4] = 300.0 * rng.standard_normal((4, 8))  # 4 tokens (1 %) of huge norm, unrelated in Y
    assert cka(X, Y) < 0.2
    without, n_left_out = cka_without_top_tokens(X, Y)
    assert n_left_out == 4 and without == pytest.approx(cka(X[4:], Y[4:]), rel=1e-9) and without > 0.99
