"""Every registered family, proven on a tiny random model (``family_models.CASES``).

Per family: observing leaves the logits bit-identical; ``resid_post`` is HF's hidden state;
every site has its documented shape and the residual identities of its block type hold;
every weight has its proper role and the head geometry is the config's; per-head spectra;
the logit lens's last layer is the model's logits; the forward resumes at a layer where the
spec says so; head scores and an ablation sweep run and leave the model bit-identical;
cached activations are copies (Falcon adds attention into the MLP output in place).
"""

from __future__ import annotations

import pytest
import torch
from family_models import CASES, LAYERS, D, ids, model

from spectrascope.arch import (
    BlockKind,
    Capability,
    SiteKind,
    read_geometry,
    weight_role,
)
from spectrascope.arch.roles import ROLES
from spectrascope.errors import ArchitectureError
from spectrascope.mech.ablation_sweep import ablation_sweep
from spectrascope.mech.head_scores import head_scores
from spectrascope.mech.logit_lens import lens_logits
from spectrascope.mech.metrics import NextTokenLoss
from spectrascope.models.handle import as_model
from spectrascope.trace import list_sites, run_with_cache
from spectrascope.trace.architectures import bind
from spectrascope.trace.resume import forward_from_layer, resumable
from spectrascope.trace.tracer import model_output_tensor
from spectrascope.weights.api import analyze_heads, analyze_weights
from spectrascope.weights.projections import split_projections

NAMES = list(CASES)
ATOL = 1e-5


def _mask() -> torch.Tensor:
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    return mask


def _state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _hooks(m: torch.nn.Module) -> dict[str, tuple]:
    """Every module's forward (pre-)hook keys (transformers installs its own output recorders)."""
    return {n: (tuple(mod._forward_hooks), tuple(mod._forward_pre_hooks)) for n, mod in m.named_modules()}


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=ATOL, rtol=ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_registry_resolves_the_family_and_its_geometry(name):
    case, m = CASES[name], model(name)
    handle = as_model(m)
    assert handle.spec.name == case.family
    geometry = read_geometry(m.config, handle.spec.attention)
    assert (geometry.n_heads, geometry.n_kv_heads, geometry.head_dim, geometry.d_model) == (*case.heads, D)
    assert handle.n_layers == LAYERS == bind(m).n_layers


@pytest.mark.parametrize("name", NAMES)
def test_observing_every_site_leaves_logits_bit_identical(name):
    m, x = model(name), ids()
    for mask in (None, _mask()):
        with torch.no_grad():
            plain = model_output_tensor(m(input_ids=x, attention_mask=mask))
        logits, cache = run_with_cache(m, x, attention_mask=mask)
        assert torch.equal(plain, logits)
        assert list(cache) == list_sites(m)


@pytest.mark.parametrize("name", NAMES)
def test_resid_post_is_the_hidden_state_of_hf(name):
    m, x = model(name), ids()
    _, cache = run_with_cache(m, x, "resid_post")
    with torch.no_grad():
        hidden = m(input_ids=x, output_hidden_states=True).hidden_states
    assert len(hidden) == LAYERS + 1
    for layer in range(LAYERS - 1):
        assert torch.equal(cache[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1])
    last = cache[f"blocks.{LAYERS - 1}.hook_resid_post"]
    final_norm = as_model(m).spec.readout.final_norm
    if final_norm is not None:  # HF's last hidden state is after the final norm
        with torch.no_grad():
            last = m.base_model.get_submodule(final_norm)(last)
    assert torch.equal(last, hidden[-1])


