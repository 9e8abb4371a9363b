"""``spectrascope patch [MODEL]``: activation and attribution patching, clean -> corrupted."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from . import app, console, writes_out
from .options import (
    DEFAULT_MODEL,
    DEFAULT_OUT,
    DeviceOpt,
    ModelArg,
    OutOpt,
    require_device,
)


class Sweep(str, Enum):
    """What ``patch`` sweeps: every head, or layers x positions of one site kind."""

    HEADS = "heads"
    RESID_PRE = "resid_pre"
    RESID_MID = "resid_mid"
    RESID_POST = "resid_post"
    ATTN_OUT = "attn_out"
    MLP_OUT = "mlp_out"


@app.command()
@writes_out
def patch(
    model_name: ModelArg = DEFAULT_MODEL,
    clean: str = typer.Option(..., "--clean", help="clean prompt, e.g. 'The capital of France is'"),
    corrupted: str = typer.Option(..., "--corrupted", help="corrupted prompt of the same token length"),
    correct: str = typer.Option(..., "--correct", help="token the clean prompt predicts, e.g. ' Paris'"),
    wrong: str = typer.Option(..., "--wrong", help="token the corrupted prompt predicts, e.g. ' Rome'"),
    sweep: Annotated[
        Sweep, typer.Option("--sweep", help="heads, or a site kind swept over layers x positions")
    ] = Sweep.HEADS,
    attribution: bool = typer.Option(True, "--attribution/--no-attribution", help="also attribution patching"),
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="patched copies per forward pass")] = 32,
    top: Annotated[int, typer.Option("--top", min=1, help="rows printed (largest |effect|)")] = 10,
    out: OutOpt = DEFAULT_OUT,
    device: DeviceOpt = "cpu",
) -> None:
    """Activation patching clean -> corrupted (metric: logit difference correct - wrong at the last position).

    Writes OUT/patching.parquet/.csv (normalized effect, delta; with --attribution both
    exact and attribution columns) and the heat map patching_heatmap.html / .png.
    """
    from ..mech.attribution import patching_comparison
    from ..mech.logit_lens import first_token_id
    from ..mech.patching import (
        logit_diff,
        patch_sweep_heads,
        patch_sweep_layers_positions,
    )
    from ..models.handle import as_model
    from ..models.loaded import load_model
    from ..report.heatmaps import write_heatmap
    from ..tables import write_table

    model = load_model(model_name, device=require_device(device))
    as_model(model).require_causal_lm("patch")
    sweep = sweep.value
    metric = logit_diff(first_token_id(model.tokenizer, correct), first_token_id(model.tokenizer, wrong))
    column = "head" if sweep == "heads" else "position"
    if attribution:
        kind = {"sweep": "heads"} if sweep == "heads" else {"sweep": "layers_positions", "site_kind": sweep}
        df = patching_comparison(model, clean, corrupted, metric=metric, batch_size=batch_size, **kind)
        effect = "effect_exact"
    elif sweep == "heads":
        df = patch_sweep_heads(model, clean, corrupted, metric=metric, batch_size=batch_size)
        effect = "effect"
    else:
        df = patch_sweep_layers_positions(model, clean, corrupted, sweep, metric=metric, batch_size=batch_size)
        effect = "effect"
    console.print(
        f"logit diff {correct!r} - {wrong!r}: clean {df.attrs['clean_metric']:.3f}, "
        f"corrupted {df.attrs['corrupted_metric']:.3f}"
    )
    if attribution:
        console.print(
            f"attribution vs exact: Spearman {df.attrs['spearman']:.3f}; "
            f"exact {df.attrs['seconds_exact']:.1f} s, attribution {df.attrs['seconds_attribution']:.1f} s"
        )
    table = Table(title=f"patching {sweep}: largest normalized effects (1 = restores the clean logit diff)")
    shown = [c for c in df.columns if c != "site"]
    for col in shown:
        table.add_column(col, justify="right")
    for row in df.reindex(df[effect].abs().sort_values(ascending=False).index).head(top).itertuples(index=False):
        values = row._asdict()
        table.add_row(*[f"{values[c]:.3f}" if isinstance(values[c], float) else str(values[c]) for c in shown])
    console.print(table)
    write_table(df, out, "patching")
    grid = df.pivot(index="layer", columns=column, values=effect).sort_index()
    if column == "position":
        tokens = [model.tokenizer.decode([int(t)]) for t in model.tokenizer(clean)["input_ids"]]
        x_labels = [f"{p}:{tokens[p]!r}" for p in grid.columns]
    else:
        x_labels = [str(h) for h in grid.columns]
    html, png = write_heatmap(
        grid.values,
        x_labels,
        [str(i) for i in grid.index],
        out,
        "patching_heatmap",
        title=f"activation patching ({sweep}): {clean!r} -> {corrupted!r}",
        x_title=column,
        colorbar="normalized effect",
        diverging=True,
    )
    console.print(f"wrote {out / 'patching.parquet'} (+ .csv), {html}, {png}")
