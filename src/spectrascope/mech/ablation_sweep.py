"""Exact ablation sweeps: ablate each component on its own and measure a metric, row by row.

:func:`ablation_rows` returns, for the clean model and for every component, the metric's
per-row values (:class:`~spectrascope.mech.metrics.RowScores`: one text, sequence or prompt per
row), which is what bootstrap intervals over texts resample; :func:`ablation_sweep` reduces
them to the table of :data:`SWEEP_COLUMNS`.

The work is packed, not repeated:

- **Row chunks.** The metric's batch is cut into chunks of at most ``max_batch_tokens``
  tokens and :data:`MAX_LOGIT_BYTES` of logits, so a 4,096-token domain loss never holds
  its full (rows, pos, vocab) logits at once.
- **Many edits per forward.** Work items (component, chunk of rows) of one layer are stacked
  into one forward of at most ``max_batch_tokens`` rows x positions; each block of rows gets
  its own activation edit (:func:`~spectrascope.mech.ablation._site_fn`).
- **Resumed at the edited layer.** When the architecture's forward can start at a layer (its
  spec says so: :mod:`spectrascope.trace.resume`), an edit at layer ``L`` (a head, a block, or a weight of block ``L``) runs from the
  clean ``blocks.L.hook_resid_pre`` on: the unchanged layers before ``L`` are computed once per
  chunk, not once per edit. The resumed forward is checked once against the full forward.

Spectral (weight) edits change weights shared by every row, so each runs in its own forwards
(inside :func:`~spectrascope.mech.ablation.ablate`), also resumed at its layer.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.ablation import (
    AblationMode,
    Replacement,
    _Edit,
    _mode,
    _site_fn,
    ablate,
    reference_values,
    resolve_components,
)
from spectrascope.mech.components import ActivationComponent, Component, WeightComponent
from spectrascope.mech.metrics import JointMetric, Metric, NextTokenLoss, RowScores, as_hf, keep_logits
from spectrascope.models.handle import as_model
from spectrascope.progress import progress_bar
from spectrascope.stats.bootstrap import weighted_mean_interval
from spectrascope.trace import hooks, run_with_cache
from spectrascope.trace.resume import forward_from_layer, resumable, resume_checked, resumed_agrees
from spectrascope.trace.sites import SiteKind, site_name
from spectrascope.trace.tracer import model_output_tensor

MAX_LOGIT_BYTES = 256 * 2**20
"""Bound on the float32 logits of one forward (rows x kept positions x vocab x 4 bytes)."""

SWEEP_COLUMNS = ["component", "kind", "layer", "head", "mode", "metric", "baseline", "value", "effect", "damage"]
"""Columns of :func:`ablation_sweep`:

- ``component``: name (``head:L.H``, ``attn:L``, ``mlp:L``, ``spectral:...``);
- ``kind``: head, attn, mlp or spectral; ``layer``, ``head``: its position (nullable ints);
- ``mode``: zero / mean / resample, or the spectral keep (drop_top, tail, bulk);
- ``metric``: the metric's name; ``baseline``: the metric without ablation; ``value``: with
  the component ablated; ``effect`` = value - baseline; ``damage``: the effect in the metric's
  bad direction (= effect for a loss, -effect for a logit difference): positive = hurts.
"""


@dataclass(frozen=True)
class SweepRows:
    """Per-row metric values of a sweep: the clean model's and each ablated component's."""

    baseline: RowScores
    ablated: dict[Component, RowScores]

    def split(self) -> list[SweepRows]:
        """One sweep per part of a :class:`~spectrascope.mech.metrics.JointMetric` (whose row
        scores are (rows, parts)), in the parts' order."""
        baselines = JointMetric.split(self.baseline)
        ablated = {c: JointMetric.split(s) for c, s in self.ablated.items()}
        return [SweepRows(b, {c: parts[i] for c, parts in ablated.items()}) for i, b in enumerate(baselines)]


