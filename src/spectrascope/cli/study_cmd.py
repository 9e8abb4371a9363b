"""The main job: study."""

from __future__ import annotations

from pathlib import Path

import typer

from . import DEFAULT_WORKERS, app, console

@app.command()
def study(
    model: str = typer.Argument("smollm2-135m", help="bundled model name or path"),
    out: Path = typer.Option(Path("study-out"), "--out", help="output directory"),
    workers: int = typer.Option(DEFAULT_WORKERS, help="worker processes"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted study"),
    seed: int = typer.Option(0, help="seed for all randomness"),
) -> None:
    """The main job: every analysis on a model, tables plus OUT/report.html."""
    from ..study import run_study

    report = run_study(model, out, workers=workers, resume=resume, seed=seed, show_progress=True)
    console.print(f"report: {report}")


