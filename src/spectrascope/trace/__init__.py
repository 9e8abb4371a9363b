"""Named activation sites on Hugging Face models, and streaming statistics.

Sites use TransformerLens names (``blocks.{L}.hook_resid_post``, ``blocks.{L}.attn.hook_z``
...) and are PyTorch hooks on the Hugging Face modules: the model's own forward pass
runs, so observing leaves the logits bit-identical. Which tensor each site is, per
family: the family specs in :mod:`spectrascope.arch`. Every function takes any model
:func:`spectrascope.models.handle.as_model` accepts (a loaded model, a Hugging Face
module, a bundled name).

Public API:

- :func:`list_sites`, :func:`run_with_cache`, :func:`hooks` (observe / edit);
- :func:`eager_attention` (``attn.hook_pattern`` needs eager attention);
- :class:`RunningMoments`, :func:`accumulate_site_moments` (float64 count, sum, X^T X).
"""

from __future__ import annotations

from spectrascope.trace.architectures import SitePoint
from spectrascope.trace.attention import eager_attention, uses_eager_attention
from spectrascope.trace.moments import RunningMoments
from spectrascope.trace.site_moments import accumulate_site_moments
from spectrascope.trace.sites import SHORT_FORMS, SiteKind, parse_site, site_name
from spectrascope.trace.tracer import SiteFn, hooks, list_sites, run_with_cache

__all__ = [
    "SHORT_FORMS",
    "RunningMoments",
    "SiteFn",
    "SiteKind",
    "SitePoint",
    "accumulate_site_moments",
    "eager_attention",
    "hooks",
    "list_sites",
    "parse_site",
    "run_with_cache",
    "site_name",
    "uses_eager_attention",
]
