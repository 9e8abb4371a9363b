"""The bridge: dictionary spectra vs random init, a planted spike of a writing matrix found in
its tail (share 1 vs the random-direction control), feature removal that cannot change the
loss (a feature that never fires) and one that must."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectrascope.sae.bridge import (
    ABLATION_COLUMNS,
    dictionary_spectra,
    feature_ablation,
    feature_tail_overlap,
    site_matrices,
)
from spectrascope.sae.registry import build_sae
from spectrascope.sae.sites import bind_site


def test_dictionary_spectra_trained_and_random(planted):
    from spectrascope.sae.train import train_sae

    sae = train_sae(planted.activations, arch="topk", d_sae=64, k=4, tokens=20_000, batch_size=256)
    table, esds = dictionary_spectra(sae)
    assert table[["matrix", "weights"]].values.tolist() == [
        ["W_dec", "trained"],
        ["W_enc", "trained"],
        ["W_dec", "random init"],
        ["W_enc", "random init"],
    ]
    assert (table["N"] == 64).all() and (table["M"] == 32).all()
    assert np.isclose(esds[("W_dec", "trained")].sum(), 64.0)  # unit rows: trace of W^T W = d_sae
    assert not np.allclose(esds[("W_dec", "trained")], esds[("W_dec", "random init")])


def test_planted_spike_direction_lies_in_the_writing_tail(tiny, monkeypatch):
    """o_proj gets three planted singular directions; the tail is fixed to them (the power-law
    fit of a 32-value spectrum is not what is under test here, the overlap arithmetic is)."""
    import dataclasses

    from spectrascope.sae import bridge

    real = bridge.matrix_subspaces
    monkeypatch.setattr(bridge, "matrix_subspaces", lambda W: dataclasses.replace(real(W), n_tail=3))
    sae = build_sae("topk", 32, 8, k=2, seed=0)
    o_proj = tiny.hf.model.layers[1].self_attn.o_proj
    saved = o_proj.weight.detach().clone()
    g = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(32, 32, generator=g))
    V, _ = torch.linalg.qr(torch.randn(32, 32, generator=g))
    s = torch.cat([torch.tensor([40.0, 30.0, 20.0]), 0.5 + 0.02 * torch.arange(29, dtype=torch.float32)])
    try:
        with torch.no_grad():
            o_proj.weight.copy_(U @ torch.diag(s) @ V.T)
            sae.W_dec[0] = U[:, 0]
            sae.W_dec[1] = U[:, 1]
        binding = bind_site(tiny, sae, "blocks.1.hook_resid_post")
        matrices = site_matrices(binding)
        assert {(m["relation"], m["role"]) for m in matrices} == {("writes", "o"), ("writes", "mlp_down")}  # last layer
        table = feature_tail_overlap(binding, {"planted": [0, 1]}, n_random=500, n_boot=200)
    finally:
        with torch.no_grad():
            o_proj.weight.copy_(saved)
    row = table[(table["role"] == "o") & (table["part"] == "tail")].iloc[0]
    assert row["k"] == 3
    assert row["share"] == pytest.approx(1.0, abs=1e-5)
    assert row["random_share"] == pytest.approx(3 / 32, abs=0.02)
    assert row["enrichment_lo"] > 3
    bulk = table[(table["role"] == "o") & (table["part"] == "bulk")].iloc[0]
    assert bulk["share"] == pytest.approx(0.0, abs=1e-5)


def test_feature_removal_damage(tiny, detector):
    sae = detector("+")
    binding = bind_site(tiny, sae, "blocks.0.hook_resid_pre")
    table = feature_ablation(
        binding,
        {"calendar": [0], "arithmetic": [0]},
        live_features=[0, 1, 2, 3],
        loss_tokens=200,
        n_random=2,
        components={"arithmetic": ["0.1"]},
    )
    assert list(table.columns) == ABLATION_COLUMNS
    features = table[table["kind"] == "features"].set_index("domain")
    assert features.loc["calendar", "damage"] == 0.0  # never fires on calendar text
    assert abs(features.loc["arithmetic", "damage"]) > 1e-6  # removes the "+" embedding's projection
    random = table[table["kind"] == "random features"]
    assert (random["damage"] == 0.0).all()  # features 1-3 never fire
    assert table[table["kind"] == "head"]["intervention"].tolist() == ["head:0.1"]


def test_feature_removal_damage_has_paired_intervals_over_texts(tiny, detector):
    sae = detector("+")
    binding = bind_site(tiny, sae, "blocks.0.hook_resid_pre")
    table = feature_ablation(binding, {"arithmetic": [0]}, live_features=[0, 1, 2, 3], loss_tokens=400, n_random=2)
    features = table[table["kind"] == "features"].iloc[0]
    assert features["n_texts"] >= 2
    assert features["damage_lo"] <= features["damage"] <= features["damage_hi"]
    assert features["loss"] == pytest.approx(features["baseline"] + features["damage"])
    # the random features never fire, so the excess over the control is the damage itself, text by text
    assert features["excess"] == pytest.approx(features["damage"])
    assert (features["excess_lo"], features["excess_hi"]) == pytest.approx(
        (features["damage_lo"], features["damage_hi"])
    )


@pytest.mark.parametrize(
    ("site", "resumed_at"),
    [("blocks.0.hook_resid_pre", 0), ("blocks.0.hook_resid_post", 1), ("blocks.0.hook_attn_out", None)],
)
def test_feature_removal_resumed_after_the_site_equals_the_hooked_full_forward(tiny, site, resumed_at):
    """Removal scores resumed from the cached clean residual equal a full forward with the edit
    hooked at the site; a site off the residual stream runs full forwards."""
    from spectrascope.mech.metrics import corpus_loss
    from spectrascope.sae.bridge import FeatureRemovalScores, _keep_mask
    from spectrascope.trace import hooks

    torch.manual_seed(1)
    sae = build_sae("relu", 32, 16)
    binding = bind_site(tiny, sae, site)
    metric = corpus_loss(tiny, "arithmetic", max_tokens=200, seq_len=32)
    scorer = FeatureRemovalScores(binding, metric)
    assert scorer._layer == resumed_at
    features = [0, 3, 5, 9]

    def remove(x):
        codes = sae.encode(x)[:, features]
        return x - codes @ sae.W_dec[features]

    with hooks(tiny.hf, {binding.site: binding.edit(remove, [_keep_mask(metric)])}), torch.no_grad():
        logits = tiny.hf(**metric.forward_kwargs(tiny.hf), use_cache=False).logits
    expected = metric.row_scores(logits).detached().values.numpy()
    removed = scorer.removed(features)
    np.testing.assert_allclose(removed, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(removed - scorer.clean[0]).max() > 1e-4  # the removal changes the loss


def test_grouped_removal_scores_equal_one_padded_batch(tiny):
    """Geography texts of different lengths: run in length groups, the clean and removed
    per-text losses equal the one padded batch's, in the batch's text order."""
    from spectrascope.mech.ablation_sweep import length_groups
    from spectrascope.mech.metrics import corpus_loss
    from spectrascope.sae.bridge import FeatureRemovalScores, GroupedRemovalScores

    torch.manual_seed(2)
    sae = build_sae("relu", 32, 16)
    binding = bind_site(tiny, sae, "blocks.0.hook_resid_post")
    metric = corpus_loss(tiny, "geography", max_tokens=300, seq_len=32)
    assert len(length_groups(metric)) > 1
    grouped, padded = GroupedRemovalScores(binding, metric), FeatureRemovalScores(binding, metric)
    for got, want in zip(grouped.clean, padded.clean, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grouped.removed([1, 4, 7]), padded.removed([1, 4, 7]), rtol=1e-5, atol=1e-6)


def test_removal_scores_take_a_matching_clean_pass_and_recompute_a_wrong_one(tiny):
    """A clean forward computed elsewhere (per-text losses and the residual at the resume block)
    is taken, group by group, when it matches the model, and gives the same removals; one that
    does not match is refused with a warning and the clean forward run again."""
    import warnings

    from spectrascope.mech.ablation_sweep import CleanPass
    from spectrascope.mech.metrics import RowScores, corpus_loss
    from spectrascope.sae.bridge import GroupedRemovalScores
    from spectrascope.trace import run_with_cache

    torch.manual_seed(3)
    sae = build_sae("relu", 32, 16)
    binding = bind_site(tiny, sae, "blocks.0.hook_resid_post")
    metric = corpus_loss(tiny, "geography", max_tokens=300, seq_len=32)
    _, cache = run_with_cache(
        tiny.hf, metric.input_ids, ["blocks.1.hook_resid_pre"], attention_mask=metric.attention_mask
    )
    own = metric.rows(tiny)
    marked = CleanPass(RowScores(own.values + 1e-6, own.weights), {1: cache["blocks.1.hook_resid_pre"]})
    computed = GroupedRemovalScores(binding, metric)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = GroupedRemovalScores(binding, metric, marked)
    np.testing.assert_array_equal(given.clean[0], marked.baseline.values.numpy())  # taken, not computed again
    np.testing.assert_allclose(given.removed([1, 4, 7]), computed.removed([1, 4, 7]), rtol=1e-5, atol=1e-6)
    wrong = CleanPass(own, {1: cache["blocks.1.hook_resid_pre"].clone()})
    wrong.resid[1][:, 1] += 1.0  # another model's residual
    with pytest.warns(RuntimeWarning, match="does not match"):
        refused = GroupedRemovalScores(binding, metric, wrong)
    np.testing.assert_allclose(refused.clean[0], computed.clean[0], rtol=0, atol=0)
    np.testing.assert_allclose(refused.removed([1, 4, 7]), computed.removed([1, 4, 7]), rtol=1e-5, atol=1e-6)
