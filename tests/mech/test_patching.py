"""Activation patching: exact numbers on a hand-computable micro model, identities on tiny random
models (patch everything -> effect 1, patch a value that is already there -> 0), batched ==
unbatched, and bad input as one clear SpectrascopeError.

The micro model (``micro_llama``) is a one-block Llama whose logits are a linear function of the
token embeddings that can be written down by hand: the query and key projections are zero (so
every position attends uniformly to itself and all earlier positions), the MLP's down projection
is zero (no MLP contribution), and the norms are the identity. With x_p the embedding of token p,
A = W_O W_V and u = W_U[correct] - W_U[wrong], the logit difference at the last position n-1 is

    m = u . x_{n-1} + u . A (1/n) sum_p x_p

so patching the embedding (``blocks.0.hook_resid_pre``) of position p changes it by
u . (1[p = n-1] I + A / n)(x_clean_p - x_corrupted_p), and head h (one (d_head) block of z) by
u . A_h (1/n) sum_p (x_clean_p - x_corrupted_p).

The model runs in float64, except that Hugging Face's eager attention takes its softmax in
float32: the uniform weights 1/n are float32-rounded, so the hand formulas hold to ~1e-8
(HAND_TOL), while identities that do not depend on that rounding hold to 1e-10.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.patching import (
    logit_diff,
    normalized_effect,
    patch,
    patch_sweep_heads,
    patch_sweep_layers_positions,
)

VOCAB = 50
CLEAN = [3, 7, 11, 13, 17, 19]
CORRUPTED = [3, 7, 23, 13, 29, 31]  # differs at positions 2, 4, 5
METRIC = logit_diff(5, 6)
HAND_TOL = 1e-7


def tiny_llama(
    n_layers: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64, n_kv_heads: int = 2
) -> LlamaForCausalLM:
    """A random tiny Llama (d_model 32, 4 heads of 8, d_mlp 64) in eval mode, seeded."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=n_kv_heads,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(config).to(dtype).eval()
    with torch.no_grad():  # larger logits than the default init (std 0.02), so metrics differ clearly
        model.lm_head.weight.normal_(0, 1.0)
    return model


def micro_llama() -> LlamaForCausalLM:
    """The hand-computable one-block model of the module docstring (float64, 4 heads, no GQA)."""
    model = tiny_llama(n_layers=1, seed=1, n_kv_heads=4)
    block = model.model.layers[0]
    with torch.no_grad():
        block.self_attn.q_proj.weight.zero_()
        block.self_attn.k_proj.weight.zero_()
        block.mlp.down_proj.weight.zero_()
        block.self_attn.v_proj.weight.normal_(0, 0.5)
        block.self_attn.o_proj.weight.normal_(0, 0.5)
    block.input_layernorm = nn.Identity()
    model.model.norm = nn.Identity()
    return model


def micro_terms(model: LlamaForCausalLM, clean: list[int], corrupted: list[int], metric=METRIC):
    """(u, A, A per head, embedding difference (pos, d)) of the micro model, by hand."""
    W_U = model.lm_head.weight.detach()
    u = W_U[int(metric.correct[0])] - W_U[int(metric.wrong[0])]
    attn = model.model.layers[0].self_attn
    W_V, W_O = attn.v_proj.weight.detach(), attn.o_proj.weight.detach()  # (32, 32): out x in
    A = W_O @ W_V
    d_head = attn.head_dim
    A_heads = [W_O[:, h * d_head : (h + 1) * d_head] @ W_V[h * d_head : (h + 1) * d_head] for h in range(4)]
    E = model.model.embed_tokens.weight.detach()
    dx = E[torch.tensor(clean)] - E[torch.tensor(corrupted)]
    return u, A, A_heads, dx


# ----------------------------------------------------------------------------- exact numbers


def test_micro_model_position_patching_matches_the_hand_formula():
    model = micro_llama()
    u, A, _, dx = micro_terms(model, CLEAN, CORRUPTED)
    n = len(CLEAN)
    E = model.model.embed_tokens.weight.detach()

    def by_hand(tokens):
        x = E[torch.tensor(tokens)]
        return float(u @ x[-1] + u @ A @ x.mean(0))

    df = patch_sweep_layers_positions(model, CLEAN, CORRUPTED, "resid_pre", metric=METRIC)
    assert df.attrs["clean_metric"] == pytest.approx(by_hand(CLEAN), abs=HAND_TOL)
    assert df.attrs["corrupted_metric"] == pytest.approx(by_hand(CORRUPTED), abs=HAND_TOL)
    expected = [float(u @ ((p == n - 1) * dx[p] + A @ dx[p] / n)) for p in range(n)]
    assert df["delta"].tolist() == pytest.approx(expected, abs=HAND_TOL)
    assert df["delta"].iloc[[0, 1, 3]].tolist() == [0.0, 0.0, 0.0]  # same token: nothing to patch
    assert df["effect"].sum() == pytest.approx(1.0, abs=1e-10)  # linear model: the effects add up to 1


