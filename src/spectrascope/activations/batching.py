"""Token batches from a list of texts, with a token budget: the one place texts become batches.

Each text is tokenized on its own (truncated to ``seq_len``), texts are grouped into padded
batches of at most ``batch_tokens`` (rows x longest row), and a ``stats_mask`` marks the
tokens that enter the statistics: every real token but the first of each sequence (the
first position of a causal LM carries a huge, text-independent activation, the attention
sink, that would dominate every covariance) unless ``skip_first=False``. Iteration stops
once ``max_tokens`` statistic tokens have been yielded. Every row remembers which text it is
(``text_index``), so statistics can be kept per text and bootstrapped over texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch

from ..errors import CorpusError, InputError, OptionError
from ..trace.passes import TextBatch


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask), each (len(rows), longest row), from token-id lists."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def length_chunks(valid: torch.Tensor, max_tokens: int) -> list[tuple[torch.Tensor, int]]:
    """Rows of a padded batch grouped by length, so no forward pays for another text's padding.

    Args:
        valid: (batch, pos) attention mask (nonzero = a real token).
        max_tokens: most rows x width per chunk (a chunk holds at least one row).
    Returns:
        (row indices, width) per chunk, rows sorted by length: ``ids[rows, :width]`` is the
        chunk. Widths are trimmed to the chunk's longest row only when every row is
        right-padded (its real tokens a prefix); otherwise each chunk keeps the full width.
    """
    valid = valid.bool()
    lengths = valid.sum(dim=1)
    positions = torch.arange(valid.shape[1], device=valid.device)
    right_padded = bool((valid == (positions[None, :] < lengths[:, None])).all())
    order = torch.argsort(lengths.cpu(), stable=True)
    chunks: list[tuple[torch.Tensor, int]] = []
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order):
            width = int(lengths[order[stop]]) if right_padded else valid.shape[1]
            if width * (stop + 1 - start) > max_tokens:
                break
            stop += 1
        rows = order[start:stop]
        width = max(1, int(lengths[rows].max())) if right_padded else valid.shape[1]
        chunks.append((rows, width))
        start = stop
    return chunks


def text_batches(
    tokenizer,
    texts: Sequence[str],
    max_tokens: int,
    seq_len: int = 128,
    batch_tokens: int = 2048,
    skip_first: bool = True,
    by_length: bool = False,
) -> Iterator[TextBatch]:
    """Yield :class:`TextBatch` es over ``texts`` until ``max_tokens`` statistic tokens.

    The texts are taken in order until the budget is spent (the last one cut to fit). With
    ``by_length``, those same texts are batched shortest first, so a batch pads its rows to a
    similar length: on the study's short-text domains (5 to 20 tokens) a pass in text order
    computes 1.4-1.7x its real tokens (geography: 8,833 positions for 5,079 tokens), by length
    1.15-1.22x. Every statistic kept per text or summed over tokens is the same either way (up to
    float rounding); what depends on the order of the rows is the caller's (e.g. the first tokens
    of a pass: use the text index, :func:`first_tokens`).

    Raises:
        OptionError: max_tokens < 1. InputError: no tokenizer. CorpusError: no tokens at all.
    """
    if max_tokens < 1:
        raise OptionError(f"the token budget must be at least 1 (got {max_tokens})")
    if tokenizer is None:
        raise InputError("this model has no tokenizer: cannot tokenize a corpus")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    items = _budgeted_texts(tokenizer, texts, max_tokens, seq_len, skip_first)
    if by_length:
        items = iter(sorted(items, key=lambda item: len(item[1])))
    produced = False
    pending: list[tuple[int, list[int]]] = []
    for item in items:
        widest = max([len(item[1])] + [len(r) for _, r in pending])
        if pending and widest * (len(pending) + 1) > batch_tokens:
            yield _batch(pending, pad_id, skip_first)
            produced = True
            pending = []
        pending.append(item)
    if pending:
        yield _batch(pending, pad_id, skip_first)
        produced = True
    if not produced:
        raise CorpusError("the corpus produced no tokens")


def _budgeted_texts(
    tokenizer, texts: Sequence[str], max_tokens: int, seq_len: int, skip_first: bool
) -> Iterator[tuple[int, list[int]]]:
    """(text index, token ids) of the texts in order until ``max_tokens`` statistic tokens (the
    last text cut to fit; texts without a statistic token skipped), tokenized 64 at a time."""
    remaining = max_tokens
    texts = list(texts)
    for start in range(0, len(texts), 64):
        encoded = tokenizer(texts[start : start + 64], truncation=True, max_length=seq_len)["input_ids"]
        for offset, ids in enumerate(encoded):
            usable = len(ids) - (1 if skip_first else 0)
            if usable <= 0:
                continue
            if usable > remaining:
                ids = ids[: remaining + (1 if skip_first else 0)]
                usable = remaining
            yield start + offset, list(ids)
            remaining -= usable
            if remaining == 0:
                return


def _batch(items: list[tuple[int, list[int]]], pad_id: int, skip_first: bool) -> TextBatch:
    ids, mask = pad_rows([r for _, r in items], pad_id)
    stats = mask.clone()
    if skip_first:
        stats[:, 0] = 0
    return TextBatch(ids, mask, stats, torch.tensor([i for i, _ in items], dtype=torch.long))


def first_tokens(batches: Iterable[TextBatch], max_tokens: int) -> dict[int, int]:
    """Text index -> how many of its statistic tokens are among the first ``max_tokens`` of the
    texts in index order (whatever order the batches hold them in); texts beyond are absent."""
    counts: dict[int, int] = {}
    for batch in batches:
        for text, n in zip(batch.text_index.tolist(), batch.stats_mask.sum(dim=1).tolist(), strict=True):
            counts[int(text)] = counts.get(int(text), 0) + int(n)
    allowance, left = {}, max_tokens
    for text in sorted(counts):
        if left <= 0:
            break
        allowance[text] = min(counts[text], left)
        left -= allowance[text]
    return allowance


def token_batches(
    tokenizer,
    texts: Sequence[str],
    max_tokens: int,
    seq_len: int = 128,
    batch_tokens: int = 2048,
    skip_first: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """:func:`text_batches` as dicts with input_ids, attention_mask and stats_mask (batch, pos)."""
    for batch in text_batches(tokenizer, texts, max_tokens, seq_len, batch_tokens, skip_first):
        yield {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "stats_mask": batch.stats_mask}
