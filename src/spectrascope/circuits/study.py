"""Study integration: a ``circuits`` stage and the report sections built from its tables.

:func:`circuits_stage` takes the study context (:class:`spectrascope.study.context.StudyContext`)
and writes, per task, ``OUT/circuits/<task>/``: the circuit tables (:meth:`Circuit.write`), the
spectral tables (:meth:`SpectralFindings.tables`) and ``circuit_lens`` (the task metric through
the logit lens). :func:`circuit_report_sections` reads them back into report sections. The lead
wires both into the study.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from spectrascope.report.html import Section

DEFAULT_TASKS = ("geography",)


def circuits_stage(ctx, tasks: tuple[str, ...] = DEFAULT_TASKS, method: str = "eap-ig", spectral: bool = True,
                   n_prompts: int | None = None) -> None:
    """Discover, verify and describe each task's circuit; write the tables (see the module docstring)."""
    from spectrascope.circuits.compare import lens_emergence
    from spectrascope.circuits.discover import discover_circuit
    from spectrascope.circuits.edge_patching import EdgePatcher
    from spectrascope.circuits.spectral import spectral_question
    from spectrascope.circuits.tasks import builtin_task
    from spectrascope.tables import write_table

    loaded = ctx.loaded()
    for name in tasks:
        out = ctx.stage_dir("circuits") / name
        task = builtin_task(loaded, name, n=n_prompts, seed=ctx.seed)
        circuit = discover_circuit(loaded, task, method, seed=ctx.seed, show_progress=ctx.show_progress)
        circuit.write(out)
        if spectral:
            findings = spectral_question(loaded, circuit, EdgePatcher(loaded, task), seed=ctx.seed)
            for stem, table in findings.tables().items():
                write_table(table, out, stem)
        lens, summary = lens_emergence(loaded, task, seed=ctx.seed)
        write_table(lens, out, "circuit_lens")
        (out / "circuit_lens.json").write_text(json.dumps(summary))


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
    return Circuit(model=summary["model"], task=summary["task"], method=summary["method"], graph=graph, edges=edges,
                   curve=pd.read_parquet(folder / "circuit_curve.parquet"), nodes=nodes, kept=kept,
                   size=summary["size"], size_lo=_num(summary["size_lo"]), size_hi=_num(summary["size_hi"]),
                   target=summary["target"], faithfulness=summary["faithfulness"],
                   faithfulness_lo=summary["faithfulness_lo"], faithfulness_hi=summary["faithfulness_hi"],
                   clean_metric=summary["clean_metric"], corrupted_metric=summary["corrupted_metric"],
                   seconds=summary["scoring_seconds"], metric_kind=summary["metric"],
                   n_prompts=summary["n_prompts"], notes=summary["notes"])


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
                f"(bootstrap 95% interval {lens['half_layer_lo']:g}-{lens['half_layer_hi']:g}).")
        sections.append(section)
        if (folder / "circuit_spectral_components.parquet").exists():
            prior = pd.read_parquet(folder / "circuit_prior_summary.parquet").iloc[0]
            recovery = PriorRecovery(pd.read_parquet(folder / "circuit_prior_recovery.parquet"),
                                     float(prior["average_precision"]), float(prior["random_ap"]),
                                     float(prior["random_ap_lo"]), float(prior["random_ap_hi"]), float(prior["p"]),
                                     int(prior["n_positive"]), int(prior["n_edges"]))
            findings = SpectralFindings(pd.read_parquet(folder / "circuit_spectral_components.parquet"),
                                        pd.read_parquet(folder / "circuit_spectral_heads.parquet"), recovery,
                                        pd.read_parquet(folder / "circuit_eigenmodes.parquet"))
            sections.append(spectral_section(findings, circuit.task))
    return sections


__all__ = ["circuit_report_sections", "circuits_stage", "read_circuit"]
