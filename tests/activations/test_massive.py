"""Massive activations and outlier channels: planted ones are found, Gaussian noise is not."""

import numpy as np
import torch

from spectrascope.activations.massive import MASSIVE_COLUMNS, ChannelStats, keep_channels, massive_table


def _stats(x: torch.Tensor, ids: torch.Tensor) -> ChannelStats:
    mask = torch.ones(ids.shape, dtype=torch.long)
    stats_mask = mask.clone()
    stats_mask[:, 0] = 0
    s = ChannelStats()
    s.update(x, mask, stats_mask, ids)
    return s


def test_gaussian_channels_are_not_flagged():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(36, 129, 64, generator=gen)
    s = _stats(x, torch.randint(0, 100, (36, 129), generator=gen))
    assert s.excluded().size == 0 and s.rows("resid_post", 0) == []


def test_planted_massive_outlier_and_sink_channels():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 50, 64, generator=gen)
    ids = torch.randint(0, 100, (20, 50), generator=gen)
    ids[:, 10] = 7
    x[:2, 10, 3] = 150.0  # massive: token 7 at position 10 of two texts (rms stays ~7x)
    x[:, :, 9] *= 15.0  # outlier: 15x the typical RMS everywhere (its max stays < 100x)
    x[:, 0, 20] = 2000.0  # sink: only the first position
    s = _stats(x, ids)
    assert s.excluded().tolist() == [3, 9]
    table = massive_table(s.rows("resid_post", 4, decode=lambda t: f"tok{t}")).set_index("channel")
    assert list(table.columns) == [c for c in MASSIVE_COLUMNS if c != "channel"]
    assert (
        table.loc[3, "kind"] == "massive" and table.loc[3, "n_fires"] == 2 and "'tok7' x2" in table.loc[3, "top_tokens"]
    )
    assert table.loc[9, "kind"] == "outlier" and table.loc[9, "rms_ratio"] > 12
    assert (
        table.loc[20, "kind"] == "sink"
        and not table.loc[20, "excluded"]
        and table.loc[20, "first_position_ratio"] > 1000
    )
    assert table.loc[3, "fire_share"] == 2 / (20 * 49)
    np.testing.assert_array_equal(keep_channels(6, np.array([1, 4])), [0, 2, 3, 5])
