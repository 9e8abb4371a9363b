"""Study integration: the ``circuits`` stage and the report sections built from its output.

:func:`run` (the stage protocol: ``run(ctx) -> {table name: DataFrame}``) discovers, verifies
and describes the circuit of each task of the study budget's ``circuits`` field (a
:class:`CircuitBudget`) and returns one table, ``circuits``: one row per task (size at the
target faithfulness with its bootstrap interval, faithfulness with its interval, heads and
MLPs kept, the logit-lens layer, and with ``spectral`` the tail-alignment prior's average
precision against random rankings). Per task it also leaves ``OUT/circuits/<task>/``: the
circuit tables (:meth:`Circuit.write`), the spectral tables (:meth:`SpectralFindings.tables`)
and ``circuit_lens``. A model the circuit tools do not support (not Llama-family) gets a row
that says so instead of an error: the other stages' results stand.

:func:`circuit_report_sections` reads the task folders back into report sections.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from spectrascope.report.html import Section

STAGE = "circuits"
PRODUCES = ("circuits",)
"""The tables :func:`run` returns."""
DEFAULT_TASKS = ("geography",)


@dataclass(frozen=True)
class CircuitBudget:
    """What the circuits stage discovers.

    Attributes:
        tasks: built-in task names (geography, induction, greater-than, calendar).
        n_prompts: prompts per task (bootstrap intervals are over prompts).
        method: edge scores (eap-ig, eap, exact, acdc).
        spectral: also test whether weight spectra point to the circuit (components,
            tail-alignment prior, eigenmode-restricted edges).
    """

    tasks: tuple[str, ...] = DEFAULT_TASKS
    n_prompts: int = 16
    method: str = "eap-ig"
    spectral: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(str(t) for t in self.tasks))


def run(ctx: Any) -> dict[str, pd.DataFrame]:
    """Discover, verify and describe each task's circuit; the ``circuits`` summary table."""
    from spectrascope.circuits.layout import CircuitArchitectureError, llama_layout

    budget: CircuitBudget = ctx.budget.circuits
    loaded = ctx.loaded()
    try:
        llama_layout(loaded.hf)
    except CircuitArchitectureError as refused:
        return {"circuits": pd.DataFrame([{"task": t, "status": f"skipped: {refused}"} for t in budget.tasks])}
    rows = [_task_row(ctx, loaded, name, budget) for name in budget.tasks]
    return {"circuits": pd.DataFrame(rows)}


def _task_row(ctx: Any, loaded: Any, name: str, budget: CircuitBudget) -> dict:
    from spectrascope.circuits.compare import lens_emergence
    from spectrascope.circuits.discover import discover_circuit
    from spectrascope.circuits.edge_patching import EdgePatcher
    from spectrascope.circuits.spectral import spectral_question
    from spectrascope.circuits.tasks import builtin_task
    from spectrascope.tables import write_table

    out = Path(ctx.out) / STAGE / name
    task = builtin_task(loaded, name, n=budget.n_prompts, seed=ctx.seed)
    circuit = discover_circuit(loaded, task, budget.method, seed=ctx.seed, show_progress=ctx.show_progress)
    circuit.write(out)
    summary = circuit.summary()
    row = {
        "task": name,
        "status": "ok",
        **{
            k: summary[k]
            for k in (
                "method",
                "metric",
                "n_prompts",
                "n_edges",
                "target",
                "size",
                "size_lo",
                "size_hi",
                "faithfulness",
                "faithfulness_lo",
                "faithfulness_hi",
                "clean_metric",
                "corrupted_metric",
            )
        },
        "n_heads": len(summary["heads"]),
        "n_mlps": len(summary["mlps"]),
    }
    lens, half = lens_emergence(loaded, task, seed=ctx.seed)
    write_table(lens, out, "circuit_lens")
    (out / "circuit_lens.json").write_text(json.dumps(half))
    row.update(
        {
            "lens_half_layer": half["half_layer"],
            "lens_half_layer_lo": half["half_layer_lo"],
            "lens_half_layer_hi": half["half_layer_hi"],
        }
    )
    if budget.spectral:
        findings = spectral_question(loaded, circuit, EdgePatcher(loaded, task), seed=ctx.seed)
        for stem, table in findings.tables().items():
            write_table(table, out, stem)
        prior = findings.recovery
        row.update(
            {"prior_average_precision": prior.average_precision, "prior_random_ap": prior.random_ap, "prior_p": prior.p}
        )
    return row


