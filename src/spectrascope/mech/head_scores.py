"""Attention-head scores on repeated random token sequences: induction, previous-token, duplicate-token.

Inputs are ``[BOS] r r``: ``r`` is ``seq_len`` distinct random ordinary tokens
(:func:`spectrascope.mech.metrics.repeated_batch`); BOS only where the model's tokenizer adds
one to text (or, without a tokenizer, where the config has one); with BOS the first copy
starts at position 1. With ``L = seq_len`` and ``A[q, k]`` a head's attention probability from query
position ``q`` to key position ``k`` (``blocks.{layer}.attn.hook_pattern``), averaged over
sequences and over the query positions named:

- ``induction``: ``A[q, q - L + 1]`` for ``q`` in the second copy: attention to the token
  right after the earlier copy of the current token (the "offset seq_len - 1" diagonal);
- ``previous_token``: ``A[q, q - 1]`` for every ``q >= 1``;
- ``duplicate_token``: ``A[q, q - L]`` for ``q`` in the second copy: attention to the earlier
  occurrence of the same token.

Each score is a mean attention probability, in [0, 1], with a 95 % bootstrap interval over the
sequences (columns ``<kind>_lo``, ``<kind>_hi``). The patterns need eager attention:
the model is switched to eager for the computation and back afterwards; the patterns are
reduced to scores inside the hook, so memory stays O(batch x heads x pos^2) for one layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from spectrascope.arch import Capability
from spectrascope.errors import SpectrascopeError
from spectrascope.mech.metrics import repeated_batch
from spectrascope.models.handle import ModelLike, as_model
from spectrascope.stats.bootstrap import DEFAULT_LEVEL, DEFAULT_N_BOOT, resample_counts
from spectrascope.trace import eager_attention, hooks
from spectrascope.trace.architectures import bind

HEAD_SCORE_KINDS: tuple[str, ...] = ("induction", "previous_token", "duplicate_token")
"""The scores :func:`head_scores` knows, in column order."""


def _check_kinds(kinds: Sequence[str] | str) -> list[str]:
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if not kinds:
        raise SpectrascopeError(f"no head score requested; choose from {', '.join(HEAD_SCORE_KINDS)}")
    unknown = [k for k in kinds if k not in HEAD_SCORE_KINDS]
    if unknown:
        raise SpectrascopeError(f"unknown head score {unknown[0]!r}; choose from {', '.join(HEAD_SCORE_KINDS)}")
    return list(dict.fromkeys(kinds))


def _query_key_pairs(kind: str, n_positions: int, length: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(queries, keys): the position pairs whose attention a score averages."""
    if kind == "previous_token":
        queries = torch.arange(1, n_positions)
        return queries, queries - 1
    queries = torch.arange(offset + length, offset + 2 * length)
    if kind == "induction":
        return queries, queries - length + 1
    return queries, queries - length  # duplicate_token


@torch.no_grad()
def head_scores(
    model: ModelLike,
    kinds: Sequence[str] = HEAD_SCORE_KINDS,
    n_seq: int = 16,
    seq_len: int = 20,
    seed: int = 0,
    batch_size: int = 8,
    prepend_bos: bool | None = None,
    n_boot: int = DEFAULT_N_BOOT,
) -> pd.DataFrame:
    """Induction, previous-token and duplicate-token scores of every attention head.

    Args:
        model: a model of a supported family with attention (anything ``as_model`` accepts:
            what ``load_model`` returns, the toy model, a Hugging Face module, a name).
        kinds: which scores (see :data:`HEAD_SCORE_KINDS` and the module docstring).
        n_seq: number of random sequences averaged over.
        seq_len: length ``L`` of the repeated random sequence (each input has [1 +] 2L tokens).
        seed: seeds the random sequences.
        batch_size: sequences per forward pass.
        prepend_bos: put the model's BOS token in front (None: as the model sees text, see
            :func:`spectrascope.mech.metrics.default_prepend_bos`).
        n_boot: bootstrap resamples of the sequences for the intervals.

    Returns:
        DataFrame, one row per (layer, head) in order, columns ``layer``, ``head``, one float
        column per requested kind (mean attention probability, 0..1) and its interval
        ``<kind>_lo``, ``<kind>_hi`` (NaN with one sequence).

    The model's attention implementation is restored afterwards (eager only inside).
    """
    kinds = _check_kinds(kinds)
    if batch_size < 1:
        raise SpectrascopeError(f"batch_size must be at least 1 (got {batch_size})")
    model = as_model(model)
    bound = bind(model)
    bound.spec.require(Capability.ATTENTION, "head scores")
    assert bound.n_heads is not None  # a model with attention has heads
    hf, n_layers, n_heads = model.hf, bound.n_layers, int(bound.n_heads)
    batch = repeated_batch(model, n_seq, seq_len, seed, prepend_bos)
    pairs = {kind: _query_key_pairs(kind, batch.n_positions, batch.length, batch.offset) for kind in kinds}
    per_seq = {kind: torch.zeros(n_seq, n_layers, n_heads, dtype=torch.float64) for kind in kinds}
    rows = slice(0, 0)

    def reduce(pattern: torch.Tensor, name: str) -> None:
        layer = int(name.split(".")[1])
        for kind, (queries, keys) in pairs.items():
            picked = pattern[:, :, queries.to(pattern.device), keys.to(pattern.device)]  # (batch, head, n_pairs)
            per_seq[kind][rows, layer] = picked.double().mean(dim=2).cpu()

    was_training = hf.training
    hf.eval()
    try:
        with eager_attention(hf), hooks(model, {"attn.hook_pattern": reduce}):
            for start in range(0, n_seq, batch_size):
                rows = slice(start, min(start + batch_size, n_seq))
                hf(input_ids=batch.input_ids[rows], use_cache=False)
    finally:
        hf.train(was_training)
    layers, heads = torch.meshgrid(torch.arange(n_layers), torch.arange(n_heads), indexing="ij")
    table = pd.DataFrame({"layer": layers.flatten().numpy(), "head": heads.flatten().numpy()})
    for kind in kinds:
        values = per_seq[kind].reshape(n_seq, -1).numpy()  # (sequences, layers x heads)
        table[kind] = values.mean(axis=0)
        table[f"{kind}_lo"], table[f"{kind}_hi"] = _intervals(values, n_boot, seed)
    return table


def _intervals(values: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of each column's mean over the rows (sequences), 95 % bootstrap over rows."""
    if values.shape[0] < 2:
        nan = np.full(values.shape[1], np.nan)
        return nan, nan
    means = resample_counts(values.shape[0], n_boot, seed) @ values / values.shape[0]  # (n_boot, columns)
    lo, hi = np.quantile(means, [(1 - DEFAULT_LEVEL) / 2, (1 + DEFAULT_LEVEL) / 2], axis=0)
    return lo, hi


def top_heads(scores: pd.DataFrame, kind: str, k: int = 5) -> pd.DataFrame:
    """The ``k`` heads with the highest ``kind`` score, best first (rows of ``scores``)."""
    if kind not in scores.columns:
        raise SpectrascopeError(f"no {kind!r} column in the head scores (columns: {', '.join(scores.columns)})")
    return scores.sort_values(kind, ascending=False, kind="stable").head(k).reset_index(drop=True)
