"""Centered kernel alignment (CKA) between two representations of the same n tokens.

Linear CKA (Kornblith et al. 2019) with X (n, d1), Y (n, d2), K = X X^T, L = Y Y^T:

    CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))

The usual (biased) HSIC, ``tr(K H L H) / (n - 1)^2`` with the centering matrix H, makes two
*independent* representations look similar when n is not much larger than d: for isotropic
Gaussians their linear CKA is about d / (n + d) (0.53 at n = 512, d = 576). The default here
is the unbiased HSIC estimator of Song et al. (2012), as used for debiased CKA by Nguyen et al.
(2021): with K~, L~ the kernels with zeroed diagonals,

    HSIC_u = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3))

whose expectation is the population HSIC (0 for independent representations). Debiased
CKA of independent representations is then ~0 whatever n / d, and its standard deviation
shrinks like 1/n; it can be slightly negative. Every term is computed in feature space, in
O(n d1 d2) time and O(d1 d2) memory, never as an n x n kernel:

    tr(K~ L~)       = ||X^T Y||_F^2 - sum_i |x_i|^2 |y_i|^2
    1^T K~ 1        = |sum_i x_i|^2 - sum_i |x_i|^2
    1^T K~ L~ 1     = sum_i (x_i . s_x - |x_i|^2)(y_i . s_y - |y_i|^2),   s_x = sum_i x_i

Each token weighs with its squared norm, so a few tokens of very large norm can set CKA alone:
:func:`cka_without_top_tokens` measures it again without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _unbiased_hsic(trace: float, kx: np.ndarray, ly: np.ndarray) -> float:
    """The unbiased HSIC from tr(K~ L~) and the vectors K~ 1 (n,) and L~ 1 (n,) (module docstring)."""
    n = kx.size
    sums = float(kx.sum() * ly.sum()) / ((n - 1) * (n - 2))
    return (trace + sums - 2.0 / (n - 2) * float(np.dot(kx, ly))) / (n * (n - 3))


def _hsic_terms(X: np.ndarray, Y: np.ndarray) -> float:
    """The unbiased HSIC of the linear kernels X X^T and Y Y^T (see the module docstring)."""
    x_sq = np.einsum("ij,ij->i", X, X)
    y_sq = np.einsum("ij,ij->i", Y, Y)
    trace = float(np.sum((X.T @ Y) ** 2) - np.dot(x_sq, y_sq))
    return _unbiased_hsic(trace, X @ X.sum(axis=0) - x_sq, Y @ Y.sum(axis=0) - y_sq)


def _biased_cka(X: np.ndarray, Y: np.ndarray) -> float:
    Xc = X - X.mean(axis=0)
    Yc = Y - Y.mean(axis=0)
    cross = np.linalg.norm(Xc.T @ Yc) ** 2
    denom = np.linalg.norm(Xc.T @ Xc) * np.linalg.norm(Yc.T @ Yc)
    return float(cross / denom) if denom > 0 else float("nan")


def cka(X: np.ndarray, Y: np.ndarray, debiased: bool = True) -> float:
    """Linear CKA of two representations of the same n tokens, X (n, d1) and Y (n, d2).

    Args:
        debiased: the unbiased-HSIC estimator (default; ~0 for independent representations at
            any n / d); False gives the classic biased linear CKA in [0, 1].
    Returns:
        CKA (NaN when a representation is constant); the debiased value can be slightly below 0.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"cka needs (n, d1) and (n, d2) arrays of the same n; got {X.shape} and {Y.shape}")
    if not debiased:
        return _biased_cka(X, Y)
    if X.shape[0] < 4:
        raise ValueError(f"debiased CKA needs at least 4 tokens (got {X.shape[0]})")
    xy, xx, yy = _hsic_terms(X, Y), _hsic_terms(X, X), _hsic_terms(Y, Y)
    if xx <= 0 or yy <= 0:
        return float("nan")
    return float(xy / np.sqrt(xx * yy))


TOP_TOKEN_SHARE = 0.01
"""Share of the pooled tokens, those of largest norm, left out to check the lowest adjacent CKA."""


