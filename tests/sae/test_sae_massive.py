"""Massive-activation tokens: detected by norm against the median, dropped by the trainer."""

from __future__ import annotations

import numpy as np
import torch

from spectrascope.sae.massive import massive_mask
from spectrascope.sae.synthetic import recovery
from spectrascope.sae.train import train_sae


def test_massive_mask_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 40.0]])  # norms 1, 2, 3, 40; median 2.5
    assert massive_mask(x).tolist() == [False, False, False, True]
    assert massive_mask(x, factor=None).tolist() == [False] * 4
    assert massive_mask(x, factor=0.5).tolist() == [False, True, True, True]


def test_trainer_drops_massive_rows(planted):
    data = planted.activations[:8000].copy()
    rng = np.random.default_rng(0)
    spikes = rng.choice(len(data), 16, replace=False)
    data[spikes, 0] = 500.0  # one channel, 500x the typical norm
    sae = train_sae(data, arch="topk", d_sae=128, k=4, tokens=200_000, batch_size=256, seed=0)
    assert sae.metadata["training"]["massive_rows_skipped"] > 0
    assert recovery(planted.directions, sae.W_dec.detach().numpy()) > 0.9
    kept = train_sae(data, arch="topk", d_sae=128, k=4, tokens=20_000, batch_size=256, seed=0, massive_factor=None)
    assert kept.metadata["training"]["massive_rows_skipped"] == 0
