"""``spectrascope corpora``: the built-in domain corpora with their sources and licenses."""

from __future__ import annotations

from rich.table import Table

from . import app, console


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
