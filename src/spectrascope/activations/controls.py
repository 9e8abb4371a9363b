"""The controls beside every activation finding: a domain-free corpus, a randomized model,
and isotropic noise at the same sample size.

- :func:`random_token_batches`: sequences of ordinary tokens drawn uniformly at random (no
  special tokens), seeded: a "domain" with no domain, run through the same pass as the real ones;
- :func:`randomized_weights`: every weight matrix of the model with its entries shuffled in
  place (seeded per matrix, as weightwatcher's randomize does), restored bit for bit on exit:
  what the architecture alone, untrained, does to the activation statistics;
- :func:`isotropic_null`: the same spectrum metrics for the sample covariance of n isotropic
  Gaussian vectors in d dimensions: what sampling noise alone gives at this n / d (e.g. the
  trace-log energy of isotropic noise is ~0.36 at n/d = 1.8, and ~0.06 at n/d = 8, not 0).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ..spectra.powerlaw import EVALS_THRESHOLD
from ..trace.passes import TextBatch
from .covariance_spectra import shape_metrics

RANDOM_TOKENS = "control:random-tokens"
RANDOMIZED_WEIGHTS = "control:randomized-weights"


def random_token_batches(
    pool: torch.Tensor, max_tokens: int, seq_len: int, seed: int, rows_per_batch: int = 16
) -> Iterator[TextBatch]:
    """Batches of random texts of ``seq_len`` tokens from ``pool`` until ``max_tokens`` statistic
    tokens (the first position of each text is not a statistic token, as for real texts)."""
    generator = torch.Generator().manual_seed(int(seed))
    pool = torch.as_tensor(pool, dtype=torch.long)
    n_texts = -(-max_tokens // (seq_len - 1))
    remaining = max_tokens
    for start in range(0, n_texts, rows_per_batch):
        rows = min(rows_per_batch, n_texts - start)
        ids = pool[torch.randint(0, pool.numel(), (rows, seq_len), generator=generator)]
        mask = torch.ones_like(ids)
        stats = mask.clone()
        stats[:, 0] = 0
        for row in range(rows):  # the last text counts only what is left of the budget
            used = min(seq_len - 1, remaining)
            stats[row, 1 + used :] = 0
            remaining -= used
        yield TextBatch(ids, mask, stats, torch.arange(start, start + rows))


def _permutation(name: str, numel: int, seed: int) -> torch.Tensor:
    """The seeded permutation of a parameter's ``numel`` entries, as int32 when it fits: the
    same permutation as int64 (tested) in half the memory (the 49,152 x 576 embedding's index
    is 113 MB instead of 226 MB, held beside a copy of the matrix while it is shuffled)."""
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + zlib.crc32(name.encode()))
    dtype = torch.int32 if numel < 2**31 else torch.int64
    return torch.randperm(numel, generator=generator, dtype=dtype)


@contextmanager
def randomized_weights(model: nn.Module, seed: int = 0) -> Iterator[nn.Module]:
    """Shuffle the entries of every 2-D parameter in place for the ``with`` block; restore them
    exactly after (the same seeded permutation, inverted). Norm gains and biases are kept."""
    params = [(name, p) for name, p in model.named_parameters() if p.dim() == 2]
    done: list[tuple[str, nn.Parameter]] = []
    try:
        with torch.no_grad():
            for name, p in params:
                flat = p.data.view(-1)
                flat.copy_(flat[_permutation(name, flat.numel(), seed)])
                done.append((name, p))
        yield model
    finally:
        with torch.no_grad():
            for name, p in done:
                flat = p.data.view(-1)
                original = torch.empty_like(flat)
                original[_permutation(name, flat.numel(), seed)] = flat
                flat.copy_(original)


@lru_cache(maxsize=64)
def isotropic_null(n: int, d: int, seed: int = 0) -> dict[str, float]:
    """effective_rank, participation_ratio, top_share and trace_log_energy of the (ddof=1) sample
    covariance of n standard Gaussian vectors in d dimensions (one seeded draw)."""
    from ..spectra.metrics import trace_log_energy

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    evals = np.clip(np.linalg.eigvalsh(np.cov(X.T)), 0.0, None)
    out = shape_metrics(evals)
    positive = evals[evals > EVALS_THRESHOLD * evals.mean()]
    out["trace_log_energy"] = trace_log_energy(positive)
    return out