def cka_without_top_tokens(X: np.ndarray, Y: np.ndarray, share: float = TOP_TOKEN_SHARE) -> tuple[float, int]:
    """Debiased CKA of X and Y, (n, d1) and (n, d2) rows of the same tokens, without the ``share``
    of tokens whose norm is largest relative to its layer's median token norm at either layer.

    Linear CKA weighs each token by its squared norm, so a handful of tokens far above the rest
    (massive values in channels that are not flagged) can set it alone. Returns the CKA and how
    many tokens were left out.
    """

    def relative(Z: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(np.asarray(Z, dtype=np.float64), axis=1)
        return norms / np.median(norms)

    ratio = np.maximum(relative(X), relative(Y))
    kept = ratio <= np.quantile(ratio, 1 - share)
    return cka(X[kept], Y[kept]), int((~kept).sum())


@dataclass(frozen=True)
class TokenTerms:
    """One representation's per-token terms (computed once for many pairs, :func:`hsic_from_cross`).

    Attributes:
        sq: (n,) float64 |x_i|^2; k: (n,) float64 (K~ 1)_i (see the module docstring).
    """

    sq: np.ndarray
    k: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, keep: np.ndarray | None = None) -> TokenTerms:
        """The terms of X (n, d), or of X with only the channels ``keep`` (the others set to 0)."""
        X64 = np.asarray(X, dtype=np.float64)
        if keep is not None:
            X64 = X64[:, keep]
        sq = np.einsum("ij,ij->i", X64, X64)
        return cls(sq, X64 @ X64.sum(axis=0) - sq)


def hsic_from_cross(cross: np.ndarray, a: TokenTerms | None, b: TokenTerms | None) -> float:
    """HSIC of two representations of the same tokens from their cross product X^T Y (d1, d2),
    float64: unbiased from their :class:`TokenTerms`, or, with None for both, the biased one up
    to a constant (of centered X and Y)."""
    if a is None or b is None:
        return float(np.sum(cross**2))
    return _unbiased_hsic(float(np.sum(cross**2) - np.dot(a.sq, b.sq)), a.k, b.k)


@dataclass(frozen=True)
class GroupTerms:
    """One representation's per-token terms with each group of tokens left out in turn.

    Attributes:
        sq: (n,) float64 |x_i|^2 (over the kept channels).
        k: (n, G) float64 (K~ 1)_i without group g: x_i . (s_x - s_x^g) - |x_i|^2, s_x^g the
            sum of group g's tokens (one (n, d) x (d, G) product for all groups).
    """

    sq: np.ndarray
    k: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, members: list[np.ndarray], keep: np.ndarray | None = None) -> GroupTerms:
        """The terms of X (n, d), or of its channels ``keep`` only; ``members``: each group's tokens."""
        X64 = np.asarray(X if keep is None else X[:, keep], dtype=np.float64)
        sq = np.einsum("ij,ij->i", X64, X64)
        sums = np.array([X64[m].sum(axis=0) for m in members])  # (G, d)
        return cls(sq, X64 @ (sums.sum(axis=0)[None, :] - sums).T - sq[:, None])


def group_crosses(X: np.ndarray, Y: np.ndarray, members: list[np.ndarray]) -> np.ndarray:
    """(G, d1, d2) float64 cross products X_g^T Y_g of each group's tokens (in the inputs' dtype,
    as :func:`~spectrascope.bridge.alignment.cka_matrix`); they add up to X^T Y."""
    return np.stack([X[m].T @ Y[m] for m in members]).astype(np.float64)


def _left_out_traces(crosses: np.ndarray, drops: list[tuple[np.ndarray, np.ndarray] | None]) -> np.ndarray:
    """(len(drops), G) ||X^T Y - X_g^T Y_g||_F^2 for each group g, over all channels (None) or
    without the dropped (rows, columns): their squares are set to 0 and the rest summed again
    (subtracting them from the full sum would lose the rest to cancellation when a dropped
    channel is massive: 1e-4 relative at 1,000x), without copying the kept part."""
    cross = crosses.sum(axis=0)
    dropping = [v for v, drop in enumerate(drops) if drop is not None]
    out = np.empty((len(drops), crosses.shape[0]))
    for g in range(crosses.shape[0]):
        squares = cross - crosses[g]
        squares *= squares
        out[:, g] = float(squares.sum())
        for v, drop in enumerate(drops):
            if drop is None:
                continue
            rows, columns = drop
            kept = squares.copy() if v != dropping[-1] else squares
            kept[rows] = 0.0
            kept[:, columns] = 0.0
            out[v, g] = float(kept.sum())
    return out


