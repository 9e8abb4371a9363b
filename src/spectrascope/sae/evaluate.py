"""SAE quality as the field measures it: reconstruction, sparsity, and the downstream loss.

On activations x (the kept tokens) with reconstructions x^ = sae(x):

    mse                 mean over tokens of ||x - x^||^2 (summed over dimensions)
    explained_variance  1 - sum ||x - x^||^2 / sum ||x - mean(x)||^2
    l0                  mean number of active features per token
    dead_fraction       share of features that never fire on these tokens
    dense_fraction      share of features firing on more than ``dense_threshold`` of them

With a model (:func:`evaluate_sae` given ``model``), on each domain's held-out texts the
next-token cross-entropy (nats per target token, every target of the texts) is measured
three times: clean; with x^ spliced in for x at the site (every position but the first, the
attention sink the SAE never saw, padding and massive-activation tokens, which are left as
they are and out of the reconstruction metrics: ``n_massive`` counts them,
:mod:`spectrascope.sae.massive`); with zeros there instead (zero ablation):

    ce_increase     = loss_sae - loss_clean
    loss_recovered  = (loss_zero - loss_sae) / (loss_zero - loss_clean)     (1 = perfect)

Intervals (``*_lo``, ``*_hi``): 95 % percentile bootstrap over texts (the unit that varies;
tokens of one text are correlated), ``n_boot`` resamples, within each domain and, for the
``all`` row, stratified by domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..progress import progress_bar
from ..trace import hooks
from ..trace.resume import forward_from_layer
from .base import SaeError, SparseAutoencoder
from .massive import massive_mask
from .sites import SiteBinding, bind_site, resume_checked, resume_layer

DENSE_THRESHOLD = 0.1
"""A feature firing on more than this share of tokens is *dense*."""

QUALITY_COLUMNS = [
    "domain",
    "n_texts",
    "n_tokens",
    "n_massive",
    "mse",
    "explained_variance",
    "explained_variance_lo",
    "explained_variance_hi",
    "l0",
    "dead_fraction",
    "dense_fraction",
    "loss_clean",
    "loss_sae",
    "loss_zero",
    "ce_increase",
    "ce_increase_lo",
    "ce_increase_hi",
    "loss_recovered",
    "loss_recovered_lo",
    "loss_recovered_hi",
]
"""Columns of :func:`evaluate_sae` (the loss columns are NaN without a model)."""

SUMMARY_COLUMNS = [
    "domain",
    "n_tokens",
    "explained_variance",
    "l0",
    "dead_fraction",
    "loss_clean",
    "loss_sae",
    "loss_zero",
    "loss_recovered",
]
"""The columns a reader sees first (the CLI's printout, the report's quality table)."""


@dataclass
class _PerText:
    """Sums per text, for the bootstrap."""

    domain: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    massive: list[int] = field(default_factory=list)
    sse: list[float] = field(default_factory=list)
    sq_norm: list[float] = field(default_factory=list)
    vec_sum: list[np.ndarray] = field(default_factory=list)
    active: list[float] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    nll_clean: list[float] = field(default_factory=list)
    nll_sae: list[float] = field(default_factory=list)
    nll_zero: list[float] = field(default_factory=list)


def reconstruction_sums(sae: SparseAutoencoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes, squared error per row, active features per row) of (n, d_in) activations."""
    with torch.no_grad():
        codes = sae.encode(x)
        error = (x - sae.decode(codes)).pow(2).sum(dim=1)
    return codes, error, (codes > 0).sum(dim=1)


def reconstruction_quality(
    sae: SparseAutoencoder, activations: Any, batch_size: int = 4096, dense_threshold: float = DENSE_THRESHOLD
) -> pd.DataFrame:
    """The reconstruction columns of :data:`QUALITY_COLUMNS` on an (n, d_in) array or tensor
    (one row, domain ``all``; no intervals: rows are not grouped into texts)."""
    x_all = torch.as_tensor(np.asarray(activations) if not isinstance(activations, torch.Tensor) else activations)
    if x_all.ndim != 2 or x_all.shape[1] != sae.d_in:
        raise SaeError(f"activations must be (n, {sae.d_in}); got shape {tuple(x_all.shape)}")
    sse = sq = 0.0
    vec = torch.zeros(sae.d_in, dtype=torch.float64)
    active = 0.0
    fired = torch.zeros(sae.d_sae, dtype=torch.float64)
    for start in range(0, x_all.shape[0], batch_size):
        x = x_all[start : start + batch_size].float().to(sae.device)
        codes, error, n_active = reconstruction_sums(sae, x)
        sse += float(error.double().sum())
        sq += float(x.double().pow(2).sum())
        vec += x.double().sum(dim=0).cpu()
        active += float(n_active.double().sum())
        fired += (codes > 0).double().sum(dim=0).cpu()
    n = x_all.shape[0]
    sst = sq - float(vec.pow(2).sum()) / n
    row: dict[str, Any] = {c: np.nan for c in QUALITY_COLUMNS}
    row.update(
        domain="all",
        n_texts=np.nan,
        n_tokens=n,
        mse=sse / n,
        explained_variance=1 - sse / sst if sst > 0 else np.nan,
        l0=active / n,
        dead_fraction=float((fired == 0).double().mean()),
        dense_fraction=float((fired / n > dense_threshold).double().mean()),
    )
    return pd.DataFrame([row], columns=QUALITY_COLUMNS)


