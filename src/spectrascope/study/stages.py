"""The stages of ``spectrascope study``. Each reads the context, writes its tables into
``OUT/<stage>/`` (Parquet + CSV) and returns nothing; the report reads the tables back.

    weights       weight spectra (+ MP fit, traps, per-head circuits)          (data-free)
    activations   activation spectra and token energies by layer and domain
    mechanisms    head scores, logit lens, induction-loss ablation of every head
    bridge        eigenmode overlap, cross-layer alignment, CKA, spectral vs component
                  ablation per domain, spectra-vs-mechanism correlations, energy vs attribution
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..progress import progress_bar
from ..tables import write_table
from .context import StudyContext

STAGES = ("weights", "activations", "mechanisms", "bridge")


def weights_stage(ctx: StudyContext) -> None:
    from ..spectra.options import WeightsOptions
    from ..spectra.weights_run import run_weights

    options = WeightsOptions(mp_fit=True, randomize=True, heads=True, seed=ctx.seed)
    run_weights(ctx.model, options, ctx.stage_dir("weights"), ctx.workers, resume=True, show_progress=ctx.show_progress)


def activations_stage(ctx: StudyContext) -> None:
    from ..activations.run import run_activations

    b = ctx.budget
    run_activations(ctx.loaded(), b.corpora, "resid_post", b.activation_tokens, b.energy_tokens, b.seq_len,
                    out_dir=ctx.stage_dir("activations"), show_progress=ctx.show_progress)


def mechanisms_stage(ctx: StudyContext) -> None:
    from ..mech.ablation import ablation_sweep
    from ..mech.head_scores import head_scores
    from ..mech.logit_lens import logit_lens
    from ..mech.metrics import repeated_loss

    loaded, b, out = ctx.loaded(), ctx.budget, ctx.stage_dir("mechanisms")
    write_table(head_scores(loaded, n_seq=b.head_sequences, seed=ctx.seed), out, "head_scores")
    write_table(logit_lens(loaded, b.lens_prompt, targets=[b.lens_target]), out, "lens")
    second = repeated_loss(loaded, n_seq=b.head_sequences, seed=ctx.seed, copy="second")
    first = repeated_loss(loaded, n_seq=b.head_sequences, seed=ctx.seed, copy="first")
    reference = repeated_loss(loaded, n_seq=b.head_sequences, seed=ctx.seed + 1, copy="all")  # other sequences
    sweep = ablation_sweep(loaded, "all", second, mode=b.ablation_mode, reference=reference,
                           show_progress=ctx.show_progress)
    sweep["first_copy_loss"] = float(first(loaded))
    write_table(sweep, out, "ablation_heads")


def _evenly_spaced(n_layers: int, k: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n_layers - 1, max(1, min(k, n_layers)))})


def _domain_ablations(ctx: StudyContext, roles: dict[str, tuple[int, str]]) -> pd.DataFrame:
    """Per domain: every layer's attention and MLP block; at a few layers every head and the
    spectral edits (tail only, bulk only, top-k removed) of the attention output and MLP down
    projections. Effect = change of the domain's next-token loss."""
    from ..corpora import corpus_texts
    from ..mech.ablation import AttnBlock, Head, MlpBlock, SpectralComponent, ablation_sweep
    from ..mech.metrics import corpus_loss

    loaded, b = ctx.loaded(), ctx.budget
    n_layers, n_heads = loaded.arch.n_layers, loaded.arch.n_heads
    chosen = _evenly_spaced(n_layers, b.ablation_layers)
    components: list = [c for L in range(n_layers) for c in (AttnBlock(L), MlpBlock(L))]
    components += [Head(L, h) for L in chosen for h in range(n_heads)]
    edited = [n for n, (L, role) in roles.items() if L in chosen and role in ("o", "mlp_down", "mlp_out")]
    for name in edited:
        components += [SpectralComponent(name, "tail"), SpectralComponent(name, "bulk"),
                       SpectralComponent(name, "drop_top", b.top_k)]
    tables = []
    items = [item.strip() for item in b.corpora.split(",") if item.strip()]
    domains = corpus_texts(b.corpora)
    metrics = [corpus_loss(loaded, item, max_tokens=b.loss_tokens, seq_len=b.seq_len, seed=ctx.seed) for item in items]
    reference = _pooled_batch(metrics)
    with progress_bar(f"domain ablations ({len(components)} edits)", len(domains), ctx.show_progress) as advance:
        for metric, corpus in zip(metrics, domains, strict=True):
            t = ablation_sweep(loaded, components, metric, mode=b.ablation_mode, reference=reference)
            t.insert(0, "domain", corpus.name)
            tables.append(t)
            advance(1)
    df = pd.concat(tables, ignore_index=True)
    mean_damage = df.groupby("component")["damage"].transform("mean")
    df["domain_specificity"] = df["damage"] / mean_damage.where(mean_damage.abs() > 1e-12)
    return df


def _pooled_batch(metrics: list) -> dict[str, torch.Tensor]:
    """The batches of several losses stacked into one right-padded batch (input_ids, attention_mask)."""
    width = max(m.input_ids.shape[1] for m in metrics)
    ids, masks = [], []
    for m in metrics:
        mask = m.attention_mask if m.attention_mask is not None else torch.ones_like(m.input_ids)
        pad = width - m.input_ids.shape[1]
        ids.append(torch.nn.functional.pad(m.input_ids, (0, pad)))
        masks.append(torch.nn.functional.pad(mask, (0, pad)))
    return {"input_ids": torch.cat(ids), "attention_mask": torch.cat(masks)}


