"""The controls of the activation side: random-token texts."""


def test_random_token_batches_hold_exactly_the_token_budget():
    import torch

    from spectrascope.activations.controls import random_token_batches

    batches = list(random_token_batches(torch.arange(100, 200), max_tokens=50, seq_len=8, seed=0, rows_per_batch=3))
    assert sum(int(b.stats_mask.sum()) for b in batches) == 50  # 7 texts of 7 statistic tokens, then 1
    assert sum(b.input_ids.shape[0] for b in batches) == 8
    assert all(int(b.stats_mask[:, 0].sum()) == 0 for b in batches)  # the first position never counts
    assert int(batches[-1].stats_mask[-1].sum()) == 1