@pytest.mark.parametrize("name", NAMES)
def test_every_site_has_its_documented_shape(name):
    case, m = CASES[name], model(name)
    spec, (n_heads, _, head_dim) = as_model(m).spec, case.heads
    expected = {
        SiteKind.RESID_PRE: (2, 9, D),
        SiteKind.RESID_MID: (2, 9, D),
        SiteKind.RESID_POST: (2, 9, D),
        SiteKind.ATTN_OUT: (2, 9, D),
        SiteKind.MLP_OUT: (2, 9, D),
        SiteKind.Z: (2, 9, n_heads, head_dim),
        SiteKind.PATTERN: (2, n_heads, 9, 9),
        SiteKind.MLP_POST: (2, 9, case.d_mlp),
    }
    kinds = set(spec.points)
    assert (SiteKind.MLP_POST in kinds) == (case.d_mlp is not None)
    assert (SiteKind.RESID_MID in kinds) == (spec.block is not BlockKind.PARALLEL)
    _, cache = run_with_cache(m, ids())
    assert len(cache) == len(kinds) * LAYERS
    for site, value in cache.items():
        kind = SiteKind(site.split(".", 2)[2])
        assert tuple(value.shape) == expected[kind], site
    patterns = [v for k, v in cache.items() if k.endswith("hook_pattern")]
    for pattern in patterns:  # probabilities over earlier keys
        _close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
        if spec.causal:
            assert float(pattern.triu(1).abs().max()) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_residual_identities_of_the_block(name):
    m = model(name)
    bound = bind(m)
    spec = bound.spec
    _, c = run_with_cache(m, ids())
    for layer in range(LAYERS):

        def at(kind: SiteKind, layer: int = layer) -> torch.Tensor:
            return c[f"blocks.{layer}.{kind.value}"]

        pre, attn, mlp, post = (
            at(SiteKind.RESID_PRE),
            at(SiteKind.ATTN_OUT),
            at(SiteKind.MLP_OUT),
            at(SiteKind.RESID_POST),
        )
        if spec.block is BlockKind.PARALLEL:
            _close(post, pre + attn + mlp)
        elif spec.block is BlockKind.POST_NORM:
            block = bound.blocks[layer]
            with torch.no_grad():
                _close(at(SiteKind.RESID_MID), block.attention.output.LayerNorm(pre + attn))
                _close(post, block.output.LayerNorm(at(SiteKind.RESID_MID) + mlp))
        else:  # pre-norm, sandwich, post-sublayer: attn_out and mlp_out are what is added
            _close(at(SiteKind.RESID_MID), pre + attn)
            _close(post, at(SiteKind.RESID_MID) + mlp)
        if layer + 1 < LAYERS:
            assert torch.equal(c[f"blocks.{layer + 1}.hook_resid_pre"], post)


@pytest.mark.parametrize("name", NAMES)
def test_z_and_mlp_post_through_their_modules_give_the_sub_block_outputs(name):
    m = model(name)
    bound = bind(m)
    spec = bound.spec
    _, c = run_with_cache(m, ids())
    after_norm = spec.block in (BlockKind.SANDWICH, BlockKind.POST_SUBLAYER)
    for layer in range(LAYERS):
        with torch.no_grad():
            out = bound.module(layer, SiteKind.Z)(c[f"blocks.{layer}.attn.hook_z"].flatten(-2))
            if after_norm:
                out = bound.module(layer, SiteKind.ATTN_OUT)(out)
            _close(out, c[f"blocks.{layer}.hook_attn_out"])
            if SiteKind.MLP_POST in spec.points:
                out = bound.module(layer, SiteKind.MLP_POST)(c[f"blocks.{layer}.mlp.hook_post"])
                if after_norm:
                    out = bound.module(layer, SiteKind.MLP_OUT)(out)
                _close(out, c[f"blocks.{layer}.hook_mlp_out"])


@pytest.mark.parametrize("name", NAMES)
def test_every_weight_has_its_role(name):
    case, m = CASES[name], model(name)
    spec = as_model(m).spec
    per_block: dict[int, set[str]] = {}
    for weight, param in m.named_parameters():
        role = weight_role(weight, spec)
        if param.ndim >= 2:
            assert role.known, f"{weight}: no pattern of the {spec.name} family"
            assert role.role in ROLES
            assert role.stacked == (param.ndim == 3), weight
            if role.block >= 0:
                per_block.setdefault(role.block, set()).add(role.role)
    assert sorted(per_block) == list(range(LAYERS))
    for block, roles in per_block.items():
        assert case.roles <= roles, (block, roles)
        assert "other" not in roles
    embed = [n for n, p in m.named_parameters() if weight_role(n, spec).role == "embed"]
    assert len(embed) == 1


@pytest.mark.parametrize("name", NAMES)
def test_split_projections_have_the_geometry_of_the_config(name):
    m = model(name)
    handle = as_model(m)
    geometry = handle.geometry
    params = dict(m.named_parameters())
    tensors = {}
    for weight, param in params.items():
        role = weight_role(weight, handle.spec)
        if role.block == 0 and role.role in ("q", "k", "v", "o", "qkv"):
            tensors[role.role] = param.detach().numpy()
    proj = split_projections(tensors, handle.spec, geometry)
    H, G, hd = geometry.n_heads, geometry.n_kv_heads, geometry.head_dim
    assert proj["q"].shape == (H * hd, D) and proj["k"].shape == (G * hd, D) and proj["v"].shape == (G * hd, D)
    assert proj["o"].shape == (D, H * hd)


