"""The domain losses' clean forward kept from the activation pass: the same per-text losses and
residuals as the sweep's own forward, the same ablation rows, refused when the texts or layers
differ, recomputed when it does not match the model, and a partial or corrupt file not used."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from model_builders import minilm_llama_dir

from spectrascope.activations.batching import text_batches
from spectrascope.bridge.clean_losses import CleanLosses, loss_capture
from spectrascope.mech.ablation_sweep import CleanPass, ablation_rows
from spectrascope.mech.components import AttnBlock, MlpBlock, SpectralComponent
from spectrascope.mech.metrics import RowScores, text_loss
from spectrascope.models.loaded import load_model
from spectrascope.trace.passes import run_pass

TEXTS = [
    "A short one.",  # the first row is padded: its padding is not compared
    "",  # [CLS] [SEP]: 2 tokens, one target
    "The quick brown fox jumps over the lazy dog near the river bank today.",
    "Numbers: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22.",
    "Calendar: Monday, Tuesday, Wednesday.",
    "Another text with several words in it for the loss to read.",
    "x",
    "The end of the list of texts is here, after every other one.",
]
LOSS_TOKENS, SEQ_LEN, LAYER = 45, 16, 1


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_model(str(minilm_llama_dir(tmp_path_factory.mktemp("tiny"), n_layers=3)))


def _captured(loaded, activation_tokens: int = 400, layers=(LAYER,)):
    capture = loss_capture(loaded, TEXTS, LOSS_TOKENS, SEQ_LEN, layers)
    batches = text_batches(loaded.tokenizer, TEXTS, activation_tokens, SEQ_LEN, batch_tokens=40)
    run_pass(loaded.hf, batches, [capture])
    return capture


@pytest.fixture(scope="module")
def stored(loaded, tmp_path_factory):
    path = tmp_path_factory.mktemp("clean") / "clean.safetensors"
    CleanLosses.from_captures({"texts": _captured(loaded)}).save(path)
    return CleanLosses.load(path)


def _components():
    return [
        AttnBlock(LAYER),
        MlpBlock(LAYER),
        SpectralComponent(f"model.layers.{LAYER}.self_attn.o_proj.weight", "tail"),
    ]


def test_captured_losses_and_residuals_are_the_sweeps_own(loaded, stored):
    metric = text_loss(loaded, TEXTS, LOSS_TOKENS, SEQ_LEN, name="texts")
    assert metric.n_rows == 5  # 6 + 2 + 16 + 16 (truncated) + 10 tokens: 5 + 1 + 15 + 15 + 9 = 45 targets reached
    clean = stored.clean_pass("texts", metric, [LAYER])
    assert clean is not None
    own = metric.rows(loaded)
    np.testing.assert_allclose(clean.baseline.values, own.values, rtol=1e-5)
    np.testing.assert_array_equal(clean.baseline.weights, own.weights)
    reference = text_loss(loaded, TEXTS[::-1], 40, SEQ_LEN).input_ids
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the given pass is taken, not refused
        given = ablation_rows(loaded, _components(), metric, "mean", reference, clean=clean)
        # one group padded to the longest text: its first row (6 tokens) has padding
        padded = ablation_rows(loaded, _components(), metric, "mean", reference, clean=clean, group_lengths=False)
    computed = ablation_rows(loaded, _components(), metric, "mean", reference)
    np.testing.assert_allclose(given.baseline.values, computed.baseline.values, rtol=1e-5)
    for component in _components():
        for found in (given, padded):
            np.testing.assert_allclose(found.ablated[component].values, computed.ablated[component].values, rtol=1e-5)
        assert not torch.allclose(given.ablated[component].values, given.baseline.values)
    marked = CleanPass(RowScores(clean.baseline.values + 1e-6, clean.baseline.weights), clean.resid)
    used = ablation_rows(loaded, _components()[:1], metric, "mean", reference, clean=marked)
    assert torch.equal(used.baseline.values, marked.baseline.values)  # taken, not computed again


def test_other_texts_layers_or_domains_get_no_clean_pass(loaded, stored):
    metric = text_loss(loaded, TEXTS, LOSS_TOKENS, SEQ_LEN, name="texts")
    assert stored.clean_pass("other", metric, [LAYER]) is None
    assert stored.clean_pass("texts", metric, [LAYER, 2]) is None  # layer 2 was not kept
    shifted = text_loss(loaded, TEXTS[2:], LOSS_TOKENS, SEQ_LEN, name="texts")
    assert stored.clean_pass("texts", shifted, [LAYER]) is None
    longer = text_loss(loaded, TEXTS, 2 * LOSS_TOKENS, SEQ_LEN, name="texts")
    assert stored.clean_pass("texts", longer, [LAYER]) is None


def test_a_loss_over_the_first_captured_texts_gets_their_rows(loaded, stored):
    full = stored.clean_pass("texts", text_loss(loaded, TEXTS, LOSS_TOKENS, SEQ_LEN, name="texts"), [LAYER])
    shorter = text_loss(loaded, TEXTS, 20, SEQ_LEN, name="texts")  # a smaller budget of the same texts
    assert full is not None and shorter.n_rows == 3
    clean = stored.clean_pass("texts", shorter, [LAYER])
    assert clean is not None
    torch.testing.assert_close(clean.baseline.values, full.baseline.values[:3], rtol=0, atol=0)
    width = shorter.input_ids.shape[1]
    torch.testing.assert_close(clean.resid[LAYER], full.resid[LAYER][:3, :width], rtol=0, atol=0)
    np.testing.assert_allclose(clean.baseline.values, shorter.rows(loaded).values, rtol=1e-5)


def test_a_clean_pass_that_does_not_match_the_model_is_computed_again(loaded, stored):
    metric = text_loss(loaded, TEXTS, LOSS_TOKENS, SEQ_LEN, name="texts")
    clean = stored.clean_pass("texts", metric, [LAYER])
    assert clean is not None
    clean.resid[LAYER][0, 1] += 1.0  # another model's residual
    reference = text_loss(loaded, TEXTS[::-1], 40, SEQ_LEN).input_ids
    with pytest.warns(RuntimeWarning, match="does not match"):
        given = ablation_rows(loaded, _components(), metric, "mean", reference, clean=clean)
    computed = ablation_rows(loaded, _components(), metric, "mean", reference)
    for component in _components():
        np.testing.assert_allclose(given.ablated[component].values, computed.ablated[component].values, rtol=1e-6)


def test_a_text_cut_by_the_pass_leaves_its_domain_out(loaded, tmp_path):
    capture = _captured(loaded, activation_tokens=30)  # the pass stops inside the loss texts
    assert not capture.complete()
    kept = CleanLosses.from_captures({"texts": capture, "all": _captured(loaded)})
    assert list(kept.domains) == ["all"]


def test_a_missing_or_corrupt_file_is_no_clean_pass(tmp_path):
    assert CleanLosses.load(tmp_path / "absent.safetensors") is None
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert CleanLosses.load(bad) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CleanLosses.load(tmp_path / "absent.safetensors") is None
