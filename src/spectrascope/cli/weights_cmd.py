"""Weight-spectrum verbs: models, weights."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from . import DEFAULT_WORKERS, app, console


def _print_weights_summary(df, title: str) -> None:
    from ..spectra.summary import role_summary, worst_matrices

    table = Table(title=title)
    for col in ["role", "n", "mean alpha", "alpha in [2,6]", "mean alpha_w", "mean ERG delta"]:
        table.add_column(col, justify="right" if col != "role" else "left")
    for r in role_summary(df).itertuples():
        table.add_row(r.role, str(r.n), f"{r.mean_alpha:.2f}", f"{r.share_alpha_2_6:.0%}",
                      f"{r.mean_alpha_weighted:.2f}", f"{r.mean_erg_delta:.3f}")
    console.print(table)
    worst = worst_matrices(df)
    if len(worst):
        console.print("worst matrices (alpha farthest outside [2, 6]):")
        for r in worst.itertuples():
            console.print(f"  {r.name:<50} alpha={r.alpha:6.2f}  {r.warning}")
    counts = df["status"].value_counts().to_dict()
    console.print("status: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for r in df[df["status"] == "failed"].itertuples():
        console.print(f"  failed: {r.name}: {r.reason}")


@app.command()
def models() -> None:
    """List the bundled models, whether they are installed, and how to install them."""
    from ..models.zoo import DEFAULT_MODEL, list_models

    table = Table(title="bundled models")
    for col in ["name", "installed", "install", "description"]:
        table.add_column(col)
    for r in list_models().itertuples():
        name = r.name + (" (default)" if r.name == DEFAULT_MODEL else "")
        table.add_row(name, "yes" if r.installed else "no", r.install, r.description)
    console.print(table)


@app.command()
def weights(
    model: str = typer.Argument("smollm2-135m", help="bundled model name, toy-induction, HF directory, .safetensors or .gguf file"),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory"),
    exact: bool = typer.Option(True, "--exact/--fast", help="float64 (weightwatcher's numbers) or float32"),
    device: str = typer.Option("cpu", help="cpu, cuda or auto (cuda when a GPU is present): on CUDA full "
                               "spectra run on the GPU, batched across matrices of one shape"),
    heads: bool = typer.Option(False, "--heads", help="per-head and QK/OV circuit spectra"),
    mp_fit: bool = typer.Option(False, "--mp-fit", help="Marchenko-Pastur bulk fit"),
    randomize: bool = typer.Option(False, "--randomize", help="correlation traps (seeded shuffle)"),
    seed: int = typer.Option(0, help="seed for all randomness"),
    workers: int = typer.Option(DEFAULT_WORKERS, help="worker processes (one tensor each in memory)"),
    resume: bool = typer.Option(False, "--resume", help="skip matrices already in OUT's row log"),
    min_evals: int = typer.Option(8, help="skip matrices with fewer eigenvalues"),
    max_evals: int = typer.Option(15000, help="skip matrices with more eigenvalues"),
    max_n: int = typer.Option(50000, "--max-n", help="skip matrices whose long side exceeds this"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="allow .bin/.pt (torch.load weights_only=True)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    spectrum: str = typer.Option("auto", help="full, partial (top eigenvalues by block Lanczos, adaptive k) or "
                                 "auto: partial for M > --partial-min-m and for matrices beyond --max-evals/--max-n, "
                                 "which are then analyzed instead of skipped"),
    partial_min_m: int = typer.Option(16384, "--partial-min-m", help="with --spectrum auto, partial spectra above this M"),
    backend: str = typer.Option("local", help="local (process pool) or ray (per-tensor tasks on a Ray cluster; "
                                "pip install 'spectrascope\\[ray]')"),
    address: str = typer.Option(None, "--address", help="Ray cluster address ('auto' for a running one); "
                                "default: start a local Ray instance with --workers CPUs"),
    max_memory: float = typer.Option(2.0, "--max-memory", help="GiB of tensor working sets in flight at once "
                                     "(the local pool admits tasks within this budget)"),
) -> None:
    """Spectral metrics of every weight matrix: writes OUT/weights.parquet, .csv and summary.json."""
    from ..errors import SpectrascopeError
    from ..spectra.options import WeightsOptions
    from ..spectra.weights_run import run_weights

    for value, allowed, flag in ((device, ("cpu", "cuda", "auto"), "--device"), (spectrum, ("auto", "full", "partial"), "--spectrum"),
                                 (backend, ("local", "ray"), "--backend")):
        if value not in allowed:
            raise SpectrascopeError(f"{flag} must be one of {', '.join(allowed)} (got {value!r})")
    options = WeightsOptions(precision="exact" if exact else "fast", device=device, mp_fit=mp_fit,
                             randomize=randomize, heads=heads, seed=seed, min_evals=min_evals,
                             max_evals=max_evals, max_N=max_n, spectrum=spectrum, partial_min_m=partial_min_m)
    df, head_df = run_weights(model, options, out, workers, resume, show_progress=not quiet, allow_pickle=allow_pickle,
                              backend=backend, address=address, memory_budget=int(max_memory * 2**30))
    _print_weights_summary(df, f"weight spectra: {model}")
    console.print(f"wrote {out / 'weights.parquet'}, {out / 'weights.csv'}, {out / 'summary.json'}"
                  + (f", {out / 'weights_heads.parquet'}" if head_df is not None else ""))