def _layer_table(ctx: StudyContext, ablations: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, domain): spectral metrics of the layer's matrices, the activation spectrum
    at its resid_post, and the causal importance of its attention and MLP blocks."""
    weights = pd.read_parquet(ctx.out / "weights" / "weights.parquet")
    w = weights[(weights["status"] == "success") & (weights["block"] >= 0)]
    per_layer = w.groupby("block").agg(alpha=("alpha", "mean"), alpha_weighted=("alpha_weighted", "mean"),
                                       erg_delta=("erg_delta", "mean"), num_traps=("num_traps", "sum"))
    acts = pd.read_parquet(ctx.out / "activations" / "activations.parquet")
    act = acts[acts["site"] == "resid_post"].set_index(["layer", "domain"])[["alpha", "effective_rank", "trace_log_energy"]]
    act = act.add_prefix("activation_")
    blocks = ablations[ablations["kind"].isin(["attn", "mlp"])].pivot_table(
        index=["layer", "domain"], columns="kind", values="damage").add_suffix("_damage")
    table = blocks.join(act, how="left").reset_index()
    return table.merge(per_layer.reset_index().rename(columns={"block": "layer"}), on="layer", how="left")


def bridge_stage(ctx: StudyContext) -> None:
    from ..bridge.alignment import alignment_table, cka_matrix
    from ..bridge.correlation import correlation_table
    from ..bridge.energy_attribution import energy_vs_attribution
    from ..bridge.overlap_run import model_roles, run_overlap

    loaded, b, out = ctx.loaded(), ctx.budget, ctx.stage_dir("bridge")
    overlap, modes, subs = run_overlap(loaded, b.corpora, b.overlap_tokens, b.seq_len, show_progress=ctx.show_progress)
    write_table(overlap, out, "overlap")
    write_table(modes, out, "overlap_modes")
    roles = model_roles(loaded.hf)
    write_table(alignment_table(subs, roles), out, "alignment")
    del subs  # every matrix's singular vectors: ~1 GB on SmolLM2, not needed by the rest
    write_table(cka_matrix(_resid_sample(ctx)), out, "cka")

    ablations = _domain_ablations(ctx, roles)
    write_table(ablations, out, "ablation_domains")
    layers = _layer_table(ctx, ablations)
    write_table(layers, out, "layers")
    metrics = ["alpha", "alpha_weighted", "erg_delta", "num_traps", "activation_alpha", "activation_effective_rank"]
    corr = [correlation_table(layers, metrics, ["attn_damage", "mlp_damage"], group="domain", seed=ctx.seed)]
    heads = _head_table(ctx)
    if heads is not None:
        corr.append(correlation_table(heads, ["ov_alpha", "qk_alpha", "ov_alpha_weighted", "induction"], ["damage"],
                                      seed=ctx.seed).assign(domain="induction (heads)"))
    write_table(pd.concat(corr, ignore_index=True), out, "correlation")

    tokens, agreement = energy_vs_attribution(loaded, b.attribution_text, b.corpora, b.overlap_tokens, seq_len=b.seq_len)
    write_table(tokens, out, "energy_tokens")
    write_table(agreement, out, "energy_agreement")


def _head_table(ctx: StudyContext) -> pd.DataFrame | None:
    """Per head: OV/QK spectra, induction score and induction-loss damage."""
    heads_path = ctx.out / "weights" / "weights_heads.parquet"
    sweep_path = ctx.out / "mechanisms" / "ablation_heads.parquet"
    if not heads_path.exists() or not sweep_path.exists():
        return None
    spectra = pd.read_parquet(heads_path)
    spectra = spectra[spectra["circuit"].isin(["ov", "qk"]) & (spectra["status"] == "success")]
    wide = spectra.pivot_table(index=["block", "head"], columns="circuit", values=["alpha", "alpha_weighted"])
    wide.columns = [f"{c}_{m}" for m, c in wide.columns]
    wide = wide.reset_index().rename(columns={"block": "layer"})
    sweep = pd.read_parquet(sweep_path)[["layer", "head", "damage"]]
    scores = pd.read_parquet(ctx.out / "mechanisms" / "head_scores.parquet")[["layer", "head", "induction"]]
    return wide.merge(sweep, on=["layer", "head"]).merge(scores, on=["layer", "head"])


def _resid_sample(ctx: StudyContext) -> dict[int, np.ndarray]:
    """resid_post of every layer on ``cka_tokens`` tokens mixed from all domains."""
    from ..activations.batching import token_batches
    from ..corpora import corpus_texts
    from ..trace import run_with_cache

    loaded, b = ctx.loaded(), ctx.budget
    domains = corpus_texts(b.corpora)
    per_domain = max(1, b.cka_tokens // len(domains))
    layers: dict[int, list[torch.Tensor]] = {}
    for corpus in domains:
        for batch in token_batches(loaded.tokenizer, corpus.texts, per_domain, b.seq_len):
            mask = batch.pop("stats_mask").bool()
            _, cache = run_with_cache(loaded.hf, batch["input_ids"].to(loaded.device), sites="resid_post",
                                      attention_mask=batch["attention_mask"].to(loaded.device))
            for name, act in cache.items():
                layer = int(name.split(".")[1])
                layers.setdefault(layer, []).append(act[mask.to(act.device)].double().cpu())
    return {L: torch.cat(parts).numpy() for L, parts in layers.items()}


STAGE_FUNCTIONS = {"weights": weights_stage, "activations": activations_stage,
                   "mechanisms": mechanisms_stage, "bridge": bridge_stage}
