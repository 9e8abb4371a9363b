"""Verified circuits: faithfulness of the top-k edges, and ACDC-style greedy pruning.

A circuit is a set of kept edges; evaluating it runs the clean prompts with **every other
edge patched** to its corrupted value (:class:`~spectrascope.circuits.edge_patching.EdgePatcher`).
Its faithfulness is the share of the clean behaviour it keeps, against the corrupted baseline:

    faithfulness = (mean m(circuit) - mean m(corrupted)) / (mean m(clean) - mean m(corrupted))

(1 = the full model's behaviour, 0 = the corrupted run's). The curve over k keeps the k edges
of largest |score|; intervals are percentile bootstraps over prompts (the ratio of means is
recomputed on each resample). The circuit's size at a target faithfulness is the smallest
evaluated k whose faithfulness reaches it; the grid is refined around that k, and the size's
interval is the same smallest-k rule on each bootstrap resample.

:func:`acdc` is the exact greedy alternative (Conmy et al. 2023): from the full graph, visit
downstream inputs from the logits backwards and each edge into them from the latest upstream
node backwards, and remove the edge for good when patching it (on top of the edges removed
so far) lowers the metric by less than ``threshold`` times the clean - corrupted gap (ACDC
uses a KL divergence; this uses the task metric). One forward per edge: small graphs only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from spectrascope.circuits.edge_patching import EdgePatcher
from spectrascope.errors import SpectrascopeError
from spectrascope.progress import progress_bar

DEFAULT_BOOTSTRAP = 1000
ACDC_MAX_EDGES = 5000
"""Graphs larger than this are refused by :func:`acdc` (one forward per edge)."""

CURVE_COLUMNS = ["k", "faithfulness", "faithfulness_lo", "faithfulness_hi", "metric", "metric_lo", "metric_hi"]
"""Columns of :attr:`FaithfulnessCurve.table`:

