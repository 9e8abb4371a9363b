"""The reference batches of mean and resample ablation, built the same way by the CLI and the study.

Mean ablation replaces a component by its mean over a *reference* batch (the attention sink kept
apart, :class:`~spectrascope.mech.ablation.AblationMode`). The reference must be text the
measurement does not see, from the same distribution:

- for the induction loss (repeated random tokens): other repeated random sequences
  (:func:`other_sequences`, a different seed);
- for a corpus loss: texts from the *end* of each corpus (:func:`held_out_texts`), while the
  losses read the first texts.
"""

from __future__ import annotations

import torch

from ..activations.batching import pad_rows
from ..corpora import corpus_texts
from ..models.handle import ModelLike, as_model
from .metrics import repeated_batch

OTHER_SEQUENCES_SEED_OFFSET = 1_000_003
"""Seed offset of the reference sequences (never equal to a measured batch's seed)."""


def other_sequences(model: ModelLike, n_seq: int, seq_len: int, seed: int) -> torch.Tensor:
    """(n_seq, [1 +] 2 seq_len) repeated random sequences drawn with another seed than ``seed``."""
    return repeated_batch(model, n_seq, seq_len, seed + OTHER_SEQUENCES_SEED_OFFSET).input_ids


def held_out_texts(
    model: ModelLike, corpora: str, tokens_per_domain: int, seq_len: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """``{"input_ids", "attention_mask"}``: about ``tokens_per_domain`` tokens of texts from the
    end of each corpus in ``corpora`` (comma-separated names or paths), right-padded."""
    handle = as_model(model)
    tokenizer = handle.tokenizer
    rows: list[list[int]] = []
    for corpus in corpus_texts(corpora, seed=seed):
        total = 0
        for text in corpus.texts[::-1]:
            ids = tokenizer(text, truncation=True, max_length=seq_len)["input_ids"]
            if len(ids) >= 2:
                rows.append(list(ids))
                total += len(ids)
            if total >= tokens_per_domain:
                break
    ids, mask = pad_rows(rows, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    return {"input_ids": ids.to(handle.device), "attention_mask": mask.to(handle.device)}