@dataclass(frozen=True)
class CleanPass:
    """A sweep's clean forward computed elsewhere (the activation pass over the same texts:
    :mod:`spectrascope.bridge.clean_losses`): the metric's per-row scores and the clean
    ``resid_pre`` of the edited layers.

    Attributes:
        baseline: (rows,) row scores, rows in the order of the metric's batch.
        resid: layer -> (rows, pos, d_model), padded like the metric's batch.
    """

    baseline: RowScores
    resid: dict[int, torch.Tensor]

    def subset(self, rows: torch.Tensor, width: int) -> CleanPass:
        """The pass of rows ``rows`` (in that order), residuals cut to ``width`` positions (a
        length group of the metric: :meth:`~spectrascope.mech.metrics.NextTokenLoss.subset`)."""
        baseline = RowScores(self.baseline.values[rows], self.baseline.weights[rows])
        return CleanPass(baseline, {layer: resid[rows, :width] for layer, resid in self.resid.items()})


CLEAN_PASS_RTOL = 1e-4
"""A given clean pass agrees with the sweep's own forward of its first row when no loss and no
residual entry is off by more than this x (largest magnitude + 1)."""


def component_layer(component: Component) -> int | None:
    """The layer whose input an edit of ``component`` first changes (None: unknown, run from the start)."""
    return component.layer


def _ids(metric: Metric) -> torch.Tensor:
    """The metric's (batch, pos) token ids: a sweep scores a metric with a batch."""
    assert metric.input_ids is not None  # not a batch-free metric
    return metric.input_ids


