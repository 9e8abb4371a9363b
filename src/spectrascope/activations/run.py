"""The ``activations`` verb: activation spectra and token energies, by site, layer and domain.

One pass over each domain's tokens accumulates float64 moments at every requested site
(memory O(d^2) per site, independent of corpus length). The reference Gaussian of each site
is the pooled moments of all domains (the "general corpus" is the mix of the domains asked
for). A second, shorter pass (``energy_tokens`` per domain) computes token energies.

Tables:
    activations: site, layer, domain, n_tokens, d, alpha, xmin, ..., erg_delta,
                 trace_log_energy, effective_rank, participation_ratio, top_share, status, reason
    energy:      site, layer, domain, n_tokens, energy_mean, energy_p10, energy_p50, energy_p90
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..corpora import Corpus, corpus_texts
from ..errors import SpectrascopeError
from ..models.handle import as_model
from ..progress import progress_bar
from ..tables import write_table
from ..trace import accumulate_site_moments, hooks, parse_site
from ..trace.moments import RunningMoments
from ..trace.sites import SiteKind
from ..trace.tracer import resolve_sites
from ..trace.architectures import bind
from .batching import token_batches
from .covariance_spectra import activation_spectrum_row
from .token_energy import DEFAULT_RIDGE, ReferenceGaussian, energy_summary

DEFAULT_CORPORA = "code,python-docs,legal,calendar,arithmetic,geography"
SITE_LABEL = {
    SiteKind.RESID_PRE: "resid_pre", SiteKind.RESID_MID: "resid_mid", SiteKind.RESID_POST: "resid_post",
    SiteKind.ATTN_OUT: "attn_out", SiteKind.MLP_OUT: "mlp_out", SiteKind.Z: "z", SiteKind.MLP_POST: "mlp_post",
}
LEAD = ["site", "layer", "domain"]


def _as_loaded(model):
    """The model handle (``.hf``, ``.tokenizer``) of a loaded model, a name or a path (:func:`as_model`)."""
    return as_model(model)


def _device(loaded) -> torch.device:
    return loaded.device


def _site_list(loaded, sites: str | Sequence[str]) -> list[str]:
    request = [s.strip() for s in sites.split(",")] if isinstance(sites, str) else list(sites)
    names = resolve_sites(bind(loaded.hf), request)
    if any(parse_site(n)[1] is SiteKind.PATTERN for n in names):
        raise SpectrascopeError("attention patterns are not token vectors: choose other sites")
    return names


def _label(name: str) -> tuple[str, int]:
    layer, kind = parse_site(name)
    return SITE_LABEL[kind], layer


def domain_moments(loaded, corpus: Corpus, sites: list[str], max_tokens: int, seq_len: int) -> dict[str, RunningMoments]:
    """Moments of every site over one domain's first ``max_tokens`` statistic tokens."""
    batches = token_batches(loaded.tokenizer, corpus.texts, max_tokens, seq_len)
    return accumulate_site_moments(loaded.hf, batches, sites)


def domain_energies(loaded, corpus: Corpus, references: dict[str, ReferenceGaussian], max_tokens: int,
                    seq_len: int) -> dict[str, np.ndarray]:
    """Token energies of one domain at every site (concatenated over batches)."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in references}
    mask: list[torch.Tensor | None] = [None]

    def record(activation: torch.Tensor, name: str) -> None:
        vectors = activation.flatten(start_dim=2) if activation.dim() == 4 else activation
        out[name].append(references[name].energy(vectors[mask[0].bool()]))

    with hooks(loaded.hf, {name: record for name in references}), torch.no_grad():
        for batch in token_batches(loaded.tokenizer, corpus.texts, max_tokens, seq_len):
            device = _device(loaded)
            mask[0] = batch.pop("stats_mask").to(device)
            loaded.hf(**{k: v.to(device) for k, v in batch.items()})
    return {name: torch.cat(parts).numpy() if parts else np.zeros(0) for name, parts in out.items()}


def run_activations(
    model,
    corpora: str = DEFAULT_CORPORA,
    sites: str | Sequence[str] = "resid_post",
    max_tokens: int = 4096,
    energy_tokens: int = 1024,
    seq_len: int = 128,
    ridge: float = DEFAULT_RIDGE,
    out_dir: str | Path | None = None,
    show_progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Activation spectra and energies for each (site, layer, domain). See module docstring.

    Args:
        model: a LoadedModel, a bundled model name or a path (see load_model).
        corpora: comma-separated built-in names and/or paths.
        sites: short forms (resid_post, mlp_out, z, ...) or full site names.
        max_tokens: statistic tokens per domain for the spectra; energy_tokens for energies.
    """
    if max_tokens < 1 or energy_tokens < 0:
        raise SpectrascopeError(f"max-tokens must be >= 1 and energy-tokens >= 0 (got {max_tokens}, {energy_tokens})")
    loaded = _as_loaded(model)
    domains = corpus_texts(corpora)
    names = _site_list(loaded, sites)
    rows, energy_rows = [], []
    pooled = {name: RunningMoments() for name in names}
    with progress_bar("activations", total=2 * len(domains), enabled=show_progress) as advance:
        for corpus in domains:
            moments = domain_moments(loaded, corpus, names, max_tokens, seq_len)
            for name, m in moments.items():
                site, layer = _label(name)
                rows.append({"site": site, "layer": layer, "domain": corpus.name, **activation_spectrum_row(m)})
                pooled[name].merge(m)
            advance(1)
        references = {name: ReferenceGaussian.from_moments(m, ridge) for name, m in pooled.items()}
        for corpus in domains:
            if energy_tokens:
                for name, e in domain_energies(loaded, corpus, references, energy_tokens, seq_len).items():
                    site, layer = _label(name)
                    energy_rows.append({"site": site, "layer": layer, "domain": corpus.name,
                                        "n_tokens": int(e.size), **energy_summary(e)})
            advance(1)
    activations = pd.DataFrame(rows).sort_values(LEAD, kind="stable").reset_index(drop=True)
    energy = pd.DataFrame(energy_rows, columns=LEAD + ["n_tokens", "energy_mean", "energy_p10", "energy_p50", "energy_p90"])
    energy = energy.sort_values(LEAD, kind="stable").reset_index(drop=True)
    if out_dir:
        write_table(activations, out_dir, "activations")
        write_table(energy, out_dir, "energy")
    return activations, energy
