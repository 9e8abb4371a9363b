"""``spectrascope ablate [MODEL]``: the effect of ablating each component on a metric."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer
from rich.table import Table

from ..mech.ablation import AblationMode
from ..mech.components import NAME_FORMS
from ..mech.metrics import REPEAT_LENGTH
from . import app, console, writes_out
from .options import (
    DEFAULT_MODEL,
    DEFAULT_OUT,
    DeviceOpt,
    ModelArg,
    OutOpt,
    QuietOpt,
    SeedOpt,
    require_device,
)


class AblationMetric(str, Enum):
    """What ``ablate`` measures."""

    INDUCTION_LOSS = "induction-loss"
    """Next-token loss on the second copy of repeated random tokens."""
    LOSS = "loss"
    """Next-token loss on the first texts of ``--corpus``."""


def metric_and_reference(
    loaded: Any,
    metric: AblationMetric,
    mode: AblationMode,
    corpus: str,
    n_seq: int,
    seq_len: int,
    max_tokens: int,
    seed: int,
) -> tuple[Any, Any]:
    """The metric, and the reference batch of mean / resample ablation (None for zero), built as
    the study builds them (:mod:`spectrascope.mech.references`)."""
    from ..mech.metrics import corpus_loss, repeated_loss
    from ..mech.references import held_out_texts, other_sequences

    if metric is AblationMetric.INDUCTION_LOSS:
        chosen = repeated_loss(loaded, n_seq=n_seq, seq_len=seq_len, seed=seed, copy="second")
        reference = other_sequences(loaded, n_seq, seq_len, seed) if mode is not AblationMode.ZERO else None
        return chosen, reference
    chosen = corpus_loss(loaded, corpus, max_tokens=max_tokens, seq_len=seq_len, seed=seed)
    if mode is AblationMode.ZERO:
        return chosen, None
    if mode is AblationMode.RESAMPLE:  # other texts of the same shape: the batch's rows rolled by one
        return chosen, {"input_ids": chosen.input_ids.roll(1, 0), "attention_mask": chosen.attention_mask.roll(1, 0)}
    return chosen, held_out_texts(loaded, corpus, max_tokens, seq_len, seed)


@app.command()
@writes_out
def ablate(
    model: ModelArg = DEFAULT_MODEL,
    components: Annotated[
        str,
        typer.Option(
            "--heads",
            "--components",
            help=f"all (every head), all-attn, all-mlp, or a comma list of {', '.join(NAME_FORMS)}",
        ),
    ] = "all",
    metric: Annotated[
        AblationMetric, typer.Option("--metric", help="induction-loss or loss (on --corpus)")
    ] = AblationMetric.INDUCTION_LOSS,
    mode: Annotated[AblationMode, typer.Option("--mode", help="how heads and blocks are removed")] = AblationMode.MEAN,
    corpus: Annotated[str, typer.Option("--corpus", help="corpus of --metric loss (built-in name or path)")] = "code",
    n_seq: Annotated[int, typer.Option("--n-seq", min=1, help="random sequences of --metric induction-loss")] = 4,
    seq_len: Annotated[
        int, typer.Option("--seq-len", min=2, help="repeated sequence length (tokens per text for --metric loss)")
    ] = REPEAT_LENGTH,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=2, help="corpus tokens of --metric loss")] = 1024,
    seed: SeedOpt = 0,
    top: Annotated[int, typer.Option("--top", min=1, help="components shown")] = 10,
    device: DeviceOpt = "cpu",
    out: OutOpt = DEFAULT_OUT,
    quiet: QuietOpt = False,
) -> None:
    """Ablate each component in turn and measure a metric: writes OUT/ablation.parquet and .csv."""
    from ..mech.ablation_sweep import ablation_sweep, rank_by_damage
    from ..models.handle import as_model
    from ..models.loaded import load_model
    from ..tables import write_table

    loaded = load_model(model, device=require_device(device))
    as_model(loaded).require_causal_lm("ablate")
    chosen, reference = metric_and_reference(loaded, metric, mode, corpus, n_seq, seq_len, max_tokens, seed)
    table = ablation_sweep(loaded, components, chosen, mode=mode, reference=reference, show_progress=not quiet)
    ranked = rank_by_damage(table)
    baseline = float(table["baseline"].iloc[0]) if len(table) else float("nan")
    view = Table(
        title=f"{mode.value} ablation of {model}: {chosen.name} (baseline {baseline:.4f}), most damaging first"
    )
    for col in ["rank", "component", "value", "damage"]:
        view.add_column(col, justify="left" if col == "component" else "right")
    for r in ranked.head(top).itertuples(index=False):
        view.add_row(str(r.rank), r.component, f"{r.value:.4f}", f"{r.damage:+.4f}")
    console.print(view)
    pq, csv = write_table(table, out, "ablation")
    console.print(f"wrote {pq}, {csv}")
