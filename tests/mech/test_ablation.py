"""Ablation: exact numbers on a hand-computable micro model, batched == one at a time,
restoration, spectral edits, metrics, bad input."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import transformers

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.ablation import AblationMode, ablate, find_weight, resolve_components
from spectrascope.mech.ablation_sweep import ablation_rows, ablation_sweep, rank_by_damage
from spectrascope.mech.components import AttnBlock, Head, MlpBlock, SpectralComponent, SpectralKeep, parse_component
from spectrascope.mech.metrics import LogitDifference, NextTokenLoss
from spectrascope.mech.spectral_edit import spectral_edit
from spectrascope.mech.toy_models import load_toy_induction

# ----------------------------------------------------------------------------- the micro model
#
# A 1-layer Llama in float64 with d_model 4, 2 heads of width 2, vocab 4, RMSNorm eps 0 and
# weights chosen so that every number has a closed form:
#   embed = lm_head = I, all norm weights 1; W_Q = W_K = 0 (so attention is uniform over the
#   causal window: z_t = mean_{s <= t} rms(e_s)); W_V = W_O = I (head h owns dims 2h, 2h+1);
#   MLP gate = up = down = I (mlp_out = silu(b) * b with b = rms(resid_mid)).
# So: a = rms(onehot), z_t = mean_{s<=t} a_s, mid = onehot + z, post = mid + silu(rms(mid)) * rms(mid),
# logits = rms(post), with rms(x) = x / sqrt(mean(x^2)).
# The model runs in float64, but LlamaRMSNorm computes in float32 (it casts its input to
# float32), so model vs formula agree to float32 rounding: EXACT = 1e-6.


def _micro_model() -> transformers.LlamaForCausalLM:
    cfg = transformers.LlamaConfig(
        vocab_size=4,
        hidden_size=4,
        intermediate_size=4,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=2,
        rms_norm_eps=0.0,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        max_position_embeddings=16,
    )
    cfg._attn_implementation = "eager"
    model = transformers.LlamaForCausalLM(cfg).double().eval()
    eye = torch.eye(4, dtype=torch.float64)
    layer = model.model.layers[0]
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(eye)
        model.lm_head.weight.copy_(eye)
        layer.self_attn.q_proj.weight.zero_()
        layer.self_attn.k_proj.weight.zero_()
        layer.self_attn.v_proj.weight.copy_(eye)
        layer.self_attn.o_proj.weight.copy_(eye)
        for proj in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
            proj.weight.copy_(eye)
    return model


def _rms(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x**2).mean(-1, keepdims=True))


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _z(tokens: np.ndarray) -> np.ndarray:
    """(batch, pos, 4): uniform causal attention over rms(one-hot) (both heads side by side)."""
    a = _rms(np.eye(4)[tokens])
    return np.cumsum(a, axis=1) / np.arange(1, tokens.shape[1] + 1)[None, :, None]


def _logits(tokens: np.ndarray, z: np.ndarray | None = None, mlp_out: np.ndarray | str | None = None) -> np.ndarray:
    """The micro model's logits by hand, with z (attention output) and mlp_out overridable."""
    z = _z(tokens) if z is None else z
    mid = np.eye(4)[tokens] + z
    b = _rms(mid)
    mlp = _silu(b) * b if mlp_out is None else mlp_out
    return _rms(mid + mlp)


def _loss(tokens: np.ndarray, logits: np.ndarray) -> float:
    lse = np.log(np.exp(logits).sum(-1))
    nll = lse[:, :-1] - np.take_along_axis(logits[:, :-1], tokens[:, 1:, None], -1)[..., 0]
    return float(nll.mean())


EXACT = 1e-6

TOKENS = np.array([[0, 1, 2, 3, 1], [2, 2, 0, 1, 3]])
REFERENCE = np.array([[3, 0, 0, 2, 1], [1, 3, 2, 0, 0]])


@pytest.fixture(scope="module")
def micro():
    return _micro_model()


def _run(model, tokens=TOKENS) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.from_numpy(tokens)).logits.numpy()


