"""The main job: study."""

from __future__ import annotations

from pathlib import Path

import typer

from . import DEFAULT_WORKERS, app, console


@app.command()
def study(
    model: str = typer.Argument("smollm2-135m", help="bundled model name or path"),
    out: Path = typer.Option(Path("study-out"), "--out", help="output directory"),
    corpus: str = typer.Option("code,python-docs,legal,calendar,arithmetic,geography", "--corpus",
                               help="domains: comma-separated built-in names and/or paths"),
    stages: str = typer.Option("weights,activations,mechanisms,bridge", help="stages to run, in order"),
    activation_tokens: int = typer.Option(1024, "--activation-tokens", help="tokens per domain for activation spectra"),
    loss_tokens: int = typer.Option(128, "--loss-tokens", help="tokens per domain per ablation loss"),
    ablation_layers: int = typer.Option(2, "--ablation-layers", help="layers with the full spectral vs head comparison"),
    ablation_mode: str = typer.Option("mean", "--ablation-mode", help="mean (over a reference batch) or zero"),
    small: bool = typer.Option(False, "--small", help="tiny budgets: a smoke run in a few minutes"),
    workers: int = typer.Option(DEFAULT_WORKERS, help="worker processes for the weight spectra"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted study without redoing finished stages"),
    seed: int = typer.Option(0, help="seed for all randomness"),
) -> None:
    """The main job: weights, activations, mechanisms and the bridge on one model; tables plus OUT/report.html."""
    from dataclasses import replace

    from ..study import StudyBudget, run_study

    budget = StudyBudget.small() if small else StudyBudget(activation_tokens=activation_tokens, loss_tokens=loss_tokens,
                                                           ablation_layers=ablation_layers)
    budget = replace(budget, corpora=corpus, ablation_mode=ablation_mode)
    report = run_study(model, out, workers=workers, resume=resume, seed=seed, show_progress=True,
                       stages=tuple(s.strip() for s in stages.split(",") if s.strip()), budget=budget,
                       log=lambda line: console.print(f"[bold]study[/bold] {line}"))
    console.print(f"report: {report}")