def rows_per_forward(metric: Metric, hf: nn.Module, max_batch_tokens: int) -> int:
    """How many rows one forward may hold: at most ``max_batch_tokens`` tokens and
    :data:`MAX_LOGIT_BYTES` of logits (at least one row)."""
    n_pos = _ids(metric).shape[1]
    kept = n_pos if metric.logit_positions is None else int(metric.logit_positions.numel())
    vocab = int(getattr(hf.config, "vocab_size", 0) or 0)
    return max(1, min(max_batch_tokens // max(1, n_pos), MAX_LOGIT_BYTES // max(1, kept * vocab * 4)))


def row_chunks(metric: Metric, hf: nn.Module, max_batch_tokens: int) -> list[slice]:
    """Consecutive row ranges of the metric's batch of :func:`rows_per_forward` rows each."""
    n_rows = _ids(metric).shape[0]
    per_chunk = rows_per_forward(metric, hf, max_batch_tokens)
    return [slice(start, min(start + per_chunk, n_rows)) for start in range(0, n_rows, per_chunk)]


def _mask(metric: Metric, rows: slice) -> torch.Tensor | None:
    return None if metric.attention_mask is None else metric.attention_mask[rows]


def _logits(
    hf: nn.Module, metric: Metric, rows: slice, layer: int | None, cache: Mapping[int, torch.Tensor] | None
) -> torch.Tensor:
    """Logits of rows ``rows`` (at the metric's positions): from the cached resid_pre of ``layer``
    when given, else a full forward."""
    keep = metric.logit_positions
    if cache is not None and layer is not None:
        return forward_from_layer(hf, layer, cache[layer][rows], _mask(metric, rows), keep)
    kwargs = {"input_ids": _ids(metric)[rows], "attention_mask": _mask(metric, rows), "use_cache": False}
    return model_output_tensor(hf(**kwargs, **keep_logits(hf, keep)))


def _clean_pass(
    hf: nn.Module, metric: Metric, chunks: list[slice], layers: list[int], prefix: bool
) -> tuple[RowScores, dict[int, torch.Tensor] | None, torch.Tensor]:
    """Baseline row scores over all chunks, the clean resid_pre of ``layers`` (when resuming)
    and the first chunk's logits (for the resume check)."""
    sites = [site_name(layer, SiteKind.RESID_PRE) for layer in layers] if prefix else []
    parts: list[RowScores] = []
    cached: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    first_logits: torch.Tensor | None = None
    for rows in chunks:
        logits, acts = run_with_cache(
            hf,
            _ids(metric)[rows],
            sites,
            attention_mask=_mask(metric, rows),
            use_cache=False,
            **keep_logits(hf, metric.logit_positions),
        )
        parts.append(metric.row_scores(logits, rows).detached())
        first_logits = logits if first_logits is None else first_logits
        for layer in layers if prefix else []:
            cached[layer].append(acts[site_name(layer, SiteKind.RESID_PRE)])
    cache = {layer: torch.cat(v) for layer, v in cached.items()} if prefix else None
    assert first_logits is not None  # a metric has at least one row, so there is a chunk
    return RowScores.cat(parts), cache, first_logits


def _given_clean_pass(
    hf: nn.Module, metric: Metric, layers: list[int], clean: CleanPass, rows: torch.Tensor
) -> tuple[RowScores, dict[int, torch.Tensor], torch.Tensor] | None:
    """The rows ``rows`` of a given clean pass, cut to the group's width, and the logits of the
    sweep's own forward of its first row, if that forward agrees with it (losses and residuals;
    else None, with a warning)."""
    given = clean.subset(rows, _ids(metric).shape[1])
    baseline, cache = given.baseline, {layer: given.resid[layer] for layer in layers}
    own, own_cache, logits = _clean_pass(hf, metric, [slice(0, 1)], layers, True)
    assert own_cache is not None  # asked for (prefix=True)
    real = slice(None) if metric.attention_mask is None else metric.attention_mask[0].bool()  # padding: any value
    # the resume check's rule: no entry off by more than rtol x (largest magnitude + 1)
    agrees = resumed_agrees(own.values, baseline.values[:1], CLEAN_PASS_RTOL) and all(
        resumed_agrees(own_cache[layer][0, real], cache[layer][0, real], CLEAN_PASS_RTOL) for layer in layers
    )
    if agrees:
        return baseline, cache, logits
    warnings.warn(
        "ablation sweep: the given clean pass does not match this model's forward; computing it again",
        RuntimeWarning,
        stacklevel=4,
    )
    return None


def _resume_agrees(
    hf: nn.Module, metric: Metric, chunk: slice, layer: int, cache: Mapping[int, torch.Tensor], logits: torch.Tensor
) -> bool:
    """Whether the forward from ``layer`` reproduces the full forward's logits (else warn); checked
    once per model, layer and masking in a process."""
    masked = metric.attention_mask is not None
    if resume_checked(hf, layer, masked, lambda: _logits(hf, metric, chunk, layer, cache), logits):
        return True
    warnings.warn(
        "ablation sweep: resuming the forward at a layer does not reproduce the full forward on this "
        "model; running full forwards instead",
        RuntimeWarning,
        stacklevel=4,
    )
    return False


def _value_rows(value: Replacement, rows: slice) -> Replacement:
    """The replacement for rows ``rows`` of the batch (resampled activations are per row)."""
    return value[rows] if isinstance(value, torch.Tensor) else value


def _packed_activation_scores(
    hf: nn.Module,
    metric: Metric,
    group: list[ActivationComponent],
    chunks: list[slice],
    values: Mapping[ActivationComponent, Replacement],
    cache: Mapping[int, torch.Tensor] | None,
    max_batch_tokens: int,
    advance,
) -> dict[Component, RowScores]:
    """Row scores of every component of ``group`` (one layer), items stacked into forwards."""
    items = [(c, rows) for c in group for rows in chunks]
    budget_rows = rows_per_forward(metric, hf, max_batch_tokens)  # tokens and logits bounded alike
    parts: dict[Component, list[RowScores]] = {c: [] for c in group}
    layer = group[0].layer
    start = 0
    while start < len(items):
        pack: list[tuple[ActivationComponent, slice]] = []
        used = 0
        while start < len(items):
            size = items[start][1].stop - items[start][1].start
            if pack and used + size > budget_rows:
                break
            pack.append(items[start])
            used += size
            start += 1
        by_site: dict[str, list[_Edit]] = {}
        offset = 0
        for component, rows in pack:
            size = rows.stop - rows.start
            by_site.setdefault(component.site, []).append(
                _Edit(component, slice(offset, offset + size), _value_rows(values[component], rows))
            )
            offset += size
        attention_mask = metric.attention_mask
        mask = None if attention_mask is None else torch.cat([attention_mask[rows] for _, rows in pack])
        with hooks(hf, {site: _site_fn(edits) for site, edits in by_site.items()}):
            if cache is not None:
                hidden = torch.cat([cache[layer][rows] for _, rows in pack])
                logits = forward_from_layer(hf, layer, hidden, mask, metric.logit_positions)
            else:
                ids = torch.cat([_ids(metric)[rows] for _, rows in pack])
                kwargs = {"input_ids": ids, "attention_mask": mask, "use_cache": False}
                logits = model_output_tensor(hf(**kwargs, **keep_logits(hf, metric.logit_positions)))
        sizes = [rows.stop - rows.start for _, rows in pack]
        for (component, rows), part in zip(pack, logits.split(sizes), strict=True):
            parts[component].append(metric.row_scores(part, rows).detached())
        done = {c for c, rows in pack if rows.stop == metric.n_rows}
        advance(len(done))
    return {c: RowScores.cat(p) for c, p in parts.items()}


def _weight_edit_scores(hf: nn.Module, component: Component, groups: list[_Group]) -> list[RowScores]:
    """Each group's row scores with one (spectral) weight edit in place (made once), resumed at
    its layer when possible."""
    layer = component_layer(component)
    out = []
    with ablate(hf, [component]):
        for g in groups:
            cache = g.cache if g.cache is not None and layer in g.cache else None
            out.append(
                RowScores.cat(
                    [
                        g.metric.row_scores(_logits(hf, g.metric, rows, layer, cache), rows).detached()
                        for rows in g.chunks
                    ]
                )
            )
    return out


LENGTH_SLACK = 0.1
"""A length group of a padded loss ends at the first row shorter than (1 - slack) x its longest.

0.1 rather than 0.25: on the study's six domain losses (4,096 tokens each) the padded
positions fall from 7.8 % to 3.2 % of the forwards (0.5 % at 0.05, in 38 groups instead of 23),
and three edits of arithmetic's loss took 24.0-24.3 s instead of 26.6-27.5 s (alternating, one
process), with the same losses to 6 digits."""


def length_groups(metric: Metric, slack: float = LENGTH_SLACK) -> list[torch.Tensor]:
    """Row indices of ``metric``'s batch in groups of similar length, longest first.

    A right-padded next-token loss over texts of 5 to 20 tokens costs a 20-position forward per
    row; rows sorted by length and cut where a row is shorter than ``(1 - slack)`` x its group's
    longest, each group run at its own width (:meth:`NextTokenLoss.subset`), cost at most
    ``1 / (1 - slack)`` x their tokens. One group (all rows, in order) for other metrics, for
    batches without padding, or when a row has no scored token.
    """
    everything = [torch.arange(_ids(metric).shape[0])]
    if not isinstance(metric, NextTokenLoss) or metric.attention_mask is None:
        return everything
    lengths = metric.row_lengths().cpu()
    if not bool(metric.targets.any(dim=1).all()) or int(lengths.sum()) >= (1 - slack) * lengths.numel() * int(
        lengths.max()
    ):
        return everything
    order = torch.argsort(lengths, descending=True, stable=True)
    groups: list[list[int]] = []
    for row in order.tolist():
        if not groups or lengths[row] < (1 - slack) * lengths[groups[-1][0]]:
            groups.append([])
        groups[-1].append(row)
    return [torch.tensor(g) for g in groups]


@dataclass
class _Group:
    """Rows of a sweep's metric run together: their own metric (trimmed), row chunks, clean
    scores and the clean resid_pre of the edited layers (None: full forwards)."""

    rows: torch.Tensor
    metric: Metric
    chunks: list[slice]
    baseline: RowScores
    cache: dict[int, torch.Tensor] | None


def _in_row_order(parts: list[RowScores], groups: list[_Group]) -> RowScores:
    """Per-group row scores back in the order of the metric's batch."""
    joined = RowScores.cat(parts)
    order = torch.argsort(torch.cat([g.rows for g in groups]))
    return RowScores(joined.values[order], joined.weights[order])


@torch.no_grad()
def ablation_rows(
    model: Any,
    components: Component | str | Iterable[Component | str],
    metric: Metric,
    mode: AblationMode | str = AblationMode.ZERO,
    reference: Any = None,
    *,
    batched: bool = True,
    reuse_prefix: bool = True,
    max_batch_tokens: int = 4096,
    show_progress: bool = False,
    replacements: Mapping[Component, Replacement] | None = None,
    group_lengths: bool = True,
    clean: CleanPass | None = None,
) -> SweepRows:
    """Per-row metric values with each component ablated on its own, and without ablation.

    Args: as :func:`ablation_sweep`, and ``replacements``: the activation components'
        replacements computed once by :func:`~spectrascope.mech.ablation.reference_values`
        (several sweeps with one reference need it once; None: computed from ``reference``),
        ``group_lengths``: (batched) run a padded loss in :func:`length_groups`, each at its
        own width (False: one group padded to the longest text; the same numbers, slower),
        and ``clean``: the clean forward computed elsewhere (used when the sweep resumes and it
        holds every edited layer; its first row is checked against a forward of the sweep's
        own, else it is computed again).
    Returns:
        :class:`SweepRows` (rows in the order of the metric's batch; components in the order given).
    """
    as_model(model).require_causal_lm("an ablation sweep (it scores next-token logits)")
    hf = as_hf(model)
    resolved = resolve_components(model, components)
    mode = _mode(mode)
    if hf.training:
        raise SpectrascopeError("the model is in training mode (dropout); call .eval() before an ablation sweep")
    activation = [c for c in resolved if isinstance(c, ActivationComponent)]
    if replacements is not None and all(c in replacements for c in activation):
        values = {c: replacements[c] for c in activation}
    else:
        values = reference_values(hf, activation, mode, reference)
    prefix = batched and reuse_prefix and resumable(hf)
    layers = sorted({layer for c in resolved if (layer := component_layer(c)) is not None}) if prefix else []
    per_row = any(isinstance(v, torch.Tensor) for v in values.values())  # resampled: tied to the batch's rows
    grouped = batched and group_lengths and not per_row
    row_groups = length_groups(metric) if grouped else [torch.arange(_ids(metric).shape[0])]
    groups: list[_Group] = []
    resume = prefix and bool(layers)
    if clean is not None and not (resume and set(layers) <= set(clean.resid)):
        clean = None
    for rows in row_groups:
        part = metric if len(row_groups) == 1 else cast(NextTokenLoss, metric).subset(rows)
        chunks = row_chunks(part, hf, max_batch_tokens)
        given = _given_clean_pass(hf, part, layers, clean, rows) if clean is not None else None
        if given is not None:
            given_baseline, given_cache, row_logits = given
            if not groups:  # the resume checked on the first row (the given pass's own check ran it)
                resume = _resume_agrees(hf, part, slice(0, 1), layers[-1], given_cache, row_logits)
            if resume:
                groups.append(_Group(rows, part, chunks, given_baseline, given_cache))
                continue
        clean = None  # a given pass that failed a check is not used for the other groups
        baseline, cache, first_logits = _clean_pass(hf, part, chunks, layers, resume)
        if cache is not None and not groups:  # checked on the first group's first chunk
            resume = _resume_agrees(hf, part, chunks[0], layers[-1], cache, first_logits)
        del first_logits  # up to MAX_LOGIT_BYTES: never held for more than one group
        groups.append(_Group(rows, part, chunks, baseline, cache if resume else None))
    scores: dict[Component, list[RowScores]] = {}
    with progress_bar("ablation sweep", len(resolved) * len(groups), show_progress) as advance:
        if batched:
            for layer in sorted({c.layer for c in activation}):
                group = [c for c in activation if c.layer == layer]
                for g in groups:
                    found = _packed_activation_scores(
                        hf, g.metric, group, g.chunks, values, g.cache, max_batch_tokens, advance
                    )
                    for c, part_scores in found.items():
                        scores.setdefault(c, []).append(part_scores)
        for component in resolved:
            if component in scores:
                continue
            if isinstance(component, WeightComponent):
                scores[component] = _weight_edit_scores(hf, component, groups)
            else:
                assert isinstance(component, ActivationComponent)  # resolve_components admits the two families only
                scores[component] = [_one_at_a_time(hf, g.metric, component, values, g.chunks) for g in groups]
            advance(len(groups))
    baseline = _in_row_order([g.baseline for g in groups], groups)
    ablated = {c: _in_row_order(parts, groups) for c, parts in scores.items()}
    return SweepRows(baseline, {c: ablated[c] for c in resolved})


def _one_at_a_time(
    hf: nn.Module,
    metric: Metric,
    component: ActivationComponent,
    values: Mapping[ActivationComponent, Replacement],
    chunks: list[slice],
) -> RowScores:
    """The reference implementation: full forwards with one activation edit applied to every row."""
    parts = []
    for rows in chunks:
        edit = _Edit(component, slice(None), _value_rows(values[component], rows))
        with hooks(hf, {component.site: _site_fn([edit])}):
            parts.append(metric.row_scores(_logits(hf, metric, rows, None, None), rows).detached())
    return RowScores.cat(parts)


def ablation_sweep(
    model: Any,
    components: Component | str | Iterable[Component | str],
    metric: Metric,
    mode: AblationMode | str = AblationMode.ZERO,
    reference: Any = None,
    *,
    batched: bool = True,
    reuse_prefix: bool = True,
    max_batch_tokens: int = 4096,
    show_progress: bool = False,
) -> pd.DataFrame:
    """Ablate each component on its own and measure the metric: one row per component.

    Args:
        model: a LoadedModel, ToyModel or Hugging Face causal LM.
        components: see :func:`~spectrascope.mech.ablation.resolve_components` (``"all"`` = every head).
        metric: the :class:`~spectrascope.mech.metrics.Metric` (its batch is the input).
        mode, reference: as in :func:`~spectrascope.mech.ablation.ablate` (spectral components
            ignore them).
        batched: pack many edits into one forward (see the module docstring). False: one full
            forward per component and chunk (the reference implementation).
        reuse_prefix: (batched, Llama family) start each edit's forward at its layer from the
            clean residual stream. Checked once against a full forward; falls back (with a
            warning) if they differ.
        max_batch_tokens: bound on rows x positions of one forward.
        show_progress: draw a progress bar.

    Returns:
        DataFrame with :data:`SWEEP_COLUMNS`, in the order of ``components``.
    """
    sweep = ablation_rows(
        model,
        components,
        metric,
        mode,
        reference,
        batched=batched,
        reuse_prefix=reuse_prefix,
        max_batch_tokens=max_batch_tokens,
        show_progress=show_progress,
    )
    return sweep_table(sweep, metric, _mode(mode))


def sweep_table(sweep: SweepRows, metric: Metric, mode: AblationMode) -> pd.DataFrame:
    """The :data:`SWEEP_COLUMNS` table of per-row sweep results (each reduced to the metric)."""
    baseline = float(sweep.baseline.reduce())
    sign = 1.0 if metric.higher_is_worse else -1.0
    rows = []
    for component, scores in sweep.ablated.items():
        value = float(scores.reduce())
        rows.append(
            {
                "component": component.name,
                "kind": component.kind,
                "layer": component.layer,
                "head": component.head,
                "mode": component.edit if isinstance(component, WeightComponent) else mode.value,
                "metric": metric.name,
                "baseline": baseline,
                "value": value,
                "effect": value - baseline,
                "damage": sign * (value - baseline),
            }
        )
    table = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    for column in ("layer", "head"):
        table[column] = table[column].astype("Int64")
    return table


def rank_by_damage(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep table sorted by damage, most harmful first, with a 1-based ``rank`` column."""
    ranked = table.sort_values("damage", ascending=False, kind="stable").reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked


def damage_intervals(
    sweep: SweepRows, metric: Metric, n_boot: int = 1000, seed: int = 0, rows: np.ndarray | slice = slice(None)
) -> pd.DataFrame:
    """Each component's damage with a bootstrap interval over the metric's rows (texts or sequences).

    The damage of row r is its value change in the metric's bad direction, weighted by the
    row's weight (its scored tokens), paired (the same rows with and without the edit). Columns:
    component, damage, damage_lo, damage_hi, n_rows; ``rows`` restricts to some rows (a domain).
    """
    sign = 1.0 if metric.higher_is_worse else -1.0
    base_v = sweep.baseline.values.numpy()[rows]
    weights = sweep.baseline.weights.numpy()[rows]
    out = []
    for component, scores in sweep.ablated.items():
        change = sign * (scores.values.numpy()[rows] - base_v)
        interval = weighted_mean_interval(change, weights, n_boot, seed)
        out.append(
            {
                "component": component.name,
                "kind": component.kind,
                "layer": component.layer,
                "head": component.head,
                **interval.columns("damage"),
                "n_rows": interval.n_units,
            }
        )
    table = pd.DataFrame(out)
    for column in ("layer", "head"):
        table[column] = table[column].astype("Int64")
    return table
