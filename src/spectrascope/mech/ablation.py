"""Ablation: remove components (:mod:`~spectrascope.mech.components`) for every forward pass
inside a ``with`` block.

Activation components (heads, attention and MLP blocks) are replaced according to
:class:`AblationMode` (zero, mean over a reference batch, or resample from a reference batch);
weight components (spectral edits) are weight edits (the mode does not apply to them).

:func:`ablate` is a context manager: the edits hold inside the ``with`` block and the model is
exactly as before afterwards (hooks removed, edited weights copied back bit for bit, even when
the block raises). Measuring each component's effect on a metric, one at a time, is
:mod:`spectrascope.mech.ablation_sweep` (exact) and :mod:`spectrascope.mech.ablation_attribution`
(a first-order screen).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import nn

from spectrascope.activations.batching import length_chunks
from spectrascope.errors import InputError, OptionError
from spectrascope.mech.components import (
    COMPONENT_KINDS,
    ActivationComponent,
    AttnBlock,
    Component,
    Head,
    MlpBlock,
    SpectralComponent,
    SpectralKeep,
    WeightComponent,
    parse_component,
)
from spectrascope.mech.metrics import Metric, as_hf
from spectrascope.models.handle import ModelLike, as_model
from spectrascope.trace import hooks, run_with_cache


class AblationMode(str, Enum):
    """How an activation component is replaced."""

    ZERO = "zero"
    """By zeros."""
    MEAN = "mean"
    """By its mean over a reference batch, with the attention sink kept apart: the first
    position of every sequence is replaced by the mean over the reference's first positions,
    every other position by the mean over the reference's other real tokens.

    The first position of a causal LM is the attention sink: its activations are
    text-independent and can be hundreds of times larger than any other token's (SmolLM2,
    which adds no BOS, has a layer-11 MLP output ~780x a typical token's norm there). One
    mean over all tokens would be dominated by it (44x too large on SmolLM2) and would
    replace every ordinary token by a sink-like vector; averaging the sink only with sinks
    keeps both kinds of position on their own distribution."""
    RESAMPLE = "resample"
    """By its value on a reference batch of the same shape (row i, position t gets the
    reference's row i, position t): the activation "from another input"."""


def all_heads(model: ModelLike) -> list[Head]:
    """Every attention head of the model, layer by layer."""
    n_layers, n_heads = _shape(as_hf(model))
    return [Head(layer, head) for layer in range(n_layers) for head in range(n_heads)]


def all_blocks(model: ModelLike) -> list[AttnBlock | MlpBlock]:
    """Every attention and MLP block of the model: attention then MLP, layer by layer."""
    n_layers, _ = _shape(as_hf(model))
    return [c for layer in range(n_layers) for c in (AttnBlock(layer), MlpBlock(layer))]


def resolve_components(model: Any, components: Component | str | Iterable[Component | str]) -> list[Component]:
    """Components from objects, names, a comma-separated string, or ``"all"`` (every head),
    ``"all-attn"``, ``"all-mlp"``; each checked against the model (:func:`check_component`)."""
    hf = as_hf(model)
    n_layers, _ = _shape(hf)
    if isinstance(components, str):
        spec = components.strip()
        if spec in ("all", "all-heads", "heads"):
            return list(all_heads(hf))
        if spec == "all-attn":
            return [AttnBlock(layer) for layer in range(n_layers)]
        if spec == "all-mlp":
            return [MlpBlock(layer) for layer in range(n_layers)]
        components = [item for item in spec.split(",") if item.strip()]
    elif isinstance(components, Component):
        components = [components]
    resolved = [parse_component(c) if isinstance(c, str) else c for c in components]
    for component in resolved:
        check_component(hf, component)
    return list(dict.fromkeys(resolved))


def _shape(hf: nn.Module) -> tuple[int, int]:
    """(layers, query heads) of the model's family spec (:class:`ArchitectureError` without attention)."""
    handle = as_model(hf)
    return handle.n_layers, handle.geometry.n_heads


def check_component(model: Any, component: Component) -> None:
    """Raise :class:`~spectrascope.errors.OptionError` unless ``component`` exists in the model."""
    hf = as_hf(model)
    if isinstance(component, WeightComponent):
        weight = find_weight(hf, component.weight)
        if (
            isinstance(component, SpectralComponent)
            and component.keep is SpectralKeep.DROP_TOP
            and not 1 <= component.k <= min(weight.shape)
        ):
            raise OptionError(
                f"{component.name}: k must be between 1 and {min(weight.shape)} (the matrix has "
                f"{min(weight.shape)} singular values)"
            )
        return
    if not isinstance(component, ActivationComponent):
        kinds = ", ".join(COMPONENT_KINDS)
        raise OptionError(f"cannot ablate a {type(component).__name__}; components are {kinds}")
    n_layers, n_heads = _shape(hf)
    if not 0 <= component.layer < n_layers:
        raise OptionError(
            f"{component.name}: layer {component.layer} does not exist (the model has layers 0..{n_layers - 1})"
        )
    if component.head is not None and not 0 <= component.head < n_heads:
        raise OptionError(
            f"{component.name}: head {component.head} does not exist (layer {component.layer} has heads 0..{n_heads - 1})"
        )


def find_weight(model: Any, name: str) -> nn.Parameter:
    """The 2-D parameter called ``name`` (``.weight`` and a ``model.`` prefix may be left out)."""
    hf = as_hf(model)
    params = dict(hf.named_parameters())
    for candidate in (name, f"{name}.weight", f"model.{name}", f"model.{name}.weight"):
        param = params.get(candidate)
        if param is None:  # a tied weight is listed once (lm_head.weight is embed_tokens.weight)
            try:
                param = hf.get_parameter(candidate)
            except AttributeError:
                param = None
        if param is not None:
            if param.ndim != 2:
                raise OptionError(f"{candidate} has shape {tuple(param.shape)}: a weight edit needs a matrix")
            return param
    examples = [n for n, p in params.items() if p.ndim == 2][:3]
    raise OptionError(f"no weight matrix named {name!r} in the model (e.g. {', '.join(examples)})")


# ----------------------------------------------------------------------------- spectral edits


# ----------------------------------------------------------------------------- activation edits


@dataclass(frozen=True)
class PositionMeans:
    """The two mean vectors of :attr:`AblationMode.MEAN`, each (d,) (or (d_head,) for a head).

    Attributes:
        first: mean over the reference's first positions (the attention sink).
        rest: mean over the reference's other real tokens.
    """

    first: torch.Tensor
    rest: torch.Tensor

    def fill(self, target: torch.Tensor) -> None:
        """Write the means into ``target`` (batch, pos, d) in place: position 0 gets ``first``."""
        target[:, :1].copy_(self.first.to(target.dtype).expand_as(target[:, :1]))
        target[:, 1:].copy_(self.rest.to(target.dtype).expand_as(target[:, 1:]))


Replacement = torch.Tensor | PositionMeans | None
"""What replaces an activation component: None = zeros, :class:`PositionMeans`, or
(batch, pos, d) resampled activations."""


@dataclass
class _Edit:
    """Replace ``component``'s part of its site's activation in batch rows ``rows`` by ``value``."""

    component: ActivationComponent
    rows: slice
    value: Replacement


def _site_fn(edits: list[_Edit]):
    """A tracer site function applying ``edits`` (all at one site) to a copy of the activation."""

    def fn(activation: torch.Tensor, name: str) -> torch.Tensor:
        out = activation.clone()
        for edit in edits:
            target = edit.component.part(out[edit.rows])
            value = edit.value
            if value is None:
                target.zero_()
            elif isinstance(value, PositionMeans):
                value.fill(target)
            elif value.shape != target.shape:
                raise InputError(
                    f"resample ablation of {edit.component.name}: the reference batch gives shape "
                    f"{tuple(value.shape)} but the model runs on {tuple(target.shape)}; pass a reference "
                    "batch of the same (batch, pos) shape as the inputs"
                )
            else:
                target.copy_(value.to(target.dtype))
        return out

    return fn


def _as_batch(reference: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(input_ids, attention_mask) of a reference: ids, a dict with them, or a Metric."""
    if isinstance(reference, torch.Tensor):
        return reference, None
    if isinstance(reference, Mapping):
        return reference["input_ids"], reference.get("attention_mask")
    if isinstance(reference, Metric):
        assert reference.input_ids is not None  # a reference metric has a batch (not a batch-free one)
        return reference.input_ids, reference.attention_mask
    raise OptionError(
        f"a reference batch must be token ids, a dict with input_ids, or a Metric (got {type(reference).__name__})"
    )


REFERENCE_CHUNK_TOKENS = 2048
"""Rows x width of one forward when mean-ablation references are accumulated."""


@torch.no_grad()
def reference_values(
    model: Any, components: Sequence[Component], mode: AblationMode, reference: Any
) -> dict[ActivationComponent, Replacement]:
    """The replacement of each activation component: None (zero), :class:`PositionMeans`
    (mean), or (batch, pos, d) reference activations (resample).

    Means are accumulated over chunks of the reference's rows (float64 sums), so a large
    reference batch never holds every site's activations at once; rows are grouped by length
    and each chunk trimmed to its longest row (a batch padded to its longest text costs
    6.6x the compute on the study's six domains: 31,232 positions for 4,736 tokens).
    """
    activation = [c for c in components if isinstance(c, ActivationComponent)]
    if mode is AblationMode.ZERO or not activation:
        return {c: None for c in activation}
    if reference is None:
        raise OptionError(f"{mode.value} ablation needs a reference batch (reference=token ids)")
    input_ids, attention_mask = _as_batch(reference)
    valid = torch.ones(input_ids.shape, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    rest = valid.clone()
    rest[:, 0] = False
    if mode is AblationMode.MEAN and not rest.any():
        raise InputError("mean ablation needs a reference batch with more than one token per sequence")
    hf = as_hf(model)
    sites = list(dict.fromkeys(c.site for c in activation))
    if mode is AblationMode.RESAMPLE:
        _, cache = run_with_cache(hf, input_ids, sites, attention_mask=attention_mask, use_cache=False)
        return {c: c.part(cache[c.site]).clone() for c in activation}
    sums: dict[ActivationComponent, list[torch.Tensor]] = {}
    for rows, width in length_chunks(valid, REFERENCE_CHUNK_TOKENS):
        rows = rows.to(input_ids.device)
        mask = None if attention_mask is None else attention_mask[rows, :width]
        _, cache = run_with_cache(hf, input_ids[rows, :width], sites, attention_mask=mask, use_cache=False)
        for component in activation:
            part = component.part(cache[component.site])
            first = part[:, 0].double().sum(dim=0)
            other = part[rest[rows.to(rest.device), :width].to(part.device)].double().sum(dim=0)
            if component in sums:
                sums[component][0] += first
                sums[component][1] += other
            else:
                sums[component] = [first, other]
        del cache
    n_first, n_rest = input_ids.shape[0], int(rest.sum())
    dtype = next(hf.parameters()).dtype
    return {c: PositionMeans((f / n_first).to(dtype), (o / n_rest).to(dtype)) for c, (f, o) in sums.items()}


def _mode(mode: AblationMode | str) -> AblationMode:
    try:
        return AblationMode(mode)
    except ValueError:
        raise OptionError(f"unknown ablation mode {mode!r}; use zero, mean or resample") from None


@contextmanager
def ablate(
    model: Any,
    components: Component | str | Iterable[Component | str],
    mode: AblationMode | str = AblationMode.ZERO,
    reference: Any = None,
) -> Iterator[nn.Module]:
    """Ablate ``components`` (all at once) for every forward pass inside the ``with`` block.

    Args:
        model: a LoadedModel, ToyModel or Hugging Face model.
        components: see :func:`resolve_components` (objects, names, ``"all"``).
        mode: zero, mean or resample (:class:`AblationMode`) for heads and blocks.
        reference: the reference batch of mean / resample mode: (batch, pos) token ids, a dict
            with ``input_ids`` (and ``attention_mask``), or a Metric (its batch). Its
            activations are computed once, on the unablated model, when the block starts.

    Yields:
        the Hugging Face model, edited.

    On exit the hooks are removed and every edited weight is copied back from a saved clone,
    so the parameters are bit-identical to before.
    """
    hf = as_hf(model)
    resolved = resolve_components(model, components)
    values = reference_values(hf, resolved, _mode(mode), reference)
    by_site: dict[str, list[_Edit]] = {}
    for component, value in values.items():
        by_site.setdefault(component.site, []).append(_Edit(component, slice(None), value))
    spectral = [c for c in resolved if isinstance(c, WeightComponent)]
    targets = [find_weight(hf, c.weight) for c in spectral]
    if len({id(t) for t in targets}) < len(targets):
        raise OptionError("two spectral ablations of the same weight in one block; ablate them one after the other")
    edited = [(param, c.edited(param)[0]) for param, c in zip(targets, spectral, strict=True)]
    saved: list[tuple[nn.Parameter, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for param, new in edited:
                saved.append((param, param.detach().clone()))
                param.copy_(new)
        with hooks(hf, {site: _site_fn(edits) for site, edits in by_site.items()}):
            yield hf
    finally:
        with torch.no_grad():
            for param, original in saved:
                param.copy_(original)
