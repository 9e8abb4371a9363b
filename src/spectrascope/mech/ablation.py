"""Ablation of heads, attention blocks, MLP blocks and spectral components of a weight matrix.

Components (:data:`Component`; strings parse with :func:`parse_component`):

- :class:`Head` ``"L.H"`` / ``"head:L.H"``: one attention head, edited at ``blocks.L.attn.hook_z``
  (the head's slice of the output projection's input);
- :class:`AttnBlock` ``"attn:L"``: the attention sub-block's output ``blocks.L.hook_attn_out``;
- :class:`MlpBlock` ``"mlp:L"``: the MLP sub-block's output ``blocks.L.hook_mlp_out``;
- :class:`SpectralComponent` ``"spectral:WEIGHT:drop_top:K"``, ``"spectral:WEIGHT:tail"``,
  ``"spectral:WEIGHT:bulk"``: a weight matrix (parameter name, e.g.
  ``model.layers.3.self_attn.o_proj.weight``) rebuilt from part of its SVD
  ``W = U S V^T`` (:class:`SpectralKeep`).

Activation components are replaced according to :class:`AblationMode` (zero, mean over a
reference batch, or resample from a reference batch); spectral components are weight edits
(the mode does not apply to them).

:func:`ablate` is a context manager: the edits hold inside the ``with`` block and the model is
exactly as before afterwards (hooks removed, edited weights copied back bit for bit, even when
the block raises). :func:`ablation_sweep` measures each component's effect on a
:class:`~spectrascope.mech.metrics.Metric`, ablating one component at a time; it is batched:
the metric's batch is stacked once per component and each block of rows gets its own
ablation, so one forward pass ablates many components. For families whose forward resumes at a
layer (``ArchSpec.resumable``, :mod:`spectrascope.trace.resume`), components of layer ``L`` are
run from the clean ``blocks.L.hook_resid_pre`` on (HF's own forward over layers ``L..``), so the
unchanged layers before ``L`` are computed once, not once per head.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.metrics import Metric, as_hf, keep_logits
from spectrascope.models.handle import as_model
from spectrascope.progress import progress_bar
from spectrascope.trace import hooks, run_with_cache
from spectrascope.trace.resume import forward_from_layer, resumable
from spectrascope.trace.tracer import model_output_tensor


class AblationMode(str, Enum):
    """How an activation component is replaced."""

    ZERO = "zero"
    """By zeros."""
    MEAN = "mean"
    """By its mean over every real token (all sequences, all positions) of a reference batch:
    one vector per component, the same at every position."""
    RESAMPLE = "resample"
    """By its value on a reference batch of the same shape (row i, position t gets the
    reference's row i, position t): the activation "from another input"."""


class SpectralKeep(str, Enum):
    """Which part of ``W = sum_i sigma_i u_i v_i^T`` a spectral ablation keeps."""

    DROP_TOP = "drop_top"
    """Everything but the top ``k`` singular directions: ``W - U_k S_k V_k^T``."""
    TAIL = "tail"
    """Only the power-law tail: directions with ``sigma_i^2 >= xmin`` of the power-law fit of
    the ESD ``sigma^2`` (:func:`spectrascope.spectra.powerlaw.fit_power_law`)."""
    BULK = "bulk"
    """Only the bulk: directions with ``sigma_i^2 < xmin`` (``W`` minus its tail)."""


@dataclass(frozen=True)
class Head:
    """Attention head ``head`` (query head index) of layer ``layer``."""

    layer: int
    head: int
    kind = "head"

    @property
    def name(self) -> str:
        return f"head:{self.layer}.{self.head}"

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.attn.hook_z"


@dataclass(frozen=True)
class AttnBlock:
    """The attention sub-block of layer ``layer`` (its output ``hook_attn_out``)."""

    layer: int
    kind = "attn"
    head = None

    @property
    def name(self) -> str:
        return f"attn:{self.layer}"

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.hook_attn_out"


@dataclass(frozen=True)
class MlpBlock:
    """The MLP sub-block of layer ``layer`` (its output ``hook_mlp_out``)."""

    layer: int
    kind = "mlp"
    head = None

    @property
    def name(self) -> str:
        return f"mlp:{self.layer}"

    @property
    def site(self) -> str:
        return f"blocks.{self.layer}.hook_mlp_out"


@dataclass(frozen=True)
class SpectralComponent:
    """Part of the spectrum of one weight matrix (a 2-D parameter named ``weight``).

    ``keep``: see :class:`SpectralKeep`; ``k``: the number of top directions removed by
    ``drop_top`` (ignored otherwise).
    """

    weight: str
    keep: SpectralKeep = SpectralKeep.DROP_TOP
    k: int = 1
    kind = "spectral"
    head = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "keep", SpectralKeep(self.keep))
        except ValueError:
            raise SpectrascopeError(
                f"unknown spectral ablation {self.keep!r}; use {', '.join(k.value for k in SpectralKeep)}"
            ) from None

    @property
    def name(self) -> str:
        suffix = f":{self.k}" if self.keep is SpectralKeep.DROP_TOP else ""
        return f"spectral:{self.weight}:{self.keep.value}{suffix}"

    @property
    def layer(self) -> int | None:
        parts = self.weight.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in ("layers", "h", "layer", "blk") and parts[i + 1].isdigit():
                return int(parts[i + 1])
        return None


