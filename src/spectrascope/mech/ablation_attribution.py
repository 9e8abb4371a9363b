"""First-order estimates of ablation effects: attribution patching applied to ablations.

An exact sweep (:mod:`spectrascope.mech.ablation_sweep`) runs one forward per edit. The screen
here runs one forward and one backward per chunk of rows and estimates every edit at once
(Nanda 2023, "Attribution patching"; Kramar et al. 2024, "AtP*"). With F = sum over rows of
the metric's row totals v_r w_r (e.g. the summed next-token loss of each text):

- an activation component (head, attention block, MLP block) replaced by r instead of its
  clean value a changes row r's total by about  sum_{t, i} dF/da[r, t, i] (r - a)[r, t, i];
- a weight edit W -> W + dW of a linear map y = W x changes it by about
  sum_t g_t . (dW x_t), with g_t = dF/dy_t the gradient at the map's output and x_t its input
  (the first-order change of F, <dF/dW, dW>, split token by token, hence row by row).

The estimate of row r's *value* change is that total change divided by its weight w_r.
Rows of a batch do not interact (one text per row, causal attention within it), so one
backward of F gives every row's estimate.

It is exact when F is affine in the edited activation and a first-order approximation
otherwise: good for ranking, poor for edits that move activations across a nonlinearity
(a saturated softmax, a norm) or remove most of a matrix. Use it as a screen and confirm the
top edits exactly; the study reports both, and their rank agreement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.ablation import (
    AblationMode,
    PositionMeans,
    Replacement,
    _mode,
    find_weight,
    reference_values,
    resolve_components,
)
from spectrascope.mech.ablation_sweep import row_chunks
from spectrascope.mech.components import ActivationComponent, Component, WeightComponent
from spectrascope.mech.metrics import Metric, RowScores, as_hf, keep_logits
from spectrascope.models.handle import as_model
from spectrascope.progress import progress_bar
from spectrascope.trace import hooks
from spectrascope.trace.frozen import frozen_parameters
from spectrascope.trace.tracer import model_output_tensor


@dataclass(frozen=True)
class AttributionRows:
    """The clean per-row scores and, per component, the estimated change of each row's value.

    Attributes:
        baseline: the metric's :class:`~spectrascope.mech.metrics.RowScores` without ablation.
        estimated: component -> (rows,) float64 estimated ``value(ablated) - value(clean)`` per row.
    """

    baseline: RowScores
    estimated: dict[Component, torch.Tensor]


def replacement_tensor(value: Replacement, activation: torch.Tensor) -> torch.Tensor:
    """The replacement of ``activation`` (r, pos, ...) as a tensor of its shape."""
    if value is None:
        return torch.zeros_like(activation)
    if isinstance(value, PositionMeans):
        out = torch.empty_like(activation)
        value.fill(out)
        return out
    return value.to(activation.dtype)


def _linear_module(hf: nn.Module, weight: str) -> nn.Linear:
    """The ``nn.Linear`` that owns parameter ``weight`` (the attribution of a weight edit needs its input)."""
    param = find_weight(hf, weight)
    for module in hf.modules():
        if isinstance(module, nn.Linear) and module.weight is param:
            return module
    raise SpectrascopeError(f"{weight}: the attribution of a weight edit needs an nn.Linear weight")


@torch.no_grad()
def _weight_deltas(hf: nn.Module, edits: list[WeightComponent]) -> dict[WeightComponent, torch.Tensor]:
    """dW = W_edited - W of each weight component, in the weight's dtype."""
    out = {}
    for component in edits:
        W = find_weight(hf, component.weight)
        edited, _ = component.edited(W)
        out[component] = (edited - W.detach()).to(W.dtype)
    return out


