"""``discover_circuit``: score every edge, verify the top-k circuits, choose one.

Pipeline: build the task (:mod:`~spectrascope.circuits.tasks`), score every edge (EAP,
EAP-IG, or exact patching of each edge alone), evaluate the faithfulness curve of the top-k
circuits with bootstrap intervals (:mod:`~spectrascope.circuits.verify`), and choose the
smallest circuit reaching the target faithfulness. ``method="acdc"`` prunes greedily instead
(exact, small graphs) and reports the faithfulness of what it kept.

Tables of a :class:`Circuit` (written by :meth:`Circuit.write`):

- ``circuit_edges``: every edge: ``upstream``, ``downstream``, ``input`` (q, k, v, resid),
  ``upstream_layer``, ``downstream_layer``, ``score`` (metric units, positive = supports the
  clean answer), ``abs_score``, ``rank`` (1 = largest |score|), ``in_circuit``;
- ``circuit_curve``: the faithfulness curve (:data:`~spectrascope.circuits.verify.CURVE_COLUMNS`);
- ``circuit_nodes``: every node: ``node``, ``kind``, ``layer``, ``head``, ``in_circuit`` (a path
  of kept edges to the logits), ``kept_in`` / ``kept_out`` (kept edges into / out of it),
  ``score_in`` / ``score_out`` (sum of |score| over them);
- ``circuit.json``: the summary (model, task, method, size, faithfulness and intervals, notes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spectrascope.circuits.eap import DEFAULT_STEPS, EdgeScores, attribute_edges
from spectrascope.circuits.edge_patching import DEFAULT_MAX_TOKENS, EdgePatcher
from spectrascope.circuits.graph import Graph
from spectrascope.circuits.layout import circuit_model, model_handle
from spectrascope.circuits.tasks import Task, builtin_task
from spectrascope.circuits.verify import (
    DEFAULT_BOOTSTRAP,
    FaithfulnessCurve,
    acdc,
    circuit_nodes,
    faithfulness_curve,
    faithfulness_of,
    top_k_mask,
)
from spectrascope.errors import SpectrascopeError

DISCOVERY_METHODS = ("eap", "eap-ig", "exact", "acdc")


@dataclass
class Circuit:
    """A discovered circuit (see the module docstring for the tables).

    Attributes:
        model, task, method: names.
        graph: the model's graph.
        edges, curve, nodes: the tables.
        kept: (n_inputs, n_nodes) bool mask of the chosen circuit's edges.
        size: number of kept edges; ``size_lo`` / ``size_hi``: bootstrap interval of the size
            at the target (NaN when not from a curve).
        target: the faithfulness the size was chosen for.
        faithfulness, faithfulness_lo, faithfulness_hi: of the chosen circuit.
        clean_metric, corrupted_metric: the task metric of the unpatched runs.
        seconds: time of the scoring step.
        notes: one line each (task construction, target not reached ...).
    """

    model: str
    task: str
    method: str
    graph: Graph
    edges: pd.DataFrame
    curve: pd.DataFrame
    nodes: pd.DataFrame
    kept: np.ndarray
    size: int
    size_lo: float
    size_hi: float
    target: float
    faithfulness: float
    faithfulness_lo: float
    faithfulness_hi: float
    clean_metric: float
    corrupted_metric: float
    seconds: float
    metric_kind: str = ""
    n_prompts: int = 0
    notes: list[str] = field(default_factory=list)

    def circuit_edges(self) -> pd.DataFrame:
        """The kept edges, largest |score| first."""
        return self.edges[self.edges["in_circuit"]].sort_values("rank").reset_index(drop=True)

    def circuit_node_names(self, kind: str | None = None) -> list[str]:
        """Names of the nodes in the circuit (optionally only ``head`` or ``mlp`` nodes)."""
        table = self.nodes[self.nodes["in_circuit"]]
        if kind is not None:
            table = table[table["kind"] == kind]
        return table["node"].tolist()

    def summary(self) -> dict:
        return {
            "model": self.model,
            "task": self.task,
            "method": self.method,
            "metric": self.metric_kind,
            "n_prompts": self.n_prompts,
            "n_edges": self.graph.n_edges,
            "target": self.target,
            "size": self.size,
            "size_lo": self.size_lo,
            "size_hi": self.size_hi,
            "faithfulness": self.faithfulness,
            "faithfulness_lo": self.faithfulness_lo,
            "faithfulness_hi": self.faithfulness_hi,
            "clean_metric": self.clean_metric,
            "corrupted_metric": self.corrupted_metric,
            "scoring_seconds": self.seconds,
            "heads": self.circuit_node_names("head"),
            "mlps": self.circuit_node_names("mlp"),
            "notes": self.notes,
        }

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write the tables (Parquet + CSV) and ``circuit.json`` into ``out_dir``; the paths written."""
        from spectrascope.tables import write_table

        out = Path(out_dir)
        paths: list[Path] = []
        for stem, table in (
            ("circuit_edges", self.edges),
            ("circuit_curve", self.curve),
            ("circuit_nodes", self.nodes),
        ):
            paths.extend(write_table(table, out, stem))
        summary = out / "circuit.json"
        partial = summary.with_suffix(".json.tmp")
        partial.write_text(json.dumps(self.summary(), indent=2, default=_json_default))
        partial.replace(summary)
        return [*paths, summary]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def node_table(graph: Graph, kept: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """The ``circuit_nodes`` table of a kept-edge mask (see the module docstring)."""
    reached = circuit_nodes(graph, kept)
    magnitude = np.abs(scores) * kept
    rows = []
    for u, node in enumerate(graph.nodes):
        inputs = [i for i, inp in enumerate(graph.inputs) if inp.node.name == node.name]
        rows.append(
            {
                "node": node.name,
                "kind": node.kind,
                "layer": node.layer,
                "head": node.head,
                "in_circuit": bool(reached[u]),
                "kept_in": int(kept[inputs].sum()) if inputs else 0,
                "kept_out": int(kept[:, u].sum()),
                "score_in": float(magnitude[inputs].sum()) if inputs else 0.0,
                "score_out": float(magnitude[:, u].sum()),
            }
        )
    logits = graph.logits_input
    rows.append(
        {
            "node": "logits",
            "kind": "logits",
            "layer": graph.n_layers,
            "head": None,
            "in_circuit": True,
            "kept_in": int(kept[logits].sum()),
            "kept_out": 0,
            "score_in": float(magnitude[logits].sum()),
            "score_out": 0.0,
        }
    )
    table = pd.DataFrame(rows)
    table["head"] = table["head"].astype("Int64")
    return table


def edge_scores(
    model: Any,
    task: Task,
    method: str = "eap-ig",
    *,
    steps: int = DEFAULT_STEPS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    show_progress: bool = False,
    patcher: EdgePatcher | None = None,
) -> EdgeScores:
    """Scores of every edge by ``eap``, ``eap-ig`` or ``exact`` (each edge patched alone)."""
    if method in ("eap", "eap-ig"):
        return attribute_edges(model, task, method, steps=steps, max_tokens=max_tokens, show_progress=show_progress)
    if method != "exact":
        raise SpectrascopeError(f"unknown scoring method {method!r}; use eap, eap-ig or exact")
    import time

    from spectrascope.progress import progress_bar

    started = time.perf_counter()
    patcher = patcher or EdgePatcher(model, task, max_tokens=max_tokens)
    graph = patcher.graph
    inputs, nodes = graph.edge_list()
    scores = np.zeros(graph.valid.shape)
    batch = 4 * patcher.copies_per_forward()
    with progress_bar("exact edge patching", len(inputs), show_progress) as advance:
        for start in range(0, len(inputs), batch):
            part = list(zip(inputs[start : start + batch], nodes[start : start + batch], strict=True))
            scores[inputs[start : start + batch], nodes[start : start + batch]] = patcher.edge_effects(part)
            advance(len(part))
    return EdgeScores(
        graph,
        scores,
        "exact",
        1,
        time.perf_counter() - started,
        float(patcher.clean_rows.mean()),
        float(patcher.corrupted_rows.mean()),
    )


def discover_circuit(
    model: Any,
    task: Task | str = "geography",
    method: str = "eap-ig",
    *,
    target: float = 0.8,
    steps: int = DEFAULT_STEPS,
    n_prompts: int | None = None,
    seed: int = 0,
    ks: list[int] | None = None,
    n_points: int = 24,
    n_boot: int = DEFAULT_BOOTSTRAP,
    acdc_threshold: float = 0.01,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    show_progress: bool = False,
) -> Circuit:
    """Find the circuit of a task: score edges, verify top-k circuits, choose the smallest faithful one.

    Args:
        model: ``toy-induction``, a bundled model name, a path, a LoadedModel / ToyModel, or a HF model.
        task: a Task, a built-in task name (geography, induction, greater-than, calendar) or a
            ``.jsonl`` task file.
        method: ``eap-ig`` (default), ``eap``, ``exact`` (every edge patched alone: small
            graphs) or ``acdc`` (greedy exact pruning with ``acdc_threshold``: small graphs).
        target: the faithfulness the chosen circuit must reach.
        steps: EAP-IG integration points.
        n_prompts: prompts of a built-in task (None: the task's default).
        ks, n_points: the curve's k values (default: a geometric grid of ``n_points``).
        n_boot: bootstrap resamples over prompts.

    Returns:
        a :class:`Circuit`.
    """
    method = method.lower()
    if method not in DISCOVERY_METHODS:
        raise SpectrascopeError(f"unknown method {method!r}; use {', '.join(DISCOVERY_METHODS)}")
    if not 0 < target <= 1.5:
        raise SpectrascopeError(f"target faithfulness must be in (0, 1.5] (got {target})")
    handle = model_handle(model)
    hf, _, name = circuit_model(handle)
    if isinstance(task, str):
        task = builtin_task(handle, task, n=n_prompts, seed=seed)
    patcher = EdgePatcher(hf, task, max_tokens=max_tokens)
    graph = patcher.graph
    notes = list(task.notes)
    if method == "acdc":
        import time

        started = time.perf_counter()
        kept, log = acdc(patcher, acdc_threshold, show_progress=show_progress)
        seconds = time.perf_counter() - started
        scores = np.zeros(graph.valid.shape)
        for up, down, kind, drop in zip(log["upstream"], log["downstream"], log["input"], log["drop"], strict=True):
            i, u = graph.edge(up, down, kind)
            scores[i, u] = drop * (patcher.clean_rows.mean() - patcher.corrupted_rows.mean())
        size = int(kept.sum())
        curve = faithfulness_curve(patcher, np.where(kept, 1.0, 0.0), [size], target=None, n_boot=n_boot, seed=seed)
        chosen_mask = kept
        clean, corrupted = float(patcher.clean_rows.mean()), float(patcher.corrupted_rows.mean())
        notes.append(f"ACDC threshold {acdc_threshold}: an edge's score is the metric drop when it was tried")
        lo = hi = float("nan")
    else:
        result = edge_scores(
            hf, task, method, steps=steps, max_tokens=max_tokens, show_progress=show_progress, patcher=patcher
        )
        scores, seconds = result.scores, result.seconds
        clean, corrupted = result.clean_metric, result.corrupted_metric
        curve = faithfulness_curve(
            patcher, scores, ks, target=target, n_points=n_points, n_boot=n_boot, seed=seed, show_progress=show_progress
        )
        reached, lo, hi = curve.size_at(target)
        if reached is None:
            best = curve.table.loc[curve.table["faithfulness"].idxmax()]
            size = int(best["k"])
            notes.append(
                f"no evaluated circuit reaches faithfulness {target}; chose the most faithful one "
                f"(k = {size}, {best['faithfulness']:.3f})"
            )
        else:
            size = reached
        chosen_mask = top_k_mask(graph.valid, scores, size)
    row = _curve_row(curve, size)
    edges = graph.edges_table(scores)
    edges["abs_score"] = edges["score"].abs()
    edges["rank"] = edges["abs_score"].rank(ascending=False, method="first").astype(int)
    inputs, nodes = graph.edge_list()
    edges["in_circuit"] = chosen_mask[inputs, nodes]
    return Circuit(
        model=name,
        task=task.name,
        method=method,
        graph=graph,
        edges=edges,
        curve=curve.table,
        nodes=node_table(graph, chosen_mask, scores),
        kept=chosen_mask,
        size=size,
        size_lo=lo,
        size_hi=hi,
        target=target,
        faithfulness=float(row["faithfulness"]),
        faithfulness_lo=float(row["faithfulness_lo"]),
        faithfulness_hi=float(row["faithfulness_hi"]),
        clean_metric=clean,
        corrupted_metric=corrupted,
        seconds=seconds,
        metric_kind=task.metric.kind,
        n_prompts=task.n,
        notes=notes,
    )


def _curve_row(curve: FaithfulnessCurve, k: int) -> pd.Series:
    table = curve.table
    return table.loc[table["k"] == k].iloc[0]


__all__ = ["Circuit", "discover_circuit", "edge_scores", "faithfulness_of", "node_table"]