def _nll_per_row(
    logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of next-token NLL per row, number of targets per row); padding ignored."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1).double()
    valid = (mask[:, 1:] & mask[:, :-1]).bool()
    return (nll * valid).sum(dim=1), valid.sum(dim=1)


def _domain_pass(
    binding: SiteBinding,
    texts: list[str],
    domain: str,
    tokens: int,
    seq_len: int,
    sums: _PerText,
    fired: torch.Tensor,
    with_loss: bool,
) -> None:
    """Accumulate one domain's held-out texts into ``sums`` (one text per row of a batch)."""
    sae, hf, device = binding.sae, binding.hf, binding.device
    keep: list[torch.Tensor] = [torch.zeros(0)]
    captured: list[torch.Tensor] = []

    def observe(activation: torch.Tensor, _name: str) -> None:
        flat = activation.flatten(start_dim=2) if activation.dim() == 4 else activation
        captured.append(flat.detach())

    splice = binding.edit(lambda x: sae(x), keep)
    zero = binding.edit(torch.zeros_like, keep)
    layer = resume_layer(binding) if with_loss else None  # the edited forwards start after the site
    for batch in binding.held_out_batches(texts, tokens, seq_len):
        ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
        keep[0] = batch.keep
        captured.clear()
        losses: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        with torch.no_grad():  # each forward's logits are reduced to per-row sums at once: one alive at a time
            with hooks(hf, {binding.site: observe}):
                logits = hf(input_ids=ids, attention_mask=mask, use_cache=False).logits
            x_rows = captured[0]
            if layer is not None and x_rows.dim() == 3 and not resume_checked(binding, layer, x_rows, logits, mask):
                layer = None
            if with_loss:
                losses["nll_clean"] = _nll_per_row(logits, ids, mask)
            del logits
            massive = batch.keep.clone()
            massive[batch.keep] = massive_mask(x_rows[batch.keep.to(x_rows.device)], binding.massive_factor).cpu()
            ordinary = batch.keep & ~massive
            if with_loss:
                for name, edit in (("nll_sae", splice), ("nll_zero", zero)):
                    if layer is not None:  # the clean forward up to the site is the same: resume after it
                        logits = forward_from_layer(binding.loaded, layer, edit(x_rows, binding.site), mask)
                    else:
                        with hooks(hf, {binding.site: edit}):
                            logits = hf(input_ids=ids, attention_mask=mask, use_cache=False).logits
                    losses[name] = _nll_per_row(logits, ids, mask)
                    del logits
        for row in range(ids.shape[0]):
            x = x_rows[row][ordinary[row].to(x_rows.device)].float()
            codes, error, n_active = reconstruction_sums(sae, x)
            fired += (codes > 0).double().sum(dim=0).cpu()
            sums.domain.append(domain)
            sums.tokens.append(int(x.shape[0]))
            sums.massive.append(int(massive[row].sum()))
            sums.sse.append(float(error.double().sum()))
            sums.sq_norm.append(float(x.double().pow(2).sum()))
            sums.vec_sum.append(x.double().sum(dim=0).cpu().numpy())
            sums.active.append(float(n_active.double().sum()))
        if with_loss:
            for name, (total, count) in losses.items():
                getattr(sums, name).extend(total.cpu().tolist())
            sums.targets.extend(count.cpu().tolist())


def _ratios(sums: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, float]:
    """The metrics from per-text sums, texts weighted by ``weights`` (bootstrap counts)."""
    w = weights
    n = float(w @ sums["tokens"])
    sse = float(w @ sums["sse"])
    sq = float(w @ sums["sq_norm"])
    vec = w @ sums["vec_sum"]
    sst = sq - float(vec @ vec) / n if n > 0 else np.nan
    out = {
        "mse": sse / n if n else np.nan,
        "explained_variance": 1 - sse / sst if sst and sst > 0 else np.nan,
        "l0": float(w @ sums["active"]) / n if n else np.nan,
    }
    if "targets" in sums:
        t = float(w @ sums["targets"])
        clean, sae, zero = (float(w @ sums[k]) / t for k in ("nll_clean", "nll_sae", "nll_zero"))
        out.update(
            loss_clean=clean,
            loss_sae=sae,
            loss_zero=zero,
            ce_increase=sae - clean,
            loss_recovered=(zero - sae) / (zero - clean) if zero != clean else np.nan,
        )
    return out


