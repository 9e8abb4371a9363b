"""Requirement 2: a GGUF written like llama.cpp's converter reads back under HF names, HF shapes
and HF row order (q/k rotary permutation undone), and analyzes exactly like safetensors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from model_builders import gguf_name, llama_cpp_permute, tiny_llama, write_hf_dir, write_llama_gguf
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from spectrascope.models.gguf_names import hf_name, rotary_permute, unpermute_rotary
from spectrascope.models.open_source import open_source
from spectrascope.models.roles import tensor_role
from spectrascope.weights.api import analyze_heads, analyze_weights

EXPECTED_HF_NAMES = {
    "model.embed_tokens.weight",
    "model.norm.weight",
    *(
        f"model.layers.{b}.{m}.weight"
        for b in range(2)
        for m in [
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
            "input_layernorm",
            "post_attention_layernorm",
        ]
    ),
}


# ----------------------------------------------------------------------------- permutation


@pytest.mark.parametrize("n_heads,head_dim,d_in", [(4, 16, 64), (2, 16, 64), (3, 8, 10), (1, 2, 5)])
def test_rotary_permute_is_llama_cpp_permutation_and_unpermute_inverts_it(n_heads, head_dim, d_in):
    W = np.random.default_rng(0).standard_normal((n_heads * head_dim, d_in)).astype(np.float32)
    P = rotary_permute(W, n_heads)
    np.testing.assert_array_equal(P, llama_cpp_permute(W, n_heads))
    assert P.shape == W.shape
    if head_dim > 2:
        assert not np.array_equal(P, W)  # it really moves rows
    np.testing.assert_array_equal(unpermute_rotary(P, n_heads), W)
    np.testing.assert_array_equal(rotary_permute(unpermute_rotary(W, n_heads), n_heads), W)


def test_rotary_permute_interleaves_the_halves_of_each_head():
    # head_dim 4, 2 heads: rows [h0: 0 1 | 2 3, h1: 4 5 | 6 7] -> [0 2 1 3, 4 6 5 7]
    W = np.arange(8, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(rotary_permute(W, 2)[:, 0], [0, 2, 1, 3, 4, 6, 5, 7])
    np.testing.assert_array_equal(unpermute_rotary(rotary_permute(W, 2), 2)[:, 0], np.arange(8))


def test_rotary_permute_works_on_bias_vectors():
    b = np.arange(32, dtype=np.float32)
    np.testing.assert_array_equal(unpermute_rotary(rotary_permute(b, 4), 4), b)


@pytest.mark.parametrize(
    "gguf,hf",
    [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output.weight", "lm_head.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
        ("blk.11.attn_k.weight", "model.layers.11.self_attn.k_proj.weight"),
        ("blk.1.attn_v.weight", "model.layers.1.self_attn.v_proj.weight"),
        ("blk.1.attn_output.weight", "model.layers.1.self_attn.o_proj.weight"),
        ("blk.2.ffn_gate.weight", "model.layers.2.mlp.gate_proj.weight"),
        ("blk.2.ffn_up.weight", "model.layers.2.mlp.up_proj.weight"),
        ("blk.2.ffn_down.weight", "model.layers.2.mlp.down_proj.weight"),
        ("blk.3.attn_norm.weight", "model.layers.3.input_layernorm.weight"),
        ("blk.3.ffn_norm.weight", "model.layers.3.post_attention_layernorm.weight"),
    ],
)
def test_hf_name_mapping(gguf, hf):
    assert hf_name(gguf, "llama") == hf
    assert gguf_name(hf) == gguf  # the test's own writer mapping agrees


# ----------------------------------------------------------------------------- the GGUF source


def test_gguf_reports_hf_names(llama_gguf):
    path, _, _ = llama_gguf
    names = [i.name for i in open_source(path).tensors()]
    assert set(names) == EXPECTED_HF_NAMES
    assert len(names) == len(EXPECTED_HF_NAMES)
    assert not any(n.startswith(("blk.", "token_embd", "output")) for n in names)


def test_gguf_reports_hf_out_in_shapes(llama_gguf):
    path, state, _model = llama_gguf
    shapes = {i.name: i.shape for i in open_source(path).tensors()}
    assert shapes == {k: v.shape for k, v in state.items()}
    # spelled out: Linear weights are (out, in); k/v are narrower than q under GQA
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == (64, 64)
    assert shapes["model.layers.0.self_attn.k_proj.weight"] == (32, 64)
    assert shapes["model.layers.0.mlp.up_proj.weight"] == (128, 64)
    assert shapes["model.layers.0.mlp.down_proj.weight"] == (64, 128)
    assert shapes["model.embed_tokens.weight"] == (120, 64)
    assert shapes["model.norm.weight"] == (64,)


def test_gguf_dtypes_and_config(llama_gguf):
    path, _, _ = llama_gguf
    source = open_source(path)
    assert {i.dtype for i in source.tensors()} == {"F32"}
    cfg = source.config()
    assert cfg["model_type"] == "llama"
    assert cfg["num_hidden_layers"] == 2
    assert cfg["hidden_size"] == 64
    assert cfg["intermediate_size"] == 128
    assert cfg["num_attention_heads"] == 4
    assert cfg["num_key_value_heads"] == 2
    assert cfg["max_position_embeddings"] == 64
    assert cfg["tie_word_embeddings"] is True


def test_gguf_tensors_equal_hf_tensors_exactly(llama_gguf):
    path, _, model = llama_gguf
    source = open_source(path)
    hf = {k: v.detach().numpy() for k, v in model.named_parameters()}
    assert set(hf) == {i.name for i in source.tensors()}
    for name, W in hf.items():
        loaded = source.load(name)
        assert loaded.dtype == np.float32 and loaded.shape == W.shape, name
        np.testing.assert_array_equal(loaded, W, err_msg=name)


def test_gguf_untied_output_maps_to_lm_head(tmp_path):
    model = tiny_llama(tied=False)
    path = tmp_path / "untied.gguf"
    write_llama_gguf(path, model)
    source = open_source(path)
    assert source.config()["tie_word_embeddings"] is False
    np.testing.assert_array_equal(source.load("lm_head.weight"), model.lm_head.weight.detach().numpy())
    assert tensor_role("lm_head.weight", source.config()) == (-1, "unembed")


def test_gguf_and_safetensors_copies_analyze_identically(llama_gguf, tmp_path):
    path, state, model = llama_gguf
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    folder = write_hf_dir(tmp_path / "copy", tensors, model.config.to_dict())
    # Row order follows each file's tensor order (GGUF: writer order; safetensors: the
    # library lists keys sorted by name), so compare the rows keyed by name.
    from_gguf = analyze_weights(path).sort_values("name").reset_index(drop=True)
    from_st = analyze_weights(folder).sort_values("name").reset_index(drop=True)
    assert list(from_gguf["name"]) == list(from_st["name"])
    assert len(from_gguf) == 2 * 7 + 1 + 2 * 2 + 1  # 7 matrices per block + the (tied) embedding + norm vectors
    assert (from_gguf["status"] == "success").sum() == 2 * 7 + 1
    assert set(from_gguf["status"]) == {"success", "skipped"}
    np.testing.assert_array_equal(from_gguf["alpha"].to_numpy(), from_st["alpha"].to_numpy())
    pd.testing.assert_frame_equal(from_gguf, from_st)


def test_gguf_roles_follow_hf_names(llama_gguf):
    path, _, _ = llama_gguf
    df = analyze_weights(path)
    roles = dict(zip(df["name"], zip(df["block"], df["role"])))
    assert roles["model.layers.1.self_attn.q_proj.weight"] == (1, "q")
    assert roles["model.layers.0.self_attn.k_proj.weight"] == (0, "k")
    assert roles["model.layers.0.mlp.gate_proj.weight"] == (0, "mlp_gate")
    assert roles["model.embed_tokens.weight"] == (-1, "embed")


def test_gguf_two_workers_equal_one_worker(llama_gguf):
    path, _, _ = llama_gguf
    pd.testing.assert_frame_equal(analyze_weights(path, workers=2), analyze_weights(path, workers=1))


def test_gguf_and_safetensors_copies_give_identical_head_spectra(llama_gguf, tmp_path):
    # Per-head slices depend on the row order of q and k: this fails if the unpermutation is off.
    path, state, model = llama_gguf
    folder = write_hf_dir(tmp_path / "copy", {k: torch.from_numpy(v) for k, v in state.items()}, model.config.to_dict())
    from_gguf, from_st = analyze_heads(path), analyze_heads(folder)
    assert len(from_gguf) > 0
    pd.testing.assert_frame_equal(from_gguf, from_st)


def _small_config(cls, **extra):
    return cls(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=120,
        max_position_embeddings=64,
        **extra,
    )


def test_llama_gguf_q_k_biases_are_unpermuted_too(tmp_path):
    # llama.cpp's LlamaModel.modify_tensors permutes q_proj/k_proj biases like the weights.
    torch.manual_seed(0)
    model = LlamaForCausalLM(_small_config(LlamaConfig, attention_bias=True, tie_word_embeddings=True))
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.normal_()  # biases start at 0: make them distinguishable
    path = tmp_path / "llama-bias.gguf"
    state = write_llama_gguf(path, model)
    source = open_source(path)
    for name in ["model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.bias"]:
        np.testing.assert_array_equal(source.load(name), state[name], err_msg=name)


def test_qwen2_gguf_is_read_without_unpermuting(tmp_path):
    # llama.cpp's Qwen2Model (arch "qwen2") does NOT permute q/k (it uses NEOX rope), and
    # transformers' GGUF loader only reverses the permutation for arch "llama".
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(_small_config(Qwen2Config, tie_word_embeddings=True))
    path = tmp_path / "qwen2.gguf"
    state = write_llama_gguf(path, model, arch="qwen2", permute=False)
    source = open_source(path)
    assert source.config()["model_type"] == "qwen2"
    assert {i.name for i in source.tensors()} == set(state)
    for name, W in state.items():
        np.testing.assert_array_equal(source.load(name), W, err_msg=name)
