"""The ``activations`` verb and the study's activation pass: calibrate, then one pass per domain.

1. **Calibration** (:func:`calibrate`) on texts of every domain that are never measured (from
   the end of each corpus): the pooled moments at every site give the reference Gaussian of
   the token energies ("the general corpus" is the mix of the domains asked for), and per-channel
   statistics give the massive and outlier channels that the robust view leaves out
   (:mod:`~spectrascope.activations.massive`).
2. **One pass per domain** (:func:`measure_domain`) over its first texts feeds float64 moments
   (activation spectra, raw and robust) and token energies (with intervals over texts); the
   study adds its own collectors (eigenmode overlap, CKA sample) to the same pass.

Tables:
    activations: site, layer, domain, variant (raw / robust), n_excluded, n_tokens, d, n_over_d,
                 alpha, xmin, ..., erg_delta, trace_log_energy, effective_rank,
                 participation_ratio, top_share, status, reason, and the same shape metrics of
                 isotropic Gaussian noise at this n and d (``*_null``, the sampling-noise control)
    energy:      site, layer, domain, n_tokens, n_texts, energy_mean (+ _lo, _hi over texts),
                 energy_p10, energy_p50, energy_p90
    massive_activations: see :data:`~spectrascope.activations.massive.MASSIVE_COLUMNS`
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from ..corpora import DEFAULT_CORPORA, Corpus, corpus_texts
from ..errors import SiteError, at_least
from ..models.handle import as_model
from ..stats.bootstrap import DEFAULT_N_BOOT, ratio_interval
from ..stats.jackknife import jackknife_interval
from ..tables import write_table
from ..trace import parse_site
from ..trace.architectures import bind
from ..trace.passes import Collector, SiteMoments, TextBatch, run_pass
from ..trace.sites import SiteKind
from ..trace.tracer import resolve_sites
from .batching import text_batches
from .controls import isotropic_null
from .covariance_spectra import activation_spectrum_row, effective_rank_replicates
from .domain_pass import GroupMoments, InputChannels, SiteChannels, SiteEnergies
from .massive import keep_channels, massive_table
from .token_energy import ReferenceGaussian, energy_summary

SITE_LABEL = {
    SiteKind.RESID_PRE: "resid_pre",
    SiteKind.RESID_MID: "resid_mid",
    SiteKind.RESID_POST: "resid_post",
    SiteKind.ATTN_OUT: "attn_out",
    SiteKind.MLP_OUT: "mlp_out",
    SiteKind.Z: "z",
    SiteKind.MLP_POST: "mlp_post",
}
LEAD = ["site", "layer", "domain"]


def site_list(loaded, sites: str | Sequence[str]) -> list[str]:
    """Full names of the requested token-vector sites (attention patterns refused)."""
    request = [s.strip() for s in sites.split(",")] if isinstance(sites, str) else list(sites)
    names = resolve_sites(bind(loaded.hf), request)
    if any(parse_site(n)[1] is SiteKind.PATTERN for n in names):
        raise SiteError("attention patterns are not token vectors: choose other sites")
    return names


def site_label(name: str) -> tuple[str, int]:
    """(short site label, layer) of a full site name."""
    layer, kind = parse_site(name)
    return SITE_LABEL[kind], layer


@dataclass
class Calibration:
    """What the calibration texts give the measurements.

    Attributes:
        references: site -> pooled reference Gaussian of the token energies.
        excluded: site -> the massive/outlier channels the robust view leaves out.
        input_excluded: matrix-input key -> the same for the inputs of weight matrices.
        massive: the massive-activations table of every site and input.
    """

    references: dict[str, ReferenceGaussian]
    excluded: dict[str, np.ndarray]
    input_excluded: dict[str, np.ndarray]
    massive: pd.DataFrame


def calibration_batches(tokenizer, domains: Sequence[Corpus], per_domain: int, seq_len: int) -> Iterator[TextBatch]:
    """Texts from the end of every corpus (never measured), ``per_domain`` statistic tokens each,
    numbered across domains."""
    offset = 0
    for corpus in domains:
        for batch in text_batches(tokenizer, corpus.texts[::-1], per_domain, seq_len):
            yield TextBatch(batch.input_ids, batch.attention_mask, batch.stats_mask, batch.text_index + offset)
        offset += len(corpus.texts)


def calibrate(
    loaded,
    domains: Sequence[Corpus],
    sites: list[str],
    per_domain: int,
    seq_len: int,
    input_modules: Mapping[str, nn.Module] | None = None,
    input_labels: Mapping[str, tuple[str, int]] | None = None,
    show_progress: bool = False,
    extra: Sequence[Collector] = (),
) -> Calibration:
    """One pass over the calibration texts: references, excluded channels, the massive table.

    ``input_modules`` (key -> module) adds the inputs of weight matrices; ``input_labels`` gives
    each key's (site label, layer) in the massive table; ``extra`` collectors ride along (the
    study's mean-ablation reference, :class:`~spectrascope.mech.mean_reference.MeanReference`).
    """
    moments, channels = SiteMoments(sites), SiteChannels(sites)
    inputs = InputChannels(dict(input_modules or {}))
    run_pass(
        loaded.hf,
        calibration_batches(loaded.tokenizer, domains, per_domain, seq_len),
        [moments, channels, inputs, *extra],
        description="calibration",
        show_progress=show_progress,
        total=per_domain * len(domains),
    )
    decode = _decoder(loaded.tokenizer)
    rows = []
    for site in sites:
        label, layer = site_label(site)
        rows += channels.stats[site].rows(label, layer, decode)
    for key, stats in inputs.stats.items():
        label, layer = (input_labels or {}).get(key, (key, -1))
        rows += stats.rows(label, layer, decode)
    return Calibration(
        references={site: ReferenceGaussian.from_moments(m) for site, m in moments.moments.items()},
        excluded={site: channels.stats[site].excluded() for site in sites},
        input_excluded={key: stats.excluded() for key, stats in inputs.stats.items()},
        massive=massive_table(rows),
    )


def _decoder(tokenizer):
    def decode(token_id: int) -> str:
        return tokenizer.decode([token_id]) if tokenizer is not None else str(token_id)

    return decode


def measure_domain(
    loaded,
    domain: str,
    batches: Iterable[TextBatch],
    sites: list[str],
    calibration: Calibration,
    extra: Sequence[Collector] = (),
    energies: bool = True,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    show_progress: bool = False,
    total: int | None = None,
    interval_site: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """One pass over a domain's batches: (spectrum rows, energy rows); ``extra`` collectors ride along.

    ``interval_site``: the site whose robust spectrum row also gets ``effective_rank_lo`` /
    ``_hi``, a delete-a-group jackknife over :data:`RANK_GROUPS` groups of texts (one
    eigendecomposition per group, so one site, not every one)."""
    moments = SiteMoments(sites)
    collectors: list[Collector] = [moments, *extra]
    energy = SiteEnergies(calibration.references) if energies else None
    if energy is not None:
        collectors.append(energy)
    groups = GroupMoments(interval_site, RANK_GROUPS) if interval_site is not None else None
    if groups is not None:
        collectors.append(groups)
    run_pass(
        loaded.hf, batches, collectors, description=f"activations: {domain}", show_progress=show_progress, total=total
    )
    spectra = spectrum_rows(domain, moments, calibration.excluded)
    if groups is not None:
        _add_rank_intervals(spectra, moments, groups, calibration.excluded)
    return spectra, (energy_rows(domain, energy, n_boot, seed) if energy is not None else [])


RANK_GROUPS = 10
"""Groups of texts (text index modulo 10) of the effective-rank jackknife."""


def _add_rank_intervals(
    rows: list[dict], moments: SiteMoments, groups: GroupMoments, excluded: Mapping[str, np.ndarray]
) -> None:
    """Effective-rank intervals on the robust row of ``groups.site`` (the view the report leads
    with; the raw row's are NaN: each interval costs one eigendecomposition per group)."""
    label, layer = site_label(groups.site)
    parts = list(groups.groups.values())
    total = moments.moments.get(groups.site)
    for row in rows:
        if row["site"] != label or row["layer"] != layer or row["variant"] != "robust" or total is None:
            continue
        keep = keep_channels(int(total.dim or 0), excluded.get(groups.site, np.zeros(0, int)))
        replicates = effective_rank_replicates(total, parts, keep)
        row["effective_rank_lo"], row["effective_rank_hi"] = jackknife_interval(row["effective_rank"], replicates)


def spectrum_rows(domain: str, moments: SiteMoments, excluded: Mapping[str, np.ndarray]) -> list[dict]:
    """Raw and robust activation-spectrum rows of every site, with the isotropic-noise null."""
    rows = []
    for site, m in moments.moments.items():
        label, layer = site_label(site)
        d = int(m.dim)
        for variant, keep in (("raw", None), ("robust", keep_channels(d, excluded.get(site, np.zeros(0, int))))):
            row = activation_spectrum_row(m, keep)
            null = isotropic_null(int(row["n_tokens"]), int(row["d"]))
            rows.append(
                {
                    "site": label,
                    "layer": layer,
                    "domain": domain,
                    "variant": variant,
                    "n_excluded": 0 if keep is None else d - keep.size,
                    **row,
                    **{f"{k}_null": v for k, v in null.items()},
                }
            )
    return rows


def energy_rows(domain: str, energies: SiteEnergies, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> list[dict]:
    """Mean token energy per site with a bootstrap interval over texts, and quantiles over tokens."""
    rows = []
    for site in energies.references:
        label, layer = site_label(site)
        values, texts = energies.per_token(site)
        _, text_id = np.unique(texts, return_inverse=True)
        mean = ratio_interval(np.bincount(text_id, weights=values), np.bincount(text_id).astype(float), n_boot, seed)
        rows.append(
            {
                "site": label,
                "layer": layer,
                "domain": domain,
                "n_tokens": int(values.size),
                "n_texts": mean.n_units,
                **mean.columns("energy_mean"),
                **energy_summary(values),
            }
        )
    return rows


def run_activations(
    model,
    corpora: str = DEFAULT_CORPORA,
    sites: str | Sequence[str] = "resid_post",
    max_tokens: int = 4608,
    calibration_tokens: int = 768,
    seq_len: int = 128,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    out_dir: str | Path | None = None,
    show_progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Activation spectra (raw and robust), token energies and massive activations (see the module docstring).

    Args:
        model: a LoadedModel, a bundled model name or a path (see load_model).
        corpora: comma-separated built-in names and/or paths.
        sites: short forms (resid_post, mlp_out, z, ...) or full site names.
        max_tokens: statistic tokens per domain (spectra and energies, one pass).
        calibration_tokens: tokens per domain of the calibration texts.
    Returns:
        (activations, energy, massive_activations) tables.
    """
    for value, option in ((max_tokens, "max_tokens"), (calibration_tokens, "calibration_tokens"), (seq_len, "seq_len")):
        at_least(value, 1, option)
    loaded = as_model(model)
    domains = corpus_texts(corpora, seed=seed)
    names = site_list(loaded, sites)
    calibration = calibrate(loaded, domains, names, calibration_tokens, seq_len, show_progress=show_progress)
    spectra, energy = [], []
    for corpus in domains:
        batches = text_batches(loaded.tokenizer, corpus.texts, max_tokens, seq_len, by_length=True)
        s, e = measure_domain(
            loaded,
            corpus.name,
            batches,
            names,
            calibration,
            n_boot=n_boot,
            seed=seed,
            show_progress=show_progress,
            total=max_tokens,
        )
        spectra += s
        energy += e
    activations = pd.DataFrame(spectra).sort_values(LEAD + ["variant"], kind="stable").reset_index(drop=True)
    energies = pd.DataFrame(energy).sort_values(LEAD, kind="stable").reset_index(drop=True)
    if out_dir:
        write_table(activations, out_dir, "activations")
        write_table(energies, out_dir, "energy")
        write_table(calibration.massive, out_dir, "massive_activations")
    return activations, energies, calibration.massive
