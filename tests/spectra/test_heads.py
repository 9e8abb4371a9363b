"""Per-head spectra and QK/OV circuits: small-factor spectra, GQA, fused projections."""

import numpy as np
import pytest
import torch
import transformers

from spectrascope.models.roles import HeadGeometry
from spectrascope.spectra.esd import small_factor_product_eigenvalues
from spectrascope.spectra.heads import head_rows
from spectrascope.weights.api import analyze_heads
from spectrascope.weights.projections import split_projections


def test_small_factor_spectrum_equals_full_product():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((48, 6)), rng.standard_normal((48, 6))
    full = np.linalg.svd(A @ B.T, compute_uv=False) ** 2
    np.testing.assert_allclose(small_factor_product_eigenvalues(A, B), np.sort(full[:6]), rtol=1e-10)


def test_gqa_rows_and_kv_mapping():
    geom = HeadGeometry(n_heads=4, n_kv_heads=2, head_dim=8, d_model=32)
    rng = np.random.default_rng(1)
    proj = {
        "q": rng.standard_normal((32, 32)),
        "k": rng.standard_normal((16, 32)),
        "v": rng.standard_normal((16, 32)),
        "o": rng.standard_normal((32, 32)),
    }
    rows = head_rows(proj, geom, block=3)
    per = {(r["circuit"], r["head"]): r for r in rows}
    assert len(rows) == 2 * 2 + 4 * 4
    assert [per[("qk", h)]["kv_head"] for h in range(4)] == [0, 0, 1, 1]
    # head 3's OV circuit uses kv head 1: W_O^3 W_V^1
    W_O, W_V = proj["o"][:, 24:32], proj["v"][8:16]
    expected = np.sort(np.linalg.svd(W_O @ W_V, compute_uv=False)[:8] ** 2)
    assert per[("ov", 3)]["lambda_max"] == pytest.approx(expected[-1], rel=1e-10)
    assert all(r["block"] == 3 and r["M"] == 8 and r["N"] == 32 for r in rows)


def _x(d):
    torch.manual_seed(0)
    return torch.randn(5, d)


def test_gpt2_fused_split_matches_model():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_embd=32, n_head=4, n_layer=1, vocab_size=50, n_positions=16)
    attn = transformers.GPT2LMHeadModel(cfg).transformer.h[0].attn
    geom = HeadGeometry(4, 4, 8, 32)
    proj = split_projections(
        {"qkv": attn.c_attn.weight.detach().numpy(), "o": attn.c_proj.weight.detach().numpy()}, "gpt2", geom
    )
    x = _x(32)
    qkv = (attn.c_attn(x) - attn.c_attn.bias).detach().numpy()
    np.testing.assert_allclose(x.numpy() @ proj["q"].T, qkv[:, :32], atol=1e-5)
    np.testing.assert_allclose(x.numpy() @ proj["v"].T, qkv[:, 64:], atol=1e-5)
    out = (attn.c_proj(x) - attn.c_proj.bias).detach().numpy()
    np.testing.assert_allclose(x.numpy() @ proj["o"].T, out, atol=1e-5)


def test_gpt_neox_fused_split_matches_model_layout():
    torch.manual_seed(0)
    cfg = transformers.GPTNeoXConfig(
        hidden_size=32, num_attention_heads=4, num_hidden_layers=1, intermediate_size=64, vocab_size=50
    )
    attn = transformers.GPTNeoXForCausalLM(cfg).gpt_neox.layers[0].attention
    geom = HeadGeometry(4, 4, 8, 32)
    W = attn.query_key_value.weight.detach().numpy()
    proj = split_projections({"qkv": W, "o": attn.dense.weight.detach().numpy()}, "gpt_neox", geom)
    x = _x(32)
    qkv = (x @ attn.query_key_value.weight.T).view(5, 4, 3 * 8)  # HF's per-head view
    q_hf = qkv[..., :8].reshape(5, 32).detach().numpy()
    k_hf = qkv[..., 8:16].reshape(5, 32).detach().numpy()
    np.testing.assert_allclose(x.numpy() @ proj["q"].T, q_hf, atol=1e-5)
    np.testing.assert_allclose(x.numpy() @ proj["k"].T, k_hf, atol=1e-5)


def test_analyze_heads_on_tiny_llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    heads = analyze_heads(transformers.LlamaForCausalLM(cfg))
    assert len(heads) == 2 * (2 * 2 + 4 * 4)
    assert set(heads["circuit"]) == {"q", "k", "v", "o", "qk", "ov"}
    assert (heads["status"] == "success").all()
