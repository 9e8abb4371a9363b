"""Activation patching, clean -> corrupted, at any site, position or head; batched sweeps.

Two prompts of the same token length: *clean* (the model does the task, e.g. "The capital
of France is" -> " Paris") and *corrupted* (the evidence changed, "... of Italy is").
Patching runs the corrupted prompt but overwrites one activation with its value from
the clean run, and measures how much of the clean behaviour comes back, with a
``metric``: a function of the output logits.

*Metric.* A :class:`~spectrascope.mech.metrics.Metric` (one value per row of the logits), or
any function ``metric(logits) -> values`` of the (batch, pos, vocab) logits returning one
value per row (:func:`~spectrascope.mech.metrics.as_metric` wraps it). :func:`logit_diff` is
the usual one: the logit of the correct token minus the logit of the wrong one, at the last
position.

*Effect.* With ``m_clean``, ``m_corrupted`` the metric on the unpatched runs and
``m_patched`` on the patched corrupted run:

- ``delta = m_patched - m_corrupted`` (metric units);
- ``effect = (m_patched - m_corrupted) / (m_clean - m_corrupted)``, the *normalized
  patching effect*: 0 = patching changed nothing, 1 = it restored the clean metric fully
  (it can be < 0 or > 1).

*What is patched.* ``site`` is a full site name (:mod:`spectrascope.trace.sites`);
``position`` None patches every position, an int one position (negative counts from the
end); ``head`` (only for ``blocks.{L}.attn.hook_z``, shape (batch, pos, head, d_head))
patches one head's output, None all heads.

*Batching.* A sweep stacks ``batch_size`` copies of the corrupted prompt into one forward
pass, each copy with a different patch (hooks at every layer involved, each writing only
its own rows), and evaluates the metric per row. The copies do not interact, so a batched
sweep gives the same numbers as one forward per patch (up to float rounding of batched
matrix products). Patches that write the value already there (bit for bit; in a causal
LM, every position before the first token where the two prompts differ) are not run:
their delta is exactly 0.

Sweep tables (columns):

- :func:`patch_sweep_layers_positions`: ``site``, ``layer``, ``position``, ``effect``, ``delta``;
- :func:`patch_sweep_heads`: ``site``, ``layer``, ``head``, ``effect``, ``delta``.

``df.attrs`` holds ``clean_metric`` and ``corrupted_metric``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from spectrascope.errors import ArchitectureError, SpectrascopeError
from spectrascope.mech.logit_lens import encode_prompt
from spectrascope.mech.metrics import LogitDifference, Metric, as_metric, keep_logits
from spectrascope.models.handle import ModelLike, as_model
from spectrascope.trace import hooks, run_with_cache
from spectrascope.trace.architectures import BoundModel, bind
from spectrascope.trace.sites import SiteKind, parse_site, site_name, vector_site_kind
from spectrascope.trace.tracer import model_output_tensor

MetricLike = Metric | Callable[[torch.Tensor], torch.Tensor]
"""A :class:`~spectrascope.mech.metrics.Metric`, or a function of the logits (one value per row)."""

Prompt = str | Sequence[int] | torch.Tensor
"""A prompt: text (tokenized by the model's tokenizer) or one sequence of token ids."""

DEFAULT_BATCH_SIZE = 32
"""Patched copies per forward pass in the sweeps."""


# ----------------------------------------------------------------------------- metrics


def logit_diff(correct_token_id: int, wrong_token_id: int, position: int = -1) -> LogitDifference:
    """The logit difference metric: correct minus wrong token logit at ``position`` (default the last)."""
    return LogitDifference.at(correct_token_id, wrong_token_id, position)


def normalized_effect(patched: float, clean: float, corrupted: float) -> float:
    """``(patched - corrupted) / (clean - corrupted)``: 0 = no change, 1 = clean behaviour restored."""
    return (patched - corrupted) / (clean - corrupted)


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class PatchSpec:
    """One patch: at ``layer`` (site kind given by the sweep), ``position`` (None = all), ``head`` (None = all)."""

    layer: int
    position: int | None = None
    head: int | None = None


@dataclass(frozen=True)
class PatchResult:
    """The outcome of one patch.

    Attributes:
        site: the full site name patched.
        position, head: what was patched (None = all).
        clean, corrupted, patched: the metric on the clean, corrupted and patched runs.
    """

    site: str
    position: int | None
    head: int | None
    clean: float
    corrupted: float
    patched: float

    @property
    def delta(self) -> float:
        """``patched - corrupted`` in metric units."""
        return self.patched - self.corrupted

    @property
    def effect(self) -> float:
        """The normalized patching effect (see the module docstring)."""
        return normalized_effect(self.patched, self.clean, self.corrupted)


@dataclass(frozen=True)
class PairInputs:
    """A validated clean/corrupted pair on one model."""

    hf: Any
    bound: BoundModel
    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor

    @property
    def n_pos(self) -> int:
        return int(self.clean_ids.shape[1])


def prepare_pair(model: ModelLike, clean: Prompt, corrupted: Prompt) -> PairInputs:
    """Tokenize and check a clean/corrupted pair: one sequence each, the same token length.

    Raises:
        SpectrascopeError: different token lengths (with both token lists), empty prompts,
            unsupported model.
    """
    model = as_model(model).require_causal_lm("patching (it compares next-token logits)")
    bound = bind(model)
    clean_ids, corrupted_ids = encode_prompt(model, clean), encode_prompt(model, corrupted)
    if clean_ids.shape != corrupted_ids.shape:
        raise SpectrascopeError(
            "patching needs clean and corrupted prompts of the same token length: clean has "
            f"{clean_ids.shape[1]} tokens {_tokens(model, clean_ids)}, corrupted has {corrupted_ids.shape[1]} "
            f"{_tokens(model, corrupted_ids)}"
        )
    return PairInputs(hf=bound.model, bound=bound, clean_ids=clean_ids, corrupted_ids=corrupted_ids)


def check_layer(bound: BoundModel, layer: int) -> int:
    """``layer`` if it exists (0 .. n_layers - 1), else a SpectrascopeError."""
    layer = _as_int(layer, "layer")
    if not 0 <= layer < bound.n_layers:
        raise SpectrascopeError(f"layer {layer} out of range: the model has layers 0..{bound.n_layers - 1}")
    return layer


def check_position(n_pos: int, position: int | None) -> int | None:
    """``position`` made non-negative (None stays None); out of range -> SpectrascopeError."""
    if position is None:
        return None
    position = _as_int(position, "position")
    if not -n_pos <= position < n_pos:
        raise SpectrascopeError(f"position {position} out of range: the prompts have {n_pos} tokens (0..{n_pos - 1})")
    return position % n_pos


def check_head(bound: BoundModel, head: int | None) -> int | None:
    """``head`` if it exists (None stays None), else a SpectrascopeError."""
    if head is None:
        return None
    head = _as_int(head, "head")
    n_heads = head_count(bound)
    if not 0 <= head < n_heads:
        raise SpectrascopeError(f"head {head} out of range: the model has heads 0..{n_heads - 1}")
    return head


def head_count(bound: BoundModel) -> int:
    """The number of query heads; a model without attention has none to patch (one-line error)."""
    if bound.n_heads is None:
        raise ArchitectureError("this model has no attention heads: a head sweep needs attention")
    return bound.n_heads


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise SpectrascopeError(f"{what} must be an integer (got {value!r})")
    try:
        return operator.index(value)
    except TypeError:
        raise SpectrascopeError(f"{what} must be an integer (got {value!r})") from None


def _tokens(model: ModelLike, ids: torch.Tensor) -> list[str]:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return [str(int(t)) for t in ids[0]]
    return [tokenizer.decode([int(t)]) for t in ids[0]]


# ----------------------------------------------------------------------------- running


def metric_per_row(metric: MetricLike, logits: torch.Tensor) -> torch.Tensor:
    """The metric's value per row of ``logits``, shape (batch,)."""
    return as_metric(metric).row_scores(logits).values


def logits_kwargs(hf: Any, metric: MetricLike) -> dict[str, Any]:
    """Forward keyword arguments for a metric: the logits it reads (``logits_to_keep``) when the model takes it."""
    return keep_logits(hf, as_metric(metric).logits_to_keep)


def forward_logits(hf: Any, input_ids: torch.Tensor, metric: MetricLike) -> torch.Tensor:
    """The model's logits for ``input_ids`` (only the last position's when the metric reads only that)."""
    return model_output_tensor(hf(input_ids=input_ids, **logits_kwargs(hf, metric)))


@torch.no_grad()
def baseline_runs(
    pair: PairInputs, metric: MetricLike, kind: SiteKind | None = None, layers: Sequence[int] = ()
) -> tuple[float, float, dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """The two unpatched runs: (clean metric, corrupted metric, clean and corrupted activations).

    The activations are those of ``kind`` at each of ``layers``, each (1, pos, ...), keyed by layer.
    Raises SpectrascopeError when the two metrics are equal (the normalized effect is undefined).
    """
    names = [site_name(layer, kind) for layer in layers] if kind is not None else []
    kwargs = logits_kwargs(pair.hf, metric)
    clean_logits, clean_cache = run_with_cache(pair.hf, pair.clean_ids, names, **kwargs)
    corrupted_logits, corrupted_cache = run_with_cache(pair.hf, pair.corrupted_ids, names, **kwargs)
    clean_metric = float(metric_per_row(metric, clean_logits)[0])
    corrupted_metric = float(metric_per_row(metric, corrupted_logits)[0])
    check_metrics_differ(clean_metric, corrupted_metric)
    by_layer = {site_name(layer, kind): layer for layer in layers} if kind is not None else {}
    clean_acts = {layer: clean_cache[name] for name, layer in by_layer.items()}
    corrupted_acts = {layer: corrupted_cache[name] for name, layer in by_layer.items()}
    return clean_metric, corrupted_metric, clean_acts, corrupted_acts


def check_metrics_differ(clean_metric: float, corrupted_metric: float) -> None:
    """SpectrascopeError unless the clean and corrupted metrics differ (relative 1e-6) and are finite."""
    if not (abs(clean_metric - corrupted_metric) > 1e-6 * max(1.0, abs(clean_metric), abs(corrupted_metric))):
        raise SpectrascopeError(
            f"the metric is the same on the clean and the corrupted prompt ({clean_metric:.6g} vs "
            f"{corrupted_metric:.6g}): the normalized patching effect is undefined; choose prompts or a "
            "metric that tell them apart"
        )


@torch.no_grad()
def run_patched(
    pair: PairInputs,
    kind: SiteKind,
    specs: Sequence[PatchSpec],
    clean_acts: dict[int, torch.Tensor],
    metric: MetricLike,
) -> torch.Tensor:
    """The metric of one forward pass over ``len(specs)`` copies of the corrupted prompt, row i patched by specs[i].

    Returns:
        (len(specs),) metric values, float64 on the CPU.
    """
    batch = len(specs)
    rows_by_layer: dict[int, list[int]] = {}
    for row, spec in enumerate(specs):
        rows_by_layer.setdefault(spec.layer, []).append(row)

    def patcher(layer: int):
        rows = rows_by_layer[layer]
        clean = clean_acts[layer][0]  # (pos, ...) for this layer

        def fn(activation: torch.Tensor, _name: str) -> torch.Tensor:
            patched = activation.clone()
            for row in rows:
                spec = specs[row]
                pos = slice(None) if spec.position is None else spec.position
                if spec.head is None:
                    patched[row, pos] = clean[pos]
                else:
                    patched[row, pos, spec.head] = clean[pos, spec.head]
            return patched

        return fn

    input_ids = pair.corrupted_ids.expand(batch, -1)
    with hooks(pair.hf, {site_name(layer, kind): patcher(layer) for layer in rows_by_layer}):
        logits = forward_logits(pair.hf, input_ids, metric)
    return metric_per_row(metric, logits).detach().to("cpu", torch.float64)


def is_noop(spec: PatchSpec, clean_acts: dict[int, torch.Tensor], corrupted_acts: dict[int, torch.Tensor]) -> bool:
    """Whether the patch writes exactly the value the corrupted run already has there."""
    index: tuple[int | slice, ...] = (0, slice(None) if spec.position is None else spec.position)
    if spec.head is not None:
        index = (*index, spec.head)
    return torch.equal(clean_acts[spec.layer][index], corrupted_acts[spec.layer][index])


def sweep(
    pair: PairInputs,
    kind: SiteKind,
    specs: Sequence[PatchSpec],
    metric: MetricLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[list[float], float, float]:
    """(patched metric per spec, clean metric, corrupted metric), ``batch_size`` patches per forward.

    A patch whose clean value equals the corrupted one bit for bit (in a causal LM: every
    position before the first token where the prompts differ) changes nothing; it is not
    run and gets the corrupted metric, so its delta is exactly 0.
    """
    if batch_size < 1:
        raise SpectrascopeError(f"batch_size must be at least 1 (got {batch_size})")
    layers = sorted({spec.layer for spec in specs})
    clean_metric, corrupted_metric, clean_acts, corrupted_acts = baseline_runs(pair, metric, kind, layers)
    patched = [corrupted_metric] * len(specs)
    to_run = [i for i, spec in enumerate(specs) if not is_noop(spec, clean_acts, corrupted_acts)]
    for start in range(0, len(to_run), batch_size):
        chunk = to_run[start : start + batch_size]
        values = run_patched(pair, kind, [specs[i] for i in chunk], clean_acts, metric).tolist()
        for i, value in zip(chunk, values):
            patched[i] = value
    return patched, clean_metric, corrupted_metric


# ----------------------------------------------------------------------------- public API


def patch(
    model: ModelLike,
    clean_ids: Prompt,
    corrupted_ids: Prompt,
    site: str,
    position: int | None = None,
    head: int | None = None,
    *,
    metric: MetricLike,
) -> PatchResult:
    """Run the corrupted prompt with ``site`` (at ``position``, ``head``) taken from the clean run.

    Args:
        model: a LoadedModel or a supported Hugging Face causal LM.
        clean_ids, corrupted_ids: prompts (text or token ids) of the same token length.
        site: a full site name, e.g. ``"blocks.3.hook_resid_pre"`` or ``"blocks.5.attn.hook_z"``.
        position: the token position patched (negative counts from the end); None = all.
        head: the head patched (``attn.hook_z`` only); None = all heads.
        metric: see the module docstring, e.g. ``logit_diff(correct_id, wrong_id)``.

    Returns:
        :class:`PatchResult` with the clean, corrupted and patched metric, ``delta`` and ``effect``.

    Raises:
        SpectrascopeError: different token lengths, unknown site, layer / position / head out
            of range, a head for a site that is not ``attn.hook_z``, equal clean and corrupted metric.
    """
    pair = prepare_pair(model, clean_ids, corrupted_ids)
    layer, kind = _parse_patch_site(pair.bound, site)
    position = check_position(pair.n_pos, position)
    if head is not None and kind is not SiteKind.Z:
        raise SpectrascopeError(f"a head can only be patched at attn.hook_z (got site {site!r})")
    head = check_head(pair.bound, head)
    (patched,), clean_metric, corrupted_metric = sweep(pair, kind, [PatchSpec(layer, position, head)], metric)
    return PatchResult(
        site=site_name(layer, kind),
        position=position,
        head=head,
        clean=clean_metric,
        corrupted=corrupted_metric,
        patched=patched,
    )


def patch_sweep_layers_positions(
    model: ModelLike,
    clean: Prompt,
    corrupted: Prompt,
    site_kind: str | SiteKind = "resid_pre",
    *,
    metric: MetricLike,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pd.DataFrame:
    """Patch ``site_kind`` at each (layer, position), one position at a time.

    Args:
        site_kind: a site kind or short form (``resid_pre``, ``resid_mid``, ``resid_post``,
            ``attn_out``, ``mlp_out``, ``z`` = all heads, ``mlp_post``).
        layers, positions: restrict the sweep (default: all).
        batch_size: patched copies per forward pass.

    Returns:
        DataFrame (``site``, ``layer``, ``position``, ``effect``, ``delta``), one row per
        (layer, position) in layer-major order; ``attrs``: ``clean_metric``, ``corrupted_metric``.
    """
    pair = prepare_pair(model, clean, corrupted)
    kind = vector_site_kind(site_kind)
    layer_list = [
        check_layer(pair.bound, layer) for layer in (layers if layers is not None else range(pair.bound.n_layers))
    ]
    position_list = [check_position(pair.n_pos, p) for p in (positions if positions is not None else range(pair.n_pos))]
    specs = [PatchSpec(layer, position) for layer in layer_list for position in position_list]
    patched, clean_metric, corrupted_metric = sweep(pair, kind, specs, metric, batch_size)
    df = pd.DataFrame(
        {
            "site": [site_name(s.layer, kind) for s in specs],
            "layer": [s.layer for s in specs],
            "position": [s.position for s in specs],
        }
    )
    return _with_effects(df, patched, clean_metric, corrupted_metric)


def patch_sweep_heads(
    model: ModelLike,
    clean: Prompt,
    corrupted: Prompt,
    *,
    metric: MetricLike,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    position: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pd.DataFrame:
    """Patch each attention head's output (``blocks.{L}.attn.hook_z``, one head at a time).

    Args:
        layers, heads: restrict the sweep (default: all layers, all heads of each).
        position: patch the head only at this position; None = at every position.
        batch_size: patched copies per forward pass.

    Returns:
        DataFrame (``site``, ``layer``, ``head``, ``effect``, ``delta``), one row per
        (layer, head); ``attrs``: ``clean_metric``, ``corrupted_metric``.
    """
    pair = prepare_pair(model, clean, corrupted)
    layer_list = [
        check_layer(pair.bound, layer) for layer in (layers if layers is not None else range(pair.bound.n_layers))
    ]
    position = check_position(pair.n_pos, position)
    head_list = [check_head(pair.bound, h) for h in (heads if heads is not None else range(head_count(pair.bound)))]
    specs = [PatchSpec(layer, position, head) for layer in layer_list for head in head_list]
    patched, clean_metric, corrupted_metric = sweep(pair, SiteKind.Z, specs, metric, batch_size)
    df = pd.DataFrame(
        {
            "site": [site_name(s.layer, SiteKind.Z) for s in specs],
            "layer": [s.layer for s in specs],
            "head": [s.head for s in specs],
        }
    )
    return _with_effects(df, patched, clean_metric, corrupted_metric)


def _with_effects(
    df: pd.DataFrame, patched: Sequence[float], clean_metric: float, corrupted_metric: float
) -> pd.DataFrame:
    patched_values = pd.Series(list(patched), index=df.index, dtype="float64")
    df["effect"] = (patched_values - corrupted_metric) / (clean_metric - corrupted_metric)
    df["delta"] = patched_values - corrupted_metric
    df.attrs.update(clean_metric=clean_metric, corrupted_metric=corrupted_metric)
    return df


def _parse_patch_site(bound: BoundModel, site: str) -> tuple[int, SiteKind]:
    if not isinstance(site, str):
        raise SpectrascopeError(f"site must be a full site name such as 'blocks.0.hook_resid_pre' (got {site!r})")
    layer, kind = parse_site(site)
    check_layer(bound, layer)
    return layer, vector_site_kind(kind)
