"""Change points of a metric over training steps, with a permutation null.

A series ``y_0 .. y_{n-1}`` (ordered by step) is segmented by binary segmentation with a
least-squares cost, tested at every split against permutations of the tested segment.

Models:

``mean`` (default): circular binary segmentation (CBS; Olshen, Venkatraman, Lucito & Wigler
    2004, *Biostatistics* 5:557). A segment ``S`` of n points with sum T is split by an *arc*
    ``S[i:j]`` (ℓ = j - i points, sum A) against the rest of S, each with its own mean. The
    split's least-squares gain is

        gain(i, j) = n (A - ℓ T / n)^2 / (ℓ (n - ℓ)),

    the drop of ``cost(S) = sum (y - mean(S))^2``. An arc touching an end of S is a single
    step change (one change point); an arc inside S is a transient (a bump or dip: two change
    points), which plain binary segmentation misses. Every piece is at least ``min_size`` points.
``linear``: plain binary segmentation of a piecewise-linear fit in the position i (a change
    of level and/or slope at one split t): ``cost`` is the residual sum of squares of the
    least-squares line over a piece, ``gain(t) = cost(S) - cost(S[:t]) - cost(S[t:])``.
``rate``: the ``mean`` model on the increments ``d_i = y_{i+1} - y_i`` (each labelled by its
    end step): a change in how fast the metric moves per checkpoint interval. A steady
    trend has exchangeable increments and no rate change; a transition (a sigmoid step in
    y, a burst) is an arc of larger increments, reported as two change points: where the
    fast change starts and where it ends. This is the test of an *abrupt* change against a
    metric's own drift; ``mean`` also flags a steady drift (its best split sits mid-trend).

The statistic of a segment is the share of its cost the best split explains,
``R = max gain / cost(S)`` in [0, 1] (0 for a constant segment). The null is R on B random
permutations of the segment's values (seeded): p = (1 + #{R_perm >= R}) / (1 + B), exact
(never anti-conservative) when the values carry no order. Binary segmentation tests the
whole series, then, while a split is significant (p < alpha), each new piece again, up to
``max_changes`` change points.

What a small p-value says: the values are ordered in time as a change there would order
them. Under ``mean`` a steady drift gives small p-values too (its best split sits
mid-trend); ``rate`` asks whether the metric moved faster in some interval than its own
drift. Read the step with the size of the change (``before``, ``after``: means of the values,
or of the increments for ``rate``) and against a control (the same detection on randomized
weights, an untrained model, or a metric that should not move).

Positions are indices of the series, not steps: on a log-spaced checkpoint schedule the
``linear`` model is linear in log(step) and ``rate`` compares increments per checkpoint
interval. A change is reported at ``step`` (the first step of the new piece) and
``step_before`` (the last step of the old one): it happened in (step_before, step].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import SpectrascopeError

CostModel = Literal["mean", "linear", "rate"]
DEFAULT_PERMUTATIONS = 999
CHANGE_COLUMNS = ["rank", "test", "step", "step_before", "before", "after", "delta", "share", "p_value", "n_points"]
_PERMUTATION_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Split:
    """The best split of a segment of length n: the arc ``[start, stop)`` against the rest
    (``start == 0`` or ``stop == n`` for a single change), and its statistic ``share`` (R)."""

    start: int
    stop: int
    share: float


@dataclass(frozen=True)
class ChangePoint:
    """One detected change; ``index`` is the first position of the new piece.

    Attributes:
        index: position in the series where the new piece starts.
        step, step_before: the steps at ``index`` and ``index - 1``.
        before, after: means of the pieces on either side (within the tested segment).
        share: R of the test that found it (share of the segment's cost explained).
        p_value: permutation p-value of that test.
        rank: order in the series (by position).
        test: 1 for the test of the whole series, then in order of testing (an inner arc
            gives two change points of one test).
    """

    index: int
    step: float
    step_before: float
    before: float
    after: float
    share: float
    p_value: float
    rank: int
    test: int

    @property
    def delta(self) -> float:
        return self.after - self.before


def _varies(total_cost: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether a segment's cost is more than rounding (relative to its values)."""
    return total_cost > 1e-12 * np.maximum(np.sum(y * y, axis=1), 1e-300)


def _arc_statistic(y: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, stop, R) of the best arc of each row of y (B, n) under the mean model."""
    B, n = y.shape
    s = np.concatenate([np.zeros((B, 1)), np.cumsum(y, axis=1)], axis=1)  # (B, n + 1)
    total = s[:, -1]
    cost = np.sum(y * y, axis=1) - total * total / n
    i, j = np.triu_indices(n + 1, k=1)
    length = j - i
    ok = (length >= min_size) & (n - length >= min_size)
    ok &= ((i == 0) | (i >= min_size)) & ((j == n) | (n - j >= min_size))
    i, j, length = i[ok], j[ok], length[ok]
    arc = s[:, j] - s[:, i]
    gain = n * (arc - length * total[:, None] / n) ** 2 / (length * (n - length))
    best = np.argmax(gain, axis=1)
    share = np.where(_varies(cost, y), gain[np.arange(B), best] / np.maximum(cost, 1e-300), 0.0)
    return i[best], j[best], np.clip(share, 0.0, 1.0)


def _line_prefix_costs(y: np.ndarray) -> np.ndarray:
    """(B, n + 1): residual sum of squares of the least-squares line over y[:, :t], t = 0 .. n."""
    B, n = y.shape
    x = np.arange(n, dtype=np.float64)
    zero = np.zeros((B, 1))
    c = np.maximum(np.arange(n + 1, dtype=np.float64), 1.0)
    sx, sxx = np.concatenate([[0.0], np.cumsum(x)]), np.concatenate([[0.0], np.cumsum(x * x)])
    sy = np.concatenate([zero, np.cumsum(y, axis=1)], axis=1)
    syy = np.concatenate([zero, np.cumsum(y * y, axis=1)], axis=1)
    sxy = np.concatenate([zero, np.cumsum(y * x, axis=1)], axis=1)
    vxx, vxy, vyy = sxx - sx * sx / c, sxy - sx * sy / c, syy - sy * sy / c
    fit = np.where(vxx > 1e-9, vxy * vxy / np.where(vxx > 1e-9, vxx, 1.0), 0.0)
    return np.maximum(vyy - fit, 0.0)


def _line_statistic(y: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, stop, R) of the best single split of each row of y (B, n) under the linear model."""
    B, n = y.shape
    prefix = _line_prefix_costs(y)
    suffix = _line_prefix_costs(y[:, ::-1])[:, ::-1]  # a line fit does not care which way x runs
    total = prefix[:, n]
    splits = np.arange(min_size, n - min_size + 1)
    gain = total[:, None] - prefix[:, splits] - suffix[:, splits]
    best = np.argmax(gain, axis=1)
    share = np.where(_varies(total, y), gain[np.arange(B), best] / np.maximum(total, 1e-300), 0.0)
    return np.zeros(B, dtype=int), splits[best], np.clip(share, 0.0, 1.0)


def _statistic(y: np.ndarray, model: CostModel, min_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if model == "mean":
        return _arc_statistic(y, min_size)
    if model == "linear":
        return _line_statistic(y, min_size)
    raise SpectrascopeError(f"unknown change-point model {model!r} (expected mean or linear)")


def best_split(values: Sequence[float] | np.ndarray, model: CostModel = "mean", min_size: int = 2) -> Split:
    """The best split of one series (n,) and its statistic R (see the module docstring)."""
    y = np.asarray(values, dtype=np.float64)[None, :]
    if y.shape[1] < 2 * min_size:
        raise SpectrascopeError(f"a series of {y.shape[1]} points cannot be split into pieces of at least {min_size}")
    start, stop, share = _statistic(y, model, min_size)
    return Split(int(start[0]), int(stop[0]), float(share[0]))


def permutation_test(
    values: Sequence[float] | np.ndarray,
    model: CostModel = "mean",
    min_size: int = 2,
    n_perm: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> tuple[Split, float]:
    """(best split, permutation p-value) of one series (n,) against ``n_perm`` permutations."""
    y = np.asarray(values, dtype=np.float64)
    split = best_split(y, model, min_size)
    rng = np.random.default_rng(seed)
    per_row = 8 * (y.size + 1) ** 2 * 4  # the arc statistic's (B, pairs) temporaries
    chunk = max(1, _PERMUTATION_CHUNK_BYTES // per_row)
    exceed, done = 0, 0
    while done < n_perm:
        b = min(chunk, n_perm - done)
        permuted = rng.permuted(np.tile(y, (b, 1)), axis=1)
        exceed += int(np.sum(_statistic(permuted, model, min_size)[2] >= split.share - 1e-12))
        done += b
    return split, (1 + exceed) / (1 + n_perm)


def detect_changes(
    values: Sequence[float] | np.ndarray,
    steps: Sequence[float] | np.ndarray | None = None,
    model: CostModel = "mean",
    min_size: int = 2,
    n_perm: int = DEFAULT_PERMUTATIONS,
    alpha: float = 0.05,
    max_changes: int = 3,
    seed: int = 0,
) -> list[ChangePoint]:
    """Change points of one series by (circular) binary segmentation (module docstring).

    Args:
        values: (n,) the metric, ordered by step; finite (drop NaNs first).
        steps: (n,) the steps (default 0 .. n-1), used only to label the changes.
    Returns:
        The change point(s) of the test of the whole series (``test`` 1, reported whatever
        its p-value), then those of significant tests inside significant pieces, ordered by
        position. Empty when the series is too short to split or constant.
    """
    y = np.asarray(values, dtype=np.float64)
    x = np.arange(y.size, dtype=np.float64) if steps is None else np.asarray(steps, dtype=np.float64)
    if y.size != x.size:
        raise SpectrascopeError(f"{y.size} values but {x.size} steps")
    if not np.all(np.isfinite(y)):
        raise SpectrascopeError("the series has NaN or infinite values; drop them first")
    if model == "rate":  # the increment into step x[i + 1] is labelled x[i + 1], the one before x[i]
        return (
            detect_changes(np.diff(y), x[1:], "mean", min_size, n_perm, alpha, max_changes, seed) if y.size > 1 else []
        )
    if y.size < 2 * min_size:
        return []
    found: list[tuple[int, float, float, int]] = []  # (index, share, p, test)
    queue, test = [(0, y.size)], 0
    while queue and len(found) < max_changes:
        a, b = queue.pop(0)
        test += 1
        split, p = permutation_test(y[a:b], model, min_size, n_perm, seed + test)
        if split.share == 0.0 and test == 1:
            return []  # a constant series
        if test > 1 and p >= alpha:
            continue
        bounds = [a + t for t in (split.start, split.stop) if 0 < t < b - a]
        found.extend((t, split.share, p, test) for t in bounds)
        if p < alpha:
            edges = [a, *bounds, b]
            queue.extend((lo, hi) for lo, hi in pairwise(edges) if hi - lo >= 2 * min_size)
    found.sort()
    edges = [0] + [f[0] for f in found] + [y.size]
    return [
        ChangePoint(
            t,
            float(x[t]),
            float(x[t - 1]),
            float(y[edges[k] : t].mean()),
            float(y[t : edges[k + 2]].mean()),
            share,
            p,
            k + 1,
            test,
        )
        for k, (t, share, p, test) in enumerate(found)
    ]


def bh_q_values(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (NaN p-values stay NaN and do not count in the family)."""
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return q
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order] * ok.size / np.arange(1, ok.size + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def change_points(
    table: pd.DataFrame,
    metrics: Sequence[str],
    by: Sequence[str] = (),
    step: str = "step",
    model: CostModel = "mean",
    min_size: int = 2,
    n_perm: int = DEFAULT_PERMUTATIONS,
    alpha: float = 0.05,
    max_changes: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Change points of every metric series of a tidy table.

    Args:
        table: one row per (series key, step); the ``by`` columns name a series (e.g. ``name``).
        metrics: the value columns to test, each a series per ``by`` group.
    Returns:
        One row per change: the ``by`` columns, ``metric``, ``rank``, ``test``, ``step``,
        ``step_before``, ``before``, ``after``, ``delta``, ``share``, ``p_value``, ``n_points``,
        ``q_value`` (Benjamini-Hochberg over the whole-series tests (test 1) of all series:
        the family "does this series change at all"; NaN for later tests) and ``significant``
        (q < alpha for test 1, p < alpha for later tests, which run only inside pieces
        of a significant split). A series with fewer than ``2 * min_size`` finite points,
        or a constant one, has no row.
    """
    missing = [c for c in [step, *by, *metrics] if c not in table.columns]
    if missing:
        raise SpectrascopeError(
            f"no column {missing[0]!r} in the table (columns: {', '.join(map(str, table.columns))})"
        )
    rows = []
    groups = table.groupby(list(by), sort=True, dropna=False) if by else [((), table)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        group = group.sort_values(step)
        for metric in metrics:
            values = pd.to_numeric(group[metric], errors="coerce").to_numpy(dtype=np.float64)
            ok = np.isfinite(values)
            steps = group[step].to_numpy(dtype=np.float64)[ok]
            for change in detect_changes(values[ok], steps, model, min_size, n_perm, alpha, max_changes, seed):
                record = {k: v for k, v in asdict(change).items() if k != "index"}
                rows.append(
                    {**dict(zip(by, key)), "metric": metric, **record, "delta": change.delta, "n_points": int(ok.sum())}
                )
    out = pd.DataFrame(rows, columns=[*by, "metric", *CHANGE_COLUMNS])
    whole = out["test"] == 1
    out["q_value"] = np.nan
    if whole.any():  # one q per series: an inner arc's two change points share their test
        tested = out[whole].drop_duplicates([*by, "metric"])
        q = pd.Series(bh_q_values(tested["p_value"].to_numpy()), index=tested.index)
        keys = tested[[*by, "metric"]].astype(str).agg("\x1f".join, axis=1)
        q_of = dict(zip(keys, q))
        out.loc[whole, "q_value"] = out.loc[whole, [*by, "metric"]].astype(str).agg("\x1f".join, axis=1).map(q_of)
    out["significant"] = np.where(whole, out["q_value"] < alpha, out["p_value"] < alpha)
    return out.reset_index(drop=True)


CHANGE_MODELS: tuple[CostModel, ...] = ("rate", "mean")
"""The models the reports run: an abrupt change against the metric's drift, and a level change."""


def change_points_by_model(
    table: pd.DataFrame,
    metrics: Sequence[str],
    by: Sequence[str] = (),
    models: Sequence[CostModel] = CHANGE_MODELS,
    **kwargs,
) -> pd.DataFrame:
    """:func:`change_points` under each model, stacked with a ``model`` column first
    (Benjamini-Hochberg within each model's family of series)."""
    frames = [change_points(table, metrics, by, model=model, **kwargs) for model in models]
    frames = [f.assign(model=m) for f, m in zip(frames, models)]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return out[["model"] + [c for c in out.columns if c != "model"]]
