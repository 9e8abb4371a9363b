"""SAE features joined with the weight spectra (beyond what an SAE library does).

1. :func:`dictionary_spectra`: the ESD of ``W_dec`` (d_sae, d_in) and ``W_enc`` (d_in, d_sae)
   with the project's weight numerics (:func:`~spectrascope.spectra.esd.gram_eigenvalues`,
   :func:`~spectrascope.spectra.metrics.spectrum_metrics`: alpha, ERG tail ...), next to the
   same architecture and size freshly initialized (the control: does training a sparse
   dictionary grow a heavy tail?).

2. :func:`feature_tail_overlap`: where domain-selective features live in the weights. For a
   residual-stream site, the matrices that *write* it (``o`` and ``mlp_down`` of the block
   that produces it) and those that *read* it next (``q``, ``k``, ``v``, ``mlp_gate``,
   ``mlp_up`` of the block that consumes it; see :func:`site_matrices`), each split into its
   power-law tail and bulk (:func:`spectrascope.bridge.subspaces.matrix_subspaces`). For a
   unit decoder direction u:

       share(u, B) = ||B^T u'||^2,  u' = u for writers (B = left singular vectors),
                                    u' = gamma * u / ||gamma * u|| for readers (B = right
                                    singular vectors; gamma the reading norm's weight: the
                                    matrix sees the normalized residual stream scaled by gamma)

   averaged over the selected features and compared with two controls, random unit
   directions of the residual stream and every live feature of the same SAE; intervals by
   bootstrap over directions; enrichment = selected share / random share.

3. :func:`feature_ablation`: remove the top domain-selective features of a domain from the
   site (x -> x - sum_{i in S} f_i(x) W_dec[i]: only their contribution; the SAE's error term
   stays) and measure the domain's next-token loss, against removing as many random live
   features (``n_random`` draws) and against ablating model components (heads, spectral
   edits: :func:`spectrascope.mech.ablation.ablation_sweep`, mean ablation), e.g. those the
   study's bridge ranked highest for that domain.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..bridge.subspaces import matrix_subspaces
from ..spectra.esd import gram_eigenvalues
from ..spectra.metrics import spectrum_metrics
from ..trace import hooks
from ..trace.sites import SiteKind
from .base import SaeError, SparseAutoencoder
from .registry import build_sae
from .sites import SiteBinding, resume_checked, resume_layer

if TYPE_CHECKING:
    from ..mech.ablation_sweep import CleanPass
    from ..mech.metrics import RowScores

SPECTRA_COLUMNS = [
    "matrix",
    "weights",
    "N",
    "M",
    "alpha",
    "xmin",
    "D",
    "num_pl_spikes",
    "erg_num",
    "erg_delta",
    "stable_rank",
    "lambda_max",
    "entropy",
    "status",
]


def dictionary_spectra(sae: SparseAutoencoder, seed: int = 0) -> tuple[pd.DataFrame, dict[tuple[str, str], np.ndarray]]:
    """(table, ESDs): one row per (matrix W_dec / W_enc, weights trained / random init).

    The ESDs (eigenvalues of W^T W, long side first, ascending) are returned by the same
    keys for plotting. The random SAE has the trained one's architecture, size and
    settings (``seed`` seeds it).
    """
    settings = {"k": getattr(sae, "k", None)}
    random = build_sae(sae.architecture, sae.d_in, sae.d_sae, seed=seed + 1, **{k: v for k, v in settings.items() if v})
    rows, esds = [], {}
    for label, model in (("trained", sae), ("random init", random)):
        for name in ("W_dec", "W_enc"):
            W = getattr(model, name).detach().double().cpu().numpy()
            evals = gram_eigenvalues(W)
            N, M = max(W.shape), min(W.shape)
            metrics = spectrum_metrics(evals, N, M)
            rows.append({"matrix": name, "weights": label, "N": N, "M": M, **metrics})
            esds[(name, label)] = evals
    return pd.DataFrame(rows)[SPECTRA_COLUMNS], esds


def _norm_weight(block: torch.nn.Module, names: Sequence[str]) -> torch.Tensor | None:
    for name in names:
        module = getattr(block, name, None)
        if module is not None and getattr(module, "weight", None) is not None:
            return module.weight.detach().float().cpu()
    return None


def site_matrices(binding: SiteBinding) -> list[dict[str, Any]]:
    """The weight matrices that write or read the SAE's site.

    Each: ``name`` (HF weight), ``block``, ``role``, ``relation`` (writes / reads), ``W``
    (out, in) float64, ``gamma`` (reading norm's weight, or None). Llama-family only (the
    roles of :mod:`spectrascope.models.roles`); residual-stream sites only.
    """
    from ..bridge.overlap_run import model_roles

    if not binding.in_residual_stream:
        raise SaeError(f"weight overlap needs a residual-stream site; {binding.site} is not one")
    hf, L, kind = binding.hf, binding.layer, binding.kind
    n_layers = int(hf.config.num_hidden_layers)
    writes = {
        SiteKind.RESID_PRE: (L - 1, ("o", "mlp_down")),
        SiteKind.RESID_MID: (L, ("o",)),
        SiteKind.ATTN_OUT: (L, ("o",)),
        SiteKind.RESID_POST: (L, ("o", "mlp_down")),
        SiteKind.MLP_OUT: (L, ("mlp_down",)),
    }[kind]
    reads = {
        SiteKind.RESID_PRE: [(L, ("q", "k", "v")), (L, ("mlp_gate", "mlp_up"))],
        SiteKind.RESID_MID: [(L, ("mlp_gate", "mlp_up"))],
        SiteKind.ATTN_OUT: [(L, ("mlp_gate", "mlp_up"))],
        SiteKind.RESID_POST: [(L + 1, ("q", "k", "v")), (L + 1, ("mlp_gate", "mlp_up"))],
        SiteKind.MLP_OUT: [(L + 1, ("q", "k", "v")), (L + 1, ("mlp_gate", "mlp_up"))],
    }[kind]
    roles = model_roles(hf)
    params = dict(hf.named_parameters())
    layers = getattr(getattr(hf, "model", None), "layers", None)
    out = []
    wanted = [(writes[0], writes[1], "writes")] + [(b, r, "reads") for b, r in reads]
    for block, role_set, relation in wanted:
        if not 0 <= block < n_layers:
            continue
        gamma = None
        if relation == "reads" and layers is not None:
            attn = role_set[0] in ("q", "k", "v")
            gamma = _norm_weight(
                layers[block], ("input_layernorm", "ln_1") if attn else ("post_attention_layernorm", "ln_2")
            )
        for name, (b, role) in roles.items():
            if b == block and role in role_set:
                out.append(
                    {
                        "name": name,
                        "block": block,
                        "role": role,
                        "relation": relation,
                        "W": params[name].detach().double().cpu().numpy(),
                        "gamma": gamma,
                    }
                )
    if not out:
        raise SaeError(f"no weight matrix of this model writes or reads {binding.site} (an unsupported family?)")
    return out


def _shares(directions: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """||B^T u||^2 of each unit row u of ``directions`` (n, d) for a basis (d, k)."""
    if basis.shape[1] == 0:
        return np.zeros(directions.shape[0])
    return ((directions @ basis) ** 2).sum(axis=1)


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def _boot_mean(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    if values.size == 0:
        return np.nan, np.nan
    means = values[rng.integers(0, values.size, (n_boot, values.size))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def feature_tail_overlap(
    binding: SiteBinding,
    features_by_domain: dict[str, Sequence[int]],
    live_features: Sequence[int] | None = None,
    n_random: int = 1000,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Tail and bulk shares of domain-selective decoder directions, per matrix (module docstring).

    Args:
        binding: the SAE at its site (:func:`~spectrascope.sae.sites.bind_site`).
        features_by_domain: domain -> features selective for it (e.g. the top of the ranking).
        live_features: the "all features" control (None: every feature).
        n_random: random unit directions of the control; n_boot: bootstrap resamples.

    Returns:
        one row per (domain, matrix, part): domain, name, block, role, relation, part (tail,
        bulk), k (subspace dimension), n_features, share (+_lo, _hi), random_share
        (+_lo, _hi), all_features_share, enrichment (+_lo, _hi) = share / random_share.
    """
    rng = np.random.default_rng(seed)
    W_dec = binding.sae.W_dec.detach().double().cpu().numpy()
    live = np.arange(W_dec.shape[0]) if live_features is None else np.asarray(list(live_features), dtype=int)
    random_dirs = _unit(rng.standard_normal((n_random, W_dec.shape[1])))
    rows = []
    for matrix in site_matrices(binding):
        sub = matrix_subspaces(matrix["W"])
        reads = matrix["relation"] == "reads"
        gamma = matrix["gamma"].double().numpy() if reads and matrix["gamma"] is not None else None

        def mapped(u: np.ndarray, gamma=gamma) -> np.ndarray:
            return _unit(u * gamma) if gamma is not None else u

        for part in ("tail", "bulk"):
            basis = (sub.reads(part) if reads else sub.writes(part)).astype(np.float64)
            random_share = _shares(mapped(random_dirs), basis)
            all_share = _shares(mapped(_unit(W_dec[live])), basis) if live.size else np.array([np.nan])
            r_lo, r_hi = _boot_mean(random_share, n_boot, rng)
            for domain, features in features_by_domain.items():
                chosen = np.asarray(list(features), dtype=int)
                share = _shares(mapped(_unit(W_dec[chosen])), basis) if chosen.size else np.array([])
                lo, hi = _boot_mean(share, n_boot, rng)
                ratios = []
                if share.size:
                    for _ in range(n_boot):
                        a = share[rng.integers(0, share.size, share.size)].mean()
                        b = random_share[rng.integers(0, random_share.size, random_share.size)].mean()
                        ratios.append(a / b if b > 0 else np.nan)
                mean = float(share.mean()) if share.size else np.nan
                base = float(random_share.mean())
                rows.append(
                    {
                        "domain": domain,
                        "name": matrix["name"],
                        "block": matrix["block"],
                        "role": matrix["role"],
                        "relation": matrix["relation"],
                        "part": part,
                        "k": basis.shape[1],
                        "n_features": int(chosen.size),
                        "share": mean,
                        "share_lo": lo,
                        "share_hi": hi,
                        "random_share": base,
                        "random_share_lo": r_lo,
                        "random_share_hi": r_hi,
                        "all_features_share": float(np.nanmean(all_share)),
                        "enrichment": mean / base if base > 0 else np.nan,
                        "enrichment_lo": float(np.nanpercentile(ratios, 2.5)) if ratios else np.nan,
                        "enrichment_hi": float(np.nanpercentile(ratios, 97.5)) if ratios else np.nan,
                    }
                )
    return pd.DataFrame(rows)


