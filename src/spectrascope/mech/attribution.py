"""Attribution patching: the first-order estimate of an activation-patching sweep.

Exact patching (:mod:`spectrascope.mech.patching`) runs one forward pass per patch.
Attribution patching linearises the metric around the corrupted run instead:

    delta(site, position / head)  ~=  (a_clean - a_corrupted) . d metric / d a  |_corrupted

summed over the patched entries (the ``d_model`` coordinates of one position; the
positions and ``d_head`` coordinates of one head). One clean forward (cache) plus one
corrupted forward and backward give every estimate of a sweep at once. The estimated
normalized effect is ``delta / (m_clean - m_corrupted)`` with the *exact* metrics of the
two unpatched runs, as in exact patching.

The estimate is exact when the metric is an affine function of the patched activation
(e.g. the last block's ``hook_resid_post`` or ``hook_mlp_out`` of a model whose final norm
is the identity, read by :func:`~spectrascope.mech.patching.logit_diff`); in general it is
a first-order approximation, good for ranking components, poor where the patch moves an
activation across a nonlinearity (a saturated softmax, the final norm).

*Gradients.* The hook at each site adds a zero tensor ``eps`` that requires grad,
``a' = a + eps``, and the gradient of the metric with respect to ``eps`` is d metric / d a
(the graph is not cut, parameters need not require grad, and no ``.grad`` is written
to the model's parameters).

Tables have the same columns as the exact sweeps (``site``, ``layer``, ``position`` or
``head``, ``effect``, ``delta``) so they can be compared row by row:
:func:`compare_attribution` (Spearman rank correlation) and :func:`patching_comparison`
(both tables merged, with timings).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import pandas as pd
import torch

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.patching import (
    DEFAULT_BATCH_SIZE,
    MetricLike,
    PairInputs,
    Prompt,
    check_head,
    check_layer,
    check_metrics_differ,
    check_position,
    head_count,
    logits_kwargs,
    metric_per_row,
    patch_sweep_heads,
    patch_sweep_layers_positions,
    prepare_pair,
)
from spectrascope.models.handle import ModelLike, as_model
from spectrascope.trace import hooks, run_with_cache
from spectrascope.trace.sites import SiteKind, site_name, vector_site_kind
from spectrascope.trace.tracer import model_output_tensor


def attribution_gradients(
    pair: PairInputs, kind: SiteKind, layers: Sequence[int], metric: MetricLike
) -> tuple[float, float, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """One clean forward, one corrupted forward + backward.

    Returns:
        ``(clean_metric, corrupted_metric, difference, gradient)``: per layer,
        ``difference[L] = a_clean - a_corrupted`` and ``gradient[L] = d metric / d a`` at the
        corrupted run, both shaped like the site without the batch axis ((pos, d_model),
        or (pos, head, d_head) for ``attn.hook_z``), float32/64 as the model.
    """
    hf = pair.hf
    names = {layer: site_name(layer, kind) for layer in layers}
    kwargs = logits_kwargs(hf, metric)
    clean_logits, clean_cache = run_with_cache(hf, pair.clean_ids, list(names.values()), **kwargs)
    clean_metric = float(metric_per_row(metric, clean_logits)[0])

    corrupted_acts: dict[int, torch.Tensor] = {}
    eps: dict[int, torch.Tensor] = {}

    def tap(layer: int):
        def fn(activation: torch.Tensor, _name: str) -> torch.Tensor:
            corrupted_acts[layer] = activation.detach().clone()
            eps[layer] = torch.zeros_like(activation, requires_grad=True)
            return activation + eps[layer]

        return fn

    with torch.enable_grad(), hooks(hf, {names[layer]: tap(layer) for layer in layers}):
        output = hf(input_ids=pair.corrupted_ids, **kwargs)
        corrupted_value = metric_per_row(metric, model_output_tensor(output))[0]
        if not corrupted_value.requires_grad:
            raise SpectrascopeError(
                "the metric does not depend on the patched activations (no gradient); "
                "attribution patching needs a differentiable metric of the logits"
            )
        missing = [names[layer] for layer in layers if layer not in eps]
        if missing:
            raise SpectrascopeError(f"sites not reached in the forward pass: {missing}")
        grads = torch.autograd.grad(corrupted_value, [eps[layer] for layer in layers], allow_unused=True)
    corrupted_metric = float(corrupted_value.detach())
    check_metrics_differ(clean_metric, corrupted_metric)
    difference = {layer: (clean_cache[names[layer]] - corrupted_acts[layer])[0] for layer in layers}
    gradient = {
        layer: (torch.zeros_like(eps[layer]) if grad is None else grad.detach())[0]
        for layer, grad in zip(layers, grads)
    }
    return clean_metric, corrupted_metric, difference, gradient


def attribution_sweep_layers_positions(
    model: ModelLike,
    clean: Prompt,
    corrupted: Prompt,
    site_kind: str | SiteKind = "resid_pre",
    *,
    metric: MetricLike,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
) -> pd.DataFrame:
    """First-order estimate of :func:`~spectrascope.mech.patching.patch_sweep_layers_positions`.

    Returns:
        DataFrame (``site``, ``layer``, ``position``, ``effect``, ``delta``) in the same row
        order as the exact sweep; ``attrs``: ``clean_metric``, ``corrupted_metric``.
    """
    pair = prepare_pair(model, clean, corrupted)
    kind = vector_site_kind(site_kind)
    layer_list = _layers(pair, layers)
    position_list = [check_position(pair.n_pos, p) for p in (positions if positions is not None else range(pair.n_pos))]
    clean_metric, corrupted_metric, difference, gradient = attribution_gradients(
        pair, kind, sorted(set(layer_list)), metric
    )
    rows: list[tuple[str, int, int | None, float]] = []
    for layer in layer_list:
        product = difference[layer] * gradient[layer]  # (pos, ...)
        per_position = product.reshape(product.shape[0], -1).sum(-1).double().cpu()
        rows.extend(
            (site_name(layer, kind), layer, position, float(per_position[position])) for position in position_list
        )
    df = pd.DataFrame(rows, columns=["site", "layer", "position", "delta"])
    return _finish(df, clean_metric, corrupted_metric)


def attribution_sweep_heads(
    model: ModelLike,
    clean: Prompt,
    corrupted: Prompt,
    *,
    metric: MetricLike,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    position: int | None = None,
) -> pd.DataFrame:
    """First-order estimate of :func:`~spectrascope.mech.patching.patch_sweep_heads` (heads via ``attn.hook_z``).

    Args:
        layers, heads: restrict the sweep (default: all layers, all heads of each).
        position: estimate the patch of each head at this position only; None = all positions.

    Returns:
        DataFrame (``site``, ``layer``, ``head``, ``effect``, ``delta``); ``attrs`` as above.
    """
    pair = prepare_pair(model, clean, corrupted)
    layer_list = _layers(pair, layers)
    head_list = [check_head(pair.bound, h) for h in (heads if heads is not None else range(head_count(pair.bound)))]
    position = check_position(pair.n_pos, position)
    clean_metric, corrupted_metric, difference, gradient = attribution_gradients(
        pair, SiteKind.Z, sorted(set(layer_list)), metric
    )
    rows: list[tuple[str, int, int | None, float]] = []
    for layer in layer_list:
        product = difference[layer] * gradient[layer]  # (pos, head, d_head)
        if position is not None:
            product = product[position : position + 1]
        per_head = product.sum(dim=(0, 2)).double().cpu()
        rows.extend((site_name(layer, SiteKind.Z), layer, head, float(per_head[head])) for head in head_list)
    df = pd.DataFrame(rows, columns=["site", "layer", "head", "delta"])
    return _finish(df, clean_metric, corrupted_metric)


def compare_attribution(exact_df: pd.DataFrame, attribution_df: pd.DataFrame, column: str = "effect") -> float:
    """Spearman rank correlation between exact and attribution patching over their common rows.

    Rows are matched on ``layer`` and ``head`` (head sweeps) or ``layer`` and ``position``.
    NaN when fewer than two rows match or one side is constant.
    """
    keys = _keys(exact_df, attribution_df)
    merged = exact_df[keys + [column]].merge(attribution_df[keys + [column]], on=keys, suffixes=("_exact", "_attr"))
    if len(merged) < 2:
        return float("nan")
    return float(merged[f"{column}_exact"].corr(merged[f"{column}_attr"], method="spearman"))


def patching_comparison(
    model: ModelLike,
    clean: Prompt,
    corrupted: Prompt,
    *,
    metric: MetricLike,
    sweep: Literal["heads", "layers_positions"] = "heads",
    site_kind: str | SiteKind = "resid_pre",
    layers: Sequence[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pd.DataFrame:
    """Exact patching and attribution patching of the same sweep, merged row by row.

    Args:
        sweep: ``"heads"`` (every head's ``attn.hook_z`` at all positions) or
            ``"layers_positions"`` (``site_kind`` at every layer and position).
        site_kind: the site of a layers x positions sweep.

    Returns:
        DataFrame with the key columns (``site``, ``layer``, ``head`` or ``position``) and
        ``effect_exact``, ``effect_attribution``, ``delta_exact``, ``delta_attribution``;
        ``attrs``: ``spearman`` (of the effects), ``seconds_exact``, ``seconds_attribution``,
        ``clean_metric``, ``corrupted_metric``.
    """
    exact_fn: Callable[..., pd.DataFrame]
    attr_fn: Callable[..., pd.DataFrame]
    extra: dict[str, Any]
    if sweep == "heads":
        exact_fn, attr_fn, extra = patch_sweep_heads, attribution_sweep_heads, {}
    elif sweep == "layers_positions":
        exact_fn, attr_fn = patch_sweep_layers_positions, attribution_sweep_layers_positions
        extra = {"site_kind": site_kind}
    else:
        raise SpectrascopeError(f"unknown sweep {sweep!r}; use 'heads' or 'layers_positions'")
    model = as_model(model)  # a name is loaded once
    started = time.perf_counter()
    exact = exact_fn(model, clean, corrupted, metric=metric, layers=layers, batch_size=batch_size, **extra)
    seconds_exact = time.perf_counter() - started
    started = time.perf_counter()
    attribution = attr_fn(model, clean, corrupted, metric=metric, layers=layers, **extra)
    seconds_attribution = time.perf_counter() - started
    keys = ["site"] + _keys(exact, attribution)
    merged = exact.merge(attribution, on=keys, suffixes=("_exact", "_attribution"))
    merged = merged[keys + ["effect_exact", "effect_attribution", "delta_exact", "delta_attribution"]]
    merged.attrs.update(
        spearman=compare_attribution(exact, attribution),
        seconds_exact=seconds_exact,
        seconds_attribution=seconds_attribution,
        clean_metric=exact.attrs["clean_metric"],
        corrupted_metric=exact.attrs["corrupted_metric"],
    )
    return merged


def _layers(pair: PairInputs, layers: Sequence[int] | None) -> list[int]:
    return [check_layer(pair.bound, layer) for layer in (layers if layers is not None else range(pair.bound.n_layers))]


def _keys(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    for keys in (["layer", "head"], ["layer", "position"]):
        if all(k in a.columns and k in b.columns for k in keys):
            return keys
    raise SpectrascopeError("cannot match the two tables: expected columns layer and head, or layer and position")


def _finish(df: pd.DataFrame, clean_metric: float, corrupted_metric: float) -> pd.DataFrame:
    df.insert(df.columns.get_loc("delta"), "effect", df["delta"] / (clean_metric - corrupted_metric))
    df.attrs.update(clean_metric=clean_metric, corrupted_metric=corrupted_metric)
    return df
