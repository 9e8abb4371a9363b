"""Head scores: exact values where attention is known, invariances, restoration, bad input."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest
import torch
import transformers

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.head_scores import HEAD_SCORE_KINDS, head_scores, top_heads
from spectrascope.mech.metrics import repeated_batch, repeated_random_tokens, token_pool
from spectrascope.mech.toy_models import load_toy_induction


def _uniform_attention_model(bos: int | None) -> transformers.LlamaForCausalLM:
    """W_Q = W_K = 0: every head attends uniformly over its causal window, A[q, k] = 1 / (q + 1)."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=30,
        max_position_embeddings=64,
        bos_token_id=bos,
        eos_token_id=None,
        pad_token_id=None,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    for layer in model.model.layers:
        with torch.no_grad():
            layer.self_attn.q_proj.weight.zero_()
            layer.self_attn.k_proj.weight.zero_()
    return model


@pytest.mark.parametrize("bos", [0, None])
def test_scores_are_the_definitions_on_uniform_attention(bos):
    model = _uniform_attention_model(bos)
    L = 7
    scores = head_scores(model, n_seq=3, seq_len=L, seed=1, batch_size=2)
    offset = 0 if bos is None else 1
    T = offset + 2 * L
    second = np.arange(offset + L, offset + 2 * L)
    expected = {
        "previous_token": np.mean(1.0 / (np.arange(1, T) + 1)),
        "induction": np.mean(1.0 / (second + 1)),
        "duplicate_token": np.mean(1.0 / (second + 1)),
    }
    assert list(scores.columns) == ["layer", "head", *(f"{k}{s}" for k in HEAD_SCORE_KINDS for s in ("", "_lo", "_hi"))]
    assert len(scores) == 4
    for kind, value in expected.items():
        np.testing.assert_allclose(scores[kind], value, rtol=1e-6)
        # every sequence scores the same under uniform attention: the interval is the point
        np.testing.assert_allclose(scores[f"{kind}_lo"], value, rtol=1e-6)
        np.testing.assert_allclose(scores[f"{kind}_hi"], value, rtol=1e-6)


def test_toy_scores_and_batch_invariance():
    toy = load_toy_induction()
    a = head_scores(toy, n_seq=12, seq_len=20, seed=5, batch_size=12)
    b = head_scores(toy, n_seq=12, seq_len=20, seed=5, batch_size=5)
    np.testing.assert_allclose(a[list(HEAD_SCORE_KINDS)], b[list(HEAD_SCORE_KINDS)], atol=1e-6)
    best = top_heads(a, "induction", 2)
    assert (best["layer"] == 1).all() and best["induction"].iloc[0] > 0.9
    assert top_heads(a, "previous_token", 1)["layer"].iloc[0] == 0
    only = head_scores(toy, kinds=["induction"], n_seq=4, seq_len=10)
    assert list(only.columns) == ["layer", "head", "induction", "induction_lo", "induction_hi"]
    assert (a["induction_lo"] <= a["induction"]).all() and (a["induction"] <= a["induction_hi"]).all()
    np.testing.assert_allclose(a[["induction_lo", "induction_hi"]], b[["induction_lo", "induction_hi"]], atol=1e-6)


def test_score_intervals_resample_sequences():
    """Two sequences scoring 0 and 1: resampled means are 0, 0.5 or 1 (1/4, 1/2, 1/4), so the
    95 % interval is [0, 1]; a head scoring the same on every sequence has the point as interval;
    one sequence has no interval."""
    from spectrascope.mech.head_scores import _intervals

    lo, hi = _intervals(np.array([[0.0, 0.3], [1.0, 0.3]]), n_boot=2000, seed=0)
    np.testing.assert_allclose(lo, [0.0, 0.3])
    np.testing.assert_allclose(hi, [1.0, 0.3])
    single = head_scores(load_toy_induction(), kinds=["previous_token"], n_seq=1, seq_len=10)
    assert single["previous_token_lo"].isna().all() and single["previous_token_hi"].isna().all()


def test_attention_implementation_is_restored():
    model = _uniform_attention_model(0)
    model.set_attn_implementation("sdpa")
    head_scores(model, n_seq=2, seq_len=5)
    assert model.config._attn_implementation == "sdpa"
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_random_sequences_avoid_special_tokens():
    class WithTokenizer:  # a LoadedModel-like handle with special tokens 0, 1 and an added token 29
        hf = _uniform_attention_model(1)

        class tokenizer:
            all_special_ids = (0, 1)
            added_tokens_decoder = MappingProxyType({29: "<x>"})
            bos_token_id = 1
            adds_bos = True

            def __len__(self):
                return 30

            def __call__(self, text):
                return {"input_ids": [1, 7] if self.adds_bos else [7]}

        tokenizer = tokenizer()

    handle = WithTokenizer()
    pool = token_pool(handle)
    assert set(pool.tolist()) == set(range(2, 29))
    batch = repeated_batch(handle, 50, 20, seed=0)  # the tokenizer adds BOS: so do we
    body = batch.input_ids[:, 1:]
    assert batch.offset == 1 and (batch.input_ids[:, 0] == 1).all() and body.min() >= 2 and body.max() <= 28
    handle.tokenizer.adds_bos = False  # like SmolLM2's: no BOS unless asked
    assert repeated_batch(handle, 2, 5).offset == 0
    assert repeated_batch(handle, 2, 5, prepend_bos=True).input_ids[0, 0] == 1
    with pytest.raises(SpectrascopeError, match="cannot draw 30 distinct tokens"):
        repeated_random_tokens(2, 30, 0, pool)


def test_bad_input():
    model = _uniform_attention_model(0)
    with pytest.raises(SpectrascopeError, match="unknown head score 'copying'"):
        head_scores(model, kinds=["induction", "copying"])
    with pytest.raises(SpectrascopeError, match="at least 2"):
        head_scores(model, seq_len=1)
    with pytest.raises(SpectrascopeError, match="cannot draw 40 distinct tokens from a vocabulary of 29"):
        head_scores(model, seq_len=40)
    model.config.max_position_embeddings = 16
    with pytest.raises(SpectrascopeError, match="need 21 positions; the model has 16"):
        head_scores(model, seq_len=10)
    with pytest.raises(SpectrascopeError, match="at least 1"):
        head_scores(model, n_seq=0)
