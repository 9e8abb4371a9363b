"""Attribution patching: equal to exact patching where the metric is linear in the patched site,
row-aligned with the exact sweeps, and harmless to the model.

Linear cases (float64 models):

- the micro model of test_patching (one block, uniform attention, no MLP, identity norms): its
  logits are linear in the embeddings, so every position and every head is a linear site;
- a random 3-layer Llama whose final RMSNorm is replaced by ``nn.Identity``: the last-position
  logits are ``W_U resid_post`` = ``W_U (resid_mid + mlp_out)`` of the last block, linear in its
  ``hook_resid_post`` and ``hook_mlp_out``; with the last block's MLP also zeroed (down_proj = 0)
  they are ``W_U (resid_pre + attn_out)``, linear in ``hook_resid_mid``, ``hook_attn_out`` and
  ``attn.hook_z`` (through o_proj) too.
  Earlier layers (attention softmax, RMSNorms, SiLU) are not linear and are not compared.
  With Llama's own final RMSNorm nothing is linear, which is why the norm is removed.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
from test_patching import CLEAN, CORRUPTED, METRIC, micro_llama, tiny_llama
from torch import nn

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.attribution import (
    attribution_sweep_heads,
    attribution_sweep_layers_positions,
    compare_attribution,
    patching_comparison,
)
from spectrascope.mech.patching import (
    logit_diff,
    patch_sweep_heads,
    patch_sweep_layers_positions,
)


def identity_norm_llama(zero_last_mlp: bool) -> nn.Module:
    """3-layer random Llama, final norm = identity; optionally the last block's MLP output = 0."""
    model = tiny_llama(n_layers=3)
    model.model.norm = nn.Identity()
    if zero_last_mlp:
        with torch.no_grad():
            model.model.layers[2].mlp.down_proj.weight.zero_()
    return model


def linear_last_block_llama() -> nn.Module:
    """The model of the module docstring: linear in every site of its last block."""
    return identity_norm_llama(zero_last_mlp=True)


def test_attribution_equals_exact_patching_on_the_micro_model():
    model = micro_llama()
    exact = patch_sweep_layers_positions(model, CLEAN, CORRUPTED, "resid_pre", metric=METRIC)
    estimate = attribution_sweep_layers_positions(model, CLEAN, CORRUPTED, "resid_pre", metric=METRIC)
    assert estimate[["site", "layer", "position"]].equals(exact[["site", "layer", "position"]])
    assert estimate["delta"].tolist() == pytest.approx(exact["delta"].tolist(), abs=1e-10)
    assert estimate["effect"].tolist() == pytest.approx(exact["effect"].tolist(), abs=1e-10)
    heads_exact = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC)
    heads_estimate = attribution_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC)
    assert heads_estimate["delta"].tolist() == pytest.approx(heads_exact["delta"].tolist(), abs=1e-10)


@pytest.mark.parametrize(
    "site_kind, zero_last_mlp",
    [("resid_mid", True), ("attn_out", True), ("z", True), ("mlp_out", False), ("resid_post", False)],
)
def test_attribution_equals_exact_patching_at_a_linear_site(site_kind, zero_last_mlp):
    # mlp_out and resid_post are added after the last MLP: linear with the MLP intact
    model = identity_norm_llama(zero_last_mlp)
    exact = patch_sweep_layers_positions(model, CLEAN, CORRUPTED, site_kind, metric=METRIC, layers=[2])
    estimate = attribution_sweep_layers_positions(model, CLEAN, CORRUPTED, site_kind, metric=METRIC, layers=[2])
    assert estimate["delta"].tolist() == pytest.approx(exact["delta"].tolist(), abs=1e-10)
    assert exact["delta"].abs().max() > 1e-3  # a real effect, not 0 == 0


def test_head_attribution_equals_exact_patching_in_the_linear_last_block():
    model = linear_last_block_llama()
    exact = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC)
    estimate = attribution_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC)
    last = exact["layer"] == 2
    assert estimate[last]["delta"].tolist() == pytest.approx(exact[last]["delta"].tolist(), abs=1e-10)
    for position in (2, -1):
        one_exact = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC, layers=[2], position=position)
        one_estimate = attribution_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC, layers=[2], position=position)
        assert one_estimate["delta"].tolist() == pytest.approx(one_exact["delta"].tolist(), abs=1e-10)


