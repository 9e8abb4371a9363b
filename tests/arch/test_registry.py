"""The registry itself: lookups, head geometry under each family's keys, role patterns of
checkpoint names, q/k-norm folding by hand, the capability table."""

from __future__ import annotations

import numpy as np
import pytest

from spectrascope.arch import (
    REGISTRY,
    ROLES,
    ArchSpec,
    BlockKind,
    Capability,
    HeadGeometry,
    NormKind,
    SiteKind,
    find_spec,
    head_geometry,
    spec_for,
    spec_for_model_type,
    supported_model_types,
    weight_role,
)
from spectrascope.arch.capabilities import (
    CAPABILITY_COLUMNS,
    capability_markdown,
    capability_table,
)
from spectrascope.arch.roles import VECTOR_ROLES
from spectrascope.errors import ArchitectureError, SpectrascopeError
from spectrascope.spectra.esd import small_factor_product_eigenvalues
from spectrascope.spectra.heads import head_rows
from spectrascope.weights.projections import fold_qk_norms, split_projections


@pytest.mark.parametrize("model_type", sorted(REGISTRY))
def test_every_spec_is_well_formed(model_type):
    spec = spec_for_model_type(model_type)
    assert isinstance(spec, ArchSpec)
    kinds = list(spec.points)
    assert kinds == [kind for kind in SiteKind if kind in kinds]  # forward order
    assert {SiteKind.RESID_PRE, SiteKind.RESID_POST} <= set(kinds)
    assert (SiteKind.RESID_MID in kinds) == (spec.block not in (BlockKind.PARALLEL, BlockKind.RECURRENT))
    assert (spec.attention is None) == (SiteKind.Z not in kinds) == (not spec.supports(Capability.ATTENTION))
    for pattern in spec.weights + spec.globals:
        assert pattern.role in ROLES + VECTOR_ROLES, pattern
    for role in spec.readers:
        assert role in ROLES, role
    assert spec.readout is not None and spec.readout.unembed


def test_unknown_family_is_one_line_listing_the_supported_ones():
    assert find_spec({"model_type": "t5"}) is None
    with pytest.raises(
        ArchitectureError, match=r"model type 't5' is not supported; supported model types: bert, "
    ) as info:
        spec_for({"model_type": "t5"})
    assert "\n" not in str(info.value) and issubclass(ArchitectureError, SpectrascopeError)
    with pytest.raises(ArchitectureError, match="a config without model_type"):
        spec_for({})
    assert "llama" in supported_model_types() and "gemma2" in supported_model_types()


