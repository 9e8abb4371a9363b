"""Sparse-autoencoder verbs: ``spectrascope sae train | eval | features``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..corpora import DEFAULT_CORPORA
from . import app, console, writes_out

sae_app = typer.Typer(no_args_is_help=True, help="Sparse autoencoders: train on a site, evaluate, features vs domains.")
app.add_typer(sae_app, name="sae")


def _print_row(title: str, df, columns: list[str]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in ("domain", "top_domain", "token", "context") else "right")
    for row in df[columns].itertuples(index=False):
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


@sae_app.command("train")
def train(
    model: str = typer.Argument(..., help="bundled model name or path"),
    site: str = typer.Option("blocks.15.hook_resid_post", "--site", help="the site the SAE reads (full name)"),
    corpus: str = typer.Option(DEFAULT_CORPORA, "--corpus", help="comma-separated built-in corpora and/or paths"),
    arch: str = typer.Option("topk", "--arch", help="relu, topk, batch_topk or jumprelu"),
    d_sae: int | None = typer.Option(None, "--d-sae", help="features (default: 8 x the site's width)"),
    k: float | None = typer.Option(
        None, "--k", help="active features per token (topk, batch_topk) or target L0 (relu, jumprelu)"
    ),
    tokens: int = typer.Option(200_000, "--tokens", help="training tokens"),
    store_tokens: int | None = typer.Option(None, "--store-tokens", help="activations to collect (default: --tokens)"),
    store: Path | None = typer.Option(
        None, "--store", help="activation store folder (default: OUT-activations); resumed if present"
    ),
    dtype: str = typer.Option("float16", "--store-dtype", help="float16 or bfloat16"),
    batch_size: int = typer.Option(1024, "--batch-size", help="tokens per step"),
    lr: float | None = typer.Option(None, "--lr", help="learning rate (default: scaled to d_sae)"),
    seq_len: int = typer.Option(128, "--seq-len", help="tokens per text"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    out: Path = typer.Option(..., "--out", help="SAE folder to write (SAELens format)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
) -> None:
    """Train an SAE on a site's activations over corpora (first position left out); write a SAELens folder."""
    from ..sae.train import train_sae

    sae = train_sae(
        model,
        arch=arch,
        d_sae=d_sae,
        k=k,
        site=site,
        corpus=corpus,
        tokens=tokens,
        store_tokens=store_tokens,
        store_dir=store,
        store_dtype=dtype,
        seq_len=seq_len,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        out=out,
        show_progress=not quiet,
    )
    info = sae.metadata["training"]
    console.print(
        f"trained {arch} SAE (d_in {sae.d_in}, d_sae {sae.d_sae}) on {info['tokens']:,} tokens in "
        f"{info['seconds']:.1f} s ({info['tokens_per_s']:,.0f} tokens/s): L0 {info['final_l0']:.1f}, "
        f"explained variance {info['final_explained_variance']:.3f}, dead {info['final_dead_fraction']:.1%}"
    )
    if info.get("l0_match"):
        match = info["l0_match"]
        console.print(
            f"firing cutoffs matched to the target L0: {match['l0_before']:.1f} -> {match['l0_after']:.1f} "
            f"on {match['rows']:,} training rows"
        )
    console.print(f"wrote {out} (cfg.json, sae_weights.safetensors, training_log.parquet)")


@sae_app.command("eval")
@writes_out
def evaluate(
    model: str = typer.Argument(..., help="bundled model name or path"),
    sae_dir: Path = typer.Option(..., "--sae", help="SAE folder (SAELens format)"),
    site: str | None = typer.Option(None, "--site", help="site (default: the SAE's hook_name)"),
    corpus: str = typer.Option(DEFAULT_CORPORA, "--corpus", help="domains (held-out text is used)"),
    tokens: int = typer.Option(2048, "--tokens", help="held-out tokens per domain"),
    seq_len: int = typer.Option(128, "--seq-len"),
    out: Path | None = typer.Option(None, "--out", help="write sae_quality.parquet/.csv here"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Reconstruction, sparsity and the downstream loss with the SAE spliced in, per domain."""
    from ..sae.evaluate import SUMMARY_COLUMNS, evaluate_sae
    from ..sae.saelens_io import load_sae
    from ..tables import write_table

    sae = load_sae(sae_dir)
    df = evaluate_sae(sae, model, site=site, corpus=corpus, tokens=tokens, seq_len=seq_len, show_progress=not quiet)
    _print_row(f"SAE quality ({sae_dir})", df, SUMMARY_COLUMNS)
    if out:
        write_table(df, out, "sae_quality")
        console.print(f"wrote {out / 'sae_quality.parquet'} (+ .csv)")


@sae_app.command("features")
@writes_out
def features(
    model: str = typer.Argument(..., help="bundled model name or path"),
    sae_dir: Path = typer.Option(..., "--sae", help="SAE folder (SAELens format)"),
    site: str | None = typer.Option(None, "--site", help="site (default: the SAE's hook_name)"),
    corpus: str = typer.Option(DEFAULT_CORPORA, "--corpus", help="domains to compare (at least two)"),
    tokens: int = typer.Option(2048, "--tokens", help="held-out tokens per domain"),
    top: int = typer.Option(10, "--top", help="domain-selective features to print"),
    seq_len: int = typer.Option(128, "--seq-len"),
    out: Path = typer.Option(Path("spectrascope-out"), "--out", help="output directory for the tables"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Specificity and sensitivity of every feature per domain, top examples, promoted tokens."""
    from ..sae.features import sae_features, write_feature_tables
    from ..sae.saelens_io import load_sae

    sae = load_sae(sae_dir)
    report = sae_features(sae, model, site=site, corpus=corpus, tokens=tokens, seq_len=seq_len, show_progress=not quiet)
    _print_row(
        "domain-selective features (held-out text)",
        report.ranking.head(top),
        ["rank", "feature", "top_domain", "specificity", "sensitivity", "q_value"],
    )
    write_feature_tables(report, out)
    console.print(f"wrote {out}/feature_*.parquet (+ .csv)")
