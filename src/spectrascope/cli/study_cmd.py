"""The main job: study."""

from __future__ import annotations

from pathlib import Path

import typer

from . import DEFAULT_WORKERS, app, console, option_aliases, writes_out

option_aliases("study", corpora="corpus")


@app.command()
@writes_out
def study(
    model: str = typer.Argument("smollm2-135m", help="bundled model name or path"),
    out: Path = typer.Option(Path("study-out"), "--out", help="output directory"),
    budget: str = typer.Option("default", "--budget", help="small (smoke run), default or large"),
    corpus: str | None = typer.Option(None, "--corpus", help="domains: comma-separated built-in names and/or paths"),
    stages: str = typer.Option("weights,activations,mechanisms,bridge", help="stages to run, in order"),
    activation_tokens: int | None = typer.Option(None, "--activation-tokens", help="statistic tokens per domain (activation pass)"),
    loss_tokens: int | None = typer.Option(None, "--loss-tokens", help="tokens per domain of each domain loss"),
    ablation_layers: str | None = typer.Option(None, "--ablation-layers",
                                               help="layers of the per-domain spectral vs block comparison, e.g. 0,15 "
                                                    "(default: the layer whose MLP matters most)"),
    ablation_mode: str | None = typer.Option(None, "--ablation-mode", help="mean (over calibration texts) or zero"),
    workers: int = typer.Option(DEFAULT_WORKERS, help="worker processes for the weight spectra"),
    resume: bool = typer.Option(False, "--resume", help="skip stages finished earlier with the same model, seed and budgets"),
    seed: int = typer.Option(0, help="seed for all randomness"),
) -> None:
    """The main job: weights, activations, mechanisms and the bridge on one model; tables plus OUT/report.html."""
    from ..study import StudyBudget, run_study

    layers = tuple(int(x) for x in ablation_layers.split(",") if x.strip()) if ablation_layers else None
    chosen = StudyBudget.preset(budget).with_overrides(
        corpora=corpus, activation_tokens=activation_tokens, loss_tokens=loss_tokens, ablation_layers=layers,
        ablation_mode=ablation_mode)
    report = run_study(model, out, workers=workers, resume=resume, seed=seed, show_progress=True,
                       stages=tuple(s.strip() for s in stages.split(",") if s.strip()), budget=chosen,
                       log=lambda line: console.print(f"[bold]study[/bold] {line}"))
    console.print(f"report: {report}")
