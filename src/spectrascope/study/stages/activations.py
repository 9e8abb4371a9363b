"""Stage ``activations``: one pass over each domain's tokens feeding every activation statistic.

Calibration first, on texts of every domain that the measurements never see (taken from the
end of each corpus): the pooled reference Gaussian of the token energies, the massive and
outlier channels of every site (left out of the robust view), and the mean-ablation reference
of later stages. Then one forward pass per domain, plus two controls (a random-token corpus,
and the same texts through the model with its weight entries shuffled), feeding:

- activation spectra of ``resid_post`` at every layer, ``raw`` and ``robust``, with the
  isotropic-noise null at the same n / d;
- token energies with bootstrap intervals over texts;
- the eigenmode overlap of every matrix's inputs with its tail / ERG tail / bulk, raw and
  robust, with intervals over texts (the random-subspace baseline and the random-token
  corpus are its controls);
- a pooled sample of the same tokens at every layer for CKA (debiased, raw and robust, with a
  permuted-token null).

Tables: activations, energy, massive_activations, overlap, overlap_modes, cka, cka_null.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from ...activations.batching import TextBatch, text_batches
from ...activations.controls import (
    RANDOM_TOKENS,
    RANDOMIZED_WEIGHTS,
    isotropic_null,
    random_token_batches,
    randomized_weights,
)
from ...activations.covariance_spectra import activation_spectrum_row
from ...activations.domain_pass import InputChannels, SiteChannels, SiteEnergies, SiteMoments, SiteSample, run_pass
from ...activations.massive import keep_channels, massive_table
from ...activations.token_energy import ReferenceGaussian, energy_summary
from ...bridge.alignment import cka_matrix
from ...bridge.cka import cka
from ...bridge.energy_attribution import agreement_table, text_attribution_rows
from ...bridge.overlap_run import input_sources, model_roles, model_subspaces, modes_table, overlap_collector, overlap_table
from ...corpora import Corpus, corpus_texts
from ...mech.metrics import token_pool
from ...stats.bootstrap import ratio_interval
from ...trace.sites import SiteKind, parse_site, site_name
from ..context import StudyContext

INPUT_LABELS = {"q": "q_in", "k": "q_in", "v": "q_in", "o": "o_in", "mlp_gate": "gate_in", "mlp_up": "gate_in",
                "mlp_down": "down_in", "mlp_in": "mlp_in_in", "mlp_out": "mlp_out_in"}
"""Site label of a matrix input in the massive-activations table, by the role of its reader."""


def calibration_batches(ctx: StudyContext, domains: list[Corpus], per_domain: int) -> Iterator[TextBatch]:
    """Texts from the end of every corpus (never measured), ``per_domain`` statistic tokens each,
    numbered across domains."""
    tokenizer, seq_len = ctx.loaded().tokenizer, ctx.budget.seq_len
    offset = 0
    for corpus in domains:
        for batch in text_batches(tokenizer, corpus.texts[::-1], per_domain, seq_len):
            yield TextBatch(batch.input_ids, batch.attention_mask, batch.stats_mask, batch.text_index + offset)
        offset += len(corpus.texts)


def measured_batches(ctx: StudyContext, corpus: Corpus, max_tokens: int) -> Iterator[TextBatch]:
    """The first texts of a corpus, ``max_tokens`` statistic tokens."""
    return text_batches(ctx.loaded().tokenizer, corpus.texts, max_tokens, ctx.budget.seq_len)


def run(ctx: StudyContext) -> dict[str, pd.DataFrame]:
    loaded, b = ctx.loaded(), ctx.budget
    hf = loaded.hf
    domains = corpus_texts(b.corpora, seed=ctx.seed)
    n_layers = loaded.arch.n_layers
    sites = [site_name(layer, SiteKind.RESID_POST) for layer in range(n_layers)]
    roles = model_roles(hf)
    subspaces = model_subspaces(hf, roles)
    modules, readers = input_sources(hf, roles, list(subspaces))

    # calibration: reference Gaussian, massive channels
    cal_moments, cal_channels, cal_inputs = SiteMoments(sites), SiteChannels(sites), InputChannels(modules)
    run_pass(hf, calibration_batches(ctx, domains, b.calibration_tokens), [cal_moments, cal_channels, cal_inputs],
             description="calibration", show_progress=ctx.show_progress, total=b.calibration_tokens * len(domains))
    references = {site: ReferenceGaussian.from_moments(m) for site, m in cal_moments.moments.items()}
    excluded = {site: cal_channels.stats[site].excluded() for site in sites}
    excluded_inputs = {key: stats.excluded() for key, stats in cal_inputs.stats.items()}
    massive = _massive_rows(loaded, sites, cal_channels, cal_inputs, roles)

    spectra, energy, overlap_rows, mode_shares, samples = [], [], [], {}, []
    per_domain_cka = max(1, b.cka_tokens // len(domains))
    runs = [(c.name, measured_batches(ctx, c, b.activation_tokens), True) for c in domains]
    runs.append((RANDOM_TOKENS, random_token_batches(token_pool(loaded), b.control_tokens, b.seq_len, ctx.seed), False))
    for domain, batches, is_domain in runs:
        moments, energies = SiteMoments(sites), SiteEnergies(references)
        shares = overlap_collector(hf, roles, subspaces, excluded_inputs)
        sample = SiteSample(sites, per_domain_cka) if is_domain else None
        collectors = [moments, energies, shares] + ([sample] if sample else [])
        run_pass(hf, batches, collectors, description=f"activations: {domain}", show_progress=ctx.show_progress,
                 total=b.activation_tokens if is_domain else b.control_tokens)
        spectra += _spectrum_rows(domain, moments, excluded)
        energy += _energy_rows(domain, energies, b.n_boot, ctx.seed)
        rows, modes = shares.finish(domain, b.n_boot, ctx.seed)
        overlap_rows += rows
        if is_domain:
            mode_shares[domain] = modes
            samples.append(sample.arrays())
    with randomized_weights(hf, ctx.seed):
        moments = SiteMoments(sites)
        run_pass(hf, calibration_batches(ctx, domains, max(1, b.control_tokens // len(domains))), [moments],
                 description="randomized-weights control", show_progress=ctx.show_progress, total=b.control_tokens)
    spectra += _spectrum_rows(RANDOMIZED_WEIGHTS, moments, {site: np.zeros(0, dtype=np.int64) for site in sites})

    pooled = {site: np.concatenate([s[site] for s in samples]) for site in sites}
    cka, cka_null = _cka_tables(pooled, excluded, n_layers, ctx.seed)
    tokens = _attribution_tokens(ctx, domains, references, sites[0], sites[-1])
    return {
        "activations": pd.DataFrame(spectra),
        "energy": pd.DataFrame(energy),
        "massive_activations": massive,
        "overlap": overlap_table(overlap_rows, roles),
        "overlap_modes": modes_table(mode_shares),
        "cka": cka,
        "cka_null": cka_null,
        "energy_tokens": tokens,
        "energy_agreement": agreement_table(tokens, b.n_boot, seed=ctx.seed),
    }


ATTRIBUTION_TOKENS = 32
"""Tokens per text of the energy-vs-attribution comparison (integrated gradients cost 32 steps)."""


def _attribution_tokens(ctx: StudyContext, domains: list[Corpus], references, first: str, last: str) -> pd.DataFrame:
    """Per scored token of ``attribution_texts`` texts (equal shares of the domains, the first
    texts of each): energies and attributions (see :mod:`spectrascope.bridge.energy_attribution`)."""
    b, loaded = ctx.budget, ctx.loaded()
    per_domain = max(1, b.attribution_texts // len(domains))
    rows, text_id = [], 0
    for corpus in domains:
        for text in corpus.texts[:per_domain]:
            for row in text_attribution_rows(loaded, text, text_id, references, first, last, steps=32,
                                             seq_len=min(ATTRIBUTION_TOKENS, b.seq_len)):
                rows.append({"domain": corpus.name, **row})
            text_id += 1
    return pd.DataFrame(rows)


def _spectrum_rows(domain: str, moments: SiteMoments, excluded: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for site, m in moments.moments.items():
        layer, _ = parse_site(site)
        d = int(m.dim)
        for variant, keep in (("raw", None), ("robust", keep_channels(d, excluded[site]))):
            row = activation_spectrum_row(m, keep)
            null = isotropic_null(int(row["n_tokens"]), int(row["d"]))
            rows.append({"site": "resid_post", "layer": layer, "domain": domain, "variant": variant,
                         "n_excluded": 0 if keep is None else d - keep.size, **row,
                         **{f"{k}_null": v for k, v in null.items()}})
    return rows


def _energy_rows(domain: str, energies: SiteEnergies, n_boot: int, seed: int) -> list[dict]:
    rows = []
    for site in energies.references:
        layer, _ = parse_site(site)
        values, texts = energies.per_token(site)
        _, text_id = np.unique(texts, return_inverse=True)
        sums = np.bincount(text_id, weights=values)
        counts = np.bincount(text_id).astype(float)
        mean = ratio_interval(sums, counts, n_boot, seed)
        rows.append({"site": "resid_post", "layer": layer, "domain": domain, "n_tokens": int(values.size),
                     "n_texts": int(counts.size), **mean.columns("energy_mean"), **energy_summary(values)})
    return rows


def _massive_rows(loaded, sites, cal_channels: SiteChannels, cal_inputs: InputChannels, roles) -> pd.DataFrame:
    decode = _decoder(loaded.tokenizer)
    rows = []
    for site in sites:
        layer, _ = parse_site(site)
        rows += cal_channels.stats[site].rows("resid_post", layer, decode)
    for key, stats in cal_inputs.stats.items():
        block, role = roles[key]
        rows += stats.rows(INPUT_LABELS.get(role, f"{role}_in"), block, decode)
    return massive_table(rows)


def _decoder(tokenizer):
    def decode(token_id: int) -> str:
        return tokenizer.decode([token_id]) if tokenizer is not None else str(token_id)

    return decode


def _cka_tables(pooled: dict[str, np.ndarray], excluded: dict[str, np.ndarray], n_layers: int,
                seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Debiased CKA between every pair of layers (raw, robust) and a permuted-token null for
    adjacent layers (the same tokens' order shuffled in one layer: no shared structure)."""
    sites = [site_name(layer, SiteKind.RESID_POST) for layer in range(n_layers)]
    tables, nulls = [], []
    rng = np.random.default_rng(seed)
    for variant in ("raw", "robust"):
        layers = {}
        for layer, site in enumerate(sites):
            X = pooled[site]
            layers[layer] = X if variant == "raw" else X[:, keep_channels(X.shape[1], excluded[site])]
        tables.append(cka_matrix(layers).assign(variant=variant, n_tokens=len(pooled[sites[0]])))
        for layer in range(n_layers - 1):
            Y = layers[layer + 1][rng.permutation(len(layers[layer + 1]))]
            nulls.append({"variant": variant, "layer_a": layer, "layer_b": layer + 1, "cka": cka(layers[layer], Y)})
    return pd.concat(tables, ignore_index=True), pd.DataFrame(nulls)
