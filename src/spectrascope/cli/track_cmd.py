"""Learning-dynamics verbs: track a checkpoint series, run a built-in training experiment.

``spectrascope track CHECKPOINTS... --out DIR``: the weight table of every checkpoint (with a
``step`` column), change points of every metric series, and a report page.
``spectrascope experiment grokking|induction --out DIR``: train, track, analyze, report.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from . import DEFAULT_WORKERS, app, console, writes_out


def _print_changes(changes, top: int = 10) -> None:
    significant = changes[(changes["test"] == 1) & changes["significant"]].sort_values("p_value")
    if significant.empty:
        console.print("no metric series changes significantly (whole-series test, BH q < 0.05)")
        return
    table = Table(title=f"significant change points ({len(significant)} series; first {min(top, len(significant))})")
    by = [c for c in ("model", "name", "series") if c in significant]
    for col in [*by, "metric", "between steps", "before", "after", "p", "q"]:
        table.add_column(col, justify="left" if col in (*by, "metric") else "right")
    for r in significant.head(top).to_dict("records"):
        table.add_row(
            *[str(r[c]) for c in by],
            r["metric"],
            f"{r['step_before']:g} - {r['step']:g}",
            f"{r['before']:.3g}",
            f"{r['after']:.3g}",
            f"{r['p_value']:.3g}",
            f"{r['q_value']:.3g}",
        )
    console.print(table)


@app.command()
@writes_out
def track(
    checkpoints: list[str] = typer.Argument(
        ...,
        help="checkpoint folders/files named by step (step1000, checkpoint-1000), "
        "glob patterns, or a folder of step-named entries (Pythia-style step1000/)",
    ),
    out: Path = typer.Option(Path("track-out"), "--out", help="output directory"),
    exact: bool = typer.Option(True, "--exact/--fast", help="float64 (weightwatcher's numbers) or float32"),
    heads: bool = typer.Option(False, "--heads", help="per-head and QK/OV circuit spectra at every checkpoint"),
    head_scores: bool = typer.Option(
        False, "--head-scores", help="induction / previous-token scores (loads each model)"
    ),
    activations: str = typer.Option(
        None,
        "--activations",
        help="comma-separated corpora: activation spectra at "
        "resid_post per checkpoint (loads each model and its tokenizer)",
    ),
    mp_fit: bool = typer.Option(True, "--mp-fit/--no-mp-fit", help="Marchenko-Pastur spikes"),
    traps: bool = typer.Option(True, "--traps/--no-traps", help="correlation traps (seeded shuffle)"),
    seed: int = typer.Option(0, help="seed for all randomness"),
    workers: int = typer.Option(DEFAULT_WORKERS, help="worker processes within a checkpoint"),
    resume: bool = typer.Option(False, "--resume", help="skip checkpoints already finished in OUT"),
    n_perm: int = typer.Option(999, "--n-perm", help="permutations of each change-point test"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="allow .bin/.pt (torch.load weights_only=True)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Spectra over a checkpoint series: OUT/weights_over_steps.*, changepoints.*, report.html."""
    from ..dynamics.changepoints import change_points_by_model
    from ..dynamics.report import WEIGHT_METRICS, present, track_sections, write_page
    from ..dynamics.track import track as run_track
    from ..tables import write_table

    result = run_track(
        checkpoints,
        out=out,
        precision="exact" if exact else "fast",
        mp_fit=mp_fit,
        randomize=traps,
        heads=heads,
        head_scores=head_scores,
        activations=activations,
        seed=seed,
        workers=workers,
        resume=resume,
        allow_pickle=allow_pickle,
        show_progress=not quiet,
    )
    ok = result.weights[result.weights["status"] == "success"]
    changes = change_points_by_model(ok, present(ok, WEIGHT_METRICS), by=["name"], n_perm=n_perm, seed=seed)
    write_table(changes, out, "changepoints")
    page = write_page(
        "Spectra over training checkpoints",
        track_sections(result.weights, changes, result.checkpoints, result.heads),
        out / "report.html",
    )
    status = result.checkpoints
    console.print(
        f"{len(status)} checkpoints: "
        + ", ".join(f"{k} {v}" for k, v in status["status"].value_counts().items())
        + f"; matrix rows computed {int(status['computed'].sum())}, reused (unchanged tensors) "
        f"{int(status['reused'].sum())}"
    )
    for r in status[status["status"] != "ok"].itertuples():
        console.print(f"  step {r.step}: {r.status}: {r.reason}", markup=False)
    _print_changes(changes)
    console.print(f"wrote {out / 'weights_over_steps.csv'}, {out / 'changepoints.csv'}, {page}")


@app.command()
def experiment(
    name: str = typer.Argument(..., help="grokking (modular addition) or induction (toy induction heads)"),
    out: Path = typer.Option(None, "--out", help="output directory (default: NAME-out)"),
    quick: bool = typer.Option(False, "--quick", help="the shortened configuration of the tests"),
    steps: int = typer.Option(None, "--steps", help="training steps (default: the experiment's)"),
    checkpoints: int = typer.Option(None, "--checkpoints", help="log-spaced checkpoints (default: the experiment's)"),
    seed: int = typer.Option(0, help="seed for all randomness"),
    n_perm: int = typer.Option(999, "--n-perm", help="permutations of each change-point test"),
    controls: bool = typer.Option(True, "--controls/--no-controls", help="randomized-weights and untrained controls"),
    threads: int = typer.Option(
        1, "--threads", help="torch threads (1: the models are tiny; more threads only contend)"
    ),
    workers: int = typer.Option(1, "--workers", help="weights-engine worker processes"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Train a built-in experiment, track its spectra, write OUT/metrics.csv, weights_over_steps.csv, report.html."""
    import torch

    from ..outdir import OutputFolder

    torch.set_num_threads(threads)
    with OutputFolder(out or Path(f"{name}-out"), option="out") as folder:
        _run_experiment(name, folder.path, quick, steps, checkpoints, seed, n_perm, controls, workers, quiet)


def _run_experiment(
    name: str,
    out: Path,
    quick: bool,
    steps: int | None,
    checkpoints: int | None,
    seed: int,
    n_perm: int,
    controls: bool,
    workers: int,
    quiet: bool,
) -> None:
    from ..dynamics.experiment import run_experiment

    result = run_experiment(
        name,
        out,
        quick=quick,
        steps=steps,
        n_checkpoints=checkpoints,
        seed=seed,
        n_perm=n_perm,
        controls=controls,
        workers=workers,
        show_progress=not quiet,
    )
    for line in result.summary.get("timing", []):
        console.print(line, markup=False)
    console.print(f"events: {result.summary['events']}", markup=False)
    console.print(f"wrote {out / 'metrics.csv'}, {out / 'weights_over_steps.csv'}, {result.report}")
