"""Quality metrics on known answers: an SAE that reconstructs exactly (explained variance 1,
loss recovered 1), one that outputs zeros (loss recovered 0), hand-made arrays; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectrascope.sae.base import SaeError
from spectrascope.sae.evaluate import QUALITY_COLUMNS, evaluate_sae
from spectrascope.sae.registry import build_sae

SITE = "blocks.1.hook_resid_post"


def exact_sae(d: int):
    """ReLU SAE with features +e_j and -e_j: x = ReLU(x) - ReLU(-x) is reconstructed exactly."""
    sae = build_sae("relu", d, 2 * d)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def zero_sae(d: int):
    sae = build_sae("relu", d, 4)
    with torch.no_grad():
        for p in sae.parameters():
            p.zero_()
    return sae


def test_exact_reconstruction_recovers_all_the_loss(tiny):
    df = evaluate_sae(exact_sae(32), tiny, site=SITE, corpus="calendar,arithmetic", tokens=200, n_boot=20)
    assert list(df.columns) == QUALITY_COLUMNS and df["domain"].tolist() == ["calendar", "arithmetic", "all"]
    assert np.allclose(df["explained_variance"], 1.0, atol=1e-5)
    assert np.allclose(df["ce_increase"], 0.0, atol=1e-5)
    assert np.allclose(df["loss_recovered"], 1.0, atol=1e-3)
    assert (df["loss_zero"] != df["loss_clean"]).all()
    assert (df["n_tokens"].iloc[:2] == 200).all() and df["n_tokens"].iloc[2] == 400


def test_zero_output_recovers_none_of_the_loss(tiny):
    df = evaluate_sae(zero_sae(32), tiny, site=SITE, corpus="calendar,arithmetic", tokens=200, n_boot=20)
    assert np.allclose(df["loss_sae"], df["loss_zero"], atol=1e-6)
    assert np.allclose(df["loss_recovered"], 0.0, atol=1e-6)
    assert (df["dead_fraction"] == 1.0).all() and (df["l0"] == 0).all()
    row = df.iloc[-1]
    assert row["ce_increase_lo"] <= row["ce_increase"] <= row["ce_increase_hi"]


def test_array_metrics_by_hand():
    sae = exact_sae(2)
    x = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [3.0, 0.0]], dtype=np.float32)
    row = evaluate_sae(sae, activations=x).iloc[0]
    assert row["mse"] == pytest.approx(0.0) and row["explained_variance"] == pytest.approx(1.0)
    assert row["l0"] == pytest.approx(0.75)  # 1 + 1 + 0 + 1 active features over 4 tokens
    assert row["dead_fraction"] == pytest.approx(0.5)  # -e_1 and -e_2 never fire
    assert row["dense_fraction"] == pytest.approx(0.5)  # +e_1 fires on 2/4, +e_2 on 1/4 > 0.1
    row = evaluate_sae(zero_sae(2), activations=x).iloc[0]
    # sse = 1 + 4 + 9 = 14; mean (1, 0.5): sst = 14 - 4 * (1 + 0.25) = 9
    assert row["mse"] == pytest.approx(14 / 4) and row["explained_variance"] == pytest.approx(1 - 14 / 9)


def test_width_mismatch_and_missing_site(tiny):
    with pytest.raises(SaeError, match="d_in = 8 but blocks.1.hook_resid_post of this model has width 32"):
        evaluate_sae(exact_sae(8), tiny, site=SITE, corpus="calendar")
    with pytest.raises(SaeError, match="no site given"):
        evaluate_sae(exact_sae(16), tiny, corpus="calendar")
    with pytest.raises(SaeError, match="not both"):
        evaluate_sae(exact_sae(16))


def test_edits_leave_first_position_padding_and_massive_tokens_alone(tiny):
    from spectrascope.sae.sites import bind_site

    binding = bind_site(tiny, exact_sae(32), SITE)
    activation = torch.ones(1, 6, 32)
    activation[0, 3] *= 1000.0  # a massive-activation token
    keep = torch.tensor([[False, True, True, True, True, False]])  # sink and padding excluded
    edited = binding.edit(torch.zeros_like, [keep])(activation, SITE)
    assert torch.equal(edited[0, [0, 3, 5]], activation[0, [0, 3, 5]])
    assert torch.equal(edited[0, [1, 2, 4]], torch.zeros(3, 32))


def test_edited_forwards_resumed_after_the_site_equal_full_forwards(tiny, monkeypatch):
    """At blocks.0 of the 2-layer model the SAE-spliced and zero-ablated forwards start at block
    1 from the clean residual; they must give the losses of full forwards with the site hooked."""
    from spectrascope.sae import evaluate

    torch.manual_seed(0)
    sae = build_sae("relu", 32, 64)  # random weights: a lossy reconstruction
    site = "blocks.0.hook_resid_post"
    resumed = evaluate_sae(sae, tiny, site=site, corpus="calendar,arithmetic", tokens=120, n_boot=20)
    calls = []
    monkeypatch.setattr(evaluate, "resume_layer", lambda binding: calls.append(binding) or None)
    full = evaluate_sae(sae, tiny, site=site, corpus="calendar,arithmetic", tokens=120, n_boot=20)
    assert calls  # the second run took the full forwards
    assert (resumed["loss_sae"] - resumed["loss_clean"]).abs().min() > 1e-3  # the edit matters
    for column in ("loss_clean", "loss_sae", "loss_zero"):
        np.testing.assert_allclose(resumed[column], full[column], rtol=1e-5, atol=1e-6)