def test_micro_model_is_what_the_formula_says(micro):
    np.testing.assert_allclose(_run(micro), _logits(TOKENS), rtol=0, atol=EXACT)
    metric = NextTokenLoss(torch.from_numpy(TOKENS))
    assert metric(micro) == pytest.approx(_loss(TOKENS, _logits(TOKENS)), abs=EXACT)


def test_zero_ablation_of_one_head_is_exact(micro):
    z = _z(TOKENS)
    z[..., 2:4] = 0.0  # head 1 owns dims 2, 3
    with ablate(micro, Head(0, 1)):
        np.testing.assert_allclose(_run(micro), _logits(TOKENS, z=z), atol=EXACT)
    with ablate(micro, AttnBlock(0)):
        np.testing.assert_allclose(_run(micro), _logits(TOKENS, z=np.zeros_like(z)), atol=EXACT)
    with ablate(micro, MlpBlock(0)):
        np.testing.assert_allclose(_run(micro), _logits(TOKENS, mlp_out=np.zeros((2, 5, 4))), atol=EXACT)


def test_mean_and_resample_ablation_are_exact(micro):
    reference = torch.from_numpy(REFERENCE)
    z_ref = _z(REFERENCE)
    z = _z(TOKENS)
    mean_z = z.copy()
    # head 0: position 0 gets the mean of the reference's first positions, the others the mean
    # of the reference's other tokens (the attention sink is averaged only with sinks)
    mean_z[:, 0, 0:2] = z_ref[:, 0, 0:2].mean(0)
    mean_z[:, 1:, 0:2] = z_ref[:, 1:, 0:2].reshape(-1, 2).mean(0)
    with ablate(micro, "0.0", mode="mean", reference=reference):
        np.testing.assert_allclose(_run(micro), _logits(TOKENS, z=mean_z), atol=EXACT)
    resampled = z.copy()
    resampled[..., 0:2] = z_ref[..., 0:2]  # head 0 from the other input, row by row
    with ablate(micro, "0.0", mode="resample", reference=reference):
        np.testing.assert_allclose(_run(micro), _logits(TOKENS, z=resampled), atol=EXACT)
    mid_ref = np.eye(4)[REFERENCE] + z_ref
    b_ref = _rms(mid_ref)
    mlp_ref = _silu(b_ref) * b_ref
    mean_mlp = np.empty((2, 5, 4))
    mean_mlp[:, 0] = mlp_ref[:, 0].mean(0)
    mean_mlp[:, 1:] = mlp_ref[:, 1:].reshape(-1, 4).mean(0)
    with ablate(micro, "mlp:0", mode="mean", reference=reference):
        np.testing.assert_allclose(_run(micro), _logits(TOKENS, mlp_out=mean_mlp), atol=EXACT)
    expected = _loss(TOKENS, _logits(TOKENS, z=mean_z)) - _loss(TOKENS, _logits(TOKENS))
    table = ablation_sweep(micro, ["0.0"], NextTokenLoss(torch.from_numpy(TOKENS)), mode="mean", reference=reference)
    assert table["effect"].iloc[0] == pytest.approx(expected, abs=EXACT)


def test_mean_ablation_keeps_a_first_position_outlier_out_of_the_other_positions(micro):
    """A planted attention-sink-like outlier: the reference's MLP output at position 0 is 1000x
    larger. The mean that replaces the other positions must not see it (one mean over all tokens
    would be ~200 here instead of ~1); position 0 gets the mean of the reference's first positions."""
    reference = torch.from_numpy(REFERENCE)
    mlp = micro.model.layers[0].mlp

    def plant(_module, _args, output):
        output = output.clone()
        output[:, 0] = output[:, 0] * 1000.0
        return output

    handle = mlp.register_forward_hook(plant)  # active while the reference values are computed
    try:
        from spectrascope.mech.ablation import reference_values

        (means,) = reference_values(micro, [MlpBlock(0)], AblationMode.MEAN, reference).values()
    finally:
        handle.remove()
    b_ref = _rms(np.eye(4)[REFERENCE] + _z(REFERENCE))
    mlp_ref = _silu(b_ref) * b_ref
    np.testing.assert_allclose(means.rest.numpy(), mlp_ref[:, 1:].reshape(-1, 4).mean(0), atol=EXACT)
    np.testing.assert_allclose(means.first.numpy(), 1000.0 * mlp_ref[:, 0].mean(0), rtol=1e-6)
    assert float(means.rest.abs().max()) < 2.0