Component = Head | AttnBlock | MlpBlock | SpectralComponent
"""Anything :func:`ablate` and :func:`ablation_sweep` can ablate."""

ACTIVATION_KINDS = (Head, AttnBlock, MlpBlock)


# ----------------------------------------------------------------------------- parsing and validation


def parse_component(text: str) -> Component:
    """A component from its name: ``"L.H"``, ``"head:L.H"``, ``"attn:L"``, ``"mlp:L"``,
    ``"spectral:WEIGHT:drop_top:K"``, ``"spectral:WEIGHT:tail"``, ``"spectral:WEIGHT:bulk"``."""
    text = text.strip()
    kind, _, rest = text.partition(":") if ":" in text else ("head", "", text)
    try:
        if kind == "head":
            layer, head = rest.split(".")
            return Head(int(layer), int(head))
        if kind in ("attn", "mlp"):
            return (AttnBlock if kind == "attn" else MlpBlock)(int(rest))
        if kind == "spectral":
            weight, _, spec = rest.rpartition(":") if rest.count(":") >= 1 else ("", "", rest)
            if spec.isdigit():  # spectral:WEIGHT:drop_top:K
                weight, _, keep = weight.rpartition(":")
                return SpectralComponent(weight, SpectralKeep(keep), int(spec))
            return SpectralComponent(weight, SpectralKeep(spec))
    except ValueError:
        pass
    raise SpectrascopeError(
        f"cannot parse component {text!r}; write L.H (a head), attn:L, mlp:L, "
        "spectral:WEIGHT:drop_top:K, spectral:WEIGHT:tail or spectral:WEIGHT:bulk"
    )


def all_heads(model: Any) -> list[Head]:
    """Every attention head of the model, layer by layer."""
    n_layers, n_heads = _shape(as_hf(model))
    return [Head(layer, head) for layer in range(n_layers) for head in range(n_heads)]


