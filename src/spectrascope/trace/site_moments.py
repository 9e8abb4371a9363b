"""Streaming activation moments at sites over a corpus: one forward pass per batch.

Each site's activations become d-dimensional token vectors:

- (batch, pos, d) sites (residual stream, ``hook_attn_out``, ``hook_mlp_out``,
  ``mlp.hook_post``): one vector per token;
- ``attn.hook_z`` (batch, pos, H, d_head): one vector per token with the heads
  concatenated, d = H * d_head, head-major (head h is columns h*d_head .. (h+1)*d_head - 1),
  the layout the output projection consumes;
- ``attn.hook_pattern`` is not a token vector and is refused.

Padding tokens (``attention_mask == 0``) are left out. Only the moments are kept
(:class:`~spectrascope.trace.moments.RunningMoments`), never the activations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from spectrascope.errors import SiteError
from spectrascope.models.handle import device_of
from spectrascope.trace.architectures import bind
from spectrascope.trace.moments import RunningMoments
from spectrascope.trace.sites import SiteKind, parse_site
from spectrascope.trace.tracer import SiteRequest, hooks, resolve_sites

if TYPE_CHECKING:
    from spectrascope.models.handle import ModelLike

STATS_MASK_KEY = "stats_mask"
"""Optional batch key: a (batch, pos) 0/1 mask of the tokens that enter the statistics
(e.g. all but the first position); not passed to the model. Defaults to attention_mask."""

Batch = torch.Tensor | Mapping[str, torch.Tensor] | tuple[torch.Tensor, torch.Tensor | None]
"""``input_ids`` (batch, pos); or a mapping with ``input_ids`` and optionally
``attention_mask`` (and any other forward keyword, e.g. a tokenizer's ``BatchEncoding``);
or a pair ``(input_ids, attention_mask)``."""


def accumulate_site_moments(
    model: ModelLike,
    batches: Iterable[Batch],
    sites: SiteRequest,
    **forward_kwargs: Any,
) -> dict[str, RunningMoments]:
    """Count, sum and X^T X (float64) of the token vectors at each site, over all batches.

    Args:
        model: a model of a supported family (a loaded model, a Hugging Face module in
            ``eval()`` mode, a bundled name: see ``as_model``).
        batches: an iterable of :data:`Batch`; tensors are moved to the model's device.
        sites: site request (full names, wildcards, short forms); ``None`` = every
            token-vector site (all but ``attn.hook_pattern``).
        forward_kwargs: passed on to every forward call.

    Returns:
        full site name -> :class:`RunningMoments` over the non-padding tokens, kept on
        the device the activations were computed on.
    """
    bound = bind(model)
    hf_model = bound.model
    if sites is None:
        names = [name for name in resolve_sites(bound, None) if parse_site(name)[1] is not SiteKind.PATTERN]
    else:
        names = resolve_sites(bound, sites)
    refused = [name for name in names if parse_site(name)[1] is SiteKind.PATTERN]
    if refused:
        raise SiteError(f"{refused[0]} holds attention probabilities, not token vectors; no moments for it")
    moments = {name: RunningMoments() for name in names}
    token_mask: list[torch.Tensor | None] = [None]

    def accumulate(activation: torch.Tensor, name: str) -> None:
        vectors = activation.flatten(start_dim=2) if activation.dim() == 4 else activation
        moments[name].update(vectors, token_mask[0])

    device = device_of(hf_model)
    with hooks(bound.handle, {name: accumulate for name in names}), torch.no_grad():
        for batch in batches:
            inputs = _as_inputs(batch, device)
            stats_mask = inputs.pop(STATS_MASK_KEY, None)
            token_mask[0] = stats_mask if stats_mask is not None else inputs.get("attention_mask")
            hf_model(**inputs, **forward_kwargs)
    return moments


def _as_inputs(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    """Forward keywords of one batch, on ``device``."""
    if isinstance(batch, torch.Tensor):
        inputs = {"input_ids": batch}
    elif isinstance(batch, Mapping):
        inputs = {key: value for key, value in batch.items() if value is not None}
    elif isinstance(batch, tuple) and len(batch) == 2:
        inputs = {"input_ids": batch[0]}
        if batch[1] is not None:
            inputs["attention_mask"] = batch[1]
    else:
        kind = type(batch).__name__
        raise SiteError(f"a batch must be input_ids, a mapping or (input_ids, attention_mask); got {kind}")
    if "input_ids" not in inputs:
        raise SiteError(f"a batch mapping needs 'input_ids'; got keys {sorted(inputs)}")
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in inputs.items()}

