"""Activation verbs: corpora, activations, energy."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from . import app, console, writes_out

@app.command()
def corpora() -> None:
    """List the built-in domain corpora with their sources and licenses."""
    from ..corpora import list_corpora

    table = Table(title="built-in corpora (or pass a .txt, .jsonl, .parquet, folder or saved dataset)")
    for col in ["name", "description", "license"]:
        table.add_column(col)
    for r in list_corpora().itertuples():
        table.add_row(r.name, r.description, r.license)
    console.print(table)


@app.command()
@writes_out
def activations(
    model: str = typer.Argument("smollm2-135m", help="bundled model name, toy-induction or path"),
    corpus: str = typer.Option("code,python-docs,legal,calendar,arithmetic,geography", "--corpus",
                               help="comma-separated built-in names and/or paths"),
    sites: str = typer.Option("resid_post", help="comma-separated sites: resid_pre, resid_mid, resid_post, attn_out, mlp_out, z, mlp_post or full names"),
    max_tokens: int = typer.Option(4608, "--max-tokens", help="statistic tokens per domain (spectra and energies)"),
    calibration_tokens: int = typer.Option(768, "--calibration-tokens",
                                           help="tokens per domain of the calibration texts (reference, massive channels)"),
    seq_len: int = typer.Option(128, "--seq-len", help="longest sequence fed to the model"),
    seed: int = typer.Option(0, help="seed for all randomness"),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Activation spectra (raw and robust), token energies and massive activations per site, layer and domain."""
    from ..activations.run import run_activations

    acts, energy, _ = run_activations(model, corpus, sites, max_tokens, calibration_tokens, seq_len, seed=seed,
                                      out_dir=out, show_progress=not quiet)
    table = Table(title=f"activation spectra: {model} (robust view, mean over layers)")
    robust = acts[acts["variant"] == "robust"]
    summary = robust.groupby(["site", "domain"])[["alpha", "effective_rank", "effective_rank_null", "trace_log_energy"]].mean().reset_index()
    if len(energy):
        summary = summary.merge(energy.groupby(["site", "domain"])["energy_mean"].mean().reset_index(), on=["site", "domain"])
    for col in summary.columns:
        table.add_column(col, justify="left" if col in ("site", "domain") else "right")
    for r in summary.itertuples(index=False):
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r])
    console.print(table)
    console.print(f"wrote {out / 'activations.parquet'}, {out / 'energy.parquet'}, {out / 'massive_activations.parquet'} (+ .csv)")


@app.command()
@writes_out
def energy(
    model: str = typer.Argument("smollm2-135m", help="bundled model name, toy-induction or path"),
    text: str = typer.Option(..., "--text", help="the text to score token by token"),
    sites: str = typer.Option("resid_post", help="sites (short forms or full names)"),
    corpus: str = typer.Option("code,python-docs,legal,calendar,arithmetic,geography", "--corpus",
                               help="reference corpora (pooled); cached on disk"),
    max_tokens: int = typer.Option(2048, "--max-tokens", help="reference tokens per corpus"),
    out: Optional[Path] = typer.Option(None, "--out", help="write energy_tokens.parquet/.csv here"),
) -> None:
    """Per-token energy of one text, layer by layer, against a reference Gaussian."""
    from ..activations.energy_profile import text_energy
    from ..tables import write_table

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


