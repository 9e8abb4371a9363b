"""Mixtures of experts: per-expert weight spectra with an expert column (stacked in-memory
tensors, per-expert checkpoint tensors, stacked safetensors read slice by slice), the
router's spectrum, and expert routing frequencies per domain."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
import torch
from family_models import LAYERS, ids, model
from safetensors.torch import save_file

from spectrascope.activations.expert_routing import (
    ROUTING_COLUMNS,
    RoutingCounts,
    expert_routing,
    routing_counts,
    routing_section,
)
from spectrascope.errors import ArchitectureError
from spectrascope.report.html import Section
from spectrascope.weights.api import analyze_weights

N_EXPERTS, TOP_K = 4, 2


def _rows(table: pd.DataFrame, layer: int) -> pd.DataFrame:
    return table[table["block"] == layer].set_index("name")


def test_stacked_experts_give_one_row_per_expert_and_the_router_its_own():
    table = analyze_weights(model("mixtral"), min_evals=1)
    assert table["expert"].dtype == "Int64"
    for layer in range(LAYERS):
        rows = _rows(table, layer)
        prefix = f"model.layers.{layer}.mlp.experts"
        for e in range(N_EXPERTS):
            assert rows.loc[f"{prefix}.gate_up_proj[{e}]", ["role", "expert"]].tolist() == ["mlp_gate_up", e]
            assert rows.loc[f"{prefix}.down_proj[{e}]", ["role", "expert"]].tolist() == ["mlp_down", e]
            assert (rows.loc[f"{prefix}.gate_up_proj[{e}]", "N"], rows.loc[f"{prefix}.gate_up_proj[{e}]", "M"]) == (
                96,
                32,
            )
        router = rows.loc[f"model.layers.{layer}.mlp.gate.weight"]
        assert (
            router["role"] == "router" and pd.isna(router["expert"]) and (router["N"], router["M"]) == (32, N_EXPERTS)
        )
        assert router["status"] == "success" or "too few eigenvalues" in router["reason"]  # 4 experts: 4 eigenvalues
    assert table.loc[table["role"] == "q", "expert"].isna().all()


def test_expert_matrix_spectra_equal_the_slices_of_the_stacked_tensor():
    m = model("mixtral")
    table = analyze_weights(m, min_evals=1).set_index("name")
    down = m.model.layers[1].mlp.experts.down_proj.detach()
    alone = analyze_weights({"model.layers.1.x.weight": down[2].clone()}, min_evals=1)
    assert table.loc["model.layers.1.mlp.experts.down_proj[2]", "alpha"] == pytest.approx(
        alone["alpha"].iloc[0], abs=1e-12
    )


def test_per_expert_checkpoint_tensors_carry_their_expert_index(tmp_path):
    m = model("mixtral")
    m.save_pretrained(tmp_path / "mixtral")  # on disk: block_sparse_moe.experts.{e}.w1/w2/w3
    on_disk = analyze_weights(tmp_path / "mixtral", min_evals=1).set_index("name")
    in_memory = analyze_weights(m, min_evals=1).set_index("name")
    for e in range(N_EXPERTS):
        row = on_disk.loc[f"model.layers.0.block_sparse_moe.experts.{e}.w2.weight"]
        assert (row["role"], row["expert"]) == ("mlp_down", e)
        assert row["alpha"] == pytest.approx(
            in_memory.loc[f"model.layers.0.mlp.experts.down_proj[{e}]", "alpha"], abs=1e-12
        )
        assert on_disk.loc[f"model.layers.0.block_sparse_moe.experts.{e}.w1.weight", "role"] == "mlp_gate"
        assert on_disk.loc[f"model.layers.0.block_sparse_moe.experts.{e}.w3.weight", "role"] == "mlp_up"
    assert on_disk.loc["model.layers.0.block_sparse_moe.gate.weight", "role"] == "router"


def test_stacked_safetensors_are_read_one_expert_at_a_time(tmp_path):
    m = model("qwen3_moe")
    state = {k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}
    folder = tmp_path / "stacked"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(m.config.to_json_string())
    from_file = analyze_weights(folder, min_evals=1).set_index("name")
    in_memory = analyze_weights(m, min_evals=1).set_index("name")
    stacked = [n for n in in_memory.index if "[" in n]
    assert len(stacked) == LAYERS * 2 * N_EXPERTS
    np.testing.assert_allclose(from_file.loc[stacked, "alpha"], in_memory.loc[stacked, "alpha"], rtol=1e-12)
    assert list(from_file.loc[stacked, "expert"]) == list(in_memory.loc[stacked, "expert"])


# ----------------------------------------------------------------------------- routing


def test_routing_counts_by_hand():
    counts = RoutingCounts(n_experts=4)
    logits = torch.tensor(
        [
            [9.0, 0.0, 8.0, 0.0],  # left out by the mask
            [0.0, 5.0, 4.0, 0.0],  # experts 1, 2
            [3.0, 0.0, 0.0, 4.0],
        ]
    )  # experts 3, 0
    counts.update(logits, torch.tensor([0, 1, 1]), top_k=2)
    assert counts.n_tokens == 2
    assert counts.assignments.tolist() == [1, 1, 1, 1]
    np.testing.assert_allclose(counts.prob_sum, torch.softmax(logits[1:].double(), -1).sum(0).numpy())


def test_routing_counts_match_the_router_logits_hf_returns():
    m = model("mixtral")
    x, mask = ids(), torch.ones(2, 9, dtype=torch.long)
    stats = mask.clone()
    stats[:, 0] = 0
    counts = routing_counts(m, [{"input_ids": x, "attention_mask": mask, "stats_mask": stats}])
    with torch.no_grad():
        router_logits = m(input_ids=x, output_router_logits=True).router_logits
    assert sorted(counts) == list(range(LAYERS))
    for layer, logits in enumerate(router_logits):  # (batch * pos, experts), HF's own record
        chosen = logits[stats.flatten().bool()].topk(TOP_K, dim=-1).indices.flatten()
        assert counts[layer].assignments.tolist() == torch.bincount(chosen, minlength=N_EXPERTS).tolist()
        assert counts[layer].n_tokens == 2 * 8


def test_mixed_dense_and_sparse_layers_route_only_the_sparse_ones():
    counts = routing_counts(model("qwen2_moe"), [{"input_ids": ids(), "attention_mask": torch.ones(2, 9)}])
    assert sorted(counts) == [0]  # mlp_only_layers=[1]


class _CharTokenizer:
    """A tiny tokenizer: one id per character (ids 3 .. 62), pad 0."""

    pad_token_id = 0

    def __call__(self, texts, truncation=True, max_length=128):
        return {"input_ids": [[3 + ord(c) % 60 for c in text][:max_length] for text in texts]}


def test_expert_routing_table_and_report_section(tmp_path):
    handle = types.SimpleNamespace(hf=model("mixtral"), tokenizer=_CharTokenizer(), name="tiny-mixtral")
    table = expert_routing(handle, corpora="arithmetic,legal", max_tokens=200, seq_len=32, out_dir=tmp_path)
    assert list(table.columns) == ROUTING_COLUMNS
    assert set(table["domain"]) == {"arithmetic", "legal"} and set(table["layer"]) == set(range(LAYERS))
    sums = table.groupby(["layer", "domain"])["frequency"].sum()
    np.testing.assert_allclose(sums, 1.0)
    np.testing.assert_allclose(table.groupby(["layer", "domain"])["enrichment"].mean(), 1.0)
    np.testing.assert_allclose(table.groupby(["layer", "domain"])["mean_prob"].sum(), 1.0)
    assert (table["n_tokens"] == 200).all()
    assert (tmp_path / "expert_routing.parquet").exists()
    section = routing_section(table)
    assert isinstance(section, Section) and len(section.figures) == LAYERS and len(section.tables) == 1


def test_a_dense_model_has_no_routing():
    with pytest.raises(ArchitectureError, match="not a mixture-of-experts model"):
        routing_counts(model("llama2"), [])
