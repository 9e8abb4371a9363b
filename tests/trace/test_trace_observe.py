"""Observing sites: logits untouched, and each site is the tensor its docstring says."""

from __future__ import annotations

import pytest
import torch

from spectrascope.trace import list_sites, run_with_cache
from spectrascope.trace.architectures import bind
from spectrascope.trace.tracer import model_output_tensor

FAMILIES = ["llama", "gpt2", "bert", "bert_mlm", "qwen2", "qwen3", "mistral"]
PRE_NORM = ["llama", "gpt2", "qwen2", "qwen3", "mistral"]


def _output_projection(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    """The module that maps hook_z (flattened) to hook_attn_out."""
    block = bind(model).blocks[layer]
    family = model.config.model_type
    if family == "gpt2":
        return block.attn.c_proj
    if family == "bert":
        return block.attention.output.dense
    return block.self_attn.o_proj


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_observing_every_site_leaves_logits_bit_identical(make_model, make_ids, family: str, attn: str) -> None:
    model = make_model(family, attn=attn)
    ids = make_ids()
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    for attention_mask in (None, mask):
        with torch.no_grad():
            plain = model_output_tensor(model(input_ids=ids, attention_mask=attention_mask))
        logits, cache = run_with_cache(model, ids, attention_mask=attention_mask)
        assert torch.equal(plain, logits)
        assert list(cache) == list_sites(model)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_site_has_its_shape(make_model, make_ids, family: str) -> None:
    model = make_model(family)
    batch, pos = 2, 9
    config = model.config
    d_model, n_heads = config.hidden_size, config.num_attention_heads
    d_mlp = getattr(config, "intermediate_size", None) or config.n_inner
    expected = {
        "hook_resid_pre": (batch, pos, d_model),
        "attn.hook_z": (batch, pos, n_heads, getattr(config, "head_dim", None) or d_model // n_heads),
        "attn.hook_pattern": (batch, n_heads, pos, pos),
        "hook_attn_out": (batch, pos, d_model),
        "hook_resid_mid": (batch, pos, d_model),
        "mlp.hook_post": (batch, pos, d_mlp),
        "hook_mlp_out": (batch, pos, d_model),
        "hook_resid_post": (batch, pos, d_model),
    }
    _, cache = run_with_cache(model, make_ids(batch, pos))
    assert len(cache) == len(expected) * config.num_hidden_layers
    for name, activation in cache.items():
        suffix = name.split(".", 2)[2]
        assert activation.shape == expected[suffix], name
        assert not activation.requires_grad


@pytest.mark.parametrize("family", FAMILIES)
def test_resid_post_is_the_hidden_state_of_hf(make_model, make_ids, family: str) -> None:
    model = make_model(family)
    ids = make_ids()
    _, cache = run_with_cache(model, ids, sites=["resid_pre", "resid_post"])
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    n_layers = model.config.num_hidden_layers
    assert len(hidden) == n_layers + 1
    for layer in range(n_layers):
        assert torch.equal(cache[f"blocks.{layer}.hook_resid_pre"], hidden[layer])
    # Pre-norm models report the last hidden state after the final norm (Llama's norm, GPT-2's ln_f).
    last_exact = n_layers if family.startswith("bert") else n_layers - 1
    for layer in range(last_exact):
        assert torch.equal(cache[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1])
    if not family.startswith("bert"):
        assert not torch.equal(cache[f"blocks.{n_layers - 1}.hook_resid_post"], hidden[n_layers])


@pytest.mark.parametrize("family", FAMILIES)
def test_hook_z_through_the_output_projection_is_attn_out(make_model, make_ids, family: str) -> None:
    model = make_model(family)
    _, cache = run_with_cache(model, make_ids(), sites=["hook_z", "attn_out"])
    with torch.no_grad():
        for layer in range(model.config.num_hidden_layers):
            z = cache[f"blocks.{layer}.attn.hook_z"]
            recombined = _output_projection(model, layer)(z.flatten(-2))
            torch.testing.assert_close(recombined, cache[f"blocks.{layer}.hook_attn_out"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", PRE_NORM)
def test_pre_norm_resid_mid_is_resid_pre_plus_attn_out(make_model, make_ids, family: str) -> None:
    model = make_model(family)
    _, cache = run_with_cache(model, make_ids())
    for layer in range(model.config.num_hidden_layers):
        site = f"blocks.{layer}."
        pre, mid, post = (cache[site + s] for s in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post"))
        assert torch.equal(mid, pre + cache[site + "hook_attn_out"])
        assert torch.equal(post, mid + cache[site + "hook_mlp_out"])
        torch.testing.assert_close(mid - pre, cache[site + "hook_attn_out"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["bert", "bert_mlm"])
def test_post_norm_sites_of_bert(make_model, make_ids, family: str) -> None:
    model = make_model(family)
    _, cache = run_with_cache(model, make_ids())
    for layer, block in enumerate(bind(model).blocks):
        site = f"blocks.{layer}."
        with torch.no_grad():
            mid = block.attention.output.LayerNorm(cache[site + "hook_attn_out"] + cache[site + "hook_resid_pre"])
            post = block.output.LayerNorm(cache[site + "hook_mlp_out"] + cache[site + "hook_resid_mid"])
            mlp_out = block.output.dense(cache[site + "mlp.hook_post"])
        assert torch.equal(mid, cache[site + "hook_resid_mid"])
        assert torch.equal(post, cache[site + "hook_resid_post"])
        assert torch.equal(mlp_out, cache[site + "hook_mlp_out"])


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mistral"])
def test_llama_mlp_post_is_the_gated_activation(make_model, make_ids, family: str) -> None:
    model = make_model(family)
    _, cache = run_with_cache(model, make_ids(), sites=["resid_mid", "mlp_post", "mlp_out"])
    mlp, norm = model.model.layers[1].mlp, model.model.layers[1].post_attention_layernorm
    with torch.no_grad():
        x = norm(cache["blocks.1.hook_resid_mid"])
        gated = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
        assert torch.equal(gated, cache["blocks.1.mlp.hook_post"])
        assert torch.equal(mlp.down_proj(gated), cache["blocks.1.hook_mlp_out"])


@pytest.mark.parametrize("family", FAMILIES)
def test_pattern_rows_are_probabilities(make_model, make_ids, family: str) -> None:
    model = make_model(family)
    ids = make_ids(pos=7)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    _, cache = run_with_cache(model, ids, sites="pattern", attention_mask=mask)
    for pattern in cache.values():
        torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]), rtol=0, atol=1e-6)
        assert (pattern >= 0).all()
        assert torch.all(pattern[0, :, :, 5:] == 0)  # padded keys get no attention
        if family not in ("bert", "bert_mlm"):
            assert torch.all(pattern.triu(diagonal=1) == 0)  # causal


def test_cache_is_detached_and_in_request_order(make_model, make_ids) -> None:
    model = make_model("gpt2")
    _, cache = run_with_cache(model, make_ids(), sites=["blocks.1.hook_resid_post", "blocks.0.hook_resid_pre"])
    assert list(cache) == ["blocks.1.hook_resid_post", "blocks.0.hook_resid_pre"]
    assert all(tensor.grad_fn is None for tensor in cache.values())
