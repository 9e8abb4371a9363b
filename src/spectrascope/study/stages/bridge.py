"""Stage ``bridge``: causal importance (exact mean ablation) beside the spectra, and alignment.

- **Layer sweep**: every attention and MLP block ablated on its own, exactly, on a pooled sample
  of every domain (``layer_sweep_tokens``); damages with bootstrap intervals over texts, pooled
  and per domain. This is the causal importance the spectral metrics are correlated with.
- **Domain ablations**: at ``ablation_layers`` (default: the middle layer), the attention and MLP blocks and the spectral edits of the layer's output
  projections (keep only the power-law tail, keep only the bulk, remove the top-k directions),
  (``spectral_edits``) each on every domain's own loss (``loss_tokens`` from >= ``min_loss_texts`` texts) and on the
  random-token control; damages with intervals over texts. The domains' clean forward (their
  baseline losses and the residual the edits resume from) is the activation stage's, when it
  kept it (:mod:`spectrascope.bridge.clean_losses`).
- **Correlations**: Spearman's rho between spectral metrics and causal importance, across layers
  (one family) and across heads (another), with permutation p-values and BH q-values.
- **Alignment**: overlap of each writer's output tail with later readers' input tails (readers'
  norm gains folded in), against the random-subspace baseline and the same pair with both
  matrices' entries shuffled (the randomized-weights null).

Mean ablation replaces a block by its mean over the calibration texts of every domain (never
the measured texts), the attention sink kept apart; the activation stage's calibration pass
keeps those means (:func:`block_replacements`).

Tables: layer_damage, ablation_domains, layers, correlation, alignment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ...activations.controls import RANDOM_TOKENS, randomized_weights
from ...activations.run import calibration_batches
from ...bridge.alignment import READERS, WRITERS, alignment_table
from ...bridge.clean_losses import FILE_NAME as CLEAN_LOSSES_FILE
from ...bridge.clean_losses import CleanLosses
from ...bridge.correlation import correlation_table
from ...bridge.overlap_run import model_roles, model_subspaces
from ...corpora import corpus_texts
from ...mech.ablation import AblationMode, Replacement, all_blocks, reference_values
from ...mech.ablation_sweep import ablation_rows, damage_intervals
from ...mech.components import ActivationComponent, AttnBlock, MlpBlock, SpectralComponent, WeightComponent
from ...mech.mean_reference import FILE_NAME as MEANS_FILE
from ...mech.mean_reference import MeanReference, load_means
from ...mech.metrics import NextTokenLoss, text_loss, token_pool
from ...stats.bootstrap import MIN_INTERVAL_UNITS
from ...stats.multiple_testing import bh_qvalues
from ...trace.passes import run_pass
from ..context import StudyContext

EDITED_ROLES = ("o", "mlp_down", "mlp_out")
LAYER_METRICS = ("alpha", "alpha_weighted", "erg_delta", "stable_rank", "activation_alpha", "activation_effective_rank")
HEAD_METRICS = ("ov_alpha", "qk_alpha", "ov_alpha_weighted", "induction", "previous_token")


def run(ctx: StudyContext) -> dict[str, pd.DataFrame]:
    loaded, b = ctx.loaded(), ctx.budget
    domains = corpus_texts(b.corpora, seed=ctx.seed)
    roles = model_roles(loaded.hf)
    replacements = block_replacements(ctx, domains)  # once for every sweep
    layer_damage = layer_sweep(ctx, domains, replacements)
    layers = b.edited_layers(loaded.arch.n_layers)
    ablations = domain_ablations(ctx, domains, roles, layers, replacements)
    layer_table = _layer_table(ctx, layer_damage)
    correlation = _correlations(ctx, layer_table)
    return {
        "layer_damage": layer_damage,
        "ablation_domains": ablations,
        "layers": layer_table,
        "correlation": correlation,
        "alignment": alignment_with_null(ctx, roles),
    }


def block_replacements(ctx: StudyContext, domains) -> dict[ActivationComponent, Replacement]:
    """What replaces each attention and MLP block: zeros, or (mean mode) its means over the
    calibration texts of every domain (the end of each corpus, never measured), the first
    position apart. The activation stage's calibration pass kept them when it finished here with
    this study's fingerprint; otherwise the same pass is run again for them alone."""
    loaded, b = ctx.loaded(), ctx.budget
    blocks = all_blocks(loaded)
    if b.ablation_mode is not AblationMode.MEAN:
        return dict(reference_values(loaded.hf, blocks, b.ablation_mode, None))
    device = next(loaded.hf.parameters()).device
    if ctx.finished("activations"):
        kept = load_means(ctx.out / "activations" / MEANS_FILE, blocks, device)
        if kept is not None:
            return dict(kept)
    means = MeanReference(blocks)
    run_pass(loaded.hf, calibration_batches(loaded.tokenizer, domains, b.calibration_tokens, b.seq_len), [means])
    return dict(means.values(next(loaded.hf.parameters()).dtype))


