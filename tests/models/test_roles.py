"""Requirement 4: (block, role) of every 2-D weight for Llama, GPT-2, GPT-NeoX and BERT, head
geometry (GQA), and unknown architectures (role 'other', block read from the name)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_builders import tiny_bert, tiny_gpt2, tiny_llama, tiny_neox
from safetensors.torch import save_file

from spectrascope.models.open_source import open_source
from spectrascope.models.roles import ROLES, family, head_geometry, tensor_role
from spectrascope.weights.api import analyze_weights

# Expected roles, written out by hand from each architecture's module names.
LLAMA_BLOCK = {
    "self_attn.q_proj": "q",
    "self_attn.k_proj": "k",
    "self_attn.v_proj": "v",
    "self_attn.o_proj": "o",
    "mlp.gate_proj": "mlp_gate",
    "mlp.up_proj": "mlp_up",
    "mlp.down_proj": "mlp_down",
}
GPT2_BLOCK = {"attn.c_attn": "qkv", "attn.c_proj": "o", "mlp.c_fc": "mlp_in", "mlp.c_proj": "mlp_out"}
NEOX_BLOCK = {
    "attention.query_key_value": "qkv",
    "attention.dense": "o",
    "mlp.dense_h_to_4h": "mlp_in",
    "mlp.dense_4h_to_h": "mlp_out",
}
BERT_BLOCK = {
    "attention.self.query": "q",
    "attention.self.key": "k",
    "attention.self.value": "v",
    "attention.output.dense": "o",
    "intermediate.dense": "mlp_in",
    "output.dense": "mlp_out",
}


def _expected_llama() -> dict[str, tuple[int, str]]:
    out = {"model.embed_tokens.weight": (-1, "embed"), "lm_head.weight": (-1, "unembed")}
    for b in range(2):
        out.update({f"model.layers.{b}.{m}.weight": (b, r) for m, r in LLAMA_BLOCK.items()})
    return out


def _expected_gpt2() -> dict[str, tuple[int, str]]:
    out = {"transformer.wte.weight": (-1, "embed"), "transformer.wpe.weight": (-1, "other")}
    for b in range(2):
        out.update({f"transformer.h.{b}.{m}.weight": (b, r) for m, r in GPT2_BLOCK.items()})
    return out


def _expected_neox() -> dict[str, tuple[int, str]]:
    # transformers 5 names the output projection lm_head (Pythia checkpoints on disk: embed_out)
    out = {"gpt_neox.embed_in.weight": (-1, "embed"), "lm_head.weight": (-1, "unembed")}
    for b in range(2):
        out.update({f"gpt_neox.layers.{b}.{m}.weight": (b, r) for m, r in NEOX_BLOCK.items()})
    return out


def _expected_bert() -> dict[str, tuple[int, str]]:
    out = {
        "bert.embeddings.word_embeddings.weight": (-1, "embed"),
        "bert.embeddings.position_embeddings.weight": (-1, "other"),
        "bert.embeddings.token_type_embeddings.weight": (-1, "other"),
        "cls.predictions.transform.dense.weight": (-1, "other"),
    }
    for b in range(2):
        out.update({f"bert.encoder.layer.{b}.{m}.weight": (b, r) for m, r in BERT_BLOCK.items()})
    return out


CASES = {
    "llama": (tiny_llama, _expected_llama),
    "gpt2": (tiny_gpt2, _expected_gpt2),
    "gpt_neox": (tiny_neox, _expected_neox),
    "bert": (tiny_bert, _expected_bert),
}


@pytest.mark.parametrize("arch", list(CASES))
def test_every_matrix_gets_its_role(arch):
    build, expected = CASES[arch]
    model = build()
    config = model.config.to_dict()
    assert family(config) == arch
    matrices = {n: p for n, p in model.named_parameters() if p.ndim == 2}
    got = {n: tensor_role(n, config) for n in matrices}
    assert got == expected()
    assert all(role in ROLES for _, role in got.values())


@pytest.mark.parametrize("arch", list(CASES))
def test_analysis_table_carries_roles(arch):
    build, expected = CASES[arch]
    df = analyze_weights(build())
    vectors = df["reason"].str.startswith("1-D tensor", na=False)
    assert (df.loc[vectors, "status"] == "skipped").all()  # norms and biases: a skipped row each
    df = df[~vectors]
    assert dict(zip(df["name"], zip(df["block"].astype(int), df["role"]))) == expected()


def test_role_of_tied_bert_decoder_and_llama_names_with_other_prefixes():
    bert = tiny_bert().config.to_dict()
    assert tensor_role("cls.predictions.decoder.weight", bert) == (-1, "unembed")
    assert tensor_role("encoder.layer.3.attention.self.query.weight", bert) == (3, "q")  # BertModel names
    neox = tiny_neox().config.to_dict()
    assert tensor_role("embed_out.weight", neox) == (-1, "unembed")  # name in Pythia checkpoints
    llama = tiny_llama().config.to_dict()
    assert tensor_role("model.layers.12.self_attn.o_proj.weight", llama) == (12, "o")
    assert tensor_role("model.layers.0.input_layernorm.weight", llama) == (0, "other")


@pytest.mark.parametrize("model_type", ["qwen2", "mistral"])
def test_llama_family_members_use_llama_roles(model_type):
    config = {"model_type": model_type}
    assert tensor_role("model.layers.5.mlp.gate_proj.weight", config) == (5, "mlp_gate")
    assert tensor_role("model.layers.5.self_attn.k_proj.weight", config) == (5, "k")


# ----------------------------------------------------------------------------- geometry


def test_gqa_head_geometry():
    geom = head_geometry(tiny_llama().config.to_dict())
    assert (geom.n_heads, geom.n_kv_heads, geom.head_dim, geom.d_model) == (4, 2, 16, 64)
    assert geom.group_size == 2


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "bert"])
def test_mha_head_geometry(arch):
    geom = head_geometry(CASES[arch][0]().config.to_dict())
    assert (geom.n_heads, geom.n_kv_heads, geom.head_dim, geom.d_model) == (4, 4, 16, 64)
    assert geom.group_size == 1


def test_head_geometry_from_plain_dicts():
    geom = head_geometry({"num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576})
    assert (geom.n_heads, geom.n_kv_heads, geom.head_dim, geom.group_size) == (9, 3, 64, 3)
    assert head_geometry({"num_attention_heads": 8, "hidden_size": 64, "head_dim": 32}).head_dim == 32
    assert head_geometry({}) is None
    assert head_geometry({"model_type": "mystery", "hidden_size": 64}) is None


# ----------------------------------------------------------------------------- unknown architecture


def test_unknown_architecture_every_matrix_is_other_with_block_from_name(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "stem.proj.weight": torch.randn(48, 32, generator=g),
        "backbone.layers.0.mixer.in_proj.weight": torch.randn(64, 32, generator=g),
        "backbone.layers.1.mixer.out_proj.weight": torch.randn(32, 64, generator=g),
        "model.layers.2.self_attn.q_proj.weight": torch.randn(32, 32, generator=g),  # llama-like name
        "blocks.7.ff.weight": torch.randn(40, 32, generator=g),
        "h.3.thing.weight": torch.randn(32, 24, generator=g),
        "backbone.layers.0.norm.weight": torch.randn(32, generator=g),  # 1-D: not a matrix
    }
    config = {"model_type": "mystery", "hidden_size": 32}
    assert family(config) is None
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))

    assert open_source(tmp_path).config()["model_type"] == "mystery"
    df = analyze_weights(tmp_path)
    assert df.set_index("name").loc["backbone.layers.0.norm.weight", "status"] == "skipped"
    df = df[df["status"] != "skipped"]
    expected = {
        "stem.proj.weight": -1,
        "backbone.layers.0.mixer.in_proj.weight": 0,
        "backbone.layers.1.mixer.out_proj.weight": 1,
        "model.layers.2.self_attn.q_proj.weight": 2,
        "blocks.7.ff.weight": 7,
        "h.3.thing.weight": 3,
    }
    assert dict(zip(df["name"], df["block"].astype(int))) == expected
    assert set(df["role"]) == {"other"}
    assert (df["status"] == "success").all()
    assert np.isfinite(df["alpha"]).all()
