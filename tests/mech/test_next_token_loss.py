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
