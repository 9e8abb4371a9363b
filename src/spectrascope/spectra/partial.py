"""Partial spectra: the top of the ESD of a huge matrix without a full eigendecomposition.

For W of shape (N, M), N >= M, the metrics of a weight matrix need the eigenvalues of
X = W^T W from the power-law xmin upward, the largest eigenvalue and the trace; everything
else is either exact from those or an approximation documented below. This module computes

* the top eigenvalues of X by **block Lanczos** (a randomized block Krylov method, seeded)
  on the Gram operator X = W^T W, never an N x N matrix. Up to M = GRAM_MAX_M the M x M
  Gram matrix is formed once (one large matrix product, the fastest way on a CPU) and the
  Krylov products are products with it; beyond, the operator is ``V -> W^T (W V)``: two
  products with W per block of vectors and no M x M matrix at all. Each new block
  is orthogonalized against the whole Krylov basis twice (full reorthogonalization, so no
  ghost eigenvalues); the projected matrix T = Q^T X Q is block tridiagonal and its
  eigenvalues (the Ritz values) come from a banded eigensolver, O(L^2 b) for a basis of
  L vectors in blocks of b. Ritz values grow monotonically toward the true eigenvalues; an
  eigenvalue counts as converged when it moved by less than ``tol`` (relative) between two
  checkpoints of the growing basis, and only the leading run of converged ones is used.
* the trace, sum(lambda) = ||W||_F^2, **exactly** (a float64 sum of squares of W);
* sum(lambda^2) = ||W^T W||_F^2: **exact** when the Gram matrix is formed (operator
  "gram"), otherwise **estimated** as ||X Q||_F^2 over the Krylov basis Q (exact, the
  products are computed anyway) plus a Hutchinson estimate of the part orthogonal to Q
  (``probes`` Gaussian probes projected off Q). It only feeds the remainder model below.

**Adaptive k.** The window is the leading run of converged eigenvalues; it must hold at
least k0 = max(``k0``, ``k0_fraction`` * M, MIN_WINDOW) of them (M / 8 by default: smaller
windows often stop at a local minimum of the KS distance among the first few eigenvalues).
Grow the basis by ``growth`` per checkpoint, and stop when the power-law fit on the window
of k converged eigenvalues has (a) its xmin in the upper (1 - ``margin``) part, i.e.
num_pl_spikes <= (1 - margin) k, and (b) no sign that the KS distance keeps falling below
the computed part: every candidate among the deepest ``margin`` * k has D >= (1 + ``trend``)
D_best. For candidates inside the computed part, alpha_i and D_i depend only on the
eigenvalues >= x_i, so they are exactly the full fit's; (a) and (b) make it unlikely that
the full fit's minimum lies deeper. If the basis would exceed ``max_fraction`` * M, a full
eigensolve is cheaper: the matrix falls back to the full spectrum (``spectrum = 'full'``;
with the Gram operator the Gram matrix is reused).

**When it pays.** The converged window needs a Krylov basis of about 2.5 k vectors, and k
is at least M / 8, so a partial spectrum costs ~M^3 flops of matrix products after the
Gram matrix, against the full eigensolver's ~(4/3) M^3 flops at lower speed: about 2x less
eigensolver time at M = 4096 on this CPU, a wash once the Gram product (N M^2) is counted
(benchmarks/scale.py). It is needed where a full solve is impossible or wasteful: M beyond
a few ten thousand (no M x M matrix with the matvec operator, memory O(M L)), and matrices
the max_evals / max_N filter would otherwise skip.

**Metrics from a partial spectrum** (top k eigenvalues, exact trace):

exact (as from the full spectrum, given xmin inside the top k):
    alpha, xmin, xmax, D, sigma, num_pl_spikes, alpha_weighted = alpha log10(lambda_max),
    lambda_max, log_spectral_norm, log_norm = log10(trace) (exact trace),
    stable_rank = trace / lambda_max (exact trace),
    pl_lambda_min = xmin * M / trace (the ERG normalization uses the exact trace / M).
approximate (listed per row in the ``approx`` column):
    log_alpha_norm = log10(sum_top lambda^alpha + sum_rest lambda^alpha), the rest from the
    remainder model; erg_num, erg_lambda_min, erg_delta when the ERG / TRACE-LOG tail
    (grown from lambda_max downward over log(lambda M / trace)) does not close inside the
    computed top k, which is the usual case (ERG tails span half the spectrum or more):
    the running sum is then continued over the remainder model.
not computable (NaN): entropy, matrix_rank, trace_log_energy (they need every eigenvalue,
    down to the numerically zero ones), and the Marchenko-Pastur and correlation-trap
    columns (they need the bulk).
If the computed top reaches the numerically zero eigenvalues (a rank-deficient matrix), it
holds the whole nonzero spectrum and every column is exact.

**Remainder model.** The M - k eigenvalues below the computed top are modeled by the
quantiles of a Marchenko-Pastur law whose mean and variance match the exact remainder sum
(trace - sum_top) and the remainder sum of squares (sum(lambda^2) - sum_top lambda^2),
clipped at the smallest computed eigenvalue. The bulk of a weight matrix is close to MP,
so this is a physical guess, not a bound; benchmarks/scale.py reports its error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.linalg

from .esd import LARGE_M, Precision, gram_eigenvalues, gram_matrix, oriented, row_chunks, symmetric_eigenvalues
from .metrics import METRIC_COLUMNS, numerical_rank_tolerance, spectrum_metrics, training_warning
from .powerlaw import EVALS_THRESHOLD, _ks_rows, fit_power_law

Operator = Literal["auto", "matvec", "gram"]

APPROX_LAST = ("log_alpha_norm",)
APPROX_ERG = ("erg_num", "erg_lambda_min", "erg_delta")
NOT_COMPUTABLE = ("entropy", "matrix_rank", "trace_log_energy")
GRAM_MAX_M = 8192
"""operator="auto" forms the M x M Gram matrix up to this M (one big matrix product, then
cheap products with it; measured faster than products with W on this machine) and applies
W and W^T beyond (no M x M matrix at all)."""
MIN_WINDOW = 64
"""The fit rule is tried only on at least this many converged eigenvalues (the power-law
fit switches to its small-sample estimator below 20 points; a window must not)."""
CONVERT_WHOLE_BYTES = 128 * 2**20
"""A float32 W is converted to float64 once when the copy is at most this big, else one
row chunk per product (exact precision, bounded memory)."""


@dataclass(frozen=True)
class PartialConfig:
    """Knobs of the partial-spectrum solver (defaults measured by benchmarks/scale.py)."""

    k0: int = 16
    k0_fraction: float = 0.125
    block: int = 0  # 0: by M (see block_size)
    tol_exact: float = 1e-6
    tol_fast: float = 1e-4
    margin: float = 0.25
    trend: float = 0.5
    growth: float = 1.25
    max_fraction: float = 0.35
    probes: int = 32
    operator: Operator = "auto"  # gram up to GRAM_MAX_M, matvec beyond
    seed: int = 0

    def tol(self, precision: Precision) -> float:
        return self.tol_exact if precision == "exact" else self.tol_fast

    def block_size(self, M: int) -> int:
        """``block`` if set, else 8 up to M = 1024, 16 up to 8192, 32 beyond: a small block
        converges in fewer products on flat spectra, a larger one uses the BLAS better."""
        if self.block:
            return self.block
        return 8 if M <= 1024 else 16 if M <= 8192 else 32


@dataclass
class PartialSpectrum:
    """The computed part of an ESD.

    Attributes:
        top: the k largest eigenvalues, descending (float64). For ``kind == 'full'`` (a
            fallback) every eigenvalue, descending.
        N, M: the matrix shape (N >= M).
        trace: sum of all M eigenvalues = ||W||_F^2, exact.
        sumsq: sum of all eigenvalues squared = ||W^T W||_F^2 (exact or estimated).
        sumsq_exact: whether ``sumsq`` is exact.
        kind: 'partial', or 'full' after a fallback to a full eigensolve.
        krylov_dim: size of the Krylov basis that was built (0 for a direct full solve).
        operator: 'matvec' or 'gram'.
    """

    top: np.ndarray
    N: int
    M: int
    trace: float
    sumsq: float
    sumsq_exact: bool
    kind: str = "partial"
    krylov_dim: int = 0
    operator: str = "matvec"
    checkpoints: list = field(default_factory=list)

    @property
    def k(self) -> int:
        return int(self.top.size)


# ----------------------------------------------------------------------------- operators


class GramOperator:
    """The operator V -> A^T A V for A = W long side first, in the working dtype.

    ``kind='matvec'`` applies A and A^T (row chunks converted on the fly when A's dtype is
    not the working dtype and a whole copy would be large); ``kind='gram'`` forms the M x M
    Gram matrix once. ``trace`` (float64 sum of squares of A) is exact either way.
    """

    def __init__(self, W: np.ndarray, precision: Precision, kind: str = "matvec"):
        A = oriented(np.asarray(W))
        self.dtype = np.float64 if precision == "exact" else np.float32
        self.N, self.M = A.shape
        self.kind = kind
        self.trace = float(
            sum(
                np.einsum("ij,ij->", c, c, dtype=np.float64)
                for c in (A[s:e] for s, e in row_chunks(A.shape[0], A.shape[1], A.dtype.itemsize))
            )
        )
        self.G = None
        self.A = None
        if kind == "gram":
            self.G = gram_matrix(A, precision)
        elif A.dtype == self.dtype or A.size * np.dtype(self.dtype).itemsize <= CONVERT_WHOLE_BYTES:
            self.A = A.astype(self.dtype, copy=False)
        else:
            self.A = A  # converted chunk by chunk
        self.products = 0

    def __call__(self, V: np.ndarray) -> np.ndarray:
        self.products += V.shape[1]
        if self.G is not None:
            return self.G @ V
        A = self.A
        if A.dtype == self.dtype:
            return A.T @ (A @ V)
        out = np.zeros((self.M, V.shape[1]), dtype=self.dtype)
        for start, stop in row_chunks(self.N, self.M, np.dtype(self.dtype).itemsize):
            chunk = A[start:stop].astype(self.dtype)
            out += chunk.T @ (chunk @ V)
        return out

    def exact_sumsq(self) -> float | None:
        """||A^T A||_F^2 when the Gram matrix is formed (None otherwise)."""
        if self.G is None:
            return None
        return float(
            sum(
                np.einsum("ij,ij->", self.G[s:e], self.G[s:e], dtype=np.float64)
                for s, e in row_chunks(self.M, self.M, self.G.dtype.itemsize)
            )
        )


# ----------------------------------------------------------------------------- block Lanczos


class BlockLanczos:
    """Block Lanczos with full reorthogonalization on a symmetric PSD operator.

    ``extend(L)`` grows the orthonormal Krylov basis Q to L columns (at most M);
    ``ritz_values()`` returns the eigenvalues of T = Q^T X Q (descending) from its band.
    ``gq_sumsq`` accumulates ||X Q||_F^2 = trace(Q^T X^2 Q), used for sum(lambda^2).
    """

    def __init__(self, apply, M: int, dtype, block: int, seed: int):
        self.apply = apply
        self.M = M
        self.dtype = dtype
        self.b = max(1, min(block, M))
        self.rng = np.random.default_rng(seed)
        self.Q = np.empty((M, 0), dtype=dtype)
        self.band = np.zeros((2 * self.b + 1, 0))  # lower band storage of T
        self.L = 0
        self.bw = self.b  # bandwidth of T so far (2b - 1 after a pivoted step)
        self.gq_sumsq = 0.0
        self.X = self._random_orthonormal(self.b)

    def _random_orthonormal(self, cols: int) -> np.ndarray:
        Z = self.rng.standard_normal((self.M, cols)).astype(self.dtype)
        if self.L:
            for _ in range(2):
                Z -= self.Q[:, : self.L] @ (self.Q[:, : self.L].T @ Z)
        return np.linalg.qr(Z)[0]

    def _grow_storage(self, need: int) -> None:
        if need <= self.Q.shape[1]:
            return
        cap = min(self.M, max(need, int(self.Q.shape[1] * 1.5) + self.b))
        Q = np.empty((self.M, cap), dtype=self.dtype)
        Q[:, : self.L] = self.Q[:, : self.L]
        band = np.zeros((self.band.shape[0], cap))
        band[:, : self.L] = self.band[:, : self.L]
        self.Q, self.band = Q, band

    def extend(self, target: int) -> None:
        target = min(target, self.M)
        while self.L < target:
            X = self.X
            b = X.shape[1]
            self._grow_storage(self.L + b)
            Y = self.apply(X)
            self.gq_sumsq += float(np.einsum("ij,ij->", Y, Y, dtype=np.float64))
            A = X.T @ Y
            A = (A + A.T) / 2
            L0 = self.L
            for d in range(b):
                self.band[d, L0 : L0 + b - d] = np.diagonal(A, -d)
            self.Q[:, L0 : L0 + b] = X
            self.L = L0 + b
            if self.L >= self.M:
                break
            Qc = self.Q[:, : self.L]
            scale = float(np.sqrt(np.einsum("ij,ij->", Y, Y, dtype=np.float64)))
            for _ in range(2):
                Y -= Qc @ (Qc.T @ Y)
            b_next = min(self.b, self.M - self.L)
            Xn, R = np.linalg.qr(Y)
            diag = np.abs(np.diagonal(R))
            # directions that were (numerically) already in the basis before orthogonalization
            floor = 1000 * np.finfo(self.dtype).eps * max(scale, 1e-300)
            if b_next == b and diag.size == b and diag.min() > floor:
                coupling = R  # upper triangular: T stays banded with bandwidth b
            else:  # (near) breakdown or a short last block: pivoted QR, fresh random directions
                Xn, R, piv = scipy.linalg.qr(Y, mode="economic", pivoting=True, check_finite=False)
                diag = np.abs(np.diagonal(R))
                keep = min(int(np.count_nonzero(diag > floor)), b_next)
                coupling = np.zeros((b_next, b))
                if keep:
                    coupling[:keep, piv] = R[:keep]
                if keep < b_next:
                    extra = self._random_orthonormal_against(Xn[:, :keep], b_next - keep)
                    Xn = np.concatenate([Xn[:, :keep], extra], axis=1)
                else:
                    Xn = Xn[:, :b_next]
                self.bw = 2 * b - 1
            # lower band: T[L + r, L0 + c] = coupling[r, c], offset b - c + r
            cols = np.arange(b)
            for r in range(b_next):
                nz = cols if self.bw > b else cols[r:]
                self.band[b - nz + r, L0 + nz] = coupling[r, nz]
            self.X = np.ascontiguousarray(Xn)

    def _random_orthonormal_against(self, extra_basis: np.ndarray, cols: int) -> np.ndarray:
        Z = self.rng.standard_normal((self.M, cols)).astype(self.dtype)
        for _ in range(2):
            Z -= self.Q[:, : self.L] @ (self.Q[:, : self.L].T @ Z)
            if extra_basis.size:
                Z -= extra_basis @ (extra_basis.T @ Z)
        return np.linalg.qr(Z)[0]

    def ritz_values(self) -> np.ndarray:
        """Eigenvalues of T (descending, float64)."""
        L = self.L
        bw = min(self.bw, max(L - 1, 0))
        ev = scipy.linalg.eig_banded(self.band[: bw + 1, :L], lower=True, eigvals_only=True, check_finite=False)
        return np.clip(ev[::-1], 0.0, None)

    def complement_sumsq_estimate(self, probes: int) -> float:
        """Hutchinson estimate of ||X (I - QQ^T)||_F^2 with Gaussian probes projected off Q."""
        if self.L >= self.M or probes <= 0:
            return 0.0
        Z = self.rng.standard_normal((self.M, probes)).astype(self.dtype)
        Qc = self.Q[:, : self.L]
        for _ in range(2):
            Z -= Qc @ (Qc.T @ Z)
        Y = self.apply(Z)
        return float(np.einsum("ij,ij->", Y, Y, dtype=np.float64)) / probes


# ----------------------------------------------------------------------------- adaptive k


def _converged_count(
    theta: np.ndarray, previous: np.ndarray | None, tol: float, complete: bool, floor: float = 0.0
) -> int:
    """Leading Ritz values that moved by at most ``tol`` (relative to max(value, floor))
    since the last checkpoint."""
    if complete:
        return int(theta.size)
    if previous is None or previous.size == 0:
        return 0
    n = previous.size
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.abs(theta[:n] - previous) / np.maximum(theta[:n], max(floor, np.finfo(float).tiny))
    bad = np.flatnonzero(~(change <= tol))
    return int(bad[0]) if bad.size else n


def window_accepts(
    top_desc: np.ndarray, margin: float, trend: float, tol_rank: float, threshold: float = EVALS_THRESHOLD
) -> tuple[bool, object]:
    """Is the fit on this top window trustworthy? Returns (ok, fit).

    ok when the fit succeeds, num_pl_spikes <= (1 - margin) * k, and every candidate
    xmin among the deepest ``margin`` * k eigenvalues has D >= (1 + trend) * D_best.
    """
    x = np.sort(top_desc[top_desc > tol_rank])
    fit = fit_power_law(x, threshold=threshold)
    k = top_desc.size
    if not fit.ok or fit.num_pl_spikes > (1.0 - margin) * k:
        return False, fit
    xs = x[x > threshold]
    n = xs.size
    deep = np.arange(0, max(0, min(n - 1, int(np.floor(margin * n)))))
    if deep.size and trend > 0:
        logs = np.log(xs)
        suffix = np.cumsum(logs[::-1])[::-1]
        tail_n = (n - np.arange(n - 1)).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            alphas = 1.0 + tail_n / (suffix[:-1] - tail_n * logs[:-1])
        valid = deep[alphas[deep] > 1.0]
        if valid.size:
            Ds = _ks_rows(logs, alphas, tail_n, valid)
            if Ds.min() < (1.0 + trend) * fit.D:
                return False, fit
    return True, fit


def partial_spectrum(
    W: np.ndarray, precision: Precision = "fast", config: PartialConfig = PartialConfig(), force_k: int | None = None
) -> PartialSpectrum:
    """Top eigenvalues of W^T W with adaptive k (see the module docstring).

    Args:
        W: the matrix, either orientation.
        precision: "exact" (float64 operator) or "fast" (float32).
        config: solver knobs.
        force_k: compute (at least) this many converged eigenvalues and stop, no fit rule.
    Returns:
        :class:`PartialSpectrum` (``kind='full'`` after a fallback to a full eigensolve).
    """
    A = oriented(np.asarray(W))
    N, M = A.shape
    kind = config.operator if config.operator != "auto" else ("gram" if M <= GRAM_MAX_M else "matvec")
    op = GramOperator(A, precision, kind)
    tol = config.tol(precision)
    lanczos = BlockLanczos(op, M, op.dtype, config.block_size(M), config.seed)
    b = lanczos.b
    k_want = min(M, max(config.k0, int(np.ceil(config.k0_fraction * M)), 2 * b) if force_k is None else force_k)
    L_max = M if config.max_fraction >= 1 else int(config.max_fraction * M)
    L = min(M, b * int(np.ceil(max(2 * k_want, 4 * b) / b)))
    previous = None
    checkpoints = []
    while True:
        if L > L_max and lanczos.L < M:
            if op.G is not None:  # reuse the Gram matrix (same arithmetic as gram_eigenvalues)
                G, op.G = op.G, None
                raw = (
                    symmetric_eigenvalues(G)
                    if M >= LARGE_M
                    else scipy.linalg.eigvalsh(G, driver="evd", check_finite=False, overwrite_a=True)
                )
                evals = np.clip(raw.astype(np.float64), 0.0, None)[::-1].copy()
            else:
                evals = gram_eigenvalues(A, precision)[::-1].copy()
            return PartialSpectrum(
                evals, N, M, op.trace, float(np.sum(evals**2)), True, "full", lanczos.L, kind, checkpoints
            )
        lanczos.extend(L)
        theta = lanczos.ritz_values()
        complete = lanczos.L >= M
        tol_rank = numerical_rank_tolerance(float(theta[0]), N, M, np.finfo(op.dtype).eps)
        c = _converged_count(theta, previous, tol, complete, floor=tol_rank)
        checkpoints.append((lanczos.L, c))
        previous = theta
        if c and theta[c - 1] <= tol_rank:
            break  # the converged part reaches the numerically zero eigenvalues: all of the rest
        if c >= (min(M, force_k) if force_k is not None else min(M, max(2 * b, MIN_WINDOW, k_want))):
            top = theta[:c]
            if force_k is not None:
                done = c >= force_k
            else:
                done = window_accepts(top, config.margin, config.trend, tol_rank)[0]
            if done:
                break
        if complete:
            break
        L = min(M, b * int(np.ceil(max(config.growth * lanczos.L, lanczos.L + b) / b)))
    top = theta[:c] if c else theta[:0]
    exact_sumsq = op.exact_sumsq()
    if exact_sumsq is not None:
        sumsq, sumsq_exact = exact_sumsq, True
    elif complete:
        sumsq, sumsq_exact = float(np.sum(theta**2)), True
    else:
        sumsq = lanczos.gq_sumsq + lanczos.complement_sumsq_estimate(config.probes)
        sumsq_exact = False
    return PartialSpectrum(
        top.astype(np.float64), N, M, op.trace, sumsq, sumsq_exact, "partial", lanczos.L, kind, checkpoints
    )


# ----------------------------------------------------------------------------- remainder model


def _mp_quantiles(count: int, mean: float, var: float) -> np.ndarray:
    """``count`` quantiles (descending) of a Marchenko-Pastur law with this mean and variance."""
    if count <= 0:
        return np.zeros(0)
    if mean <= 0:
        return np.zeros(count)
    y = var / mean**2
    if not np.isfinite(y) or y <= 1e-12:
        return np.full(count, mean)
    lo, hi = mean * (1 - np.sqrt(y)) ** 2, mean * (1 + np.sqrt(y)) ** 2
    zero_mass = max(0.0, 1.0 - 1.0 / y)
    t = np.linspace(0.0, np.pi, 4097)
    x = lo + (hi - lo) * (1 - np.cos(t)) / 2  # dense near both edges
    with np.errstate(divide="ignore", invalid="ignore"):
        dens = np.sqrt(np.clip((hi - x) * (x - lo), 0, None)) / (2 * np.pi * mean * y * x)
    dens = np.nan_to_num(dens)
    cdf = np.concatenate([[0.0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(x))])
    cdf = zero_mass + (1 - zero_mass) * cdf / cdf[-1]
    p = (np.arange(count) + 0.5) / count
    q = np.where(p <= zero_mass, 0.0, np.interp(p, cdf, x))
    return q[::-1]


def remainder_model(ps: PartialSpectrum) -> np.ndarray:
    """Modeled eigenvalues below the computed top (descending): MP quantiles matching the
    remainder's mean and variance, clipped at the smallest computed eigenvalue."""
    rest = ps.M - ps.k
    if rest <= 0:
        return np.zeros(0)
    s1 = max(ps.trace - float(ps.top.sum()), 0.0)
    s2 = max(ps.sumsq - float(np.sum(ps.top**2)), 0.0)
    mean = s1 / rest
    var = max(s2 / rest - mean**2, 0.0)
    q = _mp_quantiles(rest, mean, var)
    return np.minimum(q, ps.top[-1]) if ps.k else q


