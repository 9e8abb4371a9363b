"""Mechanistic verbs (see spectrascope.mech); commands register on the shared app.

``spectrascope heads [MODEL]``: induction / previous-token / duplicate-token scores of every head.
``spectrascope ablate [MODEL]``: the effect of ablating each component on a metric.
MODEL may be ``toy-induction``, the shipped toy 2-layer attention-only model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from . import app, console, writes_out

MODEL_HELP = "bundled model name, HF directory, .safetensors or .gguf file, or toy-induction (the shipped toy model)"


@app.command()
@writes_out
def heads(
    model: str = typer.Argument("smollm2-135m", help=MODEL_HELP),
    kinds: str = typer.Option("induction,previous_token,duplicate_token", "--kinds", help="comma-separated scores"),
    n_seq: int = typer.Option(16, "--n-seq", help="random sequences averaged over"),
    seq_len: int = typer.Option(20, "--seq-len", help="length of the repeated random sequence"),
    seed: int = typer.Option(0, help="seed for the random sequences"),
    top: int = typer.Option(5, help="heads shown per score"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory"),
) -> None:
    """Attention-head scores on repeated random tokens: writes OUT/head_scores.parquet and .csv."""
    from ..mech.head_scores import head_scores, top_heads
    from ..models.loaded import load_model
    from ..tables import write_table

    loaded = load_model(model, device=device)
    requested = [k.strip() for k in kinds.split(",") if k.strip()]
    scores = head_scores(loaded, requested, n_seq=n_seq, seq_len=seq_len, seed=seed)
    for kind in requested:
        table = Table(title=f"top {top} {kind} heads: {model}")
        for col in ["layer.head", kind, *[k for k in requested if k != kind]]:
            table.add_column(col, justify="right")
        for r in top_heads(scores, kind, top).itertuples(index=False):
            table.add_row(f"{r.layer}.{r.head}", f"{getattr(r, kind):.3f}",
                          *[f"{getattr(r, k):.3f}" for k in requested if k != kind])
        console.print(table)
    pq, csv = write_table(scores, out, "head_scores")
    console.print(f"wrote {pq}, {csv}")


def _metric_and_reference(loaded: Any, metric: str, mode: str, corpus: str, n_seq: int, seq_len: int,
                          max_tokens: int, seed: int) -> tuple[Any, Any]:
    """The metric, and the reference batch for mean / resample ablation (None for zero)."""
    from ..errors import OptionError
    from ..mech.metrics import corpus_loss, repeated_batch, repeated_loss

    if metric == "induction-loss":
        chosen = repeated_loss(loaded, n_seq=n_seq, seq_len=seq_len, seed=seed, copy="second")
        reference = repeated_batch(loaded, n_seq, seq_len, seed + 1_000_003).input_ids if mode != "zero" else None
        return chosen, reference
    if metric == "loss":
        chosen = corpus_loss(loaded, corpus, max_tokens=max_tokens, seq_len=seq_len if seq_len > 20 else 128, seed=seed)
        reference = None
        if mode != "zero":  # another text of the same batch, row i <- row i + 1
            if chosen.input_ids.shape[0] < 2:
                raise OptionError("mean / resample ablation with --metric loss needs at least 2 texts (raise --max-tokens)")
            reference = {"input_ids": chosen.input_ids.roll(1, 0), "attention_mask": chosen.attention_mask.roll(1, 0)}
        return chosen, reference
    raise OptionError(f"unknown metric {metric!r}; use induction-loss or loss")


@app.command()
@writes_out
def ablate(
    model: str = typer.Argument("smollm2-135m", help=MODEL_HELP),
    heads: str = typer.Option("all", "--heads", help="all (every head), all-attn, all-mlp, or a comma list: "
                              "L.H heads, attn:L, mlp:L, spectral:WEIGHT:drop_top:K, spectral:WEIGHT:tail|bulk"),
    metric: str = typer.Option("induction-loss", "--metric", help="induction-loss (second copy of repeated random "
                               "tokens) or loss (next-token loss on --corpus)"),
    mode: str = typer.Option("zero", "--mode", help="zero, mean or resample"),
    corpus: str = typer.Option("code", "--corpus", help="corpus of --metric loss (built-in name or path)"),
    n_seq: int = typer.Option(4, "--n-seq", help="random sequences of --metric induction-loss"),
    seq_len: int = typer.Option(20, "--seq-len", help="repeated sequence length (or corpus text length for loss)"),
    max_tokens: int = typer.Option(1024, "--max-tokens", help="corpus tokens of --metric loss"),
    seed: int = typer.Option(0, help="seed for all randomness"),
    top: int = typer.Option(10, help="components shown"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar"),
) -> None:
    """Ablate each component in turn and measure a metric: writes OUT/ablation.parquet and .csv."""
    from ..mech.ablation_sweep import ablation_sweep, rank_by_damage
    from ..models.loaded import load_model
    from ..tables import write_table

    loaded = load_model(model, device=device)
    chosen, reference = _metric_and_reference(loaded, metric, mode, corpus, n_seq, seq_len, max_tokens, seed)
    table = ablation_sweep(loaded, heads, chosen, mode=mode, reference=reference, show_progress=not quiet)
    ranked = rank_by_damage(table)
    baseline = float(table["baseline"].iloc[0]) if len(table) else float("nan")
    view = Table(title=f"{mode} ablation of {model}: {chosen.name} (baseline {baseline:.4f}), most damaging first")
    for col in ["rank", "component", "value", "damage"]:
        view.add_column(col, justify="left" if col == "component" else "right")
    for r in ranked.head(top).itertuples(index=False):
        view.add_row(str(r.rank), r.component, f"{r.value:.4f}", f"{r.damage:+.4f}")
    console.print(view)
    pq, csv = write_table(table, out, "ablation")
    console.print(f"wrote {pq}, {csv}")
