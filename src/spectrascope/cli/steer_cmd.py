"""``spectrascope steer [MODEL]``: the next-token distribution before and after a steering vector."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ..errors import OptionError
from . import app, console
from .options import DEFAULT_MODEL, DeviceOpt, ModelArg, require_device


@app.command()
def steer(
    model: ModelArg = DEFAULT_MODEL,
    positive: str = typer.Option(..., "--positive", help="prompts of the direction to add, separated by |"),
    negative: str = typer.Option(..., "--negative", help="prompts of the direction to subtract, separated by |"),
    layer: int = typer.Option(..., "--layer", help="block whose output (resid_post) is steered"),
    scale: float = typer.Option(1.0, "--scale", help="multiple of the difference of means to add"),
    prompt: str = typer.Option(..., "--prompt", help="the prompt whose next token is shown"),
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="tokens shown")] = 10,
    site: str = typer.Option("resid_post", "--site", help="site kind steered"),
    device: DeviceOpt = "cpu",
) -> None:
    """Next-token distribution of PROMPT before and after adding SCALE x (mean(positive) - mean(negative))."""
    from ..mech.steering import next_token_table, steering_effect, steering_vector
    from ..models.handle import as_model
    from ..models.loaded import load_model

    pos = [p for p in (s.strip() for s in positive.split("|")) if p]
    neg = [p for p in (s.strip() for s in negative.split("|")) if p]
    if not pos or not neg:
        raise OptionError("--positive and --negative each need at least one prompt (separate prompts with |)")
    if not prompt.strip():
        raise OptionError("--prompt is empty")
    loaded = load_model(model, device=require_device(device))
    as_model(loaded).require_causal_lm("steer")
    vector = steering_vector(loaded, pos, neg, layer, site=site)
    before = next_token_table(loaded, prompt, top_k)
    after = next_token_table(
        loaded, prompt, top_k, steering={"layer": layer, "vector": vector, "scale": scale, "site": site}
    )
    effect = steering_effect(loaded, [prompt], vector, layer, scales=[scale], site=site)
    table = Table(title=f"next token of {prompt!r}: before / after steering at layer {layer}, scale {scale:g}")
    for col in ["rank", "before", "p", "after", "p "]:
        table.add_column(col, justify="right" if col in ("rank", "p", "p ") else "left")
    for b, a in zip(before.itertuples(), after.itertuples(), strict=True):
        table.add_row(str(b.rank), repr(b.token), f"{b.prob:.3f}", repr(a.token), f"{a.prob:.3f}")
    console.print(table)
    console.print(
        f"|vector| = {float(vector.norm()):.2f}; KL(before || after) = {effect['kl_from_unsteered'].iloc[0]:.3f} nats"
    )
