"""Mechanistic verbs: lens (logit lens), patch (activation and attribution patching)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..errors import OptionError
from . import app, console, writes_out

DEFAULT_MODEL = "smollm2-135m"
SWEEPS = ("heads", "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


def _model_and_prompt(words: list[str]) -> tuple[str, str]:
    """``[MODEL] PROMPT`` -> (model, prompt); the model defaults to the bundled SmolLM2."""
    if len(words) == 1:
        return DEFAULT_MODEL, words[0]
    if len(words) == 2:
        return words[0], words[1]
    raise OptionError(f"expected [MODEL] PROMPT (1 or 2 arguments), got {len(words)}: quote the prompt")


@app.command()
@writes_out
def lens(
    words: list[str] = typer.Argument(..., metavar="[MODEL] PROMPT",
                                      help="optional model (bundled name or path; default smollm2-135m), then the prompt"),
    target: list[str] | None = typer.Option(None, "--target", help="token to follow, e.g. ' Paris' (repeatable; first token used)"),
    k: int = typer.Option(5, "--k", help="top tokens kept per layer and position"),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
) -> None:
    """Logit lens: every layer's residual stream read through the final norm and unembedding.

    Prints the last position layer by layer (top-1 token, target probabilities); writes
    OUT/lens.parquet, lens.csv and the heat map lens_heatmap.html / .png.
    """
    from ..mech.logit_lens import EMBED_LAYER, logit_lens, save_lens_heatmap
    from ..models.loaded import load_model
    from ..tables import write_table

    model_name, prompt = _model_and_prompt(words)
    model = load_model(model_name, device=device)
    df = logit_lens(model, prompt, targets=target, k=max(k, 1))
    last = df[df["position"] == df["position"].max()]
    targets = last[last["kind"] == "target"].drop_duplicates("token_id")[["token_id", "token"]]
    table = Table(title=f"logit lens: {model_name}, last position ({last['input_token'].iloc[0]!r})")
    for col in ["layer", "top-1", "p(top-1)"]:
        table.add_column(col, justify="left" if col == "top-1" else "right")
    for t in targets.itertuples():
        table.add_column(f"p({t.token!r})", justify="right")
        table.add_column("rank (0 = top)", justify="right")
    for layer, rows in last.groupby("layer", sort=True):
        top = rows[(rows["kind"] == "top") & (rows["rank"] == 0)].iloc[0]
        cells = ["emb" if layer == EMBED_LAYER else str(layer), repr(top["token"]), f"{top['prob']:.3f}"]
        for t in targets.itertuples():
            hit = rows[(rows["kind"] == "target") & (rows["token_id"] == t.token_id)].iloc[0]
            cells += [f"{hit['prob']:.3g}", str(int(hit["rank"]))]
        table.add_row(*cells)
    console.print(table)
    write_table(df, out, "lens")
    html, png = save_lens_heatmap(df, out, title=f"logit lens, top-1 token: {model_name}: {prompt!r}")
    console.print(f"wrote {out / 'lens.parquet'} (+ .csv), {html}, {png}")


@app.command()
@writes_out
def patch(
    model_name: str = typer.Argument(DEFAULT_MODEL, metavar="[MODEL]", help="bundled model name, toy-induction or path"),
    clean: str = typer.Option(..., "--clean", help="clean prompt, e.g. 'The capital of France is'"),
    corrupted: str = typer.Option(..., "--corrupted", help="corrupted prompt of the same token length"),
    correct: str = typer.Option(..., "--correct", help="token the clean prompt predicts, e.g. ' Paris'"),
    wrong: str = typer.Option(..., "--wrong", help="token the corrupted prompt predicts, e.g. ' Rome'"),
    sweep: str = typer.Option("heads", "--sweep", help=f"one of {', '.join(SWEEPS)} (the others: layers x positions)"),
    attribution: bool = typer.Option(True, "--attribution/--no-attribution", help="also attribution patching"),
    batch_size: int = typer.Option(32, "--batch-size", help="patched copies per forward pass"),
    top: int = typer.Option(10, "--top", help="rows printed (largest |effect|)"),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
) -> None:
    """Activation patching clean -> corrupted (metric: logit difference correct - wrong at the last position).

    Writes OUT/patching.parquet/.csv (normalized effect, delta; with --attribution both
    exact and attribution columns) and the heat map patching_heatmap.html / .png.
    """
    from ..mech.attribution import patching_comparison
    from ..mech.logit_lens import first_token_id, write_heatmap
    from ..mech.patching import (
        logit_diff,
        patch_sweep_heads,
        patch_sweep_layers_positions,
    )
    from ..models.loaded import load_model
    from ..tables import write_table

    if sweep not in SWEEPS:
        raise OptionError(f"unknown sweep {sweep!r}; use one of {', '.join(SWEEPS)}")
    model = load_model(model_name, device=device)
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
    console.print(f"logit diff {correct!r} - {wrong!r}: clean {df.attrs['clean_metric']:.3f}, "
                  f"corrupted {df.attrs['corrupted_metric']:.3f}")
    if attribution:
        console.print(f"attribution vs exact: Spearman {df.attrs['spearman']:.3f}; "
                      f"exact {df.attrs['seconds_exact']:.1f} s, attribution {df.attrs['seconds_attribution']:.1f} s")
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
    html, png = write_heatmap(grid.values, x_labels, [str(i) for i in grid.index], out, "patching_heatmap",
                              title=f"activation patching ({sweep}): {clean!r} -> {corrupted!r}",
                              x_title=column, colorbar="normalized effect", diverging=True)
    console.print(f"wrote {out / 'patching.parquet'} (+ .csv), {html}, {png}")
