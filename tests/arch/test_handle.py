"""One model handle: what load_model returns, a bare Hugging Face model, the toy model and a
name all become one handle; a state-space model stays graceful."""

from __future__ import annotations

import types

import pytest
import torch
from family_models import LAYERS, ids, mamba, model

from spectrascope.errors import ArchitectureError, SiteError, SpectrascopeError
from spectrascope.mech.ablation import ablate
from spectrascope.mech.ablation_sweep import ablation_sweep
from spectrascope.mech.head_scores import head_scores
from spectrascope.mech.logit_lens import lens_logits
from spectrascope.mech.metrics import NextTokenLoss
from spectrascope.models.handle import ModelHandle, as_model, device_of
from spectrascope.models.loaded import LoadedModel, load_model
from spectrascope.trace import list_sites, run_with_cache
from spectrascope.trace.resume import forward_from_layer, resumable
from spectrascope.trace.tracer import model_output_tensor
from spectrascope.weights.api import analyze_heads, analyze_weights


def test_every_kind_of_model_becomes_one_handle():
    hf = model("llama2")
    bare = as_model(hf)
    assert isinstance(bare, ModelHandle) and bare.hf is hf and bare.tokenizer is None and bare.spec.name == "llama"
    assert as_model(bare) is bare
    wrapped = as_model(types.SimpleNamespace(hf=hf, tokenizer="tok", name="wrapped"))
    assert (wrapped.hf, wrapped.tokenizer, wrapped.name) == (hf, "tok", "wrapped")
    assert bare.device == device_of(hf) == torch.device("cpu")
    assert device_of(torch.nn.Identity()) == torch.device("cpu")


def test_the_toy_model_by_name_is_a_loaded_model():
    toy = load_model("toy-induction")
    assert isinstance(toy, LoadedModel) and toy.name == "toy-induction" and toy.tokenizer is None
    handle = as_model("toy-induction")
    assert handle.spec.name == "llama" and handle.bos_token_id == 0 and handle.token_ids is not None
    logits, cache = run_with_cache(toy, toy.repeated_tokens(2, 5), "resid_post")
    assert logits.shape == (2, 11, 64) and len(cache) == 2
    assert len(list_sites(handle)) == 2 * 8


def test_run_with_cache_and_list_sites_take_what_load_model_returns():
    smol = load_model("smollm2-135m")
    sites = list_sites(smol)
    assert len(sites) == 30 * 8 and sites[0] == "blocks.0.hook_resid_pre"
    batch = smol.tokenize(["The capital of France is"])
    logits, cache = run_with_cache(smol, batch["input_ids"], "blocks.29.hook_resid_post")
    with torch.no_grad():
        assert torch.equal(logits, smol.hf(**batch).logits)
    assert cache["blocks.29.hook_resid_post"].shape == (1, batch["input_ids"].shape[1], 576)


@pytest.mark.parametrize("bad", [42, None, "no-such-model-anywhere"])
def test_what_is_not_a_model_is_one_line(bad):
    with pytest.raises(SpectrascopeError) as info:
        as_model(bad)
    assert "\n" not in str(info.value)


def test_an_unknown_family_gets_a_handle_and_a_clear_line_when_it_matters():
    from transformers import T5Config, T5Model

    torch.manual_seed(0)
    t5 = T5Model(T5Config(vocab_size=32, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2))
    handle = as_model(t5)
    assert not handle.has_spec
    with pytest.raises(ArchitectureError, match="model type 't5' is not supported"):
        _ = handle.spec
    with pytest.raises(SiteError, match="model type 't5' is not supported"):
        run_with_cache(t5, torch.zeros(1, 3, dtype=torch.long))
    assert len(analyze_weights(t5, min_evals=1)) > 0  # weights still analyzed (roles 'other')


# ----------------------------------------------------------------------------- a state-space model


def test_mamba_weight_spectra_have_their_roles():
    table = analyze_weights(mamba(), min_evals=1)
    roles = set(table.loc[table["block"] >= 0, "role"])
    assert {"ssm_in", "ssm_x", "ssm_dt", "ssm_out"} <= roles
    assert table.loc[table["name"] == "backbone.embeddings.weight", "role"].item() == "embed"


def test_mamba_residual_sites_lens_and_resume():
    m, x = mamba(), ids()
    assert list_sites(m) == [f"blocks.{L}.{k}" for L in range(LAYERS) for k in ("hook_resid_pre", "hook_resid_post")]
    with torch.no_grad():
        plain = model_output_tensor(m(input_ids=x))
    logits, cache = run_with_cache(m, x)
    assert torch.equal(plain, logits)
    _, lens, own = lens_logits(m, x[:1])
    assert torch.equal(lens[-1], own[0])
    assert resumable(m)
    with torch.no_grad():
        resumed = forward_from_layer(m, 1, cache["blocks.1.hook_resid_pre"])
    torch.testing.assert_close(resumed, logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "call",
    [
        lambda m: analyze_heads(m),
        lambda m: head_scores(m, n_seq=2, seq_len=4),
        lambda m: ablation_sweep(m, "all", NextTokenLoss(ids())),
        lambda m: ablate(m, "0.0").__enter__(),
        lambda m: run_with_cache(m, ids(), "z"),
        lambda m: run_with_cache(m, ids(), "blocks.0.attn.hook_pattern"),
    ],
)
def test_mamba_refuses_what_needs_attention_in_one_line(call):
    with pytest.raises(SpectrascopeError, match="without attention") as info:
        call(mamba())
    assert "\n" not in str(info.value)