def read_circuit(folder: str | Path):
    """A :class:`~spectrascope.circuits.discover.Circuit` from the files :meth:`Circuit.write` wrote."""
    from spectrascope.circuits.discover import Circuit
    from spectrascope.circuits.graph import Graph

    folder = Path(folder)
    summary = json.loads((folder / "circuit.json").read_text())
    edges = pd.read_parquet(folder / "circuit_edges.parquet")
    nodes = pd.read_parquet(folder / "circuit_nodes.parquet")
    heads = nodes[nodes["kind"] == "head"]
    graph = Graph(int(nodes["layer"].max()), int(heads["head"].max()) + 1)
    kept = graph.mask_from_edges(edges[edges["in_circuit"]])
    return Circuit(
        model=summary["model"],
        task=summary["task"],
        method=summary["method"],
        graph=graph,
        edges=edges,
        curve=pd.read_parquet(folder / "circuit_curve.parquet"),
        nodes=nodes,
        kept=kept,
        size=summary["size"],
        size_lo=_num(summary["size_lo"]),
        size_hi=_num(summary["size_hi"]),
        target=summary["target"],
        faithfulness=summary["faithfulness"],
        faithfulness_lo=summary["faithfulness_lo"],
        faithfulness_hi=summary["faithfulness_hi"],
        clean_metric=summary["clean_metric"],
        corrupted_metric=summary["corrupted_metric"],
        seconds=summary["scoring_seconds"],
        metric_kind=summary["metric"],
        n_prompts=summary["n_prompts"],
        notes=summary["notes"],
    )


def _num(value) -> float:
    return float("nan") if value is None else float(value)


def circuit_report_sections(stage_dir: str | Path) -> list[Section]:
    """Report sections of every task under ``OUT/circuits`` (empty when the stage did not run)."""
    from spectrascope.circuits.figures import circuit_section, spectral_section
    from spectrascope.circuits.spectral import PriorRecovery, SpectralFindings

    sections: list[Section] = []
    root = Path(stage_dir)
    for folder in sorted(p for p in root.iterdir() if (p / "circuit.json").exists()) if root.exists() else []:
        circuit = read_circuit(folder)
        section = circuit_section(circuit)
        if (folder / "circuit_lens.json").exists():
            lens = json.loads((folder / "circuit_lens.json").read_text())
            section.paragraphs.append(
                f"Logit lens: the task metric reaches half of the model's own at layer {lens['half_layer']} "
                f"(bootstrap 95% interval {lens['half_layer_lo']:g}-{lens['half_layer_hi']:g})."
            )
        sections.append(section)
        if (folder / "circuit_spectral_components.parquet").exists():
            prior = pd.read_parquet(folder / "circuit_prior_summary.parquet").iloc[0]
            recovery = PriorRecovery(
                pd.read_parquet(folder / "circuit_prior_recovery.parquet"),
                float(prior["average_precision"]),
                float(prior["random_ap"]),
                float(prior["random_ap_lo"]),
                float(prior["random_ap_hi"]),
                float(prior["p"]),
                int(prior["n_positive"]),
                int(prior["n_edges"]),
            )
            findings = SpectralFindings(
                pd.read_parquet(folder / "circuit_spectral_components.parquet"),
                pd.read_parquet(folder / "circuit_spectral_heads.parquet"),
                recovery,
                pd.read_parquet(folder / "circuit_eigenmodes.parquet"),
            )
            sections.append(spectral_section(findings, circuit.task))
    return sections


__all__ = ["PRODUCES", "CircuitBudget", "circuit_report_sections", "read_circuit", "run"]
