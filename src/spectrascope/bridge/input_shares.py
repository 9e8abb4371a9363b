"""Eigenmode overlap from one pass: per text, the variance of a matrix's inputs along each mode.

For a weight matrix W (out, d_in) with right singular vectors v_i (the directions it reads)
and a domain's input vectors x_t (what W multiplies, see matrix_inputs.py), the overlap
(overlap.py) needs v_i^T C v_i and tr(C) of the domain's input covariance C. Both are sums
over tokens, so they split over texts: for text j with n_j statistic tokens

    S1_ij = sum_t v_i . x_t        S2_ij = sum_t (v_i . x_t)^2
    s_j   = sum_t x_t              q_j   = sum_t |x_t|^2

and, with the domain mean mu = sum_j s_j / N (N = sum_j n_j), text j's centered sums are

    A_ij = S2_ij - 2 (v_i . mu) S1_ij + n_j (v_i . mu)^2      (variance along v_i)
    B_j  = q_j - 2 mu . s_j + n_j |mu|^2                        (total variance)

so a part's share, sum_j sum_{i in part} A_ij / sum_j B_j, has a bootstrap interval over
texts (resampling j; mu is kept at the full sample's mean, an O(1/N) approximation).

**Shifted inputs.** A and B are unchanged when every x_t is replaced by x_t - m for any fixed m,
so the sums are taken of inputs shifted by the mean of the first batch an input sees (per
domain): then no sum is dominated by a large mean (massive channels have means far above their
spread), the per-unit sums of at most a few hundred tokens are accurate in float32, and only
those small sums are kept in float64.

The projections cost one (tokens, d_in) x (d_in, m) product per matrix per batch. When the
modes span the whole input space (rank = d_in: square and tall matrices), the modes' variances
add up to the total, sum_i A_ij = B_j, so the bulk is B_j minus the tail and only the first
m = max(tail, ERG tail, top modes) modes are projected (:meth:`InputShares.projected_modes`);
a wide matrix (rank < d_in) projects all its modes. Either way the sums keep what a bootstrap
over texts needs (a few numbers per text and mode instead of a d_in x d_in matrix per text).

**Units of the bootstrap.** j runs over *units* of consecutive texts of a batch holding about
:data:`UNIT_TOKENS` statistic tokens: a 128-token text is a unit of its own, while ~5 calendar
or arithmetic texts of 13-15 tokens share one. Kept per text, a domain of ~300 short texts
needs ~1.4 GB of sums on SmolLM2 (300 texts x 3,264 modes x 30 layers x 2 variants x 2 sums x
8 bytes, plus the input sums); the study's resident memory rose from 2.0 to 4.66 GB during the
short-text domains. Texts are independent, so resampling groups of them is a bootstrap over
texts; tables give both ``n_texts`` and ``n_units``.

**Robust variant.** The same sums with the input's massive and outlier channels set to 0
(:mod:`spectrascope.activations.massive`; channels found on a separate calibration sample):
``P' = P - X[:, M] V[:, M]^T`` for the excluded channels M, a small correction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..stats.bootstrap import Interval, ratio_interval
from ..trace.passes import PassState, PreHook
from .subspaces import MatrixSubspaces

PARTS = ("tail", "erg", "bulk")
UNIT_TOKENS = 64
"""Statistic tokens per bootstrap unit (see the module docstring)."""
VARIANTS = ("raw", "robust")


def bootstrap_units(tokens_per_row: torch.Tensor, unit_tokens: int = UNIT_TOKENS) -> tuple[torch.Tensor, int]:
    """(unit of each row (rows,), number of units): a row joins unit floor(t / unit_tokens),
    t the statistic tokens of the rows before it (units numbered 0.. without gaps).

    Rows of ``unit_tokens`` tokens or more get a unit each; shorter rows share one until it
    holds about ``unit_tokens``.
    """
    before = torch.cumsum(tokens_per_row, 0) - tokens_per_row
    units, index = torch.unique(torch.div(before, unit_tokens, rounding_mode="floor"), return_inverse=True)
    return index, int(units.numel())


@dataclass
class _TextSums:
    """Per-unit sums of one variant for one input (see the module docstring)."""

    n: list[torch.Tensor] = field(default_factory=list)
    texts: list[torch.Tensor] = field(default_factory=list)
    s: list[torch.Tensor] = field(default_factory=list)
    q: list[torch.Tensor] = field(default_factory=list)
    S1: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    S2: dict[str, list[torch.Tensor]] = field(default_factory=dict)


@dataclass
class InputShares:
    """Collector of the per-text projection sums of every matrix reading each hooked input.

    Attributes:
        modules: hooked input key -> the module whose input is hooked (its forward pre-hook
            sees exactly the vectors the matrices multiply).
        readers: hooked input key -> the weight names reading that input.
        subspaces: weight name -> its :class:`~spectrascope.bridge.subspaces.MatrixSubspaces`.
        excluded: hooked input key -> channels the robust variant sets to 0.
        unit_tokens: statistic tokens per bootstrap unit (:func:`bootstrap_units`).
        shifts: hooked input key -> the shift m of its inputs (set by the first batch).
        top_modes: leading modes whose shares :meth:`finish` returns one by one.
    """

    modules: Mapping[str, nn.Module]
    readers: Mapping[str, list[str]]
    subspaces: Mapping[str, MatrixSubspaces]
    excluded: Mapping[str, np.ndarray]
    unit_tokens: int = UNIT_TOKENS
    sums: dict[tuple[str, str], _TextSums] = field(default_factory=dict)
    shifts: dict[str, torch.Tensor] = field(default_factory=dict)
    top_modes: int = 10

    def projected_modes(self, name: str) -> int:
        """How many leading modes of matrix ``name`` the inputs are projected on: all of them
        when they do not span the input space (rank < d_in), else the most any part or the
        top modes need (the bulk is then the total minus the tail)."""
        sub = self.subspaces[name]
        if sub.rank < sub.Vt.shape[1]:
            return sub.rank
        return min(sub.rank, max(sub.n_tail, sub.n_erg, self.top_modes))

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        return {}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {module: self._hook(key, state) for key, module in self.modules.items()}

    def _hook(self, key: str, state: PassState) -> PreHook:
        excluded = torch.as_tensor(np.asarray(self.excluded.get(key, []), dtype=np.int64))

        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            x = args[0] if args else next(iter(kwargs.values()))
            stat = state.stat
            per_row = stat.sum(dim=1)
            used = per_row > 0
            unit_of_row, n_units = bootstrap_units(per_row[used], self.unit_tokens)
            row_unit = torch.zeros(stat.shape[0], dtype=torch.long, device=stat.device)
            row_unit[used] = unit_of_row.to(stat.device)
            token_unit = row_unit[:, None].expand_as(stat)[stat]
            X = x.detach()[stat].float()  # (n_stat, d_in)
            shift = self.shifts.setdefault(key, X.mean(dim=0))
            Xc = X - shift  # every sum is of shifted inputs (see the class docstring)
            M = excluded.to(X.device)
            unit_n = _row_sum(per_row[used].double(), unit_of_row, n_units).cpu()
            unit_texts = _row_sum(torch.ones_like(unit_of_row, dtype=torch.double), unit_of_row, n_units).cpu()

            def add(variant: str, Xv: torch.Tensor, projections: dict[str, torch.Tensor]) -> None:
                sums = self.sums.setdefault((key, variant), _TextSums())
                sums.n.append(unit_n)
                sums.texts.append(unit_texts)
                sums.s.append(_row_sum(Xv, token_unit, n_units).double().cpu())
                sums.q.append(_row_sum(Xv.square().sum(1), token_unit, n_units).double().cpu())
                for name, P in projections.items():
                    sums.S1.setdefault(name, []).append(_row_sum(P, token_unit, n_units).double().cpu())
                    sums.S2.setdefault(name, []).append(_row_sum(P.square(), token_unit, n_units).double().cpu())

            Vt = {
                name: self.subspaces[name].Vt_torch(X.device)[: self.projected_modes(name)]
                for name in self.readers[key]
            }
            raw = {name: Xc @ V.T for name, V in Vt.items()}
            add("raw", Xc, raw)
            if M.numel():  # P' = P - X[:, M] V[:, M]^T: the excluded channels' share removed
                XM = Xc[:, M]
                robust = {name: P - XM @ Vt[name][:, M].T for name, P in raw.items()}
                add("robust", Xc.index_fill(1, M, 0.0), robust)
            else:
                add("robust", Xc, raw)

        return hook

    def finish(self, domain: str, n_boot: int = 1000, seed: int = 0) -> tuple[list[dict], dict[str, np.ndarray]]:
        """Overlap rows of this domain (per matrix, part, variant, with intervals over texts) and
        each matrix's :attr:`top_modes` shares (raw); the per-text sums are freed."""
        rows, modes = [], {}
        for (key, variant), sums in self.sums.items():
            n = torch.cat(sums.n).numpy()
            n_texts = int(torch.cat(sums.texts).sum())
            s = torch.cat(sums.s).numpy()
            q = torch.cat(sums.q).numpy()
            N = n.sum()
            mu = s.sum(axis=0) / N
            total = q - 2 * s @ mu + n * (mu @ mu)  # (texts,) B_j
            for name in self.readers[key]:
                sub = self.subspaces[name]
                S1 = torch.cat(sums.S1[name]).numpy()
                S2 = torch.cat(sums.S2[name]).numpy()
                vmu = S1.sum(axis=0) / N  # (rank,) v_i . mu
                A = S2 - 2 * S1 * vmu[None, :] + n[:, None] * vmu[None, :] ** 2  # (texts, projected modes)
                d_in = sub.Vt.shape[1]
                for part in PARTS:
                    part_modes = sub.part_slice(part)
                    k = len(range(sub.rank)[part_modes])
                    if part == "bulk" and A.shape[1] < sub.rank:  # the modes span the inputs: the rest of the total
                        variance = total - A[:, : sub.n_tail].sum(axis=1)
                    else:
                        variance = A[:, part_modes].sum(axis=1)
                    share = ratio_interval(variance, total, n_boot, seed)
                    random = k / d_in
                    enrich = _scaled(share, 1.0 / random) if random > 0 else None
                    rows.append(
                        {
                            "name": name,
                            "domain": domain,
                            "part": part,
                            "variant": variant,
                            "k": k,
                            "d_in": d_in,
                            "n_tokens": int(N),
                            "n_texts": n_texts,
                            "n_units": int(n.size),
                            **share.columns("share"),
                            "random_share": random,
                            **(
                                enrich.columns("enrichment")
                                if enrich
                                else {"enrichment": np.nan, "enrichment_lo": np.nan, "enrichment_hi": np.nan}
                            ),
                        }
                    )
                if variant == "raw":
                    modes[name] = A[:, : self.top_modes].sum(axis=0) / total.sum()
        self.sums.clear()
        self.shifts.clear()
        return rows, modes


def _scaled(interval: Interval, factor: float) -> Interval:
    return Interval(interval.estimate * factor, interval.lo * factor, interval.hi * factor, interval.n_units)


def _row_sum(values: torch.Tensor, token_row: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(n_rows, ...) sums of ``values`` (n, ...) by ``token_row`` (n,): the row (or unit) of each."""
    out = torch.zeros((n_rows, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add_(0, token_row, values)