def test_micro_model_head_patching_matches_the_hand_formula():
    model = micro_llama()
    u, _, A_heads, dx = micro_terms(model, CLEAN, CORRUPTED)
    df = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC)
    expected = [float(u @ A_h @ dx.mean(0)) for A_h in A_heads]
    assert df["delta"].tolist() == pytest.approx(expected, abs=HAND_TOL)
    direct = float(u @ dx[-1])  # the path that skips attention
    assert df["delta"].sum() + direct == pytest.approx(
        df.attrs["clean_metric"] - df.attrs["corrupted_metric"], abs=1e-10
    )


def test_patching_the_whole_input_restores_the_clean_metric():
    model = tiny_llama()
    result = patch(model, CLEAN, CORRUPTED, "blocks.0.hook_resid_pre", metric=METRIC)
    assert result.patched == pytest.approx(result.clean, abs=1e-12)
    assert result.effect == pytest.approx(1.0, abs=1e-10)
    assert result.delta == pytest.approx(result.clean - result.corrupted)


def test_last_layer_resid_post_restores_at_the_last_position_only():
    model = tiny_llama()
    df = patch_sweep_layers_positions(model, CLEAN, CORRUPTED, "resid_post", metric=METRIC, layers=[2])
    assert df["position"].tolist() == list(range(6))
    assert df["effect"].iloc[-1] == pytest.approx(1.0, abs=1e-10)
    assert df["effect"].iloc[:-1].abs().max() < 1e-10


def test_resid_mid_patch_of_every_position_restores_the_clean_metric():
    # hook_resid_mid is edited in place (see trace.architectures); patching it everywhere makes the rest clean
    model = tiny_llama()
    assert patch(model, CLEAN, CORRUPTED, "blocks.1.hook_resid_mid", metric=METRIC).effect == pytest.approx(
        1.0, abs=1e-10
    )


def test_gpt2_last_layer_patch_restores():
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, n_inner=64, n_positions=64, attn_implementation="eager"
    )
    model = GPT2LMHeadModel(config).double().eval()
    result = patch(model, CLEAN, CORRUPTED, "blocks.1.hook_resid_post", position=-1, metric=METRIC)
    assert result.effect == pytest.approx(1.0, abs=1e-10)
    heads = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC)
    assert len(heads) == 8 and heads["effect"].notna().all()


def test_normalized_effect_definition():
    assert normalized_effect(patched=2.0, clean=3.0, corrupted=1.0) == 0.5
    assert normalized_effect(patched=1.0, clean=3.0, corrupted=1.0) == 0.0
    assert normalized_effect(patched=3.0, clean=3.0, corrupted=1.0) == 1.0


# ----------------------------------------------------------------------------- batching


@pytest.mark.parametrize("site_kind", ["resid_pre", "resid_mid", "attn_out", "z", "mlp_post"])
def test_batched_sweep_equals_one_forward_per_patch(site_kind):
    model = tiny_llama()
    one = patch_sweep_layers_positions(model, CLEAN, CORRUPTED, site_kind, metric=METRIC, batch_size=1)
    for batch_size in (4, 1000):
        batched = patch_sweep_layers_positions(model, CLEAN, CORRUPTED, site_kind, metric=METRIC, batch_size=batch_size)
        assert batched["delta"].tolist() == pytest.approx(one["delta"].tolist(), abs=1e-12)


def test_batched_head_sweep_equals_single_patches_float32():
    model = tiny_llama(dtype=torch.float32)
    batched = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC, batch_size=5)
    singles = [
        patch(model, CLEAN, CORRUPTED, f"blocks.{r.layer}.attn.hook_z", head=r.head, metric=METRIC).delta
        for r in batched.itertuples()
    ]
    assert batched["delta"].tolist() == pytest.approx(singles, abs=1e-5)
    assert len(batched) == 12 and batched[["layer", "head"]].values.tolist()[:5] == [
        [0, 0],
        [0, 1],
        [0, 2],
        [0, 3],
        [1, 0],
    ]


def test_head_subset_equals_the_rows_of_the_full_sweep():
    model = tiny_llama()
    full = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC).set_index(["layer", "head"])
    subset = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC, layers=[1], heads=[2, 0])
    assert subset[["layer", "head"]].values.tolist() == [[1, 2], [1, 0]]
    assert subset["delta"].tolist() == pytest.approx(full.loc[[(1, 2), (1, 0)], "delta"].tolist(), abs=1e-12)