def _leave_one_out(traces: np.ndarray, a: GroupTerms, b: GroupTerms, index: np.ndarray) -> np.ndarray:
    """(G,) unbiased HSIC with each group left out, from :func:`_left_out_traces` (G,) and the terms."""
    out = np.empty(traces.size)
    for g in range(traces.size):
        inside = index != g
        trace = float(traces[g] - np.dot(a.sq[inside], b.sq[inside]))
        out[g] = _unbiased_hsic(trace, a.k[inside, g], b.k[inside, g])
    return out


def _groups(groups: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(index of each token's group (n,), the tokens of each group) of group labels (n,)."""
    labels, index = np.unique(groups, return_inverse=True)
    return index, [np.flatnonzero(index == g) for g in range(labels.size)]


def leave_one_group_out_hsic(X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(G,) unbiased HSIC of X (n, d1) and Y (n, d2) with each group of tokens left out in turn.

    ``groups`` (n,) labels the tokens (G distinct labels, in sorted order). Every term of the
    module docstring is a sum over tokens, so each group's part is subtracted from the full sums
    (:func:`group_crosses`, :class:`GroupTerms`).
    """
    index, members = _groups(groups)
    X, Y = np.asarray(X), np.asarray(Y)
    traces = _left_out_traces(group_crosses(X, Y, members), [None])[0]
    return _leave_one_out(traces, GroupTerms.of(X, members), GroupTerms.of(Y, members), index)


def adjacent_cka_replicates(layers: list[np.ndarray], groups: np.ndarray) -> np.ndarray:
    """(len(layers) - 1, G) debiased CKA of each layer with the next, each group of tokens left
    out in turn (the delete-a-group jackknife replicates of :func:`cka`)."""
    return adjacent_replicates_by_variant(layers, groups, {"raw": [None] * len(layers)})["raw"]


def adjacent_replicates_by_variant(
    layers: list[np.ndarray], groups: np.ndarray, excluded: dict[str, list[np.ndarray | None]]
) -> dict[str, np.ndarray]:
    """:func:`adjacent_cka_replicates` of several variants, each leaving some channels of every
    layer out (``excluded``: variant -> per layer the channels left out, None = none): one set
    of group cross products per pair of layers serves every variant (:func:`_left_out_traces`),
    and each layer's own HSIC replicates are computed once."""
    from ..activations.massive import keep_channels

    index, members = _groups(groups)
    variants = list(excluded)
    terms = {
        (variant, i): GroupTerms.of(X, members, None if drop is None else keep_channels(X.shape[1], drop))
        for variant in variants
        for i, (X, drop) in enumerate(zip(layers, excluded[variant], strict=True))
    }

    def channels(variant: str, i: int) -> np.ndarray:
        drop = excluded[variant][i]
        return np.zeros(0, dtype=np.int64) if drop is None else np.asarray(drop, dtype=np.int64)

    def replicates(i: int, j: int) -> dict[str, np.ndarray]:
        pairs = [(channels(v, i), channels(v, j)) for v in variants]
        drops = [None if rows.size + columns.size == 0 else (rows, columns) for rows, columns in pairs]
        traces = _left_out_traces(group_crosses(layers[i], layers[j], members), drops)
        return {v: _leave_one_out(traces[n], terms[v, i], terms[v, j], index) for n, v in enumerate(variants)}

    own = [replicates(i, i) for i in range(len(layers))]
    out: dict[str, list[np.ndarray]] = {variant: [] for variant in variants}
    for i in range(len(layers) - 1):
        xy = replicates(i, i + 1)
        for variant in variants:
            a, b = own[i][variant], own[i + 1][variant]
            with np.errstate(invalid="ignore", divide="ignore"):
                ok = (a > 0) & (b > 0)
                out[variant].append(np.where(ok, xy[variant] / np.sqrt(np.where(ok, a * b, 1.0)), np.nan))
    return {variant: np.array(rows).reshape(len(layers) - 1, len(members)) for variant, rows in out.items()}
