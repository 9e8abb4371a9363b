"""``spectrascope activations [MODEL]``: activation spectra (raw and robust), token energies and
massive activations per site, layer and domain."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from . import app, console, writes_out
from .options import (
    DEFAULT_CORPORA,
    DEFAULT_MODEL,
    DEFAULT_OUT,
    ModelArg,
    OutOpt,
    QuietOpt,
    SeedOpt,
)


@app.command()
@writes_out
def activations(
    model: ModelArg = DEFAULT_MODEL,
    corpus: str = typer.Option(DEFAULT_CORPORA, "--corpus", help="comma-separated built-in names and/or paths"),
    sites: str = typer.Option(
        "resid_post",
        help="comma-separated sites: resid_pre, resid_mid, resid_post, attn_out, mlp_out, z, mlp_post or full names",
    ),
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="statistic tokens per domain (spectra and energies)")
    ] = 4608,
    calibration_tokens: Annotated[
        int,
        typer.Option(
            "--calibration-tokens",
            min=1,
            help="tokens per domain of the calibration texts (reference, massive channels)",
        ),
    ] = 768,
    seq_len: Annotated[int, typer.Option("--seq-len", min=2, help="longest sequence fed to the model")] = 128,
    seed: SeedOpt = 0,
    out: OutOpt = DEFAULT_OUT,
    quiet: QuietOpt = False,
) -> None:
    """Activation spectra (raw and robust), token energies and massive activations per site, layer and domain."""
    from ..activations.run import run_activations

    acts, energy, _ = run_activations(
        model, corpus, sites, max_tokens, calibration_tokens, seq_len, seed=seed, out_dir=out, show_progress=not quiet
    )
    table = Table(title=f"activation spectra: {model} (robust view, mean over layers)")
    robust = acts[acts["variant"] == "robust"]
    summary = (
        robust.groupby(["site", "domain"])[["alpha", "effective_rank", "effective_rank_null", "trace_log_energy"]]
        .mean()
        .reset_index()
    )
    if len(energy):
        summary = summary.merge(
            energy.groupby(["site", "domain"])["energy_mean"].mean().reset_index(), on=["site", "domain"]
        )
    for col in summary.columns:
        table.add_column(col, justify="left" if col in ("site", "domain") else "right")
    for r in summary.itertuples(index=False):
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r])
    console.print(table)
    console.print(
        f"wrote {out / 'activations.parquet'}, {out / 'energy.parquet'}, {out / 'massive_activations.parquet'} (+ .csv)"
    )