def test_metrics_by_hand(micro):
    logits = _logits(TOKENS)
    diff = LogitDifference(torch.from_numpy(TOKENS), correct=2, wrong=torch.tensor([0, 3]))
    assert diff(micro) == pytest.approx(
        ((logits[0, -1, 2] - logits[0, -1, 0]) + (logits[1, -1, 2] - logits[1, -1, 3])) / 2, abs=EXACT
    )
    # padding is ignored: row 1 padded after 3 tokens == the loss over the real targets only
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    lse = np.log(np.exp(logits).sum(-1))
    nll = lse[:, :-1] - np.take_along_axis(logits[:, :-1], TOKENS[:, 1:, None], -1)[..., 0]
    expected = (nll[0].sum() + nll[1, :2].sum()) / 6
    assert NextTokenLoss(torch.from_numpy(TOKENS), mask)(micro) == pytest.approx(expected, abs=EXACT)
    # restricted to target positions 3 and 4 (and the padded logit difference reads position 2 of row 1)
    assert NextTokenLoss(torch.from_numpy(TOKENS), target_positions=[3, 4])(micro) == pytest.approx(
        nll[:, 2:].mean(), abs=EXACT
    )
    padded = LogitDifference(torch.from_numpy(TOKENS), 1, 0, mask)
    assert padded(micro) == pytest.approx(
        ((logits[0, 4, 1] - logits[0, 4, 0]) + (logits[1, 2, 1] - logits[1, 2, 0])) / 2, abs=EXACT
    )


# ----------------------------------------------------------------------------- batched sweep