def test_noop_patches_are_not_run():
    model = tiny_llama()
    rows: list[int] = []
    handle = model.model.embed_tokens.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[0]))
    try:
        df = patch_sweep_layers_positions(model, CLEAN, CORRUPTED, "resid_pre", metric=METRIC, batch_size=100)
    finally:
        handle.remove()
    # 2 unpatched runs, then one batch of the patches that change something: layer 0 at positions 2, 4, 5,
    # layers 1 and 2 at positions 2..5 (positions 0 and 1 precede the first difference)
    assert rows == [1, 1, 3 + 4 + 4]
    assert (df[df["position"] < 2]["delta"] == 0).all()


def test_scalar_metric_is_evaluated_per_row():
    model = tiny_llama()

    def summed(logits):
        return (logits[:, -1, 5] - logits[:, -1, 6]).sum()  # one number for the whole batch

    a = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=summed, batch_size=7)
    b = patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC, batch_size=7)
    assert a["delta"].tolist() == pytest.approx(b["delta"].tolist(), abs=1e-12)


def test_sweeps_leave_the_model_unchanged():
    model = tiny_llama()
    ids = torch.tensor([CLEAN])
    with torch.no_grad():
        before = model(input_ids=ids).logits
    patch_sweep_heads(model, CLEAN, CORRUPTED, metric=METRIC)
    patch_sweep_layers_positions(model, CLEAN, CORRUPTED, "resid_mid", metric=METRIC)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: patch(m, CLEAN, CLEAN[:-1], "blocks.0.hook_resid_pre", metric=METRIC), "same token length"),
        (lambda m: patch_sweep_heads(m, CLEAN, CLEAN + [1], metric=METRIC), "same token length"),
        (lambda m: patch(m, CLEAN, CORRUPTED, "blocks.3.hook_resid_pre", metric=METRIC), "layer 3"),
        (
            lambda m: patch_sweep_layers_positions(m, CLEAN, CORRUPTED, metric=METRIC, layers=[0, 7]),
            "layer 7 out of range",
        ),
        (lambda m: patch_sweep_heads(m, CLEAN, CORRUPTED, metric=METRIC, layers=[-1]), "layer -1 out of range"),
        (lambda m: patch(m, CLEAN, CORRUPTED, "blocks.0.attn.hook_z", head=4, metric=METRIC), "head 4 out of range"),
        (lambda m: patch_sweep_heads(m, CLEAN, CORRUPTED, metric=METRIC, heads=[0, -1]), "head -1 out of range"),
        (
            lambda m: patch(m, CLEAN, CORRUPTED, "blocks.0.hook_resid_pre", head=0, metric=METRIC),
            "only be patched at attn.hook_z",
        ),
        (
            lambda m: patch(m, CLEAN, CORRUPTED, "blocks.0.hook_resid_pre", position=6, metric=METRIC),
            "position 6 out of range",
        ),
        (lambda m: patch_sweep_layers_positions(m, CLEAN, CORRUPTED, metric=METRIC, positions=[-7]), "position -7"),
        (lambda m: patch_sweep_heads(m, CLEAN, CORRUPTED, metric=METRIC, position=1.5), "position must be an integer"),
        (lambda m: patch(m, CLEAN, CORRUPTED, "blocks.0.attn.hook_pattern", metric=METRIC), "observe-only"),
        (lambda m: patch(m, CLEAN, CORRUPTED, "blocks.0.nonsense", metric=METRIC), "unknown site"),
        (
            lambda m: patch_sweep_layers_positions(m, CLEAN, CORRUPTED, "resid_sideways", metric=METRIC),
            "unknown site kind",
        ),
        (
            lambda m: patch(m, CLEAN, CLEAN, "blocks.0.hook_resid_pre", metric=METRIC),
            "the same on the clean and the corrupted",
        ),
        (lambda m: patch_sweep_heads(m, CLEAN, CORRUPTED, metric=METRIC, batch_size=0), "batch_size"),
        (lambda m: patch(m, [CLEAN, CLEAN], CORRUPTED, "blocks.0.hook_resid_pre", metric=METRIC), "one sequence"),
        (
            lambda m: patch(m, CLEAN, [1, 2, 3, 4, 5, 99], "blocks.0.hook_resid_pre", metric=METRIC),
            "token ids must lie",
        ),
        (
            lambda m: patch(m, CLEAN, CORRUPTED, "blocks.0.hook_resid_pre", metric=logit_diff(5, 500)),
            "outside the vocabulary",
        ),
        (
            lambda m: patch(m, CLEAN, CORRUPTED, "blocks.0.hook_resid_pre", metric=lambda lg: lg[:, -1, :2]),
            "one value per row",
        ),
        (lambda m: patch(m, "some text", CORRUPTED, "blocks.0.hook_resid_pre", metric=METRIC), "no tokenizer"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    model = tiny_llama(n_layers=3)
    with pytest.raises(SpectrascopeError, match=message) as info:
        call(model)
    assert "\n" not in str(info.value)