@pytest.mark.parametrize(
    "config, expected",
    [
        # Falcon-7B: multi-query (one key/value head), old key names
        ({"model_type": "falcon", "n_head": 71, "hidden_size": 4544, "multi_query": True}, (71, 1, 64, 4544)),
        # Falcon-40B: new decoder architecture with n_head_kv groups
        (
            {
                "model_type": "falcon",
                "n_head": 128,
                "n_head_kv": 8,
                "hidden_size": 8192,
                "new_decoder_architecture": True,
            },
            (128, 8, 64, 8192),
        ),
        # Falcon-RW: multi-head
        (
            {"model_type": "falcon", "num_attention_heads": 32, "hidden_size": 2048, "multi_query": False},
            (32, 32, 64, 2048),
        ),
        # explicit head_dim (Gemma-7B: 16 heads x 256 != 3072)
        (
            {
                "model_type": "gemma",
                "num_attention_heads": 16,
                "num_key_value_heads": 16,
                "head_dim": 256,
                "hidden_size": 3072,
            },
            (16, 16, 256, 3072),
        ),
        ({"model_type": "gpt2", "n_head": 12, "n_embd": 768}, (12, 12, 64, 768)),
        (
            {"model_type": "llama", "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096},
            (32, 8, 128, 4096),
        ),
    ],
)
def test_head_geometry_under_each_familys_keys(config, expected):
    geometry = head_geometry(config)
    assert (geometry.n_heads, geometry.n_kv_heads, geometry.head_dim, geometry.d_model) == expected


def test_geometry_of_an_unknown_family_is_not_guessed():
    deepseek = {
        "model_type": "deepseek_v3",
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "hidden_size": 7168,
        "head_dim": 64,
        "kv_lora_rank": 512,
        "qk_rope_head_dim": 64,
        "qk_nope_head_dim": 128,
        "v_head_dim": 128,
    }
    assert head_geometry(deepseek) is None  # multi-latent attention: refused, never read wrong
    assert head_geometry({"model_type": "mamba", "hidden_size": 32}) is None  # no attention


@pytest.mark.parametrize(
    "model_type, name, expected",
    [
        ("mixtral", "model.layers.3.block_sparse_moe.experts.7.w1.weight", (3, "mlp_gate", 7, False)),
        ("mixtral", "model.layers.3.block_sparse_moe.experts.7.w3.weight", (3, "mlp_up", 7, False)),
        ("mixtral", "model.layers.3.block_sparse_moe.experts.7.w2.weight", (3, "mlp_down", 7, False)),
        ("mixtral", "model.layers.3.block_sparse_moe.gate.weight", (3, "router", None, False)),
        ("mixtral", "model.layers.0.mlp.experts.gate_up_proj", (0, "mlp_gate_up", None, True)),
        ("qwen2_moe", "model.layers.1.mlp.experts.11.down_proj.weight", (1, "mlp_down", 11, False)),
        ("qwen2_moe", "model.layers.1.mlp.shared_expert.up_proj.weight", (1, "mlp_up", None, False)),
        ("qwen2_moe", "model.layers.1.mlp.shared_expert_gate.weight", (1, "router", None, False)),
        ("qwen3", "model.layers.2.self_attn.q_norm.weight", (2, "q_norm", None, False)),
        ("roberta", "lm_head.decoder.weight", (-1, "unembed", None, False)),
        ("roberta", "roberta.embeddings.position_embeddings.weight", (-1, "other", None, False)),
        ("gpt_neox", "embed_out.weight", (-1, "unembed", None, False)),
        ("phi3", "model.layers.0.mlp.gate_up_proj.weight", (0, "mlp_gate_up", None, False)),
        ("falcon", "transformer.h.5.self_attention.query_key_value.weight", (5, "qkv", None, False)),
        ("mamba", "backbone.layers.1.mixer.in_proj.weight", (1, "ssm_in", None, False)),
        ("mamba", "backbone.embeddings.weight", (-1, "embed", None, False)),
    ],
)
def test_roles_of_checkpoint_names(model_type, name, expected):
    role = weight_role(name, spec_for_model_type(model_type))
    assert (role.block, role.role, role.expert, role.stacked) == expected
    assert role.known


def test_a_name_of_another_family_is_unknown_and_other():
    role = weight_role("transformer.h.0.attn.c_attn.weight", spec_for_model_type("llama"))
    assert (role.block, role.role, role.known) == (0, "other", False)
    assert weight_role("h.0.attn.c_attn.weight", None).role == "other"


def test_gpt2_conv1d_weights_are_marked_transposed():
    spec = spec_for_model_type("gpt2")
    assert weight_role("transformer.h.0.mlp.c_fc.weight", spec).transposed
    assert not weight_role("model.layers.0.mlp.up_proj.weight", spec_for_model_type("llama")).transposed


def test_config_attributes_select_the_layout():
    assert spec_for({"model_type": "gpt_neox"}).block is BlockKind.PARALLEL
    assert spec_for({"model_type": "gpt_neox", "use_parallel_residual": False}).block is BlockKind.PRE_NORM
    assert spec_for({"model_type": "stablelm", "use_parallel_residual": True}).block is BlockKind.PARALLEL
    assert spec_for({"model_type": "falcon", "parallel_attn": False, "multi_query": False}).block is BlockKind.PRE_NORM
    refused = spec_for({"model_type": "stablelm", "qk_layernorm": True})
    with pytest.raises(ArchitectureError, match="qk_layernorm"):
        refused.require(Capability.HEADS, "--heads")
    assert spec_for({"model_type": "gemma2"}).readout.softcap == "final_logit_softcapping"


def test_readers_name_the_norm_each_matrix_reads():
    llama, gemma2, olmo2 = (spec_for_model_type(t) for t in ("llama", "gemma2", "olmo2"))
    assert (
        llama.readers["q"].module == "input_layernorm"
        and llama.readers["mlp_gate"].module == "post_attention_layernorm"
    )
    assert gemma2.readers["mlp_up"].module == "pre_feedforward_layernorm"
    assert gemma2.readers["q"].kind is NormKind.RMS_OFFSET
    assert olmo2.readers["q"] is None  # OLMo-2 reads the raw residual stream


# ----------------------------------------------------------------------------- q/k norm folding, by hand


def _proj(rng, n_heads=2, n_kv=1, hd=4, d=8):
    geom = HeadGeometry(n_heads, n_kv, hd, d)
    tensors = {
        "q": rng.standard_normal((n_heads * hd, d)),
        "k": rng.standard_normal((n_kv * hd, d)),
        "v": rng.standard_normal((n_kv * hd, d)),
        "o": rng.standard_normal((d, n_heads * hd)),
    }
    return geom, tensors


def test_rms_gains_scale_the_qk_eigenvalues_by_their_squares():
    rng = np.random.default_rng(0)
    geom, tensors = _proj(rng)
    spec = spec_for_model_type("qwen3")  # per-head RMSNorm weights (hd,)
    proj = split_projections(tensors, spec, geom)
    plain = {r["head"]: r["lambda_max"] for r in head_rows(proj, geom, 0) if r["circuit"] == "qk"}
    gains = {"q_norm": np.full(4, 2.0), "k_norm": np.full(4, 3.0)}
    folded = {
        r["head"]: r["lambda_max"]
        for r in head_rows(fold_qk_norms(proj, {**tensors, **gains}, spec, geom), geom, 0)
        if r["circuit"] == "qk"
    }
    for head, value in plain.items():  # singular values x 6 -> eigenvalues x 36
        assert folded[head] == pytest.approx(36 * value, rel=1e-10)
    q_rows = [
        r["lambda_max"]
        for r in head_rows(fold_qk_norms(proj, {**tensors, **gains}, spec, geom), geom, 0)
        if r["circuit"] == "q"
    ]
    assert q_rows == [r["lambda_max"] for r in head_rows(proj, geom, 0) if r["circuit"] == "q"]  # slices stay raw


def test_offset_and_full_width_and_layer_norm_folds():
    rng = np.random.default_rng(1)
    geom, tensors = _proj(rng)
    proj = split_projections(tensors, spec_for_model_type("gemma3_text"), geom)
    weight = rng.standard_normal(4)
    folded = fold_qk_norms(proj, {"q_norm": weight, "k_norm": np.zeros(4)}, spec_for_model_type("gemma3_text"), geom)
    np.testing.assert_allclose(folded["q_eff"][4:8], (1 + weight)[:, None] * proj["q"][4:8])  # Gemma: 1 + w
    np.testing.assert_allclose(folded["k_eff"], proj["k"])
    wide = rng.standard_normal(8)  # OLMo-2: one weight over both heads
    folded = fold_qk_norms(proj, {"q_norm": wide, "k_norm": np.ones(4)}, spec_for_model_type("olmo2"), geom)
    np.testing.assert_allclose(folded["q_eff"], wide[:, None] * proj["q"])
    phi = spec_for({"model_type": "phi", "qk_layernorm": True})  # LayerNorm: centering, then the gain
    folded = fold_qk_norms(proj, {"q_norm": np.ones(4), "k_norm": np.ones(4)}, phi, geom)
    centering = np.eye(4) - np.ones((4, 4)) / 4
    np.testing.assert_allclose(folded["q_eff"][:4], centering @ proj["q"][:4])
    qk = small_factor_product_eigenvalues(folded["q_eff"][:4].T, folded["k_eff"].T)
    assert np.sum(qk > 1e-10) == 3  # rank hd - 1: the score sees centered q and k only


# ----------------------------------------------------------------------------- capability table


def test_capability_table_is_generated_from_the_registry():
    table = capability_table()
    assert list(table.columns) == CAPABILITY_COLUMNS
    assert list(table["model_type"]) == sorted(REGISTRY)
    row = table.set_index("model_type")
    assert row.loc["mamba", "heads"] == "no" and row.loc["mamba", "sites"] == "resid_pre, resid_post"
    assert row.loc["gemma2", "lens"] == "yes (softcap)" and row.loc["mixtral", "moe"] == "yes"
    assert "resid_mid" not in row.loc["gptj", "sites"] and row.loc["gpt2", "resume"] == "no"
    markdown = capability_markdown(table)
    assert markdown.splitlines()[0].startswith("| model_type | family |")
    assert len(markdown.splitlines()) == len(table) + 2