- ``k``: edges kept (the k of largest |score|; ties broken by edge order);
- ``faithfulness`` and its bootstrap interval ``_lo`` / ``_hi`` (95%, over prompts);
- ``metric``: the mean task metric with only those edges kept, and its interval.
"""


def top_k_mask(valid: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    """(n_inputs, n_nodes) bool: the ``k`` edges of largest |score| (stable order on ties)."""
    flat_valid = np.flatnonzero(valid)
    order = np.argsort(-np.abs(scores.ravel()[flat_valid]), kind="stable")
    mask = np.zeros(valid.size, dtype=bool)
    mask[flat_valid[order[: max(0, int(k))]]] = True
    return mask.reshape(valid.shape)


def faithfulness_of(circuit_rows: np.ndarray, clean_rows: np.ndarray, corrupted_rows: np.ndarray) -> np.ndarray:
    """Faithfulness of each row of ``circuit_rows`` (..., n) from per-prompt metrics."""
    gap = clean_rows.mean(-1) - corrupted_rows.mean(-1)
    if not np.all(np.abs(gap) > 0):
        raise SpectrascopeError("the clean and corrupted runs give the same metric: faithfulness is undefined")
    return (circuit_rows.mean(-1) - corrupted_rows.mean(-1)) / gap


@dataclass
class FaithfulnessCurve:
    """Faithfulness against the number of kept edges.

    Attributes:
        table: :data:`CURVE_COLUMNS`, one row per k, increasing k.
        rows: (len(table), n) per-prompt metrics of the circuits.
        clean_rows, corrupted_rows: (n,) per-prompt metrics of the unpatched runs.
        boot_index: (B, n) the prompt resamples every interval uses.
    """

    table: pd.DataFrame
    rows: np.ndarray
    clean_rows: np.ndarray
    corrupted_rows: np.ndarray
    boot_index: np.ndarray

    def bootstrap(self) -> np.ndarray:
        """(B, len(table)) faithfulness of every k on every resample."""
        idx = self.boot_index
        return faithfulness_of(
            self.rows[:, idx].transpose(1, 0, 2), self.clean_rows[idx][:, None, :], self.corrupted_rows[idx][:, None, :]
        )

    def size_at(self, target: float) -> tuple[int | None, float, float]:
        """(smallest k reaching ``target`` or None, its bootstrap 2.5% and 97.5% quantiles;
        a resample that never reaches the target counts as the largest k evaluated)."""
        ks = self.table["k"].to_numpy()
        reached = np.nonzero(self.table["faithfulness"].to_numpy() >= target)[0]
        point = int(ks[reached[0]]) if reached.size else None
        boot = self.bootstrap() >= target
        first = np.where(boot.any(axis=1), ks[boot.argmax(axis=1)], ks.max())
        return point, float(np.percentile(first, 2.5)), float(np.percentile(first, 97.5))


def _bootstrap_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def faithfulness_curve(
    patcher: EdgePatcher,
    scores: np.ndarray,
    ks: list[int] | np.ndarray | None = None,
    *,
    target: float | None = 0.8,
    n_points: int = 24,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    show_progress: bool = False,
) -> FaithfulnessCurve:
    """Faithfulness of the top-k circuits for ``ks`` (default: a geometric grid of ``n_points``
    from 1 to every edge, plus 0), refined (twice, 16 points per gap) below the size that reaches
    ``target`` and below both ends of its bootstrap interval.

    Args:
        scores: (n_inputs, n_nodes) edge scores (|score| orders the edges).
        target: refine the grid around the smallest k reaching this faithfulness (None: no refinement).
    """
    valid = patcher.graph.valid
    n_edges = int(valid.sum())
    if ks is None:
        ks = np.unique(np.concatenate([[0], np.round(np.geomspace(1, n_edges, n_points)).astype(int)]))
    ks = sorted({int(k) for k in ks if 0 <= int(k) <= n_edges})
    if not ks:
        raise SpectrascopeError(f"no k between 0 and {n_edges} to evaluate")
    evaluated: dict[int, np.ndarray] = {}

    def evaluate(batch: list[int], advance) -> None:
        todo = [k for k in batch if k not in evaluated]
        if not todo:
            return
        step = patcher.copies_per_forward()
        for start in range(0, len(todo), step):
            part = todo[start : start + step]
            masks = np.stack([valid & ~top_k_mask(valid, scores, k) for k in part])
            evaluated.update(zip(part, patcher.metric_rows(masks), strict=True))
            advance(len(part))

    boot_index = _bootstrap_index(patcher.n, n_boot, seed)

    def as_curve() -> FaithfulnessCurve:
        order = sorted(evaluated)
        table = pd.DataFrame(
            {
                "k": order,
                "faithfulness": faithfulness_of(
                    np.stack([evaluated[k] for k in order]),
                    patcher.clean_rows[None, :],
                    patcher.corrupted_rows[None, :],
                ),
            }
        )
        return FaithfulnessCurve(
            table, np.stack([evaluated[k] for k in order]), patcher.clean_rows, patcher.corrupted_rows, boot_index
        )

    with progress_bar("faithfulness curve", len(ks), show_progress) as advance:
        evaluate(ks, advance)
        if target is not None:
            for _ in range(2):  # refine twice around the size at the target and its interval's ends
                size, lo, hi = as_curve().size_at(target)
                done = sorted(evaluated)
                at = [min(k for k in done if k >= point) for point in (size, lo, hi) if point is not None]
                refined = sorted({k for point in at for k in _refinement(done, point)})
                if not refined:
                    break
                evaluate(refined, advance)
    curve = as_curve()
    order, rows = curve.table["k"].tolist(), curve.rows
    faith = faithfulness_of(rows, patcher.clean_rows[None, :], patcher.corrupted_rows[None, :])
    boot = curve.bootstrap()
    metric_boot = rows[:, boot_index].mean(-1)  # (n_k, B)
    curve.table = pd.DataFrame(
        {
            "k": order,
            "faithfulness": faith,
            "faithfulness_lo": np.percentile(boot, 2.5, axis=0),
            "faithfulness_hi": np.percentile(boot, 97.5, axis=0),
            "metric": rows.mean(-1),
            "metric_lo": np.percentile(metric_boot, 2.5, axis=1),
            "metric_hi": np.percentile(metric_boot, 97.5, axis=1),
        },
        columns=CURVE_COLUMNS,
    )
    return curve


def _refinement(ks: list[int], k: int, points: int = 16) -> list[int]:
    """New ks between the evaluated k just below ``k`` and ``k`` (empty when they are adjacent)."""
    below = [x for x in ks if x < k]
    if not below or k - below[-1] <= 1:
        return []
    low = below[-1]
    grid = np.unique(np.round(np.linspace(low, k, min(points, k - low + 1))).astype(int))
    return [int(x) for x in grid if x not in ks]


# ----------------------------------------------------------------------------- ACDC


ACDC_COLUMNS = ["step", "upstream", "downstream", "input", "metric_before", "metric_after", "drop", "removed"]
"""Columns of the ACDC log: one row per edge tried, in visiting order; ``drop`` =
(metric_before - metric_after) / (clean - corrupted)."""


def acdc(
    patcher: EdgePatcher,
    threshold: float = 0.01,
    *,
    max_edges: int = ACDC_MAX_EDGES,
    show_progress: bool = False,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Greedy exact pruning (see the module docstring).

    Returns:
        (kept edge mask (n_inputs, n_nodes), log with :data:`ACDC_COLUMNS`).
    """
    graph = patcher.graph
    if graph.n_edges > max_edges:
        raise SpectrascopeError(
            f"ACDC runs one forward per edge: this graph has {graph.n_edges} edges (limit "
            f"{max_edges}); use --method eap-ig and the faithfulness curve instead"
        )
    if threshold < 0:
        raise SpectrascopeError(f"the ACDC threshold must be >= 0 (got {threshold})")
    gap = float(patcher.clean_rows.mean() - patcher.corrupted_rows.mean())
    if gap == 0:
        raise SpectrascopeError("the clean and corrupted runs give the same metric: nothing to prune against")
    kept = graph.full_mask()
    current = float(patcher.clean_rows.mean())
    log = []
    with progress_bar("ACDC", graph.n_edges, show_progress) as advance:
        for i in range(graph.n_inputs - 1, -1, -1):
            for u in range(int(graph.n_upstream[i]) - 1, -1, -1):
                trial = kept.copy()
                trial[i, u] = False
                value = float(patcher.metric_rows((graph.valid & ~trial)[None])[0].mean())
                drop = (current - value) / gap
                removed = drop < threshold
                log.append(
                    (
                        len(log),
                        graph.nodes[u].name,
                        graph.inputs[i].node.name,
                        graph.inputs[i].kind,
                        current,
                        value,
                        drop,
                        removed,
                    )
                )
                if removed:
                    kept, current = trial, value
                advance(1)
    return kept, pd.DataFrame(log, columns=ACDC_COLUMNS)


def circuit_nodes(graph, kept: np.ndarray) -> np.ndarray:
    """(n_nodes,) bool: nodes with a path of kept edges to the logits."""
    reached = np.zeros(graph.n_nodes, dtype=bool)
    reached_input_node = {graph.inputs[graph.logits_input].node.name}
    for i in range(graph.n_inputs - 1, -1, -1):
        node = graph.inputs[i].node
        if node.name not in reached_input_node:
            continue
        for u in np.nonzero(kept[i])[0]:
            reached[u] = True
            reached_input_node.add(graph.nodes[u].name)
    return reached
