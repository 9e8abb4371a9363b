"""Stage ``activations``: one pass over each domain's tokens feeding every activation statistic.

Calibration first (:func:`~spectrascope.activations.run.calibrate`), on texts of every domain
that the measurements never see: the pooled reference Gaussian of the token energies and the
massive and outlier channels of every residual site and matrix input (left out of the robust
view). Then one forward pass per domain (:func:`~spectrascope.activations.run.measure_domain`),
plus two controls (a random-token corpus, and the calibration texts through the model with its
weight entries shuffled), each of ``activation_tokens`` like a domain (a covariance spectrum's
noise, hence its effective rank and tail, depends on n / d: controls at another n would not
compare), feeding:

- activation spectra of ``resid_post`` at every layer, raw and robust, with the
  isotropic-noise null at the same n / d (and, at the middle layer, a jackknife interval over
  texts of the effective rank);
- token energies with bootstrap intervals over texts;
- the eigenmode overlap of every matrix's inputs with its tail / ERG tail / bulk, raw and
  robust, with intervals over texts (the random-subspace baseline and the random-token
  corpus are its controls);
- a pooled sample of the same tokens at every layer for CKA (debiased, raw and robust, with a
  permuted-token null);

and the energy-vs-attribution comparison over texts. The calibration pass also keeps the
bridge's mean-ablation reference (every block's mean over the calibration texts, the first
position apart: ``mean_reference.safetensors``, :mod:`spectrascope.mech.mean_reference`). The
domain passes keep the clean forward of the bridge's domain losses (their texts are the first
of these; ``clean_losses.safetensors``, :mod:`spectrascope.bridge.clean_losses`), at the edited
layers and at the block the SAE stage's feature removals resume at.

Tables: activations, energy, massive_activations, overlap, overlap_modes, cka, cka_null, cka_adjacent,
energy_tokens, energy_agreement.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...activations.batching import first_tokens, text_batches
from ...activations.controls import RANDOM_TOKENS, RANDOMIZED_WEIGHTS, random_token_batches, randomized_weights
from ...activations.domain_pass import SiteSample
from ...activations.run import calibrate, calibration_batches, measure_domain
from ...bridge.alignment import cka_table, layer_hsics
from ...bridge.cka import TokenTerms, adjacent_replicates_by_variant, cka_without_top_tokens, hsic_from_cross
from ...bridge.clean_losses import FILE_NAME as CLEAN_LOSSES_FILE
from ...bridge.clean_losses import CleanLosses, loss_capture
from ...bridge.energy_attribution import agreement_table, text_attribution_rows
from ...bridge.overlap_run import (
    input_sources,
    model_roles,
    model_subspaces,
    modes_table,
    overlap_collector,
    overlap_table,
)
from ...corpora import Corpus, corpus_texts
from ...mech.ablation import AblationMode, all_blocks
from ...mech.mean_reference import FILE_NAME as MEANS_FILE
from ...mech.mean_reference import MeanReference, save_means
from ...mech.metrics import token_pool
from ...sae.study import removal_layer
from ...stats.jackknife import bounded_jackknife_interval
from ...trace.sites import SiteKind, site_name
from ..context import StudyContext

INPUT_LABELS = {
    "q": "q_in",
    "k": "q_in",
    "v": "q_in",
    "o": "o_in",
    "mlp_gate": "gate_in",
    "mlp_up": "gate_in",
    "mlp_down": "down_in",
    "mlp_in": "mlp_in_in",
    "mlp_out": "mlp_out_in",
}
"""Site label of a matrix input in the massive-activations table, by the role of its reader."""

ATTRIBUTION_TOKENS = 32
"""Tokens per text of the energy-vs-attribution comparison."""


def run(ctx: StudyContext) -> dict[str, pd.DataFrame]:
    loaded, b = ctx.loaded(), ctx.budget
    hf = loaded.hf
    domains = corpus_texts(b.corpora, seed=ctx.seed)
    sites = [site_name(layer, SiteKind.RESID_POST) for layer in range(loaded.arch.n_layers)]
    roles = model_roles(hf)
    subspaces = model_subspaces(hf, roles)
    modules, _ = input_sources(hf, roles, list(subspaces))
    labels = {key: (INPUT_LABELS.get(roles[key][1], f"{roles[key][1]}_in"), roles[key][0]) for key in modules}
    means = MeanReference(all_blocks(loaded)) if b.ablation_mode is AblationMode.MEAN else None
    calibration = calibrate(
        loaded,
        domains,
        sites,
        b.calibration_tokens,
        b.seq_len,
        modules,
        labels,
        ctx.show_progress,
        [means] if means else [],
    )
    folder = ctx.out / "activations"
    folder.mkdir(parents=True, exist_ok=True)
    if means is not None:  # the bridge's mean-ablation reference, from the same pass
        save_means(folder / MEANS_FILE, means.values(next(hf.parameters()).dtype))

    # the domain losses' clean forward of the bridge's ablations (and of the SAE stage's feature
    # removals, over the first of the same texts), kept from these passes
    kept = set(b.edited_layers(loaded.arch.n_layers))
    removals = removal_layer(b, loaded.arch.n_layers)
    kept |= set() if removals is None else {removals}
    found = {c.name: loss_capture(loaded, c.texts, b.loss_tokens, b.seq_len, sorted(kept)) for c in domains}
    captures = {name: capture for name, capture in found.items() if capture is not None}
    spectra, energy, overlap_rows, mode_shares, samples = [], [], [], {}, []
    per_domain_cka = max(4, -(-b.cka_tokens // len(domains)))  # equal shares, at least cka_tokens pooled
    runs = [  # batched by length: short texts are not padded to long ones (the same texts)
        (c.name, list(text_batches(loaded.tokenizer, c.texts, b.activation_tokens, b.seq_len, by_length=True)))
        for c in domains
    ]
    runs.append(
        (RANDOM_TOKENS, list(random_token_batches(token_pool(loaded), b.activation_tokens, b.seq_len, ctx.seed)))
    )
    for domain, batches in runs:
        shares = overlap_collector(hf, roles, subspaces, calibration.input_excluded)
        sample = SiteSample(sites, first_tokens(batches, per_domain_cka)) if domain != RANDOM_TOKENS else None
        s, e = measure_domain(
            loaded,
            domain,
            batches,
            sites,
            calibration,
            [shares] + ([sample] if sample else []) + ([captures[domain]] if domain in captures else []),
            n_boot=b.n_boot,
            seed=ctx.seed,
            show_progress=ctx.show_progress,
            total=b.activation_tokens,
            interval_site=sites[len(sites) // 2],
        )
        spectra, energy = spectra + s, energy + e
        rows, modes = shares.finish(domain, b.n_boot, ctx.seed)
        overlap_rows += rows
        if sample is not None:
            mode_shares[domain] = modes
            samples.append(sample.arrays())
    CleanLosses.from_captures(captures).save(folder / CLEAN_LOSSES_FILE)
    del captures
    # the singular vectors (~290 MB on SmolLM2) and the CKA sample (~280 MB) are freed before
    # the weights are shuffled (a permutation index and a copy of the embedding are then held)
    del subspaces, shares
    pooled = {site: np.concatenate([sample.pop(site) for sample in samples]) for site in sites}
    cka_table, cka_null, cka_adjacent = _cka_tables(pooled, calibration.excluded, sites, ctx.seed)
    del pooled, samples
    with randomized_weights(hf, ctx.seed):
        per_domain = max(1, b.activation_tokens // len(domains))  # the domains' n / d: comparable spectra
        batches = calibration_batches(loaded.tokenizer, domains, per_domain, b.seq_len)
        s, _ = measure_domain(loaded, RANDOMIZED_WEIGHTS, batches, sites, calibration, energies=False)
    spectra += s
    tokens = _attribution_tokens(ctx, domains, calibration.references, sites[0], sites[-1])
    return {
        "activations": pd.DataFrame(spectra),
        "energy": pd.DataFrame(energy),
        "massive_activations": calibration.massive,
        "overlap": overlap_table(overlap_rows, roles),
        "overlap_modes": modes_table(mode_shares),
        "cka": cka_table,
        "cka_null": cka_null,
        "cka_adjacent": cka_adjacent,
        "energy_tokens": tokens,
        "energy_agreement": agreement_table(tokens, b.n_boot, seed=ctx.seed),
    }


def _attribution_tokens(ctx: StudyContext, domains: list[Corpus], references, first: str, last: str) -> pd.DataFrame:
    """Per scored token of ``attribution_texts`` texts (equal shares of the domains, the first
    texts of each): energies and attributions (see :mod:`spectrascope.bridge.energy_attribution`)."""
    b, loaded = ctx.budget, ctx.loaded()
    per_domain = max(1, b.attribution_texts // len(domains))
    rows, text_id = [], 0
    for corpus in domains:
        for text in corpus.texts[:per_domain]:
            for row in text_attribution_rows(
                loaded,
                text,
                text_id,
                references,
                first,
                last,
                steps=b.ig_steps,
                seq_len=min(ATTRIBUTION_TOKENS, b.seq_len),
            ):
                rows.append({"domain": corpus.name, **row})
            text_id += 1
    return pd.DataFrame(rows)


CKA_GROUPS = 16
"""Groups of consecutive pooled tokens (about consecutive texts) of the CKA jackknife."""


def _cka_tables(
    pooled: dict[str, np.ndarray], excluded: dict[str, np.ndarray], sites: list[str], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Debiased CKA between every pair of layers (raw and robust, both from one product per pair),
    a permuted-token null for adjacent layers (the same tokens' order shuffled in one layer: no
    shared structure; each layer's own HSIC is unchanged by it, so one product per pair again),
    and the median over adjacent pairs with a delete-a-group jackknife interval (:data:`CKA_GROUPS` groups of consecutive tokens, each a
    few texts of one domain; :func:`~spectrascope.bridge.cka.adjacent_replicates_by_variant`).

    The robust variant leaves out, at every layer, each channel that is excluded at any site (the
    union, 12 channels on SmolLM2-135M): the residual stream's channels persist across layers,
    so a per-layer set would compare a layer in which a channel is left out with a neighbour in
    which it still dominates, and CKA would read the change of the set rather than of the layers."""
    nulls, medians = [], []
    rng = np.random.default_rng(seed)
    n = len(pooled[sites[0]])
    groups = np.arange(n) * CKA_GROUPS // n
    layers = {layer: pooled[site] for layer, site in enumerate(sites)}
    union = np.unique(np.concatenate([np.asarray(excluded[site], dtype=np.int64) for site in sites]))
    drop = dict.fromkeys(range(len(sites)), union)
    hsics = layer_hsics(layers, excluded=drop)
    table = cka_table(hsics).assign(n_tokens=n)
    table["n_excluded"] = np.where(table["variant"] == "robust", len(union), 0)  # channels left out
    for layer in range(len(sites) - 1):
        permuted = rng.permutation(n)
        cross = (layers[layer].T @ layers[layer + 1][permuted]).astype(np.float64)
        for variant, keep in hsics.keeps.items():
            rows, columns = keep[layer], keep[layer + 1]
            part = cross if rows is None else cross[np.ix_(rows, columns)]
            other = hsics.terms[variant, layer + 1]
            xy = hsic_from_cross(part, hsics.terms[variant, layer], TokenTerms(other.sq[permuted], other.k[permuted]))
            nulls.append(
                {
                    "variant": variant,
                    "layer_a": layer,
                    "layer_b": layer + 1,
                    "cka": hsics.cka(variant, layer, layer + 1, xy),
                }
            )
    if len(sites) > 1:
        ordered = [layers[k] for k in sorted(layers)]
        dropped = {
            variant: [None if keep[k] is None else drop[k] for k in sorted(layers)]
            for variant, keep in hsics.keeps.items()
        }
        replicates = adjacent_replicates_by_variant(ordered, groups, dropped)
        for variant in hsics.keeps:
            mine = table[table["variant"] == variant]
            adjacent = mine[mine["layer_b"] == mine["layer_a"] + 1].sort_values("layer_a")["cka"].to_numpy()
            median = float(np.median(adjacent))
            lo, hi = bounded_jackknife_interval(median, np.median(replicates[variant], axis=0))
            a = int(np.argmin(adjacent))  # is the lowest pair made by a few tokens?
            keep = hsics.keeps[variant]
            X, Y = (layers[k] if keep[k] is None else layers[k][:, keep[k]] for k in (a, a + 1))
            without, n_left_out = cka_without_top_tokens(X, Y)
            medians.append(
                {
                    "variant": variant,
                    "statistic": "median over adjacent layers",
                    "cka": median,
                    "cka_lo": lo,
                    "cka_hi": hi,
                    "n_pairs": adjacent.size,
                    "n_groups": CKA_GROUPS,
                    "n_tokens": n,
                    "lowest_layer_a": a,
                    "lowest_cka": float(adjacent[a]),
                    "lowest_cka_without_top_tokens": without,
                    "n_top_tokens": n_left_out,
                }
            )
    return table, pd.DataFrame(nulls).sort_values(["variant", "layer_a"], ignore_index=True), pd.DataFrame(medians)
