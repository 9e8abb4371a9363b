"""``spectrascope study [MODEL]``: the main job."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..study.budget import BudgetPreset
from ..study.stages.registry import DEFAULT_STAGE_NAMES, STAGE_NAMES
from . import DEFAULT_WORKERS, app, console, option_aliases, writes_out
from .options import DEFAULT_MODEL, CorpusOpt, ModelArg, OutOpt, SeedOpt, require_device

option_aliases("study", corpora="corpus")


class StudyAblation(str, Enum):
    """How the study removes heads and blocks (resample needs inputs of one shape: not offered)."""

    MEAN = "mean"
    ZERO = "zero"


@app.command()
@writes_out
def study(
    model: ModelArg = DEFAULT_MODEL,
    out: OutOpt = Path("study-out"),
    budget: Annotated[
        BudgetPreset, typer.Option("--budget", help="small (a smoke run), default or large")
    ] = BudgetPreset.DEFAULT,
    corpus: CorpusOpt | None = None,
    stages: Annotated[
        str,
        typer.Option(
            "--stages",
            help=f"stages to run, comma-separated, from {','.join(STAGE_NAMES)}; or all",
        ),
    ] = ",".join(DEFAULT_STAGE_NAMES),
    activation_tokens: Annotated[
        int | None, typer.Option("--activation-tokens", min=1, help="statistic tokens per domain (activation pass)")
    ] = None,
    loss_tokens: Annotated[
        int | None, typer.Option("--loss-tokens", min=2, help="tokens per domain of each domain loss")
    ] = None,
    ablation_layers: Annotated[
        str | None,
        typer.Option(
            "--ablation-layers",
            help="layers of the per-domain spectral vs block comparison, e.g. 0,15 (default: the middle layer)",
        ),
    ] = None,
    ablation_mode: Annotated[
        StudyAblation | None, typer.Option("--ablation-mode", help="mean (over calibration texts) or zero")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="worker processes for the weight spectra")
    ] = DEFAULT_WORKERS,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="skip stages finished earlier with the same model, seed, device, corpus texts and budgets"
        ),
    ] = False,
    seed: SeedOpt = 0,
    device: Annotated[
        str, typer.Option("--device", help="where the model runs and the SAE trains: cpu, cuda (cuda:N) or auto")
    ] = "cpu",
) -> None:
    """The main job: weights, activations, mechanisms, the bridge and SAE features (--stages all: also circuits) on one model; tables plus OUT/report.html."""
    from ..errors import OptionError
    from ..study import StudyBudget, run_study

    try:
        layers = tuple(int(x) for x in ablation_layers.split(",") if x.strip()) if ablation_layers else None
    except ValueError:
        raise OptionError(f"--ablation-layers {ablation_layers!r}: give layer indices such as 0,15") from None
    chosen = StudyBudget.preset(budget).with_overrides(
        corpora=corpus,
        activation_tokens=activation_tokens,
        loss_tokens=loss_tokens,
        ablation_layers=layers,
        ablation_mode=ablation_mode.value if ablation_mode else None,
    )
    report = run_study(
        model,
        out,
        workers=workers,
        resume=resume,
        seed=seed,
        show_progress=True,
        stages=tuple(s.strip() for s in stages.split(",") if s.strip()),
        budget=chosen,
        device=require_device(device),
        log=lambda line: console.print(f"[bold]study[/bold] {line}"),
    )
    console.print(f"report: {report}")
