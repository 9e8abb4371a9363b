"""Steering by a feature: add ``scale * W_dec[i]`` at the SAE's site and measure what changes.

The decoder row is a unit vector (training keeps it so; a loaded SAE's row is normalized
here), so ``scale`` is the norm of what is added, in the site's units; a scale near the
feature's largest activations (``max_activation`` of the feature ranking) is what the model
itself writes when the feature fires strongly. Without scales, 0, 0.25, 0.5 and 1 times the
median token norm at the site (measured on the first held-out batch) are used. The hook is
:func:`spectrascope.mech.steering.steer` (every position, every forward inside the block).

:func:`steer_feature` reports, per scale, each domain's next-token loss on held-out text and
its change from the unsteered loss, and the greedy continuation of a prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from .base import SaeError, SparseAutoencoder
from .evaluate import _nll_per_row
from .sites import bind_site

STEER_COLUMNS = ["feature", "scale", "domain", "loss", "loss_change", "prompt", "generated"]


RELATIVE_SCALES = (0.0, 0.25, 0.5, 1.0)
"""Default scales, in units of the site's median token norm."""


def steer_feature(
    model: Any,
    sae: SparseAutoencoder,
    feature: int,
    scales: Sequence[float] | None = None,
    corpus: str | None = None,
    prompt: str = "The",
    max_new_tokens: int = 12,
    tokens: int = 512,
    seq_len: int = 128,
    site: str | None = None,
) -> pd.DataFrame:
    """Domain losses and a generated continuation with feature ``feature`` added at each scale.

    Returns one row per (scale, domain) (:data:`STEER_COLUMNS`); ``generated`` is the greedy
    continuation of ``prompt`` at that scale (the same on every domain row of a scale).
    """
    from ..corpora import DEFAULT_CORPORA, corpus_texts
    from ..mech.steering import steer

    binding = bind_site(model, sae, site)
    if not binding.in_residual_stream:
        raise SaeError(f"steering adds a residual-stream direction; {binding.site} is not in the residual stream")
    if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < sae.d_sae:
        raise SaeError(f"feature must be an index 0..{sae.d_sae - 1} (got {feature!r})")
    direction = sae.W_dec.detach()[feature].float().cpu()
    direction = direction / direction.norm().clamp_min(1e-12)
    domains = corpus_texts(corpus or DEFAULT_CORPORA)
    hf, tokenizer, device = binding.hf, binding.loaded.tokenizer, binding.device
    batches = {c.name: list(binding.held_out_batches(c.texts, tokens, seq_len, skip_first=False)) for c in domains}
    if scales is None:
        from .store import site_activations

        first = next(iter(b for items in batches.values() for b in items), None)
        if first is None:
            raise SaeError("the held-out texts gave no tokens to steer on")
        first.keep[:, 0] = False
        norm = float(site_activations(hf, first, binding.site, device).norm(dim=1).median())
        scales = [r * norm for r in RELATIVE_SCALES]
    rows = []
    baseline: dict[str, float] = {}
    for scale in [0.0] + [float(s) for s in scales if float(s) != 0.0]:
        with steer(hf, binding.layer, direction, scale, site=binding.kind.value), torch.no_grad():
            losses = {}
            for name, items in batches.items():
                total = count = 0.0
                for batch in items:
                    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
                    nll, n = _nll_per_row(hf(input_ids=ids, attention_mask=mask, use_cache=False).logits, ids, mask)
                    total += float(nll.sum())
                    count += float(n.sum())
                losses[name] = total / max(count, 1.0)
            generated = _greedy(hf, tokenizer, prompt, max_new_tokens, device)
        if scale == 0.0:
            baseline = dict(losses)
        if scale == 0.0 and 0.0 not in [float(s) for s in scales]:
            continue
        for name, loss in losses.items():
            rows.append(
                {
                    "feature": feature,
                    "scale": scale,
                    "domain": name,
                    "loss": loss,
                    "loss_change": loss - baseline[name],
                    "prompt": prompt,
                    "generated": generated,
                }
            )
    return pd.DataFrame(rows, columns=STEER_COLUMNS)


def _greedy(hf: torch.nn.Module, tokenizer: Any, prompt: str, max_new_tokens: int, device: torch.device) -> str:
    """Greedy continuation (no cache, so every forward sees the steering hook on every position)."""
    ids = torch.tensor([tokenizer(prompt)["input_ids"]], device=device)
    start = ids.shape[1]
    for _ in range(max_new_tokens):
        next_id = hf(input_ids=ids, use_cache=False).logits[0, -1].argmax()
        ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return tokenizer.decode(ids[0, start:].tolist())