def _bootstrap(
    sums: dict[str, np.ndarray], strata: np.ndarray, n_boot: int, rng: np.random.Generator, columns: tuple[str, ...]
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of ``columns``, resampling texts within each stratum."""
    groups = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    draws: dict[str, list[float]] = {c: [] for c in columns}
    for _ in range(n_boot):
        weights = np.zeros(strata.size)
        for g in groups:
            np.add.at(weights, rng.choice(g, g.size), 1.0)
        values = _ratios(sums, weights)
        for c in columns:
            draws[c].append(values[c])
    return {c: (float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))) for c, v in draws.items()}


def evaluate_sae(
    sae: SparseAutoencoder,
    model: Any = None,
    site: str | None = None,
    corpus: str | None = None,
    tokens: int = 2048,
    seq_len: int = 128,
    activations: Any = None,
    with_loss: bool = True,
    n_boot: int = 200,
    dense_threshold: float = DENSE_THRESHOLD,
    seed: int = 0,
    show_progress: bool = False,
) -> pd.DataFrame:
    """The quality table of an SAE (:data:`QUALITY_COLUMNS`; see the module docstring).

    Args:
        sae: the SAE.
        model: a model (name, path or loaded); then ``site`` (None: the SAE's ``hook_name``)
            and ``corpus`` (comma-separated; None: every built-in domain) give held-out text,
            ``tokens`` per domain, one row per domain plus ``all``.
        activations: instead of a model, an (n, d_in) array: reconstruction metrics only.
        with_loss: measure the downstream loss (three forward passes per batch).
        n_boot: bootstrap resamples over texts for the intervals.
    """
    if (model is None) == (activations is None):
        raise SaeError("evaluate an SAE on a model (with a site and corpora) or on an activations array, not both")
    if activations is not None:
        return reconstruction_quality(sae, activations, dense_threshold=dense_threshold)
    from ..corpora import DEFAULT_CORPORA, corpus_texts

    binding = bind_site(model, sae, site)
    domains = corpus_texts(corpus or DEFAULT_CORPORA)
    sums = _PerText()
    fired_by_domain: dict[str, torch.Tensor] = {}
    with progress_bar("evaluate SAE", total=len(domains), enabled=show_progress) as advance:
        for c in domains:
            fired_by_domain[c.name] = torch.zeros(sae.d_sae, dtype=torch.float64)
            _domain_pass(binding, c.texts, c.name, tokens, seq_len, sums, fired_by_domain[c.name], with_loss)
            advance(1)
    if not sums.tokens:
        from ..errors import CorpusError

        raise CorpusError(f"the held-out texts of {corpus or DEFAULT_CORPORA!r} gave no tokens")
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in vars(sums).items() if k != "domain" and v}
    domain_of = np.asarray(sums.domain)
    rng = np.random.default_rng(seed)
    interval_columns = ("explained_variance",) + (("ce_increase", "loss_recovered") if with_loss else ())
    rows = []
    for name in [c.name for c in domains] + ["all"]:
        select = np.ones(domain_of.size, bool) if name == "all" else domain_of == name
        if not select.any():
            continue
        part = {k: v[select] for k, v in arrays.items()}
        point = _ratios(part, np.ones(int(select.sum())))
        intervals = _bootstrap(part, domain_of[select], n_boot, rng, interval_columns) if n_boot else {}
        fired = sum(fired_by_domain.values()) if name == "all" else fired_by_domain[name]
        assert isinstance(fired, torch.Tensor)  # a sum over the domains, of which there is at least one
        n_tokens = int(part["tokens"].sum())
        row: dict[str, Any] = {c: np.nan for c in QUALITY_COLUMNS}
        row.update(point)
        for column, (lo, hi) in intervals.items():
            row[f"{column}_lo"], row[f"{column}_hi"] = lo, hi
        row.update(
            domain=name,
            n_texts=int(select.sum()),
            n_tokens=n_tokens,
            n_massive=int(part["massive"].sum()),
            dead_fraction=float((fired == 0).double().mean()),
            dense_fraction=float((fired / max(n_tokens, 1) > dense_threshold).double().mean()),
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)
