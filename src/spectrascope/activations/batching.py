"""Token batches from a list of texts, with a token budget.

Each text is tokenized on its own (truncated to ``seq_len``), texts are grouped into padded
batches of at most ``batch_tokens`` (rows x longest row), and a ``stats_mask`` marks the
tokens that enter the statistics: every real token but the first of each sequence (the
first position of a causal LM carries a huge, text-independent activation, the attention
sink, that would dominate every covariance) unless ``skip_first=False``. Iteration stops
once ``max_tokens`` statistic tokens have been yielded.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import CorpusError, SpectrascopeError


def token_batches(
    tokenizer,
    texts: list[str],
    max_tokens: int,
    seq_len: int = 128,
    batch_tokens: int = 2048,
    skip_first: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield dicts with input_ids, attention_mask (batch, pos) and stats_mask (batch, pos).

    Raises:
        SpectrascopeError: max_tokens < 1 or no tokenizer; CorpusError: no tokens at all.
    """
    if max_tokens < 1:
        raise SpectrascopeError(f"max-tokens must be at least 1 (got {max_tokens})")
    if tokenizer is None:
        raise SpectrascopeError("this model has no tokenizer: cannot tokenize a corpus")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    remaining = max_tokens
    pending: list[list[int]] = []

    def flush(rows: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        stats = mask.clone()
        if skip_first:
            stats[:, 0] = 0
        return {"input_ids": ids, "attention_mask": mask, "stats_mask": stats}

    produced = False
    for start in range(0, len(texts), 64):
        encoded = tokenizer(texts[start : start + 64], truncation=True, max_length=seq_len)["input_ids"]
        for ids in encoded:
            usable = len(ids) - (1 if skip_first else 0)
            if usable <= 0:
                continue
            if usable > remaining:
                ids = ids[: remaining + (1 if skip_first else 0)]
                usable = remaining
            widest = max([len(ids)] + [len(r) for r in pending])
            if pending and widest * (len(pending) + 1) > batch_tokens:
                yield flush(pending)
                produced = True
                pending = []
            pending.append(ids)
            remaining -= usable
            if remaining == 0:
                yield flush(pending)
                return
    if pending:
        yield flush(pending)
        produced = True
    if not produced:
        raise CorpusError("the corpus produced no tokens")
