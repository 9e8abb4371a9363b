"""How a circuit compares with what other tools point to: top-scoring heads and the logit lens.

- :func:`head_overlap`: how many of another ranking's top heads (induction scores, an ablation
  sweep ...) are in the circuit, against the hypergeometric expectation of a random set of the
  same size (one-sided p-value).
- :func:`lens_emergence`: the task metric read by the logit lens at every layer (the residual
  stream after each block through the final norm and unembedding, :mod:`spectrascope.mech.unembed`),
  with bootstrap intervals over prompts, and the first layer whose mean reaches half of the
  model's own metric (with the same bootstrap), to set beside the layers of the circuit's nodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from spectrascope.circuits.layout import circuit_model
from spectrascope.circuits.tasks import Task
from spectrascope.trace import run_with_cache


def head_overlap(
    circuit_heads: set[str], ranking: pd.DataFrame, top: int, n_heads: int, *, column: str = "score"
) -> dict:
    """Overlap of the circuit's heads with the ``top`` heads of ``ranking`` (columns ``node`` and
    ``column``, larger = more important).

    Returns:
        ``{"top": [...], "overlap": [...], "n_overlap", "expected", "p"}``: the ``p``-value is
        P(overlap >= observed) for ``top`` heads drawn at random from ``n_heads``.
    """
    from scipy.stats import hypergeom

    best = ranking.sort_values(column, ascending=False)["node"].head(top).tolist()
    overlap = [h for h in best if h in circuit_heads]
    k = len(circuit_heads)
    return {
        "top": best,
        "overlap": overlap,
        "n_overlap": len(overlap),
        "expected": top * k / n_heads,
        "p": float(hypergeom.sf(len(overlap) - 1, n_heads, k, top)),
    }


LENS_COLUMNS = ["layer", "metric", "metric_lo", "metric_hi", "share"]
"""Columns of :func:`lens_emergence`: ``layer`` -1 (embeddings) .. n_layers - 1, the mean task
metric read by the lens there and its 95% bootstrap interval over prompts, ``share`` =
(metric - metric at the embeddings) / (model's metric - metric at the embeddings)."""


@torch.no_grad()
def lens_emergence(model: Any, task: Task, *, n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """The task metric through the logit lens, layer by layer (see the module docstring).

    Returns:
        (table with :data:`LENS_COLUMNS`, ``{"half_layer", "half_layer_lo", "half_layer_hi"}``: the
        first layer whose mean share reaches 1/2, and its bootstrap interval).
    """
    from spectrascope.mech.unembed import unembed_parts

    hf, _, _ = circuit_model(model)
    device = next(hf.parameters()).device
    task = task.to(device)
    n_layers = int(hf.config.num_hidden_layers)
    sites = ["blocks.0.hook_resid_pre"] + [f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)]
    _, cache = run_with_cache(hf, task.clean_ids, sites, attention_mask=task.attention_mask, use_cache=False)
    readout = unembed_parts(hf)
    keep = task.metric.keep.to(device)
    rows = np.stack([task.metric.per_row(readout(cache[site][:, keep])).cpu().numpy() for site in sites])  # (L+1, n)
    layers = np.arange(-1, n_layers)
    boot = np.random.default_rng(seed).integers(0, task.n, (n_boot, task.n))
    means = rows.mean(1)
    boot_means = rows[:, boot].mean(-1)  # (L+1, B)
    base, final = means[0], means[-1]
    share = (means - base) / (final - base) if final != base else np.full_like(means, np.nan)
    table = pd.DataFrame(
        {
            "layer": layers,
            "metric": means,
            "metric_lo": np.percentile(boot_means, 2.5, axis=1),
            "metric_hi": np.percentile(boot_means, 97.5, axis=1),
            "share": share,
        },
        columns=LENS_COLUMNS,
    )
    boot_share = (boot_means - boot_means[:1]) / (boot_means[-1:] - boot_means[:1])
    first = layers[np.argmax(boot_share >= 0.5, axis=0)]
    reached = np.nonzero(share >= 0.5)[0]
    summary = {
        "half_layer": int(layers[reached[0]]) if reached.size else None,
        "half_layer_lo": float(np.percentile(first, 2.5)),
        "half_layer_hi": float(np.percentile(first, 97.5)),
    }
    return table, summary
