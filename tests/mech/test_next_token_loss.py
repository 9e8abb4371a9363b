"""Metrics: the next-token loss's per-position negative log-likelihood."""

import math

import pytest
import torch
import torch.nn.functional as F

from spectrascope.mech.metrics import NLL_CHUNK_ROWS, token_nll


def test_token_nll_by_hand():
    # two equal logits: -log(1/2); one logit 2 larger (e^2 / (e^2 + 1)) picked and not picked
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0], [2.0, 0.0]])
    got = token_nll(logits, torch.tensor([0, 0, 1]))
    expected = [math.log(2), math.log1p(math.exp(-2)), 2 + math.log1p(math.exp(-2))]
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n", [1, NLL_CHUNK_ROWS - 1, NLL_CHUNK_ROWS, NLL_CHUNK_ROWS + 1, 3 * NLL_CHUNK_ROWS + 7])
def test_token_nll_in_chunks_equals_one_cross_entropy_bit_for_bit(n):
    generator = torch.Generator().manual_seed(n)
    logits = torch.randn(n, 1000, generator=generator) * 4
    targets = torch.randint(0, 1000, (n,), generator=generator)
    got = token_nll(logits, targets)
    assert got.shape == (n,)
    assert torch.equal(got, F.cross_entropy(logits, targets, reduction="none"))


def test_loss_texts_count_target_tokens(tiny):
    """Texts of 5, 2 and 6 tokens ([CLS] ... [SEP]) score 4, 1 and 5 targets: a budget of 5 takes
    two texts (4 + 1), a budget of 6 three; a text of one token (none to score) is skipped."""
    from spectrascope.mech.metrics import loss_texts

    texts = ["a b c", "", "d e f g"]
    assert [len(tiny.tokenizer(t)["input_ids"]) for t in texts] == [5, 2, 6]
    assert [i for i, _ in loss_texts(tiny.tokenizer, texts, 5, 16)] == [0, 1]
    assert [i for i, _ in loss_texts(tiny.tokenizer, texts, 6, 16)] == [0, 1, 2]
    assert [i for i, _ in loss_texts(tiny.tokenizer, texts, 4, 16)] == [0]
