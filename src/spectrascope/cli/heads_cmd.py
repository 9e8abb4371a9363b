"""``spectrascope heads [MODEL]``: induction, previous-token and duplicate-token scores of every head."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..mech.head_scores import HEAD_SCORE_KINDS
from . import app, console, writes_out
from .options import (
    DEFAULT_MODEL,
    DEFAULT_OUT,
    DeviceOpt,
    ModelArg,
    OutOpt,
    SeedOpt,
    require_device,
)


@app.command()
@writes_out
def heads(
    model: ModelArg = DEFAULT_MODEL,
    kinds: str = typer.Option(",".join(HEAD_SCORE_KINDS), "--kinds", help="comma-separated scores"),
    n_seq: Annotated[int, typer.Option("--n-seq", min=1, help="random sequences averaged over")] = 16,
    seq_len: Annotated[int, typer.Option("--seq-len", min=2, help="length of the repeated random sequence")] = 20,
    seed: SeedOpt = 0,
    top: Annotated[int, typer.Option("--top", min=1, help="heads shown per score")] = 5,
    device: DeviceOpt = "cpu",
    out: OutOpt = DEFAULT_OUT,
) -> None:
    """Attention-head scores on repeated random tokens: writes OUT/head_scores.parquet and .csv."""
    from ..mech.head_scores import head_scores, top_heads
    from ..models.loaded import load_model
    from ..tables import write_table

    loaded = load_model(model, device=require_device(device))
    requested = [k.strip() for k in kinds.split(",") if k.strip()]
    scores = head_scores(loaded, requested, n_seq=n_seq, seq_len=seq_len, seed=seed)
    for kind in requested:
        table = Table(title=f"top {top} {kind} heads: {model}")
        for col in ["layer.head", f"{kind} [95% over sequences]", *[k for k in requested if k != kind]]:
            table.add_column(col, justify="right")
        for r in top_heads(scores, kind, top).to_dict("records"):
            table.add_row(
                f"{r['layer']}.{r['head']}",
                f"{r[kind]:.3f} [{r[kind + '_lo']:.3f}, {r[kind + '_hi']:.3f}]",
                *[f"{r[k]:.3f}" for k in requested if k != kind],
            )
        console.print(table)
    pq, csv = write_table(scores, out, "head_scores")
    console.print(f"wrote {pq}, {csv}")