ABLATION_COLUMNS = [
    "domain",
    "intervention",
    "kind",
    "n_removed",
    "baseline",
    "loss",
    "damage",
    "damage_lo",
    "damage_hi",
    "excess",
    "excess_lo",
    "excess_hi",
    "n_texts",
]
"""Columns of :func:`feature_ablation`, losses in nats per token:

- ``damage`` = loss with the intervention - baseline, token-weighted over the domain's texts;
  ``damage_lo`` / ``damage_hi``: 95 % paired bootstrap interval over texts (the same texts with
  and without the edit). For the random-feature control, the change averaged over the draws
  in each text, then bootstrapped the same way.
- ``excess`` (the ``features`` rows only): damage of the domain's features minus the mean
  damage of as many random live features, per text, with its bootstrap interval: the
  comparison with the control.
- ``n_texts``: texts (rows of the loss batch) resampled.
"""


def _keep_mask(metric: Any) -> torch.Tensor:
    mask = (
        metric.attention_mask.bool()
        if metric.attention_mask is not None
        else torch.ones_like(metric.input_ids, dtype=torch.bool)
    )
    keep = mask.clone()
    keep[:, 0] = False
    return keep


class FeatureRemovalScores:
    """Per-text next-token loss of one metric's batch with SAE features removed at the site.

    The clean forward runs once. When the site is a residual stream (``resid_post`` of L, or
    ``resid_pre`` of L + 1) and the model's forward can be resumed, every removal starts from
    the cached clean residual at block L + 1 (:func:`~spectrascope.trace.resume.forward_from_layer`):
    at the middle layer, half the cost of a full forward; the first resumed forward is checked
    against the full one (else full forwards with the edit hooked are used).

    Args:
        binding: the model, site and SAE.
        metric: a next-token loss over a batch (:func:`~spectrascope.mech.metrics.corpus_loss`).
        clean: that clean forward computed elsewhere (the study's activation pass over the same
            texts: :meth:`~spectrascope.bridge.clean_losses.CleanLosses.clean_pass`), used when
            it holds the resume layer and its first row agrees with a forward of this model's
            own (else computed again, with a warning when it disagrees).
    """

    def __init__(self, binding: SiteBinding, metric: Any, clean: CleanPass | None = None) -> None:
        from ..mech.metrics import keep_logits
        from ..trace.sites import site_name
        from ..trace.tracer import model_output_tensor, run_with_cache

        self.binding, self.metric = binding, metric
        self._keep = [_keep_mask(metric)]
        self._kwargs = metric.forward_kwargs(binding.hf)
        self._layer = self._resume_layer()
        self._hidden: torch.Tensor | None = None
        with torch.no_grad():
            if clean is not None and self._layer is not None and self._take(clean, self._layer):
                return
            if self._layer is None:
                logits = model_output_tensor(binding.hf(**self._kwargs, use_cache=False))
            else:
                resid = site_name(self._layer, SiteKind.RESID_PRE)
                logits, cache = run_with_cache(
                    binding.hf,
                    metric.input_ids,
                    [resid],
                    attention_mask=metric.attention_mask,
                    use_cache=False,
                    **keep_logits(binding.hf, metric.logit_positions),
                )
                self._hidden = cache[resid]
                if not resume_checked(
                    binding, self._layer, self._hidden, logits, metric.attention_mask, self.metric.logit_positions
                ):
                    self._layer = self._hidden = None
        self.clean = self._scores(logits)

    def _take(self, clean: CleanPass, layer: int) -> bool:
        """Use ``clean`` (its residual at ``layer`` and per-text losses) when its first row agrees
        with this model's own forward of it and the forward resumed from it reproduces the full
        one (the rule of :data:`~spectrascope.mech.ablation_sweep.CLEAN_PASS_RTOL`)."""
        from ..mech.ablation_sweep import CLEAN_PASS_RTOL
        from ..mech.metrics import keep_logits
        from ..trace.resume import resumed_agrees
        from ..trace.sites import site_name
        from ..trace.tracer import run_with_cache

        if layer not in clean.resid:
            return False
        metric, first, resid = self.metric, slice(0, 1), site_name(layer, SiteKind.RESID_PRE)
        mask = None if metric.attention_mask is None else metric.attention_mask[first]
        logits, cache = run_with_cache(
            self.binding.hf,
            metric.input_ids[first],
            [resid],
            attention_mask=mask,
            use_cache=False,
            **keep_logits(self.binding.hf, metric.logit_positions),
        )
        own = metric.row_scores(logits, first).detached()
        given = clean.resid[layer]
        real = slice(None) if mask is None else mask[0].bool()  # padding: any value
        if not (
            resumed_agrees(own.values, clean.baseline.values[:1], CLEAN_PASS_RTOL)
            and resumed_agrees(cache[resid][0, real], given[0, real], CLEAN_PASS_RTOL)
        ):
            warnings.warn(
                "feature removal: the given clean pass does not match this model's forward; computing it again",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        if not resume_checked(self.binding, layer, given[first], logits, mask, metric.logit_positions):
            return False
        self._hidden = given
        self.clean = _arrays(clean.baseline)
        return True

    def _resume_layer(self) -> int | None:
        return resume_layer(self.binding)

    def _resumed_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        from ..trace.resume import forward_from_layer

        assert self._layer is not None
        return forward_from_layer(
            self.binding.loaded, self._layer, hidden, self.metric.attention_mask, self.metric.logit_positions
        )

    def _scores(self, logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return _arrays(self.metric.row_scores(logits).detached())

    @torch.no_grad()
    def removed(self, features: Sequence[int]) -> np.ndarray:
        """(texts,) mean loss per text with ``features``' contributions subtracted at the site
        (every position but the first)."""
        from ..trace.tracer import model_output_tensor

        sae = self.binding.sae
        index = torch.as_tensor(list(features), dtype=torch.long, device=sae.device)

        def remove(x: torch.Tensor) -> torch.Tensor:
            codes = sae.encode(x)[:, index]
            return x - codes @ sae.W_dec[index]

        edit = self.binding.edit(remove, self._keep)
        if self._hidden is not None:
            logits = self._resumed_logits(edit(self._hidden, self.binding.site))
        else:
            with hooks(self.binding.hf, {self.binding.site: edit}):
                logits = model_output_tensor(self.binding.hf(**self._kwargs, use_cache=False))
        return self._scores(logits)[0]


def _arrays(scores: RowScores) -> tuple[np.ndarray, np.ndarray]:
    """(values, weights) of row scores as float64 arrays."""
    return scores.values.cpu().numpy().astype(np.float64), scores.weights.cpu().numpy().astype(np.float64)


class GroupedRemovalScores:
    """:class:`FeatureRemovalScores` of a padded loss run per length group
    (:func:`~spectrascope.mech.ablation_sweep.length_groups`, each group at its own width): the
    same per-text scores, in the batch's text order, without paying for the padding of short
    texts (calendar, arithmetic and geography texts are 5 to 20 tokens)."""

    def __init__(self, binding: SiteBinding, metric: Any, clean: CleanPass | None = None) -> None:
        from ..mech.ablation_sweep import length_groups

        groups = length_groups(metric)
        self._parts = []
        for g in groups:
            part = metric if len(groups) == 1 else metric.subset(g)
            given = None if clean is None else clean.subset(g, part.input_ids.shape[1])
            self._parts.append(FeatureRemovalScores(binding, part, given))
        self._order = np.argsort(torch.cat(groups).numpy(), kind="stable")
        self.clean = (self._joined([p.clean[0] for p in self._parts]), self._joined([p.clean[1] for p in self._parts]))

    def _joined(self, parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts)[self._order]

    def removed(self, features: Sequence[int]) -> np.ndarray:
        """(texts,) mean loss per text with ``features`` removed (see :meth:`FeatureRemovalScores.removed`)."""
        return self._joined([p.removed(features) for p in self._parts])


def feature_ablation(
    binding: SiteBinding,
    features_by_domain: dict[str, Sequence[int]],
    live_features: Sequence[int],
    loss_tokens: int = 256,
    seq_len: int = 128,
    components: dict[str, Sequence[Any]] | None = None,
    n_random: int = 5,
    seed: int = 0,
    reference: Any = None,
    n_boot: int = 1000,
    clean: Callable[[str, Any], CleanPass | None] | None = None,
) -> pd.DataFrame:
    """Domain-loss damage of removing domain-selective features vs random features vs components.

    Args:
        features_by_domain: domain (a built-in name or path) -> its selective features.
        live_features: the pool random features are drawn from.
        components: domain -> components (:mod:`spectrascope.mech.ablation` objects or names)
            to ablate on the same metric (mean ablation over ``reference``; None: none).
        reference: the mean-ablation reference batch (None: the domain's own batch).
        n_boot: bootstrap resamples of the texts.
        clean: (domain, its loss metric) -> the clean forward of those texts computed elsewhere,
            or None (see :class:`FeatureRemovalScores`); None: every clean forward is run here.
    Returns:
        a DataFrame of :data:`ABLATION_COLUMNS`.
    """
    from ..mech.ablation_sweep import ablation_rows, damage_intervals
    from ..mech.metrics import corpus_loss
    from ..stats.bootstrap import weighted_mean_interval

    rng = np.random.default_rng(seed)
    pool = np.asarray(list(live_features), dtype=int)
    rows = []
    for domain, features in features_by_domain.items():
        features = list(features)
        metric = corpus_loss(binding.loaded, domain, max_tokens=loss_tokens, seq_len=seq_len, seed=seed)
        scorer = GroupedRemovalScores(binding, metric, None if clean is None else clean(domain, metric))
        base, weights = scorer.clean
        baseline = float((base * weights).sum() / weights.sum())

        def row(
            intervention: str,
            kind: str,
            n: int,
            change: np.ndarray,
            excess: np.ndarray | None = None,
            domain=domain,
            baseline=baseline,
            weights=weights,
        ) -> dict:
            damage = weighted_mean_interval(change, weights, n_boot, seed)
            out = {
                "domain": domain,
                "intervention": intervention,
                "kind": kind,
                "n_removed": n,
                "baseline": baseline,
                "loss": baseline + damage.estimate,
                **damage.columns("damage"),
                "n_texts": damage.n_units,
            }
            if excess is not None:
                out.update(weighted_mean_interval(excess, weights, n_boot, seed).columns("excess"))
            return out

        if features:
            removed = scorer.removed(features) - base
            candidates = np.setdiff1d(pool, features)
            random = None
            if candidates.size >= len(features) and n_random:
                draws = [
                    scorer.removed(rng.choice(candidates, len(features), replace=False)) - base for _ in range(n_random)
                ]
                random = np.mean(draws, axis=0)
            rows.append(
                row(
                    f"top {len(features)} {domain} features",
                    "features",
                    len(features),
                    removed,
                    None if random is None else removed - random,
                )
            )
            if random is not None:
                rows.append(row(f"{len(features)} random features", "random features", len(features), random))
        chosen = list((components or {}).get(domain, []))
        if chosen:
            sweep = ablation_rows(binding.loaded, chosen, metric, mode="mean", reference=reference or metric)
            for r in damage_intervals(sweep, metric, n_boot, seed).itertuples():
                rows.append(
                    {
                        "domain": domain,
                        "intervention": r.component,
                        "kind": r.kind,
                        "n_removed": 1,
                        "baseline": baseline,
                        "loss": baseline + r.damage,
                        "damage": r.damage,
                        "damage_lo": r.damage_lo,
                        "damage_hi": r.damage_hi,
                        "n_texts": r.n_rows,
                    }
                )
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)
