"""The eigenvalue copying score: hand cases, the small-factor identity against the full vocab x vocab
OV circuit, and the per-head table column (norm gains folded in; the toy's induction heads copy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuit_reference import micro_llama

from spectrascope.mech.toy_models import load_toy_induction
from spectrascope.spectra.copying import copying_score
from spectrascope.weights.api import analyze_heads


def test_hand_cases():
    eye = np.eye(2)
    assert copying_score(eye, eye, eye) == pytest.approx(1.0)  # C = I: pure copying
    assert copying_score(-eye, eye, eye) == pytest.approx(-1.0)  # C = -I: pure suppression
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])  # eigenvalues +-i: sum 0
    assert copying_score(rotation, eye, eye) == pytest.approx(0.0, abs=1e-15)
    assert copying_score(np.diag([3.0, -1.0]), eye, eye) == pytest.approx(2.0 / 4.0)


def test_small_factor_equals_the_full_ov_circuit():
    rng = np.random.default_rng(0)
    vocab, d, hd = 30, 8, 4
    E, W_U = rng.normal(size=(vocab, d)), rng.normal(size=(vocab, d))
    W_V, W_O = rng.normal(size=(hd, d)), rng.normal(size=(d, hd))
    full = np.linalg.eigvals(W_U @ W_O @ W_V @ E.T)  # vocab x vocab: 26 (numerically) zero eigenvalues
    expected = full.sum().real / np.abs(full).sum()
    assert copying_score(W_V, W_O, E.T @ W_U) == pytest.approx(expected, abs=1e-9)


def test_the_head_table_has_the_column_with_norm_gains_folded_in():
    model = micro_llama(n_layers=1, n_heads=4, n_kv_heads=2, identity_norms=False, dtype=torch.float32)
    heads = analyze_heads(model)
    ov = heads[heads["circuit"] == "ov"].set_index("head")
    assert heads.loc[heads["circuit"] != "ov", "copying"].isna().all()
    weights = {name: p.detach().double().numpy() for name, p in model.named_parameters()}
    gain = weights["model.layers.0.input_layernorm.weight"]
    E, W_U = weights["model.embed_tokens.weight"], weights["lm_head.weight"] * weights["model.norm.weight"]
    v, o = weights["model.layers.0.self_attn.v_proj.weight"] * gain, weights["model.layers.0.self_attn.o_proj.weight"]
    for head in range(4):
        g = head // 2
        expected = copying_score(v[g * 4 : (g + 1) * 4], o[:, head * 4 : (head + 1) * 4], E.T @ W_U)
        assert ov.loc[head, "copying"] == pytest.approx(expected, abs=1e-5)


def test_the_toy_induction_heads_copy():
    heads = analyze_heads(load_toy_induction().hf)
    ov = heads[heads["circuit"] == "ov"].set_index(["block", "head"])["copying"]
    assert all(ov[(1, h)] > 0.7 for h in (1, 2, 3))
    assert np.mean([ov[(1, h)] for h in (1, 2, 3)]) > 0.85