@pytest.mark.parametrize("name", NAMES)
def test_per_head_spectra(name):
    case, m = CASES[name], model(name)
    n_heads, n_kv, _ = case.heads
    heads = analyze_heads(m)
    assert len(heads) == LAYERS * (2 * n_kv + 4 * n_heads)
    assert (heads["status"] == "success").all()
    assert set(heads["circuit"]) == {"q", "k", "v", "o", "qk", "ov"}


@pytest.mark.parametrize("name", NAMES)
def test_weights_table_has_no_other_for_block_matrices(name):
    m = model(name)
    table = analyze_weights(m, min_evals=1)
    block_rows = table[(table["block"] >= 0) & (table["status"] != "skipped")]
    assert not (block_rows["role"] == "other").any()
    assert set(CASES[name].roles) <= set(block_rows["role"])
    assert "expert" in table.columns


@pytest.mark.parametrize("name", NAMES)
def test_logit_lens_last_layer_is_the_model_logits(name):
    m = model(name)
    x = ids(1, 7)
    points, lens, logits = lens_logits(m, x)
    assert [layer for layer, _ in points] == [-1] + list(range(LAYERS))
    assert torch.equal(lens[-1], logits[0])


@pytest.mark.parametrize("name", NAMES)
def test_resuming_at_a_layer_equals_the_full_forward(name):
    m = model(name)
    spec = as_model(m).spec
    assert resumable(m) == (spec.resumable and spec.supports(Capability.RESUME))
    if not resumable(m):
        return
    x, mask = ids(), _mask()
    logits, cache = run_with_cache(m, x, "resid_pre", attention_mask=mask)
    for layer in range(LAYERS):
        with torch.no_grad():
            resumed = forward_from_layer(m, layer, cache[f"blocks.{layer}.hook_resid_pre"], mask)
        _close(resumed, logits)
    assert len(m.base_model.get_submodule(spec.layers)) == LAYERS  # the block list is restored


@pytest.mark.parametrize("name", NAMES)
def test_head_scores_and_ablation_sweep_run_and_leave_the_model_unchanged(name):
    m = model(name)
    x = ids()
    before, hooks_before = _state(m), _hooks(m)
    with torch.no_grad():
        plain = model_output_tensor(m(input_ids=x))
    scores = head_scores(m, n_seq=2, seq_len=4, batch_size=2)
    assert len(scores) == LAYERS * CASES[name].heads[0]
    assert scores[["induction", "previous_token", "duplicate_token"]].stack().between(0, 1).all()
    metric = NextTokenLoss(x)
    if not as_model(m).spec.causal:  # an encoder has no next-token loss to ablate against: refused up front
        with pytest.raises(ArchitectureError, match="needs a causal language model"):
            ablation_sweep(m, "all", metric)
        assert _hooks(m) == hooks_before
        return
    sweep = ablation_sweep(m, "all", metric)
    assert len(sweep) == LAYERS * CASES[name].heads[0] and sweep["value"].notna().all()
    blocks = ablation_sweep(m, "all-attn", metric, mode="mean", reference=x)
    assert len(blocks) == LAYERS
    one_at_a_time = ablation_sweep(m, "all", metric, batched=False)
    _close(torch.tensor(sweep["value"].to_numpy()), torch.tensor(one_at_a_time["value"].to_numpy()))
    after = _state(m)
    assert all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(model_output_tensor(m(input_ids=x)), plain)
    assert _hooks(m) == hooks_before


@pytest.mark.parametrize("name", NAMES)
def test_cached_activations_are_copies(name):
    m = model(name)
    _, cache = run_with_cache(m, ids())
    pointers = [v.untyped_storage().data_ptr() for v in cache.values()]
    assert len(set(pointers)) == len(pointers)


def test_falcon_in_place_add_does_not_reach_the_cached_mlp_out():
    m = model("falcon")  # parallel block: HF computes mlp_output += attention_output in place
    bound = bind(m)
    _, c = run_with_cache(m, ids(), ["blocks.0.hook_resid_pre", "blocks.0.hook_mlp_out", "blocks.0.hook_attn_out"])
    with torch.no_grad():
        block = bound.blocks[0]
        mlp_alone = block.mlp(block.input_layernorm(c["blocks.0.hook_resid_pre"]))
    assert torch.equal(c["blocks.0.hook_mlp_out"], mlp_alone)
    assert not torch.allclose(c["blocks.0.hook_mlp_out"], mlp_alone + c["blocks.0.hook_attn_out"])
