"""The controls of the activation side: random-token texts."""


def test_random_token_batches_hold_exactly_the_token_budget():
    import torch

    from spectrascope.activations.controls import random_token_batches

    batches = list(random_token_batches(torch.arange(100, 200), max_tokens=50, seq_len=8, seed=0, rows_per_batch=3))
    assert sum(int(b.stats_mask.sum()) for b in batches) == 50  # 7 texts of 7 statistic tokens, then 1
    assert sum(b.input_ids.shape[0] for b in batches) == 8
    assert all(int(b.stats_mask[:, 0].sum()) == 0 for b in batches)  # the first position never counts
    assert int(batches[-1].stats_mask[-1].sum()) == 1


def test_randomized_weights_shuffle_every_matrix_and_restore_it_exactly():
    import torch
    from torch import nn

    from spectrascope.activations.controls import randomized_weights

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.LayerNorm(5), nn.Linear(5, 3, bias=False))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with randomized_weights(model, seed=3):
        for name, p in model.named_parameters():
            if p.dim() == 2:  # the same entries in another order
                assert not torch.equal(p, before[name])
                assert torch.equal(p.flatten().sort().values, before[name].flatten().sort().values)
            else:  # norm gains and biases kept
                assert torch.equal(p, before[name])
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name])


def test_the_int32_permutation_is_the_int64_one():
    """The shuffle's index is int32 to halve its memory; the permutation (hence every
    randomized-weights control value) is the one an int64 index gives."""
    import zlib

    import torch

    from spectrascope.activations.controls import _permutation

    for name, numel in (("model.embed_tokens.weight", 49152 * 576), ("w", 1000)):
        perm = _permutation(name, numel, seed=0)
        assert perm.dtype == torch.int32
        generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        assert torch.equal(perm.long(), torch.randperm(numel, generator=generator))