def resolve_components(model: Any, components: Component | str | Iterable[Component | str]) -> list[Component]:
    """Components from objects, names, a comma-separated string, or ``"all"`` (every head),
    ``"all-attn"``, ``"all-mlp"``; each checked against the model (:func:`check_component`)."""
    hf = as_hf(model)
    n_layers, _ = _shape(hf)
    if isinstance(components, str):
        spec = components.strip()
        if spec in ("all", "all-heads", "heads"):
            return all_heads(hf)
        if spec == "all-attn":
            return [AttnBlock(layer) for layer in range(n_layers)]
        if spec == "all-mlp":
            return [MlpBlock(layer) for layer in range(n_layers)]
        components = [item for item in spec.split(",") if item.strip()]
    elif isinstance(components, (Head, AttnBlock, MlpBlock, SpectralComponent)):
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
    """Raise :class:`SpectrascopeError` unless ``component`` exists in the model."""
    hf = as_hf(model)
    n_layers, n_heads = _shape(hf)
    if isinstance(component, SpectralComponent):
        weight = find_weight(hf, component.weight)
        if component.keep is SpectralKeep.DROP_TOP and not 1 <= component.k <= min(weight.shape):
            raise SpectrascopeError(
                f"{component.name}: k must be between 1 and {min(weight.shape)} (the matrix has "
                f"{min(weight.shape)} singular values)"
            )
        return
    if not isinstance(component, ACTIVATION_KINDS):
        raise SpectrascopeError(f"cannot ablate a {type(component).__name__}; use Head, AttnBlock, MlpBlock or SpectralComponent")
    if not 0 <= component.layer < n_layers:
        raise SpectrascopeError(
            f"{component.name}: layer {component.layer} does not exist (the model has layers 0..{n_layers - 1})"
        )
    if isinstance(component, Head) and not 0 <= component.head < n_heads:
        raise SpectrascopeError(
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
                raise SpectrascopeError(f"{candidate} has shape {tuple(param.shape)}: a spectral ablation needs a matrix")
            return param
    examples = [n for n, p in params.items() if p.ndim == 2][:3]
    raise SpectrascopeError(f"no weight matrix named {name!r} in the model (e.g. {', '.join(examples)})")


# ----------------------------------------------------------------------------- spectral edits


def spectral_edit(weight: torch.Tensor, keep: SpectralKeep | str, k: int = 1) -> tuple[torch.Tensor, int]:
    """(edited matrix in ``weight``'s dtype, number of singular directions kept).

    The SVD is computed in float64. ``drop_top``: ``W - U_k S_k V_k^T``; ``tail``:
    ``U_t S_t V_t^T`` over the power-law tail ``sigma^2 >= xmin``; ``bulk``: ``W`` minus the tail.

    Raises:
        SpectrascopeError: ``k`` out of range, or the power-law fit of the ESD failed.
    """
    keep = SpectralKeep(keep)
    W = weight.detach().to(torch.float64)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    n = S.numel()
    if keep is SpectralKeep.DROP_TOP:
        if not 1 <= k <= n:
            raise SpectrascopeError(f"k must be between 1 and {n} (got {k})")
        removed = (U[:, :k] * S[:k]) @ Vh[:k]
        return (W - removed).to(weight.dtype), n - k
    from spectrascope.spectra.powerlaw import fit_power_law

    evals = (S**2).cpu().numpy()
    fit = fit_power_law(evals)
    if not fit.ok:
        raise SpectrascopeError(f"the power-law fit of the matrix's ESD failed ({fit.reason}): no tail to keep")
    tail = torch.from_numpy(evals >= fit.xmin).to(S.device)
    tail_part = (U[:, tail] * S[tail]) @ Vh[tail]
    if keep is SpectralKeep.TAIL:
        return tail_part.to(weight.dtype), int(tail.sum())
    return (W - tail_part).to(weight.dtype), int((~tail).sum())


# ----------------------------------------------------------------------------- activation edits


@dataclass
class _Edit:
    """Replace ``component``'s part of its site's activation in batch rows ``rows``.

    ``value``: None = zeros; (d,) = a mean vector; (batch, pos, d) = resampled activations.
    """

    component: Head | AttnBlock | MlpBlock
    rows: slice
    value: torch.Tensor | None


def _site_fn(edits: list[_Edit]):
    """A tracer site function applying ``edits`` (all at one site) to a copy of the activation."""

    def fn(activation: torch.Tensor, name: str) -> torch.Tensor:
        out = activation.clone()
        for edit in edits:
            head = edit.component.head
            target = out[edit.rows] if head is None else out[edit.rows, :, head]
            if edit.value is None:
                target.zero_()
                continue
            value = edit.value
            if value.ndim > 1 and value.shape != target.shape:
                raise SpectrascopeError(
                    f"resample ablation of {edit.component.name}: the reference batch gives shape "
                    f"{tuple(value.shape)} but the model runs on {tuple(target.shape)}; pass a reference "
                    "batch of the same (batch, pos) shape as the inputs"
                )
            target.copy_(value.to(target.dtype).expand_as(target))
        return out

    return fn


def _as_batch(reference: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(input_ids, attention_mask) of a reference: ids, a dict with them, or a Metric."""
    if isinstance(reference, torch.Tensor):
        return reference, None
    if isinstance(reference, Mapping):
        return reference["input_ids"], reference.get("attention_mask")
    if isinstance(reference, Metric):
        return reference.input_ids, reference.attention_mask
    raise SpectrascopeError(
        f"a reference batch must be token ids, a dict with input_ids, or a Metric (got {type(reference).__name__})"
    )


@torch.no_grad()
def reference_values(
    model: Any, components: Sequence[Component], mode: AblationMode, reference: Any
) -> dict[Component, torch.Tensor | None]:
    """The replacement of each activation component: None (zero), a (d,) mean, or (batch, pos, d)."""
    activation = [c for c in components if isinstance(c, ACTIVATION_KINDS)]
    if mode is AblationMode.ZERO or not activation:
        return {c: None for c in activation}
    if reference is None:
        raise SpectrascopeError(f"{mode.value} ablation needs a reference batch (reference=token ids)")
    input_ids, attention_mask = _as_batch(reference)
    hf = as_hf(model)
    sites = list(dict.fromkeys(c.site for c in activation))
    _, cache = run_with_cache(hf, input_ids, sites, attention_mask=attention_mask, use_cache=False)
    valid = torch.ones(input_ids.shape, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    values: dict[Component, torch.Tensor | None] = {}
    for component in activation:
        act = cache[component.site]
        part = act if component.head is None else act[:, :, component.head]
        if mode is AblationMode.MEAN:
            values[component] = part[valid.to(part.device)].double().mean(dim=0).to(part.dtype)
        else:
            values[component] = part.clone()
    return values


def _mode(mode: AblationMode | str) -> AblationMode:
    try:
        return AblationMode(mode)
    except ValueError:
        raise SpectrascopeError(f"unknown ablation mode {mode!r}; use zero, mean or resample") from None


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
    spectral = [c for c in resolved if isinstance(c, SpectralComponent)]
    targets = [find_weight(hf, c.weight) for c in spectral]
    if len({id(t) for t in targets}) < len(targets):
        raise SpectrascopeError("two spectral ablations of the same weight in one block; ablate them one after the other")
    edited = [(param, spectral_edit(param, c.keep, c.k)[0]) for param, c in zip(targets, spectral, strict=True)]
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


# ----------------------------------------------------------------------------- sweep


_resumable = resumable
"""Whether HF's forward can start at layer L from ``hook_resid_pre`` (the family spec's ``resumable``)."""

_forward_from_layer = forward_from_layer
"""Logits of HF's own forward over layers ``layer..`` from ``blocks.{layer}.hook_resid_pre``."""


def _stack(tensor: torch.Tensor | None, copies: int) -> torch.Tensor | None:
    if tensor is None:
        return None
    return tensor.repeat(copies, *([1] * (tensor.ndim - 1)))


SWEEP_COLUMNS = ["component", "kind", "layer", "head", "mode", "metric", "baseline", "value", "effect", "damage"]
"""Columns of :func:`ablation_sweep`:

- ``component``: name (``head:L.H``, ``attn:L``, ``mlp:L``, ``spectral:...``);
- ``kind``: head, attn, mlp or spectral; ``layer``, ``head``: its position (nullable ints);
- ``mode``: zero / mean / resample, or the spectral keep (drop_top, tail, bulk);
- ``metric``: the metric's name; ``baseline``: the metric without ablation; ``value``: with
  the component ablated; ``effect`` = value - baseline; ``damage``: the effect in the metric's
  bad direction (= effect for a loss, -effect for a logit difference): positive = hurts.
"""


@torch.no_grad()
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
        components: see :func:`resolve_components` (``"all"`` = every head).
        metric: the :class:`~spectrascope.mech.metrics.Metric` (its batch is the input).
        mode, reference: as in :func:`ablate` (spectral components ignore them).
        batched: stack the batch once per component and ablate a different component in each
            block of rows (one forward for many components). False: one ``with ablate(...)``
            forward per component (the reference implementation).
        reuse_prefix: (batched, resumable families) start each layer's forwards at that layer from
            the clean residual stream instead of recomputing the earlier, unchanged layers.
            Checked once against a full forward; falls back (with a warning) if they differ.
        max_batch_tokens: bound on rows x positions of one stacked forward.
        show_progress: draw a progress bar.

    Returns:
        DataFrame with :data:`SWEEP_COLUMNS`, in the order of ``components``.
    """
    hf = as_hf(model)
    resolved = resolve_components(model, components)
    mode = _mode(mode)
    if hf.training:
        raise SpectrascopeError("the model is in training mode (dropout); call .eval() before an ablation sweep")
    activation = [c for c in resolved if isinstance(c, ACTIVATION_KINDS)]
    values = reference_values(hf, activation, mode, reference) if batched else {}
    keep = metric.logit_positions
    layers = sorted({c.layer for c in activation})
    prefix = batched and reuse_prefix and _resumable(hf) and bool(activation)
    sites = [f"blocks.{layer}.hook_resid_pre" for layer in layers] if prefix else []
    logits, cache = run_with_cache(hf, metric.input_ids, sites, attention_mask=metric.attention_mask,
                                   use_cache=False, **keep_logits(hf, keep))
    baseline = float(metric.score(logits))
    if prefix:
        prefix = _prefix_agrees(hf, cache, layers[-1], metric, logits)
    results: dict[Component, float] = {}
    with progress_bar("ablation sweep", len(resolved), show_progress) as advance:
        if batched:
            copies = _copies_per_forward(hf, metric, max_batch_tokens)
            for layer in layers:
                group = [c for c in activation if c.layer == layer]
                for start in range(0, len(group), copies):
                    chunk = group[start : start + copies]
                    scores = _stacked_scores(hf, chunk, values, metric, cache if prefix else None)
                    results.update(zip(chunk, scores, strict=True))
                    advance(len(chunk))
        for component in resolved:
            if component in results:
                continue
            with ablate(hf, [component], mode, reference):
                results[component] = metric(hf)
            advance(1)
    sign = 1.0 if metric.higher_is_worse else -1.0
    rows = []
    for component in resolved:
        value = results[component]
        spectral = isinstance(component, SpectralComponent)
        rows.append({
            "component": component.name, "kind": component.kind, "layer": component.layer,
            "head": component.head, "mode": component.keep.value if spectral else mode.value,
            "metric": metric.name, "baseline": baseline, "value": value, "effect": value - baseline,
            "damage": sign * (value - baseline),
        })
    table = pd.DataFrame(rows, columns=SWEEP_COLUMNS)
    for column in ("layer", "head"):
        table[column] = table[column].astype("Int64")
    return table


MAX_LOGIT_BYTES = 512 * 2**20
"""Bound on the float32 logits of one stacked forward (rows x kept positions x vocab x 4 bytes)."""


def _copies_per_forward(hf: nn.Module, metric: Metric, max_batch_tokens: int) -> int:
    """How many copies of the metric's batch one stacked forward holds: at most
    ``max_batch_tokens`` rows x positions, and at most :data:`MAX_LOGIT_BYTES` of logits."""
    rows, n_pos = metric.input_ids.shape
    kept = n_pos if metric.logit_positions is None else int(metric.logit_positions.numel())
    vocab = int(getattr(hf.config, "vocab_size", 0) or 0)
    by_tokens = max_batch_tokens // (rows * n_pos)
    by_logits = MAX_LOGIT_BYTES // max(1, rows * kept * vocab * 4)
    return max(1, min(by_tokens, by_logits))


def _prefix_agrees(hf: nn.Module, cache: dict[str, torch.Tensor], layer: int, metric: Metric,
                   logits: torch.Tensor) -> bool:
    """Whether the forward from ``layer`` reproduces the full forward's logits (else warn)."""
    resumed = _forward_from_layer(hf, layer, cache[f"blocks.{layer}.hook_resid_pre"], metric.attention_mask,
                                  metric.logit_positions)
    scale = float(logits.abs().max()) + 1.0
    if resumed.shape == logits.shape and float((resumed - logits).abs().max()) <= 1e-4 * scale:
        return True
    warnings.warn("ablation_sweep: resuming the forward at a layer does not reproduce the full forward on this "
                  "model; running full forwards instead", RuntimeWarning, stacklevel=3)
    return False


def _stacked_scores(
    hf: nn.Module,
    chunk: list[Head | AttnBlock | MlpBlock],
    values: Mapping[Component, torch.Tensor | None],
    metric: Metric,
    cache: dict[str, torch.Tensor] | None,
) -> list[float]:
    """The metric with ``chunk[i]`` ablated in rows block ``i`` of a stacked batch."""
    rows = metric.input_ids.shape[0]
    copies = len(chunk)
    by_site: dict[str, list[_Edit]] = {}
    for i, component in enumerate(chunk):
        by_site.setdefault(component.site, []).append(_Edit(component, slice(i * rows, (i + 1) * rows), values[component]))
    mask = _stack(metric.attention_mask, copies)
    keep = metric.logit_positions
    with hooks(hf, {site: _site_fn(edits) for site, edits in by_site.items()}):
        if cache is not None:
            layer = chunk[0].layer
            hidden = _stack(cache[f"blocks.{layer}.hook_resid_pre"], copies)
            logits = _forward_from_layer(hf, layer, hidden, mask, keep)
        else:
            kwargs = {"input_ids": _stack(metric.input_ids, copies), "attention_mask": mask, "use_cache": False}
            logits = model_output_tensor(hf(**kwargs, **keep_logits(hf, keep)))
    return [float(metric.score(part)) for part in logits.split(rows)]


def rank_by_damage(table: pd.DataFrame) -> pd.DataFrame:
    """The sweep table sorted by damage, most harmful first, with a 1-based ``rank`` column."""
    ranked = table.sort_values("damage", ascending=False, kind="stable").reset_index(drop=True)
    ranked.insert(0, "rank", np.arange(1, len(ranked) + 1))
    return ranked