def test_attribution_is_only_first_order_at_nonlinear_sites():
    model = tiny_llama()
    exact = patch_sweep_layers_positions(model, CLEAN, CORRUPTED, "resid_pre", metric=METRIC)
    estimate = attribution_sweep_layers_positions(model, CLEAN, CORRUPTED, "resid_pre", metric=METRIC)
    assert (estimate["delta"] - exact["delta"]).abs().max() > 1e-6  # an estimate, not a copy
    assert (estimate[estimate["position"] < 2]["delta"] == 0).all()  # clean == corrupted there


def test_compare_attribution_is_the_spearman_correlation_of_matching_rows():
    exact = pd.DataFrame({"layer": [0, 0, 1, 1], "head": [0, 1, 0, 1], "effect": [0.1, 0.2, 0.3, 0.4]})
    estimate = pd.DataFrame({"layer": [1, 1, 0, 0], "head": [1, 0, 1, 0], "effect": [3.0, 4.0, 2.0, 1.0]})
    # matched on (layer, head): exact 0.1 0.2 0.3 0.4 vs estimate 1 2 4 3 -> 1 - 6 * 2 / (4 * 15) = 0.8
    assert compare_attribution(exact, estimate) == pytest.approx(0.8)
    positions = exact.rename(columns={"head": "position"})
    assert compare_attribution(positions, positions) == pytest.approx(1.0)
    assert math.isnan(compare_attribution(exact.head(1), estimate))
    with pytest.raises(SpectrascopeError, match="cannot match"):
        compare_attribution(exact.drop(columns="head"), estimate)


@pytest.mark.parametrize("sweep, key", [("heads", "head"), ("layers_positions", "position")])
def test_patching_comparison_merges_both_tables(sweep, key):
    model = tiny_llama()
    merged = patching_comparison(model, CLEAN, CORRUPTED, metric=METRIC, sweep=sweep, site_kind="attn_out")
    assert list(merged.columns) == [
        "site",
        "layer",
        key,
        "effect_exact",
        "effect_attribution",
        "delta_exact",
        "delta_attribution",
    ]
    assert len(merged) == (12 if sweep == "heads" else 18)
    exact = merged[["layer", key, "effect_exact"]].rename(columns={"effect_exact": "effect"})
    estimate = merged[["layer", key, "effect_attribution"]].rename(columns={"effect_attribution": "effect"})
    assert merged.attrs["spearman"] == pytest.approx(compare_attribution(exact, estimate))
    assert merged.attrs["seconds_exact"] > 0 and merged.attrs["seconds_attribution"] > 0
    assert merged.attrs["clean_metric"] != merged.attrs["corrupted_metric"]


def test_attribution_writes_no_parameter_gradients_and_no_hooks():
    model = tiny_llama()
    with torch.no_grad():  # the caller's no_grad does not stop the backward pass it needs
        attribution_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC)
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_attribution_works_on_a_frozen_model():
    model = linear_last_block_llama()
    model.requires_grad_(False)
    exact = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC, layers=[2])
    estimate = attribution_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC, layers=[2])
    assert estimate["delta"].tolist() == pytest.approx(exact["delta"].tolist(), abs=1e-10)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: attribution_sweep_heads(m, CLEAN, CLEAN[:3], metric=METRIC), "same token length"),
        (
            lambda m: attribution_sweep_layers_positions(m, CLEAN, CORRUPTED, metric=METRIC, layers=[3]),
            "layer 3 out of range",
        ),
        (lambda m: attribution_sweep_heads(m, CLEAN, CORRUPTED, metric=METRIC, position=9), "position 9 out of range"),
        (
            lambda m: attribution_sweep_heads(m, CLEAN, CORRUPTED, metric=lambda lg: lg[:, -1].argmax(-1).double()),
            "differentiable",
        ),
        (lambda m: patching_comparison(m, CLEAN, CORRUPTED, metric=METRIC, sweep="diagonal"), "unknown sweep"),
        (
            lambda m: attribution_sweep_layers_positions(m, CLEAN, CORRUPTED, metric=logit_diff(5, 5)),
            "the same on the clean",
        ),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    model = tiny_llama()
    with pytest.raises(SpectrascopeError, match=message):
        call(model)
