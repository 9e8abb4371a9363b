"""Logit lens and patching on the real SmolLM2-135M (integration: needs the bundled model).

Prompt pair: "The capital of France is" / "The capital of Italy is" (5 tokens each, differing
only at position 3), metric: logit(" Paris") - logit(" Rome") at the last position. Measured
(float32, CPU): clean +7.31, corrupted -6.02; patching ``hook_resid_pre`` of the subject position
restores the clean logit difference fully (effect 0.99 to 1.02) in layers 0 to 23, after which the
information has moved to the last position (effect there 0.99 to 1.00 from layer 24 on).
Head sweep: head 23.4 alone restores 0.93 (exact) / 1.09 (attribution); attribution vs exact
Spearman 0.999 on layers 23, 24, 29 (0.991 over all 270 heads).

The model is loaded once per module with ``load_model`` (its GGUF conversion is cached under
SPECTRASCOPE_CACHE, ~/.cache/spectrascope by default).
"""

from __future__ import annotations

import pytest
import torch

from spectrascope.mech.attribution import attribution_sweep_heads, compare_attribution
from spectrascope.mech.logit_lens import encode_prompt, lens_logits, logit_lens
from spectrascope.mech.patching import (
    logit_diff,
    patch_sweep_heads,
    patch_sweep_layers_positions,
)

pytestmark = pytest.mark.integration

CLEAN, CORRUPTED = "The capital of France is", "The capital of Italy is"
SUBJECT = 3  # " France" / " Italy"


@pytest.fixture(scope="module")
def smol():
    from spectrascope.models.loaded import load_model

    return load_model("smollm2-135m")


@pytest.fixture(scope="module")
def metric(smol):
    paris, rome = (smol.tokenizer(t, add_special_tokens=False)["input_ids"] for t in (" Paris", " Rome"))
    assert len(paris) == len(rome) == 1
    return logit_diff(paris[0], rome[0])


def test_lens_at_the_last_layer_is_the_models_next_token_distribution(smol):
    ids = encode_prompt(smol, CLEAN)
    assert ids.shape == (1, 5)
    _, lens, logits = lens_logits(smol, ids)  # logits: the model's output of that forward (hooks only observe)
    own = torch.softmax(logits[0].float(), dim=-1)
    assert (torch.softmax(lens[-1].float(), dim=-1) - own).abs().max() < 1e-5
    df = logit_lens(smol, CLEAN, targets=[" Paris", " Rome"], k=5)
    last = df[df["layer"] == 29]
    expected = [float(own[p, t]) for p, t in zip(last["position"], last["token_id"])]
    assert last["prob"].tolist() == pytest.approx(expected, abs=1e-5)
    answer = last[(last["position"] == 4) & (last["kind"] == "top") & (last["rank"] == 0)].iloc[0]
    assert answer["token"] == " Paris"
    paris = df[(df["kind"] == "target") & (df["token"] == " Paris") & (df["position"] == 4)].set_index("layer")
    assert paris.loc[29, "rank"] == 0 and paris.loc[10, "rank"] > 100  # the answer appears late


def test_subject_position_carries_the_answer_until_it_moves_to_the_last_position(smol, metric):
    df = patch_sweep_layers_positions(smol, CLEAN, CORRUPTED, "resid_pre", metric=metric, layers=[0, 8, 16, 29])
    effect = df.set_index(["layer", "position"])["effect"]
    assert df.attrs["clean_metric"] > 3 and df.attrs["corrupted_metric"] < -3
    for layer in (0, 8, 16):
        assert effect[layer, SUBJECT] > 0.9
    assert effect[29, 4] > 0.9 and abs(effect[29, SUBJECT]) < 0.1
    assert (df[df["position"] < SUBJECT]["effect"] == 0).all()  # identical prefix: nothing to patch


def test_head_attribution_ranks_like_exact_patching_and_batching_changes_nothing(smol, metric):
    layers = [23, 24, 29]
    exact = patch_sweep_heads(smol, CLEAN, CORRUPTED, metric=metric, layers=layers)
    estimate = attribution_sweep_heads(smol, CLEAN, CORRUPTED, metric=metric, layers=layers)
    assert len(exact) == 27
    assert compare_attribution(exact, estimate) > 0.9
    top = exact.loc[exact["effect"].abs().idxmax()]
    top_estimate = estimate.loc[estimate["effect"].abs().idxmax()]
    assert (top["layer"], top["head"]) == (top_estimate["layer"], top_estimate["head"])
    assert top["effect"] > 0.5
    unbatched = patch_sweep_heads(smol, CLEAN, CORRUPTED, metric=metric, layers=[23, 29], heads=[0, 4], batch_size=1)
    batched = exact.set_index(["layer", "head"]).loc[[(23, 0), (23, 4), (29, 0), (29, 4)]]
    assert batched["delta"].tolist() == pytest.approx(unbatched["delta"].tolist(), abs=1e-3)
