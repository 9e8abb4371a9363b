"""The ``spectrascope`` command line: one subcommand per verb of the Python API.

User errors (SpectrascopeError) end in one line on stderr and exit code 2, never a traceback.
Set SPECTRASCOPE_DEBUG=1 to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import SpectrascopeError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
console = Console()
err_console = Console(stderr=True)

DEFAULT_WORKERS = min(os.cpu_count() or 1, 8)


def _print_weights_summary(df, title: str) -> None:
    from .spectra.summary import role_summary, worst_matrices

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
    from .models.zoo import DEFAULT_MODEL, list_models

    table = Table(title="bundled models")
    for col in ["name", "installed", "install", "description"]:
        table.add_column(col)
    for r in list_models().itertuples():
        name = r.name + (" (default)" if r.name == DEFAULT_MODEL else "")
        table.add_row(name, "yes" if r.installed else "no", r.install, r.description)
    console.print(table)


@app.command()
def weights(
    model: str = typer.Argument("smollm2-135m", help="bundled model name, HF directory, .safetensors or .gguf file"),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory"),
    exact: bool = typer.Option(True, "--exact/--fast", help="float64 (weightwatcher's numbers) or float32"),
    device: str = typer.Option("cpu", help="cpu, cuda or auto"),
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
) -> None:
    """Spectral metrics of every weight matrix: writes OUT/weights.parquet, .csv and summary.json."""
    from .spectra.options import WeightsOptions
    from .spectra.weights_run import run_weights

    options = WeightsOptions(precision="exact" if exact else "fast", device=device, mp_fit=mp_fit,
                             randomize=randomize, heads=heads, seed=seed, min_evals=min_evals,
                             max_evals=max_evals, max_N=max_n)
    df, head_df = run_weights(model, options, out, workers, resume, show_progress=not quiet, allow_pickle=allow_pickle)
    _print_weights_summary(df, f"weight spectra: {model}")
    console.print(f"wrote {out / 'weights.parquet'}, {out / 'weights.csv'}, {out / 'summary.json'}"
                  + (f", {out / 'weights_heads.parquet'}" if head_df is not None else ""))


@app.command()
def corpora() -> None:
    """List the built-in domain corpora with their sources and licenses."""
    from .corpora import list_corpora

    table = Table(title="built-in corpora (or pass a .txt, .jsonl, .parquet, folder or saved dataset)")
    for col in ["name", "description", "license"]:
        table.add_column(col)
    for r in list_corpora().itertuples():
        table.add_row(r.name, r.description, r.license)
    console.print(table)


@app.command()
def activations(
    model: str = typer.Argument("smollm2-135m", help="bundled model name or path"),
    corpus: str = typer.Option("code,python-docs,legal,calendar,arithmetic,geography", "--corpus",
                               help="comma-separated built-in names and/or paths"),
    sites: str = typer.Option("resid_post", help="comma-separated sites: resid_pre, resid_mid, resid_post, attn_out, mlp_out, z, mlp_post or full names"),
    max_tokens: int = typer.Option(4096, "--max-tokens", help="tokens per domain for the spectra"),
    energy_tokens: int = typer.Option(1024, "--energy-tokens", help="tokens per domain for token energies"),
    seq_len: int = typer.Option(128, "--seq-len", help="longest sequence fed to the model"),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Activation spectra and token energies per site, layer and domain: OUT/activations.*, OUT/energy.*."""
    from .activations.run import run_activations

    acts, energy = run_activations(model, corpus, sites, max_tokens, energy_tokens, seq_len, out_dir=out,
                                   show_progress=not quiet)
    table = Table(title=f"activation spectra: {model} (mean over layers)")
    summary = acts.groupby(["site", "domain"])[["alpha", "effective_rank", "erg_delta", "trace_log_energy"]].mean().reset_index()
    if len(energy):
        summary = summary.merge(energy.groupby(["site", "domain"])["energy_mean"].mean().reset_index(), on=["site", "domain"])
    for col in summary.columns:
        table.add_column(col, justify="left" if col in ("site", "domain") else "right")
    for r in summary.itertuples(index=False):
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r])
    console.print(table)
    console.print(f"wrote {out / 'activations.parquet'}, {out / 'energy.parquet'} (+ .csv)")


@app.command()
def energy(
    model: str = typer.Argument("smollm2-135m", help="bundled model name or path"),
    text: str = typer.Option(..., "--text", help="the text to score token by token"),
    sites: str = typer.Option("resid_post", help="sites (short forms or full names)"),
    corpus: str = typer.Option("code,python-docs,legal,calendar,arithmetic,geography", "--corpus",
                               help="reference corpora (pooled); cached on disk"),
    max_tokens: int = typer.Option(2048, "--max-tokens", help="reference tokens per corpus"),
    out: Optional[Path] = typer.Option(None, "--out", help="write energy_tokens.parquet/.csv here"),
) -> None:
    """Per-token energy of one text, layer by layer, against a reference Gaussian."""
    from .activations.energy_profile import text_energy
    from .tables import write_table

    df = text_energy(model, text, sites, corpus, max_tokens)
    for site, g in df.groupby("site"):
        grid = g.pivot(index="layer", columns="position", values="energy")
        tokens = g.drop_duplicates("position").sort_values("position")["token"].tolist()
        table = Table(title=f"token energy at {site} (rows: layers; 0.5 = typical of the reference)")
        table.add_column("layer", justify="right")
        for t in tokens:
            table.add_column(t[:10], justify="right")
        for layer, row in grid.iterrows():
            table.add_row(str(layer), *[_energy_cell(v) for v in row.values])
        console.print(table)
    if out:
        write_table(df, out, "energy_tokens")
        console.print(f"wrote {out / 'energy_tokens.parquet'} (+ .csv)")


def _energy_cell(value: float) -> str:
    style = "red" if value > 2 else "yellow" if value > 1 else "green"
    return f"[{style}]{value:.2f}[/{style}]"


@app.command()
def study(
    model: str = typer.Argument("smollm2-135m", help="bundled model name or path"),
    out: Path = typer.Option(Path("study-out"), "--out", help="output directory"),
    workers: int = typer.Option(DEFAULT_WORKERS, help="worker processes"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted study"),
    seed: int = typer.Option(0, help="seed for all randomness"),
) -> None:
    """The main job: every analysis on a model, tables plus OUT/report.html."""
    from .study import run_study

    report = run_study(model, out, workers=workers, resume=resume, seed=seed, show_progress=True)
    console.print(f"report: {report}")


def main() -> None:
    """Console-script entry point with one-line user errors."""
    try:
        app(standalone_mode=False)
    except SpectrascopeError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - last resort: never a bare traceback
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if os.environ.get("SPECTRASCOPE_DEBUG"):
            raise
        err_console.print(f"internal error: {type(err).__name__}: {err} (set SPECTRASCOPE_DEBUG=1 for the traceback)",
                          markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
