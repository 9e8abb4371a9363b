"""Streaming moments: equal to the moments of all vectors stacked, whatever the split."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spectrascope.errors import SiteError, SpectrascopeError
from spectrascope.trace import RunningMoments, accumulate_site_moments, run_with_cache

RTOL = 1e-10


def _assert_relatively_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    assert actual.dtype == torch.float64
    scale = expected.abs().max().clamp_min(1e-300)
    assert float((actual - expected).abs().max() / scale) <= rtol


def _vectors(n: int, d: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=generator)
    return (torch.randn(n, d, generator=generator) @ mixing + 3.0).float()  # correlated, off-centre, float32


@settings(max_examples=30, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6),
    seed=st.integers(min_value=0, max_value=2**16),
    ddof=st.sampled_from([0, 1]),
)
def test_covariance_is_independent_of_the_batch_split(cuts: list[int], seed: int, ddof: int) -> None:
    vectors = _vectors(200, 8, seed)
    moments = RunningMoments()
    bounds = [0, *sorted(cuts), 200]
    for start, stop in itertools.pairwise(bounds):
        moments.update(vectors[start:stop])
    stacked = vectors.double()
    assert moments.count == 200
    _assert_relatively_close(moments.mean, stacked.mean(0))
    _assert_relatively_close(moments.covariance(ddof=ddof), torch.cov(stacked.T, correction=ddof))
    _assert_relatively_close(moments.sum_outer, stacked.T @ stacked)


@settings(max_examples=20, deadline=None)
@given(split=st.integers(min_value=0, max_value=120), seed=st.integers(min_value=0, max_value=2**16))
def test_merge_equals_one_pass(split: int, seed: int) -> None:
    vectors = _vectors(120, 5, seed)
    left, right = RunningMoments(), RunningMoments(dim=5)
    left.update(vectors[:split])
    right.update(vectors[split:])
    whole = RunningMoments().update(vectors)
    merged = left.merge(right)
    assert merged is left and merged.count == 120
    _assert_relatively_close(merged.covariance(), whole.covariance())
    _assert_relatively_close(merged.mean, whole.mean)


def test_mask_skips_rows_and_leading_dims_are_flattened() -> None:
    vectors = _vectors(24, 6, seed=4).reshape(2, 12, 6)  # (batch, pos, d)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, 9:] = 0
    mask[1, :2] = 0
    moments = RunningMoments().update(vectors, mask)
    kept = vectors[mask.bool()].double()
    assert moments.count == kept.shape[0] == 19
    _assert_relatively_close(moments.covariance(), torch.cov(kept.T))
    _assert_relatively_close(moments.second_moment(), kept.T @ kept / 19)


def test_errors() -> None:
    with pytest.raises(SpectrascopeError, match="no vectors"):
        _ = RunningMoments().mean
    with pytest.raises(SpectrascopeError, match="too few"):
        RunningMoments().update(torch.ones(1, 3)).covariance(ddof=1)
    with pytest.raises(SpectrascopeError, match="width 3 got vectors of width 4"):
        RunningMoments(dim=3).update(torch.ones(2, 4))
    with pytest.raises(SpectrascopeError, match="mask shape"):
        RunningMoments().update(torch.ones(2, 5, 3), torch.ones(2, 4))
    with pytest.raises(SpectrascopeError, match="cannot merge"):
        RunningMoments(dim=3).merge(RunningMoments().update(torch.ones(2, 4)))


def _padded_batches(make_ids) -> list[dict[str, torch.Tensor]]:
    """Three batches of different shapes, with right padding and left padding."""
    batches = []
    for seed, (batch, pos, pad_row, pad_from) in enumerate([(2, 9, 1, 5), (3, 6, 0, 2), (1, 11, None, None)]):
        ids = make_ids(batch, pos, seed=seed)
        mask = torch.ones_like(ids)
        if pad_row is not None:
            mask[pad_row, pad_from:] = 0
        if batch == 3:
            mask[2, :3] = 0  # left padding
        batches.append({"input_ids": ids, "attention_mask": mask})
    return batches


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_site_moments_equal_stacked_activations_without_padding(make_model, make_ids, family: str) -> None:
    model = make_model(family)
    sites = ["resid_pre", "blocks.1.attn.hook_z", "blocks.2.mlp.hook_post", "hook_resid_post"]
    batches = _padded_batches(make_ids)
    moments = accumulate_site_moments(model, batches, sites)
    stacked: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        _, cache = run_with_cache(
            model, batch["input_ids"], sites=sites, attention_mask=batch["attention_mask"], use_cache=False
        )  # as the pass runs it (the cache changes the mask path)
        keep = batch["attention_mask"].bool()
        for name, activation in cache.items():
            stacked.setdefault(name, []).append(
                activation.flatten(start_dim=2)[keep] if activation.dim() == 4 else activation[keep]
            )
    assert set(moments) == set(stacked)
    n_tokens = sum(int(batch["attention_mask"].sum()) for batch in batches)
    for name, parts in stacked.items():
        vectors = torch.cat(parts).double()
        assert moments[name].count == n_tokens
        _assert_relatively_close(moments[name].mean, vectors.mean(0))
        _assert_relatively_close(moments[name].covariance(), torch.cov(vectors.T))
    d_model = model.config.hidden_size
    assert moments["blocks.1.attn.hook_z"].dim == d_model  # heads flattened: n_heads * d_head


def test_site_moments_accept_tensors_and_pairs(make_model, make_ids) -> None:
    model = make_model("llama")
    ids = make_ids(3, 5)
    from_tensor = accumulate_site_moments(model, [ids], "blocks.0.hook_mlp_out")
    from_pair = accumulate_site_moments(model, [(ids, None)], "blocks.0.hook_mlp_out")
    from_mapping = accumulate_site_moments(model, iter([{"input_ids": ids}]), "blocks.0.hook_mlp_out")
    counts = {m["blocks.0.hook_mlp_out"].count for m in (from_tensor, from_pair, from_mapping)}
    assert counts == {15}
    site = "blocks.0.hook_mlp_out"
    assert torch.equal(from_tensor[site].sum_outer, from_mapping[site].sum_outer)


def test_site_moments_refuse_patterns_and_bad_batches(make_model, make_ids, no_hooks) -> None:
    model = make_model("llama")
    with pytest.raises(SiteError, match="attention probabilities"):
        accumulate_site_moments(model, [make_ids()], "pattern")
    with pytest.raises(SiteError, match="a batch must be"):
        accumulate_site_moments(model, [[1, 2, 3]], "resid_post")
    assert no_hooks(model)
    everything = accumulate_site_moments(model, [make_ids()], None)
    assert len(everything) == 7 * model.config.num_hidden_layers


def test_without_a_part_equals_the_moments_of_the_rest() -> None:
    """Moments of rows 0..9 without rows 6..9 (merged in earlier) are the moments of rows 0..5."""
    x = torch.randn(10, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    part = RunningMoments().update(x[6:])
    total = RunningMoments().update(x[:6]).merge(part)
    rest = total.without(part)
    assert rest.count == 6
    torch.testing.assert_close(rest.covariance(), torch.cov(x[:6].T), rtol=1e-10, atol=1e-12)
    assert total.count == 10  # the total is unchanged
    with pytest.raises(SpectrascopeError):
        total.without(total)