def layer_sweep(ctx: StudyContext, domains, replacements) -> pd.DataFrame:
    """Exact mean ablation of every block on the pooled sample: damages pooled and per domain.

    Every domain's texts are one sweep (run in length groups, so short arithmetic texts do not
    pay for a 128-token text's padding); rows are labeled by domain for the per-domain intervals
    (none for a domain of fewer than :data:`MIN_INTERVAL_TEXTS` texts)."""
    loaded, b = ctx.loaded(), ctx.budget
    per_domain = max(2, b.layer_sweep_tokens // len(domains))
    metrics = [text_loss(loaded, c.texts, per_domain, b.seq_len, name=c.name) for c in domains]
    blocks = all_blocks(loaded)
    pooled = NextTokenLoss.cat(metrics, name="pooled")
    sweep = ablation_rows(
        loaded, blocks, pooled, b.ablation_mode, show_progress=ctx.show_progress, replacements=replacements
    )
    labels = np.concatenate([[m.name] * m.n_rows for m in metrics])
    tables = [damage_intervals(sweep, pooled, b.n_boot, ctx.seed).assign(domain="pooled")]
    for m in metrics:
        own = damage_intervals(sweep, pooled, b.n_boot, ctx.seed, rows=labels == m.name).assign(domain=m.name)
        tables.append(without_thin_intervals(own))
    table = pd.concat(tables, ignore_index=True)
    table["baseline"] = float(sweep.baseline.reduce())
    table["mode"] = b.ablation_mode.value
    return table


MIN_INTERVAL_TEXTS = MIN_INTERVAL_UNITS
"""Fewer texts than this give no bootstrap interval (NaN; :data:`~spectrascope.stats.bootstrap.MIN_INTERVAL_UNITS`).
The layer sweep's 256 tokens of a 128-token-text domain are 2 texts; its pooled rows and the
domain ablations (>= 16 texts) are not affected."""


def without_thin_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``damage_lo`` / ``damage_hi`` set to NaN where ``n_rows`` < :data:`MIN_INTERVAL_TEXTS`."""
    thin = table["n_rows"] < MIN_INTERVAL_TEXTS
    return table.assign(
        damage_lo=table["damage_lo"].mask(thin),
        damage_hi=table["damage_hi"].mask(thin),
    )


def domain_ablations(ctx: StudyContext, domains, roles, layers: list[int], replacements) -> pd.DataFrame:
    """Blocks and spectral edits at ``layers`` on every domain's own loss and the random-token control."""
    loaded, b = ctx.loaded(), ctx.budget
    edits: list = [c for layer in layers for c in (AttnBlock(layer), MlpBlock(layer))]
    for name, (block, role) in roles.items():
        if block in layers and role in EDITED_ROLES:
            edits += [SpectralComponent(name, keep, b.top_k) for keep in b.spectral_edits]
    losses = [
        text_loss(loaded, c.texts, b.loss_tokens, b.seq_len, name=c.name, min_texts=b.min_loss_texts) for c in domains
    ]
    losses.append(_random_token_loss(ctx))
    stored = CleanLosses.load(ctx.out / "activations" / CLEAN_LOSSES_FILE)  # the activation pass's clean forward
    tables = []
    for metric in losses:
        sweep = ablation_rows(
            loaded,
            edits,
            metric,
            b.ablation_mode,
            show_progress=ctx.show_progress,
            replacements=replacements,
            clean=None if stored is None else stored.clean_pass(metric.name, metric, layers),
        )
        table = damage_intervals(sweep, metric, b.n_boot, ctx.seed)
        table.insert(0, "domain", metric.name)
        table["baseline"] = float(sweep.baseline.reduce())
        table["n_tokens"] = int(metric.targets.sum())
        table["edit"] = [_edit_of(c) for c in edits]
        tables.append(table)
    out = pd.concat(tables, ignore_index=True)
    out["mode"] = b.ablation_mode.value
    return out


def _edit_of(component) -> str:
    """``mean``/``zero`` block ablation, or the spectral edit kept (tail, bulk, drop_top)."""
    return component.edit if isinstance(component, WeightComponent) else "block"


def _random_token_loss(ctx: StudyContext) -> NextTokenLoss:
    loaded, b = ctx.loaded(), ctx.budget
    generator = torch.Generator().manual_seed(ctx.seed + 7)
    pool = token_pool(loaded)
    n_rows = max(b.min_loss_texts, -(-b.control_tokens // b.seq_len))
    ids = pool[torch.randint(0, pool.numel(), (n_rows, b.seq_len), generator=generator)]
    return NextTokenLoss(ids.to(next(loaded.hf.parameters()).device), name=RANDOM_TOKENS)


def _layer_table(ctx: StudyContext, layer_damage: pd.DataFrame) -> pd.DataFrame:
    """Per layer: the spectral metrics of its matrices (mean over them), its robust activation
    spectrum (mean over domains) and the pooled damage of its attention and MLP blocks."""
    weights = ctx.read("weights", "weights")
    w = weights[(weights["status"] == "success") & (weights["block"] >= 0)]
    per_layer = w.groupby("block")[["alpha", "alpha_weighted", "erg_delta", "stable_rank"]].mean()
    acts = ctx.read("activations", "activations")
    acts = acts[(acts["variant"] == "robust") & ~acts["domain"].str.startswith("control:")]
    act = acts.groupby("layer")[["alpha", "effective_rank"]].mean().add_prefix("activation_")
    pooled = layer_damage[layer_damage["domain"] == "pooled"].pivot_table(
        index="layer", columns="kind", values="damage"
    )
    pooled = pooled.add_suffix("_damage")
    table = per_layer.join(act, how="outer").join(pooled, how="outer")
    table.index.name = "layer"
    return table.reset_index()


def _correlations(ctx: StudyContext, layer_table: pd.DataFrame) -> pd.DataFrame:
    """Both families (layers, heads) with q-values computed within each family."""
    families = [
        correlation_table(
            layer_table.sort_values("layer"),
            list(LAYER_METRICS),
            ["attn_damage", "mlp_damage"],
            seed=ctx.seed,
            ordered=True,
        ).assign(family="layers")
    ]
    heads = _head_table(ctx)
    if heads is not None:
        families.append(
            correlation_table(heads, list(HEAD_METRICS), ["damage_screen"], seed=ctx.seed).assign(family="heads")
        )
    out = []
    for table in families:
        table["q_value"] = bh_qvalues(table["p_value"].to_numpy())
        out.append(table)
    return pd.concat(out, ignore_index=True)


def _head_table(ctx: StudyContext) -> pd.DataFrame | None:
    """Per head: OV/QK spectra, head scores, and the induction-loss damage of the sweep."""
    spectra = ctx.read("weights", "weights_heads", missing_ok=True)
    if spectra is None or spectra.empty:
        return None
    spectra = spectra[spectra["circuit"].isin(["ov", "qk"]) & (spectra["status"] == "success")]
    wide = spectra.pivot_table(index=["block", "head"], columns="circuit", values=["alpha", "alpha_weighted"])
    wide.columns = [f"{c}_{m}" for m, c in wide.columns]
    wide = wide.reset_index().rename(columns={"block": "layer"})
    sweep = ctx.read("mechanisms", "ablation_heads")[["layer", "head", "damage_screen", "induction", "previous_token"]]
    sweep = sweep.astype({"layer": int, "head": int})
    return wide.merge(sweep, on=["layer", "head"])


def alignment_with_null(ctx: StudyContext, roles) -> pd.DataFrame:
    """Writer -> reader tail alignment (readers' norm gains folded in), with the same pairs'
    enrichment when every matrix's entries are shuffled (seeded): the randomized-weights null."""
    hf = ctx.loaded().hf
    wanted = WRITERS + READERS
    table = alignment_table(model_subspaces(hf, roles, wanted, fold_reader_norms=True, left_roles=WRITERS), roles)
    with randomized_weights(hf, ctx.seed):
        null = alignment_table(model_subspaces(hf, roles, wanted, fold_reader_norms=True, left_roles=WRITERS), roles)
    null = null[["writer", "reader", "enrichment", "k_writer", "k_reader"]].rename(
        columns={"enrichment": "enrichment_shuffled", "k_writer": "k_writer_shuffled", "k_reader": "k_reader_shuffled"}
    )
    return table.merge(null, on=["writer", "reader"], how="left")