@pytest.fixture(scope="module")
def tiny_llama():
    """A random 3-layer Llama with MLPs and GQA (float64 so batched vs sequential is exact up to rounding)."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=50,
        max_position_embeddings=32,
    )
    cfg._attn_implementation = "eager"
    return transformers.LlamaForCausalLM(cfg).double().eval()


@pytest.mark.parametrize("mode", ["zero", "mean", "resample"])
def test_batched_sweep_equals_one_at_a_time(tiny_llama, mode):
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (3, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    reference = {"input_ids": torch.randint(0, 50, (3, 9), generator=gen), "attention_mask": torch.ones_like(ids)}
    metric = NextTokenLoss(ids, mask)
    components = [*resolve_components(tiny_llama, "all"), AttnBlock(1), MlpBlock(2), MlpBlock(0)]
    slow = ablation_sweep(tiny_llama, components, metric, mode, reference, batched=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the resumed forward must pass its self-check
        fast = ablation_sweep(tiny_llama, components, metric, mode, reference)  # stacked + resumed at the layer
    stacked = ablation_sweep(tiny_llama, components, metric, mode, reference, reuse_prefix=False, max_batch_tokens=60)
    assert list(fast["component"]) == [c.name for c in components]
    # rows of 9 and 6 tokens run in length groups, each at its own width; transformers' eager
    # attention takes its softmax in float32 whatever the model's dtype, and on some CPUs that
    # rounds differently by width (2.3e-8 nats seen on an AMD EPYC): float32's tolerance here,
    # float64's below, where every edit runs the batch at one width
    np.testing.assert_allclose(fast["value"], slow["value"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(stacked["value"], slow["value"], rtol=0, atol=1e-6)
    padded = ablation_rows(tiny_llama, components, metric, mode, reference, group_lengths=False)
    whole = ablation_rows(tiny_llama, components, metric, mode, reference, batched=False)
    for component in components:
        np.testing.assert_allclose(
            padded.ablated[component].values, whole.ablated[component].values, rtol=0, atol=1e-12
        )
    assert (slow["effect"].abs() > 1e-6).all()  # every component matters a little in a random model


def test_row_chunks_give_the_same_rows_as_one_forward(tiny_llama):
    """Rows cut into chunks of 2 (max_batch_tokens=18), packed and resumed, per row equal to
    one unchunked reference forward per component; spectral edits resumed at their layer too."""
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 50, (5, 9), generator=gen)
    mask = torch.ones_like(ids)
    mask[4, 5:] = 0
    metric = NextTokenLoss(ids, mask)
    weight = "model.layers.2.mlp.down_proj.weight"
    components = [Head(0, 1), MlpBlock(2), AttnBlock(1), SpectralComponent(weight, "bulk")]
    chunked = ablation_rows(tiny_llama, components, metric, mode="mean", reference=ids, max_batch_tokens=18)
    whole = ablation_rows(
        tiny_llama, components, metric, mode="mean", reference=ids, batched=False, max_batch_tokens=10_000
    )
    np.testing.assert_allclose(chunked.baseline.values, whole.baseline.values, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(chunked.baseline.weights, [8, 8, 8, 8, 4])  # counted targets per row
    assert float(chunked.baseline.reduce()) == pytest.approx(metric(tiny_llama), abs=1e-12)
    for component in components:
        np.testing.assert_allclose(chunked.ablated[component].values, whole.ablated[component].values, atol=1e-12)


def test_replacements_computed_once_give_the_same_rows(tiny_llama):
    """``replacements`` from one reference_values call equal the sweep's own reference pass; a
    reference that is not used then cannot change the result."""
    from spectrascope.mech.ablation import reference_values

    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 50, (4, 9), generator=gen)
    metric = NextTokenLoss(torch.randint(0, 50, (3, 9), generator=gen))
    components = [MlpBlock(2), AttnBlock(1), Head(0, 1)]
    own = ablation_rows(tiny_llama, components, metric, mode="mean", reference=ids)
    once = reference_values(tiny_llama, [MlpBlock(0), *components], AblationMode.MEAN, ids)  # a superset
    shared = ablation_rows(tiny_llama, components, metric, mode="mean", reference=None, replacements=once)
    for component in components:
        np.testing.assert_array_equal(shared.ablated[component].values, own.ablated[component].values)


def test_batched_sweep_on_the_toy_in_float32():
    toy = load_toy_induction()
    metric = NextTokenLoss(toy.repeated_tokens(8, 20, seed=3))
    slow = ablation_sweep(toy, "all", metric, batched=False)
    fast = ablation_sweep(toy, "all", metric)
    np.testing.assert_allclose(fast["value"], slow["value"], rtol=1e-5, atol=1e-6)
    ranked = rank_by_damage(fast)
    assert ranked["rank"].tolist() == list(range(1, 9))
    assert ranked["damage"].is_monotonic_decreasing


def test_logit_difference_sweep_damage_sign(micro):
    metric = LogitDifference(torch.from_numpy(TOKENS), correct=2, wrong=0)
    table = ablation_sweep(micro, ["0.0", "0.1"], metric)
    np.testing.assert_allclose(table["damage"], -table["effect"])


# ----------------------------------------------------------------------------- restoration


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_ablate_restores_the_model_exactly(tiny_llama):
    before = {k: v.clone() for k, v in tiny_llama.state_dict().items()}
    hooks_before = _hook_count(tiny_llama)
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    clean = tiny_llama(input_ids=ids).logits
    components = [
        "0.1",
        "attn:2",
        "mlp:1",
        "spectral:model.layers.1.self_attn.o_proj:drop_top:3",
        "spectral:model.layers.0.mlp.down_proj.weight:tail",
    ]
    with ablate(tiny_llama, components, mode="mean", reference=ids):
        assert _hook_count(tiny_llama) > hooks_before
        assert not torch.equal(tiny_llama(input_ids=ids).logits, clean)
    with pytest.raises(RuntimeError, match="boom"), ablate(tiny_llama, components):
        raise RuntimeError("boom")
    assert _hook_count(tiny_llama) == hooks_before
    after = tiny_llama.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(tiny_llama(input_ids=ids).logits, clean)
    # the sweep restores too (weights, hooks, the decoder's layer list)
    layers = tiny_llama.model.layers
    ablation_sweep(tiny_llama, ["0.0", "2.3", components[3]], NextTokenLoss(ids))
    assert tiny_llama.model.layers is layers and len(layers) == 3
    assert _hook_count(tiny_llama) == hooks_before
    assert all(torch.equal(before[k], v) for k, v in tiny_llama.state_dict().items())


# ----------------------------------------------------------------------------- spectral ablation


def test_drop_top_k_is_w_minus_its_top_k_svd_part(tiny_llama):
    name = "model.layers.1.self_attn.o_proj.weight"
    W = dict(tiny_llama.named_parameters())[name].detach().numpy().copy()
    U, S, Vh = np.linalg.svd(W, full_matrices=False)
    expected = W - (U[:, :3] * S[:3]) @ Vh[:3]
    with ablate(tiny_llama, SpectralComponent(name, SpectralKeep.DROP_TOP, 3)):
        inside = dict(tiny_llama.named_parameters())[name].detach().numpy()
        np.testing.assert_allclose(inside, expected, atol=1e-12)
        assert np.linalg.svd(inside, compute_uv=False)[0] == pytest.approx(S[3], rel=1e-10)
    assert np.array_equal(dict(tiny_llama.named_parameters())[name].detach().numpy(), W)


def test_tail_rebuild_of_low_rank_plus_noise_barely_changes_outputs():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=40,
        max_position_embeddings=32,
    )
    model = transformers.LlamaForCausalLM(cfg).double().eval()
    gen = torch.Generator().manual_seed(0)
    U, _ = torch.linalg.qr(torch.randn(64, 64, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(64, 64, generator=gen, dtype=torch.float64))
    low_rank = (U[:, :4] * torch.tensor([4.0, 3.0, 2.5, 2.0], dtype=torch.float64)) @ V[:, :4].T
    noise = 1e-3 * torch.randn(64, 64, generator=gen, dtype=torch.float64)
    name = "model.layers.0.mlp.down_proj.weight"
    with torch.no_grad():
        dict(model.named_parameters())[name].copy_(low_rank + noise)
    tail, kept = spectral_edit(low_rank + noise, SpectralKeep.TAIL)
    assert kept >= 4  # the four spikes are in the power-law tail
    assert torch.linalg.matrix_norm(tail - (low_rank + noise)) < 2 * torch.linalg.matrix_norm(noise)
    ids = torch.randint(0, 40, (4, 12), generator=gen)

    def mlp_out(component):
        from spectrascope.trace import run_with_cache

        with ablate(model, component):
            _, cache = run_with_cache(model, ids, "blocks.0.hook_mlp_out")
        return cache["blocks.0.hook_mlp_out"]

    with torch.no_grad():
        _, clean_cache = __import__("spectrascope.trace", fromlist=["run_with_cache"]).run_with_cache(
            model, ids, "blocks.0.hook_mlp_out"
        )
    clean = clean_cache["blocks.0.hook_mlp_out"]
    tail_only = mlp_out(SpectralComponent(name, "tail"))
    bulk_only = mlp_out(SpectralComponent(name, "bulk"))
    relative = lambda x: float((x - clean).norm() / clean.norm())
    assert relative(tail_only) < 0.02
    assert relative(bulk_only) > 0.9


# ----------------------------------------------------------------------------- bad input


def test_bad_components_and_modes_are_clear_errors(tiny_llama):
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    with pytest.raises(SpectrascopeError, match=r"layer 3 does not exist \(the model has layers 0..2\)"):
        resolve_components(tiny_llama, "3.0")
    with pytest.raises(SpectrascopeError, match=r"head 4 does not exist \(layer 1 has heads 0..3\)"):
        ablation_sweep(tiny_llama, [Head(1, 4)], NextTokenLoss(ids))
    with pytest.raises(SpectrascopeError, match="layer -1 does not exist"), ablate(tiny_llama, MlpBlock(-1)):
        pass
    with pytest.raises(SpectrascopeError, match="cannot parse component"):
        parse_component("attn:x")
    with pytest.raises(SpectrascopeError, match="unknown ablation mode"):
        ablation_sweep(tiny_llama, "0.0", NextTokenLoss(ids), mode="median")
    with (
        pytest.raises(SpectrascopeError, match="needs a reference batch"),
        ablate(tiny_llama, "0.0", mode=AblationMode.MEAN),
    ):
        pass
    with pytest.raises(SpectrascopeError, match="no weight matrix named"):
        resolve_components(tiny_llama, "spectral:model.layers.0.nope:tail")
    with pytest.raises(SpectrascopeError, match="k must be between 1 and 32"):
        resolve_components(tiny_llama, "spectral:model.layers.0.self_attn.o_proj:drop_top:33")
    with (
        pytest.raises(SpectrascopeError, match="resample ablation of head:0.0"),
        ablate(tiny_llama, "0.0", mode="resample", reference=ids[:1]),
    ):
        tiny_llama(input_ids=ids)
    assert _hook_count(tiny_llama) == 0


def test_component_names_round_trip():
    for text in [
        "3.2",
        "head:3.2",
        "attn:4",
        "mlp:0",
        "spectral:model.layers.1.mlp.up_proj.weight:drop_top:5",
        "spectral:lm_head.weight:tail",
        "spectral:model.layers.0.self_attn.q_proj.weight:bulk",
    ]:
        component = parse_component(text)
        assert parse_component(component.name) == component
    assert parse_component("3.2") == Head(3, 2)
    assert parse_component("spectral:model.layers.1.mlp.up_proj.weight:drop_top:5").layer == 1


def test_tied_weights_resolve_and_restore():
    cfg = transformers.LlamaConfig(
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        vocab_size=20,
        tie_word_embeddings=True,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    embed = model.model.embed_tokens.weight
    assert find_weight(model, "lm_head") is embed and find_weight(model, "embed_tokens") is embed
    before = embed.detach().clone()
    with ablate(model, "spectral:lm_head.weight:drop_top:2"):
        assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)  # one tensor, edited once
        assert not torch.equal(embed, before)
    assert torch.equal(embed, before)


def test_mean_reference_of_a_padded_batch_equals_its_texts_one_by_one(tiny_llama):
    """Rows of very different lengths, right-padded: the means (first position apart) equal
    those of each text run alone, unpadded, whatever chunks the rows are grouped into."""
    from spectrascope.mech.ablation import reference_values

    gen = torch.Generator().manual_seed(5)
    lengths = [9, 2, 6, 3, 9, 4]
    ids = torch.randint(0, 50, (len(lengths), 9), generator=gen)
    mask = torch.tensor([[1] * n + [0] * (9 - n) for n in lengths])
    components = [MlpBlock(1), AttnBlock(0)]
    padded = reference_values(tiny_llama, components, AblationMode.MEAN, {"input_ids": ids, "attention_mask": mask})
    first: dict = {c: [] for c in components}
    rest: dict = {c: [] for c in components}
    for row, n in enumerate(lengths):
        alone = reference_values(tiny_llama, components, AblationMode.MEAN, ids[row : row + 1, :n])
        for c in components:
            first[c].append(alone[c].first.double())
            if n > 1:
                rest[c].append(alone[c].rest.double() * (n - 1))
    for c in components:
        torch.testing.assert_close(padded[c].first.double(), torch.stack(first[c]).mean(0), rtol=1e-5, atol=1e-6)
        expected = torch.stack(rest[c]).sum(0) / (sum(lengths) - len(lengths))
        torch.testing.assert_close(padded[c].rest.double(), expected, rtol=1e-5, atol=1e-6)


def test_resume_is_checked_once_per_model_and_layer(tiny_llama, monkeypatch):
    """A second sweep resumed at the same layer of the same model reuses the first one's check."""
    import spectrascope.trace.resume as resume_module

    calls = []
    original = resume_module.resumed_agrees
    monkeypatch.setattr(resume_module, "resumed_agrees", lambda *a, **k: calls.append(1) or original(*a, **k))
    model = copy.deepcopy(tiny_llama)  # a model no other test has resumed
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(3))
    for _ in range(2):
        ablation_sweep(model, [AttnBlock(1)], NextTokenLoss(ids), "zero")
    assert len(calls) == 1


