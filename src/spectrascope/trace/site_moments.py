"""Streaming activation moments at sites over any batches: :func:`accumulate_site_moments`.

Each site's activations become d-dimensional token vectors:

- (batch, pos, d) sites (residual stream, ``hook_attn_out``, ``hook_mlp_out``,
  ``mlp.hook_post``): one vector per token;
- ``attn.hook_z`` (batch, pos, H, d_head): one vector per token with the heads
  concatenated, d = H * d_head, head-major (head h is columns h*d_head .. (h+1)*d_head - 1),
  the layout the output projection consumes;
- ``attn.hook_pattern`` is not a token vector and is refused.

Padding tokens (``attention_mask == 0``) are left out. Only the moments are kept
(:class:`~spectrascope.trace.moments.RunningMoments`), never the activations. This is
:func:`~spectrascope.trace.passes.run_pass` with a :class:`~spectrascope.trace.passes.SiteMoments`
collector, for batches given as ids, (ids, mask) pairs or mappings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from spectrascope.errors import SiteError
from spectrascope.trace.architectures import bind
from spectrascope.trace.moments import RunningMoments
from spectrascope.trace.passes import SiteMoments, TextBatch, run_pass
from spectrascope.trace.sites import SiteKind, parse_site
from spectrascope.trace.tracer import SiteRequest, resolve_sites

STATS_MASK_KEY = "stats_mask"
"""Optional batch key: a (batch, pos) 0/1 mask of the tokens that enter the statistics
(e.g. all but the first position); not passed to the model. Defaults to attention_mask."""

Batch = torch.Tensor | Mapping[str, torch.Tensor] | tuple[torch.Tensor, torch.Tensor | None]
"""``input_ids`` (batch, pos); or a mapping with ``input_ids`` and optionally
``attention_mask`` and ``stats_mask``; or a pair ``(input_ids, attention_mask)``."""


def accumulate_site_moments(
    hf_model: nn.Module, batches: Iterable[Batch], sites: SiteRequest
) -> dict[str, RunningMoments]:
    """Count, sum and X^T X (float64) of the token vectors at each site, over all batches.

    Args:
        hf_model: a supported Hugging Face model (call ``.eval()`` first).
        batches: an iterable of :data:`Batch`; tensors are moved to the model's device.
        sites: site request (full names, wildcards, short forms); ``None`` = every
            token-vector site (all but ``attn.hook_pattern``).

    Returns:
        full site name -> :class:`RunningMoments` over the non-padding tokens (or ``stats_mask``).
    """
    bound = bind(hf_model)
    if sites is None:
        names = [name for name in resolve_sites(bound, None) if parse_site(name)[1] is not SiteKind.PATTERN]
    else:
        names = resolve_sites(bound, sites)
    refused = [name for name in names if parse_site(name)[1] is SiteKind.PATTERN]
    if refused:
        raise SiteError(f"{refused[0]} holds attention probabilities, not token vectors; no moments for it")
    collector = SiteMoments(names)
    run_pass(bound.model, _text_batches(batches), [collector])
    return {name: collector.moments.get(name, RunningMoments()) for name in names}


def _text_batches(batches: Iterable[Batch]) -> Iterator[TextBatch]:
    offset = 0
    for batch in batches:
        ids, mask, stats = _parts(batch)
        yield TextBatch(ids, mask, stats, torch.arange(offset, offset + ids.shape[0]))
        offset += ids.shape[0]


def _parts(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, stats_mask) of one batch (masks default to all ones / the mask)."""
    if isinstance(batch, torch.Tensor):
        ids, mask, stats = batch, None, None
    elif isinstance(batch, Mapping):
        if "input_ids" not in batch:
            raise SiteError(f"a batch mapping needs 'input_ids'; got keys {sorted(batch)}")
        ids, mask, stats = batch["input_ids"], batch.get("attention_mask"), batch.get(STATS_MASK_KEY)
    elif isinstance(batch, tuple) and len(batch) == 2:
        ids, mask, stats = batch[0], batch[1], None
    else:
        raise SiteError(
            f"a batch must be input_ids, a mapping or (input_ids, attention_mask); got {type(batch).__name__}"
        )
    mask = torch.ones_like(ids) if mask is None else mask
    return ids, mask, mask if stats is None else stats
