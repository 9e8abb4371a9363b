"""``spectrascope lens [MODEL] PROMPT``: the logit lens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..errors import OptionError
from . import app, console, writes_out
from .options import DEFAULT_MODEL, DEFAULT_OUT, DeviceOpt, OutOpt, require_device


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
    words: list[str] = typer.Argument(
        ...,
        metavar="[MODEL] PROMPT",
        help=f"optional model (bundled name or path; default {DEFAULT_MODEL}), then the prompt",
    ),
    target: list[str] | None = typer.Option(
        None, "--target", help="token to follow, e.g. ' Paris' (repeatable; first token used)"
    ),
    k: Annotated[int, typer.Option("--k", min=1, help="top tokens kept per layer and position")] = 5,
    out: OutOpt = DEFAULT_OUT,
    device: DeviceOpt = "cpu",
) -> None:
    """Logit lens: every layer's residual stream read through the final norm and unembedding.

    Prints the last position layer by layer (top-1 token, target probabilities); writes
    OUT/lens.parquet, lens.csv and the heat map lens_heatmap.html / .png.
    """
    from ..mech.logit_lens import EMBED_LAYER, logit_lens
    from ..models.loaded import load_model
    from ..report.heatmaps import save_lens_heatmap
    from ..tables import write_table

    model_name, prompt = _model_and_prompt(words)
    model = load_model(model_name, device=require_device(device))
    df = logit_lens(model, prompt, targets=target, k=k)
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