def test_length_groups_hand_case():
    """Lengths 20, 5, 16, 6, 12 with slack 0.25: sorted 20, 16 | 12 | 6, 5 (12 < 0.75 x 20, 6 < 0.75 x 12)."""
    from spectrascope.mech.ablation_sweep import length_groups

    lengths = [20, 5, 16, 6, 12]
    ids = torch.ones(5, 20, dtype=torch.long)
    mask = (torch.arange(20)[None, :] < torch.tensor(lengths)[:, None]).long()
    groups = length_groups(NextTokenLoss(ids, mask), slack=0.25)
    assert [g.tolist() for g in groups] == [[0, 2], [4], [3, 1]]
    assert [g.tolist() for g in length_groups(NextTokenLoss(ids))] == [[0, 1, 2, 3, 4]]  # no padding: one group


def test_subset_of_a_loss_drops_the_padding_columns_and_keeps_each_rows_score(tiny_llama):
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 50, (3, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[2, 6:] = 0
    metric = NextTokenLoss(ids, mask)
    part = metric.subset(torch.tensor([2, 1]))
    assert part.input_ids.shape == (2, 6) and part.row_lengths().tolist() == [6, 4]
    with torch.no_grad():
        whole = metric.row_scores(tiny_llama(input_ids=ids, attention_mask=mask).logits)
        short = part.row_scores(tiny_llama(input_ids=part.input_ids, attention_mask=part.attention_mask).logits)
    np.testing.assert_allclose(short.values, whole.values[[2, 1]], atol=1e-12)
    np.testing.assert_array_equal(short.weights, whole.weights[[2, 1]])


def test_length_grouped_sweep_equals_the_reference_in_the_batchs_row_order(tiny_llama):
    """Texts of 3 to 14 tokens padded to 14: run in length groups (each at its own width) and
    resumed, every row and component equals the unbatched full-width reference, rows in order."""
    from spectrascope.mech.ablation_sweep import length_groups

    gen = torch.Generator().manual_seed(5)
    lengths = [14, 3, 9, 4, 13, 6, 3]
    ids = torch.randint(0, 50, (len(lengths), 14), generator=gen)
    mask = (torch.arange(14)[None, :] < torch.tensor(lengths)[:, None]).long()
    metric = NextTokenLoss(ids, mask)
    assert len(length_groups(metric)) > 2
    weight = "model.layers.1.self_attn.o_proj.weight"
    components = [Head(0, 1), MlpBlock(2), AttnBlock(1), SpectralComponent(weight, "tail")]
    grouped = ablation_rows(tiny_llama, components, metric, mode="mean", reference=ids, max_batch_tokens=20)
    whole = ablation_rows(tiny_llama, components, metric, mode="mean", reference=ids, batched=False)
    padded = ablation_rows(tiny_llama, components, metric, mode="mean", reference=ids, group_lengths=False)
    # float32 products of other shapes may round differently (1 ulp seen on the avx2 code path);
    # the rows' values differ from each other by > 5e-3, so 1e-6 still catches a row out of order
    tol = {"rtol": 0, "atol": 1e-6}
    np.testing.assert_allclose(grouped.baseline.values, whole.baseline.values, **tol)
    np.testing.assert_array_equal(grouped.baseline.weights, [n - 1 for n in lengths])
    for component in components:
        np.testing.assert_allclose(grouped.ablated[component].values, whole.ablated[component].values, **tol)
        np.testing.assert_allclose(padded.ablated[component].values, whole.ablated[component].values, **tol)


def test_losses_joined_keep_every_rows_targets_and_score(tiny_llama):
    """Two losses of widths 5 and 8 (one with a target selection) as one batch: each row's
    score equals its own loss's, rows in order; padding added to the narrower one is not scored."""
    gen = torch.Generator().manual_seed(6)
    a = NextTokenLoss(torch.randint(0, 50, (2, 5), generator=gen), target_positions=[3, 4])
    mask = torch.ones(3, 8, dtype=torch.long)
    mask[0, 6:] = 0
    b = NextTokenLoss(torch.randint(0, 50, (3, 8), generator=gen), mask)
    joined = NextTokenLoss.cat([a, b], name="both")
    assert joined.input_ids.shape == (5, 8) and joined.name == "both"
    assert joined.targets.sum(dim=1).tolist() == [2, 2, 5, 7, 7]
    with torch.no_grad():

        def rows(m):
            return m.row_scores(tiny_llama(input_ids=m.input_ids, attention_mask=m.attention_mask).logits)

        np.testing.assert_allclose(rows(joined).values, torch.cat([rows(a).values, rows(b).values]), atol=1e-12)


def test_metric_rows_reduce_to_the_metric(tiny_llama):
    ids = torch.randint(0, 50, (4, 9), generator=torch.Generator().manual_seed(7))
    metric = NextTokenLoss(ids, target_positions=[5, 6, 7, 8])
    rows = metric.rows(tiny_llama)
    assert rows.values.shape == (4,) and rows.weights.tolist() == [4.0] * 4
    assert float(rows.reduce()) == pytest.approx(metric(tiny_llama), abs=1e-12)


def test_joint_metric_scores_each_part_on_its_own_positions(tiny_llama):
    """Two losses of one batch (positions 1-3 and 5-8) and a logit difference read from one
    forward: each column equals the part scored alone, whether the forward kept the union of
    the positions or every one; batches that differ are refused."""
    from spectrascope.mech.metrics import JointMetric

    ids = torch.randint(0, 50, (3, 9), generator=torch.Generator().manual_seed(8))
    first = NextTokenLoss(ids, target_positions=[1, 2, 3])
    second = NextTokenLoss(ids, target_positions=[5, 6, 7, 8])
    joint = JointMetric([first, second])
    assert joint.logit_positions.tolist() == [0, 1, 2, 4, 5, 6, 7]
    with torch.no_grad():
        every = tiny_llama(input_ids=ids).logits
        kept = tiny_llama(input_ids=ids, logits_to_keep=joint.logit_positions).logits
    assert kept.shape[1] == 7
    for logits in (every, kept):
        parts = JointMetric.split(joint.row_scores(logits))
        for part, alone in zip(parts, (first, second), strict=True):
            np.testing.assert_allclose(part.values, alone.row_scores(every).values, atol=1e-6)
            np.testing.assert_array_equal(part.weights, alone.row_scores(every).weights)
    assert joint.score(every).tolist() == pytest.approx([float(first.score(every)), float(second.score(every))])
    with pytest.raises(SpectrascopeError, match="one value per part"):
        joint(tiny_llama)
    with pytest.raises(SpectrascopeError, match="one batch"):
        JointMetric([first, NextTokenLoss(ids.flip(0))])
    with pytest.raises(SpectrascopeError, match="direction"):
        JointMetric([first, LogitDifference(ids, 3, 4)])


def test_sweep_of_a_joint_metric_equals_a_sweep_per_part(tiny_llama):
    """Heads, a block and a spectral edit on the two copies of a batch, read from one sweep:
    every row and component equals the sweep of that copy alone."""
    from spectrascope.mech.metrics import JointMetric

    ids = torch.randint(0, 50, (6, 10), generator=torch.Generator().manual_seed(9))
    first = NextTokenLoss(ids, target_positions=range(1, 5))
    second = NextTokenLoss(ids, target_positions=range(6, 10))
    components = [
        Head(0, 1),
        Head(2, 3),
        MlpBlock(1),
        SpectralComponent("model.layers.1.self_attn.o_proj.weight", "tail"),
    ]
    reference = torch.randint(0, 50, (4, 10), generator=torch.Generator().manual_seed(10))
    joint = ablation_rows(tiny_llama, components, JointMetric([first, second]), "mean", reference, max_batch_tokens=24)
    for part, alone in zip(joint.split(), (first, second), strict=True):
        own = ablation_rows(tiny_llama, components, alone, "mean", reference, max_batch_tokens=24)
        np.testing.assert_allclose(part.baseline.values, own.baseline.values, rtol=0, atol=1e-6)
        for component in components:
            np.testing.assert_allclose(part.ablated[component].values, own.ablated[component].values, atol=1e-6)
            assert not torch.equal(part.ablated[component].values, part.baseline.values)
