"""``spectrascope energy [MODEL] --text TEXT``: per-token energy of one text, layer by layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from . import app, console, writes_out
from .options import DEFAULT_CORPORA, DEFAULT_MODEL, ModelArg


@app.command()
@writes_out
def energy(
    model: ModelArg = DEFAULT_MODEL,
    text: str = typer.Option(..., "--text", help="the text to score token by token"),
    sites: str = typer.Option("resid_post", help="sites (short forms or full names)"),
    corpus: str = typer.Option(DEFAULT_CORPORA, "--corpus", help="reference corpora (pooled); cached on disk"),
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="reference tokens per corpus")] = 2048,
    out: Annotated[Path | None, typer.Option("--out", help="write energy_tokens.parquet/.csv here")] = None,
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