# ----------------------------------------------------------------------------- metrics


def partial_metrics(
    ps: PartialSpectrum, eps: float = np.finfo(np.float64).eps, threshold: float = EVALS_THRESHOLD
) -> dict:
    """The metric columns of a partial spectrum (see the module docstring for which are
    exact, approximate or NaN), plus ``spectrum``, ``k``, ``approx``, ``status``, ``reason``."""
    N, M = ps.N, ps.M
    if ps.kind == "full":
        return {
            **spectrum_metrics(ps.top, N, M, eps=eps, threshold=threshold),
            "spectrum": "full",
            "k": M,
            "approx": "",
        }
    top = np.asarray(ps.top, dtype=np.float64)
    row: dict = {c: np.nan for c in METRIC_COLUMNS}
    row.update(warning="", spectrum="partial", k=int(top.size), approx="")
    if top.size == 0 or not np.all(np.isfinite(top)) or not np.isfinite(ps.trace):
        return {**row, "status": "failed", "reason": "partial spectrum did not converge or is not finite"}
    lambda_max = float(top[0])
    if lambda_max <= 0.0 or ps.trace <= 0.0:
        return {**row, "status": "failed", "reason": "all-zero matrix"}
    tol = numerical_rank_tolerance(lambda_max, N, M, eps)
    if top[-1] <= tol or top.size >= M:
        # the computed part holds every nonzero eigenvalue: the full metrics are exact
        evals = np.concatenate([top, np.zeros(M - top.size)])
        full = spectrum_metrics(evals, N, M, eps=eps, threshold=threshold)
        full["log_norm"] = float(np.log10(ps.trace))
        full["stable_rank"] = ps.trace / lambda_max
        return {**full, "spectrum": "partial", "k": int(top.size), "approx": ""}
    row.update(
        lambda_max=lambda_max,
        log_norm=float(np.log10(ps.trace)),
        log_spectral_norm=float(np.log10(lambda_max)),
        stable_rank=ps.trace / lambda_max,
    )
    fit = fit_power_law(top[top > tol], threshold=threshold)
    if not fit.ok:
        return {**row, "status": "failed", "reason": f"power-law fit failed: {fit.reason}"}
    rest = remainder_model(ps)
    scale = M / ps.trace
    approx = list(APPROX_LAST)
    with np.errstate(divide="ignore"):
        logs_top = np.log(top * scale)
    running = np.cumsum(logs_top)
    below = np.flatnonzero(running < 0.0)
    if below.size:
        erg_num, erg_min = int(below[0]) + 1, float(top[below[0]] * scale)
    else:
        with np.errstate(divide="ignore"):
            running_rest = running[-1] + np.cumsum(np.log(rest * scale))
        below = np.flatnonzero(running_rest < 0.0)
        if below.size:
            erg_num, erg_min = top.size + int(below[0]) + 1, float(rest[below[0]] * scale)
        else:
            erg_num, erg_min = M, float(rest[-1] * scale) if rest.size else float(top[-1] * scale)
        approx += list(APPROX_ERG)
    pl_lambda_min = fit.xmin * scale
    row.update(
        alpha=fit.alpha,
        xmin=fit.xmin,
        xmax=fit.xmax,
        D=fit.D,
        sigma=fit.sigma,
        num_pl_spikes=int(np.count_nonzero(top >= fit.xmin)),
        alpha_weighted=fit.alpha * np.log10(lambda_max),
        log_alpha_norm=float(np.log10(np.sum(top**fit.alpha) + np.sum(rest**fit.alpha))),
        erg_num=erg_num,
        erg_lambda_min=erg_min,
        pl_lambda_min=pl_lambda_min,
        erg_delta=pl_lambda_min - erg_min,
        warning=training_warning(fit.alpha),
        approx=",".join(approx),
    )
    return {**row, "status": "success", "reason": ""}


def truncated_spectrum(evals: np.ndarray, k: int, N: int) -> PartialSpectrum:
    """A PartialSpectrum from the top k of a known full spectrum (for tests and benchmarks)."""
    e = np.sort(np.asarray(evals, dtype=np.float64))[::-1]
    return PartialSpectrum(e[:k].copy(), N, e.size, float(e.sum()), float(np.sum(e**2)), True)


def with_config(config: PartialConfig, **changes) -> PartialConfig:
    return replace(config, **changes)