def ablation_attribution(
    model: Any,
    components: Component | str | Iterable[Component | str],
    metric: Metric,
    mode: AblationMode | str = AblationMode.MEAN,
    reference: Any = None,
    *,
    max_batch_tokens: int = 1024,
    show_progress: bool = False,
) -> AttributionRows:
    """First-order estimates of each component's ablation effect, per row (see the module docstring).

    Args:
        model: a LoadedModel, ToyModel or Hugging Face causal LM (eval mode).
        components: heads, blocks and spectral weight edits (of ``nn.Linear`` weights).
        metric: the :class:`~spectrascope.mech.metrics.Metric` whose rows are scored.
        mode, reference: as in :func:`~spectrascope.mech.ablation.ablate`.
        max_batch_tokens: rows x positions per forward + backward (the backward holds the
            forward's activations: keep it small).
    """
    as_model(model).require_causal_lm("the attribution screen (it scores next-token logits)")
    hf = as_hf(model)
    if hf.training:
        raise SpectrascopeError("the model is in training mode (dropout); call .eval() first")
    resolved = resolve_components(model, components)
    mode = _mode(mode)
    activation = [c for c in resolved if isinstance(c, ActivationComponent)]
    spectral = [c for c in resolved if isinstance(c, WeightComponent)]
    values = reference_values(hf, activation, mode, reference)
    deltas = _weight_deltas(hf, spectral)
    modules = {c: _linear_module(hf, c.weight) for c in spectral}
    sites = sorted({c.site for c in activation})
    chunks = row_chunks(metric, hf, max_batch_tokens)
    baseline: list[RowScores] = []
    estimated: dict[Component, list[torch.Tensor]] = {c: [] for c in resolved}
    with progress_bar("attribution screen", len(chunks), show_progress) as advance, frozen_parameters(hf):
        for rows in chunks:
            scores, per_component = _chunk_estimates(hf, metric, rows, activation, values, sites, deltas, modules)
            baseline.append(scores)
            for component, change in per_component.items():
                estimated[component].append(change)
            advance(1)
    return AttributionRows(RowScores.cat(baseline), {c: torch.cat(v) for c, v in estimated.items()})


def _chunk_estimates(
    hf: nn.Module,
    metric: Metric,
    rows: slice,
    activation: list[Component],
    values: Mapping[Component, Replacement],
    sites: list[str],
    deltas: Mapping[WeightComponent, torch.Tensor],
    modules: Mapping[WeightComponent, nn.Linear],
) -> tuple[RowScores, dict[Component, torch.Tensor]]:
    """One forward + backward over rows ``rows``: their clean scores and each component's estimate."""
    clean: dict[str, torch.Tensor] = {}
    eps: dict[str, torch.Tensor] = {}

    def tap(activation_value: torch.Tensor, name: str) -> torch.Tensor:
        clean[name] = activation_value.detach()
        eps[name] = torch.zeros_like(activation_value, requires_grad=True)
        return activation_value + eps[name]

    inputs: dict[WeightComponent, torch.Tensor] = {}
    out_eps: dict[WeightComponent, torch.Tensor] = {}
    handles = []

    def module_tap(component: WeightComponent):
        def hook(_module, args, output):
            inputs[component] = args[0].detach()
            out_eps[component] = torch.zeros_like(output, requires_grad=True)
            return output + out_eps[component]

        return hook

    try:
        for component, module in modules.items():
            handles.append(module.register_forward_hook(module_tap(component)))
        mask = None if metric.attention_mask is None else metric.attention_mask[rows]
        kwargs = {"input_ids": metric.input_ids[rows], "attention_mask": mask, "use_cache": False}
        with torch.enable_grad(), hooks(hf, {site: tap for site in sites}):
            logits = model_output_tensor(hf(**kwargs, **keep_logits(hf, metric.logit_positions)))
            scores = metric.row_scores(logits, rows)
            wanted = [eps[s] for s in sites] + [out_eps[c] for c in modules]
            grads = torch.autograd.grad(scores.totals().sum(), wanted, allow_unused=True) if wanted else []
    finally:
        for handle in handles:
            handle.remove()
    grad_of = {
        key: (torch.zeros_like(t) if g is None else g)
        for key, t, g in zip([*sites, *modules], wanted, grads, strict=True)
    }
    weights = scores.weights.detach()
    out: dict[Component, torch.Tensor] = {}
    for component in activation:
        a, g = component.part(clean[component.site]), component.part(grad_of[component.site])
        value = values[component]
        value = value[rows] if isinstance(value, torch.Tensor) else value
        change = (g * (replacement_tensor(value, a) - a)).flatten(1).sum(dim=1).double()
        out[component] = _per_value(change, weights)
    for component, dW in deltas.items():
        x, g = inputs[component], grad_of[component]
        change = (g * (x @ dW.T.to(x.dtype))).flatten(1).sum(dim=1).double()
        out[component] = _per_value(change, weights)
    return scores.detached(), {c: v.detach().cpu() for c, v in out.items()}


def _per_value(total_change: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Change of each row's total -> change of its value (0 for rows without weight)."""
    w = weights.to(total_change.device)
    return torch.where(w > 0, total_change / w.clamp_min(1e-300), torch.zeros_like(total_change))
