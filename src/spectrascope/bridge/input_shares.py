"""Eigenmode overlap from one pass: per text, the variance of a matrix's inputs along its modes.

For a weight matrix W (out, d_in) with right singular vectors v_i (the directions it reads)
and a domain's input vectors x_t (what W multiplies, see matrix_inputs.py), the overlap
(overlap.py) needs, for a part of the modes (the tail, the ERG tail: the leading p modes),
sum_{i<p} v_i^T C v_i and tr(C) of the domain's input covariance C. Both are sums over tokens,
so they split over texts: for text j with n_j statistic tokens

    R_pj = sum_t sum_{i<p} (v_i . x_t)^2      s_j = sum_t x_t      q_j = sum_t |x_t|^2

and, with the domain mean mu = sum_j s_j / N (N = sum_j n_j) and V_p the leading p rows of V^T,
text j's centered sums are

    A_pj = R_pj - 2 (V_p mu) . (V_p s_j) + n_j |V_p mu|^2      (variance along the p modes)
    B_j  = q_j - 2 mu . s_j + n_j |mu|^2                         (total variance)

(sum_t v_i . x_t = v_i . s_j: the modes' first moments come from the input sums, so only the
squares are summed per mode), and a part's share, sum_j A_pj / sum_j B_j, has a bootstrap
interval over texts (resampling j; mu is kept at the full sample's mean, an O(1/N)
approximation). The leading :attr:`InputShares.top_modes` modes keep their squares one by one.

**Shifted inputs.** A and B are unchanged when every x_t is replaced by x_t - m for any fixed m,
so the sums are taken of inputs shifted by the mean of the first batch an input sees (per
domain): then no sum is dominated by a large mean (massive channels have means far above their
spread), the per-unit sums of at most a few hundred tokens are accurate in float32, and only
those small sums are kept in float64.

**Which modes are projected** (:class:`ModePlan`). A wide matrix (rank < d_in: k, v and
down_proj on SmolLM2) projects all its modes; the bulk is then the rank's sum minus the tail.
When the modes span the input space (rank = d_in: square and tall matrices), the modes'
squares add up to |x_t|^2, so the leading p modes' sum is also |x_t|^2 minus the sum over the
modes from p on: the plan projects the leading modes, the trailing ones, or the leading modes
up to the smaller part and the trailing ones from the larger, whichever is fewest (SmolLM2's
gate and up projections: 106 and 80 thousand multiply-adds per token and layer instead of 255
and 268), and the bulk is the total minus the tail. All matrices reading one input (q, k, v;
gate, up) are projected in one product. A part read off the trailing modes is exact only as far
as the float32 singular vectors are orthonormal (~1e-7): its error is ~1e-7 of |x_t|^2, nothing
against the total variance, but a large relative error on a tiny part (a channel of 3,000 lying
in a matrix's weakest mode leaves its ERG tail a share of 4e-5, read to ~1e-3 of itself, 4e-8
absolute; the leading modes' direct sum reads it to ~1e-8). Float64 trailing products did not
change that (measured).

**Units of the bootstrap.** j runs over *units* of consecutive texts of a batch holding about
:data:`UNIT_TOKENS` statistic tokens: a 128-token text is a unit of its own, while ~5 calendar
or arithmetic texts of 13-15 tokens share one. Texts are independent, so resampling groups of
them is a bootstrap over texts; tables give both ``n_texts`` and ``n_units``.

**Robust variant.** The same sums with the input's massive and outlier channels M set to 0
(:mod:`spectrascope.activations.massive`; channels found on a separate calibration sample):
``P' = P - X[:, M] V[:, M]^T`` for the projections, s_j with the channels M zeroed, and
|x_t|^2 summed again over the other channels (|x_t|^2 less a massive channel's square would
lose the rest to float32 cancellation).
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


@dataclass(frozen=True)
class ModePlan:
    """Which modes of one matrix a batch's inputs are projected on, and which sums they give.

    Attributes:
        lead: modes [0, lead) are projected.
        trail: modes [trail, rank) are projected too (``trail == rank``: none).
        rank: the matrix's number of modes; d_in its input dimension.
        prefixes: the part sizes p whose leading-mode sums R_p are kept: the tail, the ERG tail
            and, for a wide matrix, the rank (its bulk is the rank's sum minus the tail).
        top: modes [0, top) whose squares are also kept one by one.
    """

    lead: int
    trail: int
    rank: int
    d_in: int
    prefixes: tuple[int, ...]
    top: int

    @classmethod
    def of(cls, sub: MatrixSubspaces, top_modes: int) -> ModePlan:
        """The fewest projected modes that give every sum (see the module docstring)."""
        rank, d_in = sub.rank, int(sub.Vt.shape[1])
        top = min(top_modes, rank)
        if rank < d_in:  # the modes do not span the inputs: every one is projected
            return cls(rank, rank, rank, d_in, (sub.n_tail, sub.n_erg, rank), top)
        small, large = sorted((sub.n_tail, sub.n_erg))
        options = [  # (projected modes, lead, trail): leading only, mixed, trailing (with the top modes)
            (max(top, large), max(top, large), rank),
            (max(top, small) + rank - large, max(top, small), large),
            (top + rank - max(top, small), top, max(top, small)),
        ]
        _, lead, trail = min(options)
        if trail <= lead:
            lead, trail = rank, rank
        return cls(lead, trail, rank, d_in, (sub.n_tail, sub.n_erg), top)

    @property
    def n_projected(self) -> int:
        return self.lead + self.rank - self.trail

    def rows(self) -> slice | np.ndarray:
        """The projected rows of V^T."""
        if self.trail >= self.rank:
            return slice(0, self.lead)
        return np.r_[0 : self.lead, self.trail : self.rank]

    def token_sums(self, squares: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """(n, len(prefixes) + top) per token: each R_p's term, then the top modes' squares,
        from the squared projections ``squares`` (n, n_projected) and |x_t|^2 ``norms`` (n,)."""
        lead, trailing = squares[:, : self.lead], squares[:, self.lead :]
        columns = []
        for p in self.prefixes:
            if p <= self.lead:
                columns.append(lead[:, :p].sum(dim=1))
            else:  # the modes span the inputs: |x|^2 minus the modes from p on
                columns.append(norms - trailing[:, p - self.trail :].sum(dim=1))
        return torch.cat([torch.stack(columns, dim=1), lead[:, : self.top]], dim=1)


@dataclass
class _UnitSums:
    """Per-unit sums of one variant of one hooked input (see the module docstring)."""

    n: list[torch.Tensor] = field(default_factory=list)
    texts: list[torch.Tensor] = field(default_factory=list)
    s: list[torch.Tensor] = field(default_factory=list)
    q: list[torch.Tensor] = field(default_factory=list)
    R: list[torch.Tensor] = field(default_factory=list)  # (units, columns of every reader's plan)


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
    sums: dict[tuple[str, str], _UnitSums] = field(default_factory=dict)
    shifts: dict[str, torch.Tensor] = field(default_factory=dict)
    top_modes: int = 10

    def plan(self, name: str) -> ModePlan:
        """Matrix ``name``'s :class:`ModePlan`."""
        return ModePlan.of(self.subspaces[name], self.top_modes)

    def projected_modes(self, name: str) -> int:
        """How many modes of matrix ``name`` the inputs are projected on (:meth:`plan`)."""
        return self.plan(name).n_projected

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        return {}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {module: self._hook(key, state) for key, module in self.modules.items()}

    def _hook(self, key: str, state: PassState) -> PreHook:
        excluded = torch.as_tensor(np.asarray(self.excluded.get(key, []), dtype=np.int64))
        plans = [self.plan(name) for name in self.readers[key]]
        edges = np.cumsum([0] + [plan.n_projected for plan in plans])
        stacked: dict[torch.device, torch.Tensor] = {}

        def projection(device: torch.device) -> torch.Tensor:
            """(sum of n_projected, d_in): every reader's projected rows of V^T, stacked."""
            if device not in stacked:
                stacked[device] = torch.cat(
                    [
                        self.subspaces[name].Vt_torch(device)[plan.rows()]
                        for name, plan in zip(self.readers[key], plans, strict=True)
                    ]
                )
            return stacked[device]

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
            Xc = X - shift  # every sum is of shifted inputs (see the module docstring)
            M = excluded.to(X.device)
            unit_n = _row_sum(per_row[used].double(), unit_of_row, n_units).cpu()
            unit_texts = _row_sum(torch.ones_like(unit_of_row, dtype=torch.double), unit_of_row, n_units).cpu()
            V = projection(X.device)
            P = Xc @ V.T  # (n_stat, sum of n_projected)
            squared = Xc.square()
            norms = squared.sum(dim=1)
            s = _row_sum(Xc, token_unit, n_units).double().cpu()

            def add(variant: str, P: torch.Tensor, norms: torch.Tensor, s: torch.Tensor) -> None:
                sums = self.sums.setdefault((key, variant), _UnitSums())
                squares = P.square()
                columns = torch.cat(
                    [
                        plan.token_sums(squares[:, int(edges[i]) : int(edges[i + 1])], norms)
                        for i, plan in enumerate(plans)
                    ],
                    dim=1,
                )
                sums.n.append(unit_n)
                sums.texts.append(unit_texts)
                sums.s.append(s)
                sums.q.append(_row_sum(norms, token_unit, n_units).double().cpu())
                sums.R.append(_row_sum(columns, token_unit, n_units).double().cpu())

            add("raw", P, norms, s)
            if M.numel():  # the excluded channels' part removed from every sum
                XM = Xc[:, M]
                robust_s = s.clone()
                robust_s[:, M.cpu()] = 0.0
                squared[:, M] = 0.0  # summed again, not subtracted: a massive channel would cancel the rest
                add("robust", P - XM @ V[:, M].T, squared.sum(dim=1), robust_s)
            else:
                add("robust", P, norms, s)

        return hook

    def finish(self, domain: str, n_boot: int = 1000, seed: int = 0) -> tuple[list[dict], dict[str, np.ndarray]]:
        """Overlap rows of this domain (per matrix, part, variant, with intervals over texts) and
        each matrix's :attr:`top_modes` shares (raw); the per-unit sums are freed."""
        rows, modes = [], {}
        for (key, variant), sums in self.sums.items():
            n = torch.cat(sums.n).numpy()
            n_texts = int(torch.cat(sums.texts).sum())
            s = torch.cat(sums.s).numpy()
            q = torch.cat(sums.q).numpy()
            R = torch.cat(sums.R).numpy()
            N = n.sum()
            mu = s.sum(axis=0) / N
            total = q - 2 * s @ mu + n * (mu @ mu)  # (units,) B_j
            column = 0
            for name in self.readers[key]:
                sub, plan = self.subspaces[name], self.plan(name)
                widest = max(max(plan.prefixes), plan.top)
                Vd = sub.Vt[:widest].astype(np.float64)
                vmu, vs = Vd @ mu, s @ Vd.T  # (widest,) v_i . mu and (units, widest) v_i . s_j
                cross, square = vmu[None, :] * vs, vmu**2
                leading = {  # (units,) A_p of each kept prefix
                    p: _centered(R[:, column + i], cross[:, :p].sum(axis=1), square[:p].sum(), n)
                    for i, p in enumerate(plan.prefixes)
                }
                top = R[:, column + len(plan.prefixes) : column + len(plan.prefixes) + plan.top]
                column += len(plan.prefixes) + plan.top
                variances = {
                    "tail": leading[sub.n_tail],
                    "erg": leading[sub.n_erg],
                    "bulk": (leading[plan.rank] if plan.rank < plan.d_in else total) - leading[sub.n_tail],
                }
                d_in = plan.d_in
                for part in PARTS:
                    k = len(range(sub.rank)[sub.part_slice(part)])
                    share = ratio_interval(variances[part], total, n_boot, seed)
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
                    per_mode = _centered(top, cross[:, : plan.top], square[: plan.top], n[:, None])
                    modes[name] = per_mode.sum(axis=0) / total.sum()
        self.sums.clear()
        self.shifts.clear()
        return rows, modes


def _centered(squares: np.ndarray, cross: np.ndarray, square: np.ndarray | float, n: np.ndarray) -> np.ndarray:
    """Centered sums A = R - 2 (V mu).(V s_j) + n_j |V mu|^2 (module docstring) from the summed
    squares R, the cross terms (V mu).(V s_j) and |V mu|^2, per unit (n_j: its token count)."""
    return squares - 2 * cross + n * square


def _scaled(interval: Interval, factor: float) -> Interval:
    return Interval(interval.estimate * factor, interval.lo * factor, interval.hi * factor, interval.n_units)


def _row_sum(values: torch.Tensor, token_row: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(n_rows, ...) sums of ``values`` (n, ...) by ``token_row`` (n,): the row (or unit) of each."""
    out = torch.zeros((n_rows, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add_(0, token_row, values)
