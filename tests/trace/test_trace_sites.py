"""Site naming, short forms, registry lookup and the errors of the tracer."""

from __future__ import annotations

import pytest
import torch
from transformers import T5Config, T5Model

from spectrascope.errors import SiteError, SpectrascopeError
from spectrascope.trace import SiteKind, eager_attention, list_sites, parse_site, run_with_cache, site_name
from spectrascope.trace.sites import expand_sites

ALL_KINDS = list(SiteKind)


def test_site_name_round_trip() -> None:
    for kind in SiteKind:
        assert parse_site(site_name(7, kind)) == (7, kind)
    assert site_name(0, SiteKind.Z) == "blocks.0.attn.hook_z"
    assert site_name(2, SiteKind.MLP_POST) == "blocks.2.mlp.hook_post"


@pytest.mark.parametrize(
    ("short", "suffix"),
    [
        ("resid_post", "hook_resid_post"),
        ("hook_resid_pre", "hook_resid_pre"),
        ("attn_out", "hook_attn_out"),
        ("hook_z", "attn.hook_z"),
        ("attn.hook_z", "attn.hook_z"),
        ("pattern", "attn.hook_pattern"),
        ("mlp_post", "mlp.hook_post"),
        ("blocks.*.hook_mlp_out", "hook_mlp_out"),
    ],
)
def test_short_forms_mean_every_layer(short: str, suffix: str) -> None:
    assert expand_sites(short, 3, ALL_KINDS) == [f"blocks.{layer}.{suffix}" for layer in range(3)]


def test_expand_keeps_order_and_drops_duplicates() -> None:
    names = expand_sites(["blocks.1.attn.hook_z", "blocks.0.hook_resid_pre", "z"], 2, ALL_KINDS)
    assert names == ["blocks.1.attn.hook_z", "blocks.0.hook_resid_pre", "blocks.0.attn.hook_z"]
    assert expand_sites(None, 1, ALL_KINDS) == [site_name(0, kind) for kind in SiteKind]


@pytest.mark.parametrize("bad", ["blocks.0.hook_nothing", "resid", "blocks.x.hook_resid_pre", "hook_attn_pattern", ""])
def test_unknown_site_names_list_the_valid_patterns(bad: str) -> None:
    with pytest.raises(SiteError, match="valid sites: blocks.{L}.hook_resid_pre"):
        expand_sites(bad, 2, ALL_KINDS)


def test_layer_out_of_range() -> None:
    with pytest.raises(SiteError, match=r"layer 5 does not exist \(the model has layers 0..1\)"):
        expand_sites("blocks.5.hook_resid_post", 2, ALL_KINDS)


def test_site_error_is_a_user_error() -> None:
    assert issubclass(SiteError, SpectrascopeError)


def test_unknown_site_on_a_model(make_model, make_ids) -> None:
    model = make_model("llama")
    with pytest.raises(SiteError, match="unknown site 'blocks.0.hook_q'"):
        run_with_cache(model, make_ids(), sites=["blocks.0.hook_q"])
    with pytest.raises(SiteError, match="layer 3 does not exist"):
        run_with_cache(model, make_ids(), sites="blocks.3.hook_resid_post")


def test_unsupported_module_is_refused() -> None:
    with pytest.raises(SiteError, match="not a Hugging Face transformer .* supported model types: bert, .*gpt2"):
        list_sites(torch.nn.Sequential(torch.nn.Linear(4, 4)))


def test_unsupported_model_type_is_refused() -> None:
    torch.manual_seed(0)
    t5 = T5Model(T5Config(vocab_size=32, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2))
    with pytest.raises(SiteError, match="model type 't5' is not supported"):
        list_sites(t5)


def test_layout_mismatch_names_the_missing_module(make_model) -> None:
    model = make_model("llama")
    del model.model.layers[1].mlp.down_proj
    with pytest.raises(SiteError, match="down_proj"):
        list_sites(model)


def test_pattern_needs_eager_attention(make_model, make_ids) -> None:
    model = make_model("llama", attn="sdpa")
    assert not any(name.endswith("hook_pattern") for name in list_sites(model))
    with pytest.raises(SiteError, match="needs eager attention.*'sdpa'.*eager_attention"):
        run_with_cache(model, make_ids(), sites="pattern")
    with eager_attention(model):
        assert "blocks.0.attn.hook_pattern" in list_sites(model)
        _, cache = run_with_cache(model, make_ids(), sites="pattern")
        assert cache["blocks.0.attn.hook_pattern"].shape == (2, 4, 9, 9)
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert", "bert_mlm", "qwen2", "qwen3", "mistral"])
def test_list_sites_covers_every_kind_and_layer(make_model, family: str) -> None:
    sites = list_sites(make_model(family))
    n_layers = make_model(family).config.num_hidden_layers
    assert sites == [site_name(layer, kind) for layer in range(n_layers) for kind in SiteKind]
