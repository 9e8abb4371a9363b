"""``spectrascope circuit MODEL``: discover, verify and describe the circuit of a task.

Writes into OUT: ``circuit_edges``, ``circuit_curve``, ``circuit_nodes`` (Parquet + CSV),
``circuit.json`` and ``circuit.html`` (graph and faithfulness figures); with ``--spectral`` the
spectral tables (``circuit_spectral_*``, ``circuit_prior_*``, ``circuit_eigenmodes``); with
``--interactions N`` the SPEX interactions of the first N prompts (``circuit_interactions``,
``circuit_token_attributions``).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import app, console, writes_out
from .options import DEFAULT_MODEL, DEFAULT_OUT, DeviceOpt, ModelArg, OutOpt, QuietOpt, SeedOpt, require_device


class CircuitMethod(str, Enum):
    """How edges are scored: attribution (eap-ig, eap), every edge patched alone (exact), or ACDC."""

    eap_ig = "eap-ig"
    eap = "eap"
    exact = "exact"
    acdc = "acdc"


class OnMismatch(str, Enum):
    """What to do with a .jsonl pair whose prompts tokenize to different lengths."""

    error = "error"
    drop = "drop"


@app.command()
@writes_out
def circuit(
    model: ModelArg = DEFAULT_MODEL,
    task: str = typer.Option(
        "geography",
        "--task",
        help="geography, induction, greater-than, calendar, or a .jsonl file of {clean, corrupted, answer[, wrong]}",
    ),
    method: Annotated[CircuitMethod, typer.Option("--method", help="edge scores")] = CircuitMethod.eap_ig,
    n_prompts: Annotated[
        int | None, typer.Option("--n-prompts", min=2, help="prompts of a built-in task (default: the task's)")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="EAP-IG integration steps")] = 5,
    target: Annotated[
        float, typer.Option("--target", min=0.0, max=1.0, help="faithfulness the chosen circuit must reach")
    ] = 0.8,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            min=0.0,
            help="ACDC: remove an edge when the metric drops by less than this share of the clean - corrupted gap",
        ),
    ] = 0.01,
    on_mismatch: Annotated[
        OnMismatch, typer.Option("--on-mismatch", help="a .jsonl pair whose prompts tokenize to different lengths")
    ] = OnMismatch.error,
    spectral: bool = typer.Option(False, "--spectral", help="also ask whether weight spectra point to the circuit"),
    interactions: Annotated[
        int, typer.Option("--interactions", min=0, help="SPEX interactions of the first N prompts")
    ] = 0,
    budget: Annotated[int, typer.Option("--budget", min=16, help="SPEX coalition budget per prompt")] = 1000,
    seed: SeedOpt = 0,
    top: Annotated[int, typer.Option("--top", min=1, help="edges shown")] = 15,
    device: DeviceOpt = "cpu",
    out: OutOpt = DEFAULT_OUT,
    quiet: QuietOpt = False,
) -> None:
    """Find the circuit of a task (edge attribution, verified by edge patching) and write its tables."""
    from ..circuits.discover import discover_circuit
    from ..circuits.edge_patching import EdgePatcher
    from ..circuits.figures import circuit_section, spectral_section
    from ..circuits.layout import llama_layout, model_handle
    from ..circuits.tasks import builtin_task, jsonl_task
    from ..models.loaded import load_model
    from ..report.html import render
    from ..tables import write_table

    loaded = model_handle(load_model(model, device=require_device(device)))
    llama_layout(loaded.hf)  # refuse other families before any work
    if task.endswith(".jsonl"):
        the_task = jsonl_task(loaded, task, n=n_prompts, on_mismatch=on_mismatch.value)
    else:
        the_task = builtin_task(loaded, task, n=n_prompts, seed=seed)
    found = discover_circuit(
        loaded,
        the_task,
        method.value,
        target=target,
        steps=steps,
        seed=seed,
        acdc_threshold=threshold,
        show_progress=not quiet,
    )
    written = found.write(out)
    sections = [circuit_section(found, top=top)]
    if spectral:
        from ..circuits.spectral import spectral_question

        findings = spectral_question(loaded, found, EdgePatcher(loaded, the_task), seed=seed)
        for stem, table in findings.tables().items():
            written.extend(write_table(table, out, stem))
        sections.append(spectral_section(findings, found.task))
    if interactions > 0:
        written.extend(_interactions(loaded, the_task, interactions, budget, seed, out))
    report = render(f"spectrascope circuit: {found.task} on {found.model}", sections, out / "circuit.html.tmp")
    written.append(report.replace(out / "circuit.html"))
    _print(found, top)
    console.print(f"wrote {len(written)} files to {out}")


def _interactions(loaded, task, n: int, budget: int, seed: int, out: Path) -> list[Path]:
    import pandas as pd

    from ..circuits.interactions import task_interactions
    from ..tables import write_table

    results = task_interactions(loaded, task, n_prompts=n, budget=budget, seed=seed)
    pairs, tokens = [], []
    for index, result in enumerate(results):
        table = result.interactions.assign(
            prompt=index,
            text=result.prompt,
            model_calls=result.model_calls,
            players=result.interactions["players"].map(str),
        )
        pairs.append(table)
        tokens.append(result.tokens.assign(prompt=index, text=result.prompt))
        best = result.top(order=2, n=1)
        if len(best):
            console.print(
                f"{result.prompt!r}: top pair {best['words'].iloc[0]} ({best['value'].iloc[0]:+.3f}), "
                f"{result.model_calls} model calls"
            )
    return [
        *write_table(pd.concat(pairs, ignore_index=True), out, "circuit_interactions"),
        *write_table(pd.concat(tokens, ignore_index=True), out, "circuit_token_attributions"),
    ]


def _print(found, top: int) -> None:
    view = Table(
        title=f"{found.method} circuit of {found.task} on {found.model}: {found.size} of "
        f"{found.graph.n_edges} edges, faithfulness {found.faithfulness:.3f} "
        f"[{found.faithfulness_lo:.3f}, {found.faithfulness_hi:.3f}]"
    )
    for column in ("rank", "upstream", "downstream", "input", "score"):
        view.add_column(column, justify="left" if column in ("upstream", "downstream") else "right")
    for r in found.circuit_edges().head(top).itertuples(index=False):
        view.add_row(str(r.rank), r.upstream, r.downstream, r.input, f"{r.score:+.4f}")
    console.print(view)
    for note in found.notes:
        console.print(f"note: {note}")
