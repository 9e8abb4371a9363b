"""The spectral question: statistics by hand (BH, permutation and bootstrap on planted differences,
precision / average precision), the enrichment matrix against the bridge's pairwise overlap,
partial (projected) edge patches, and the toy induction model, whose circuit is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from circuit_reference import micro_llama, micro_task

from spectrascope.bridge.alignment import subspace_overlap
from spectrascope.circuits.discover import discover_circuit
from spectrascope.circuits.edge_patching import EdgePatcher
from spectrascope.circuits.layout import llama_layout
from spectrascope.circuits.spectral import (
    average_precision,
    benjamini_hochberg,
    circuit_vs_rest,
    eigenmode_faithfulness,
    prior_recovery,
    reader_subspaces,
    restricted_rows,
    spectral_edge_scores,
    writer_subspaces,
)
from spectrascope.circuits.tasks import induction_task
from spectrascope.mech.toy_models import load_toy_induction


def test_benjamini_hochberg_by_hand():
    q = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.5, np.nan]))
    # sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.06, 0.0533, 0.5 -> cumulative minimum from the top
    np.testing.assert_allclose(q[:4], [0.04, 0.0533333333, 0.0533333333, 0.5])
    assert np.isnan(q[4])


def test_circuit_vs_rest_on_a_planted_difference():
    rng = np.random.default_rng(0)
    nodes = [f"head:{i // 4}.{i % 4}" for i in range(40)]
    members = set(nodes[:8])
    heads = pd.DataFrame(
        {
            "node": nodes,
            "planted": rng.normal(size=40) + 3.0 * np.isin(nodes, list(members)),
            "noise": rng.normal(size=40),
        }
    )
    table = circuit_vs_rest(members, heads, None, n_perm=2000, seed=1).set_index("metric")
    assert table.loc["planted", "p"] < 0.001 and table.loc["planted", "q"] < 0.01
    planted = table.loc["planted"]
    assert 1.0 < planted["difference_lo"] < planted["difference"] < planted["difference_hi"]
    assert planted["difference"] == pytest.approx(planted["mean_circuit"] - planted["mean_rest"])
    assert table.loc["noise", "p"] > 0.05
    assert table.loc["planted", "n_circuit"] == 8 and table.loc["planted", "n_rest"] == 32


def test_average_precision_and_recovery_by_hand():
    positive = np.array([True, False, True, False])
    assert average_precision(np.array([0, 2, 1, 3]), positive) == 1.0
    assert average_precision(np.array([1, 0, 3, 2]), positive) == pytest.approx((1 / 2 + 2 / 4) / 2)
    valid = np.ones((2, 5), dtype=bool)
    circuit = np.zeros((2, 5), dtype=bool)
    circuit[0, :3] = True
    perfect = prior_recovery(circuit.astype(float), circuit, valid, ks=[1, 3, 10], n_random=500)
    table = perfect.table.set_index("k")
    assert table.loc[3, "precision"] == 1.0 and table.loc[3, "recall"] == 1.0 and table.loc[10, "precision"] == 0.3
    assert perfect.average_precision == 1.0 and perfect.p < 0.01
    assert table.loc[10, "random_precision"] == pytest.approx(0.3)


def test_enrichment_matrix_equals_the_pairwise_overlap():
    model = micro_llama(n_layers=2, n_heads=4, n_kv_heads=2, seed=3, identity_norms=False, dtype=torch.float32)
    graph, scores = spectral_edge_scores(model)
    layout = llama_layout(model)
    writers, readers = writer_subspaces(layout, graph), reader_subspaces(layout, graph)
    inputs, nodes = graph.edge_list()
    nonzero = 0
    for i, u in zip(inputs, nodes, strict=True):
        A, B = writers[u].writes("tail"), readers[i].reads("tail")
        expected = (
            0.0
            if min(A.shape[1], B.shape[1]) == 0
            else (subspace_overlap(A, B) / (max(A.shape[1], B.shape[1]) / layout.d_model))
        )
        assert scores[i, u] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        nonzero += expected > 0
    assert np.all(scores[~graph.valid] == 0)
    assert nonzero >= 3  # (most 4-dim heads of the micro model have no fitted tail: their enrichment is 0)


def test_projected_patches_interpolate_between_kept_and_patched():
    model = micro_llama(seed=1)
    patcher = EdgePatcher(model, micro_task())
    graph = patcher.graph
    kept = np.zeros(graph.valid.shape, dtype=bool)
    kept[graph.logits_input, :5] = True
    kept[graph.head_input(1, 2, "k"), :3] = True
    patched = graph.valid & ~kept
    identity = {u: torch.eye(16, dtype=torch.float64) for u in range(graph.n_nodes)}
    zero = {u: torch.zeros(16, 16, dtype=torch.float64) for u in range(graph.n_nodes)}
    np.testing.assert_allclose(
        patcher.metric_rows(patched[None], kept[None], identity), patcher.metric_rows(graph.valid[None]), atol=1e-12
    )
    np.testing.assert_allclose(
        patcher.metric_rows(patched[None], kept[None], zero), patcher.metric_rows(patched[None]), atol=1e-12
    )


@pytest.fixture(scope="module")
def toy_circuit():
    toy = load_toy_induction()
    task = induction_task(toy, n=16, length=20, seed=0)
    return toy, task, discover_circuit(toy, task, "eap-ig", n_boot=200)


def test_toy_tail_alignment_finds_the_k_composition_edges(toy_circuit):
    toy, _, circuit = toy_circuit
    graph, scores = spectral_edge_scores(toy)
    recovery = prior_recovery(scores, circuit.kept, graph.valid, n_random=500)
    assert recovery.average_precision > recovery.random_ap_hi
    top = graph.edges_table(scores).sort_values("score", ascending=False).head(3)
    assert set(zip(top["upstream"], top["downstream"], top["input"], strict=True)) == {
        ("head:0.0", f"head:1.{x}", "k") for x in (1, 2, 3)
    }


def test_toy_eigenmode_table(toy_circuit):
    toy, task, circuit = toy_circuit
    table = eigenmode_faithfulness(EdgePatcher(toy, task), circuit.kept, n_random=2, n_boot=200)
    assert table["restriction"].tolist() == ["full", "tail", "bulk", "random", "random"]
    full = table.set_index("restriction").loc["full"]
    assert full["faithfulness"] == pytest.approx(circuit.faithfulness, abs=1e-9)
    random_rows = table[table["restriction"] == "random"]
    tail_size = table.set_index("restriction").loc["tail", "directions"]
    assert (random_rows["directions"] == tail_size).all()


def test_restricting_edges_to_their_writers_whole_output_space_changes_nothing(toy_circuit):
    """Tail + bulk span what a writer can write: keeping both directions is the full circuit."""
    toy, task, circuit = toy_circuit
    patcher = EdgePatcher(toy, task)
    layout = llama_layout(toy.hf)
    writers = writer_subspaces(layout, patcher.graph)
    used = np.nonzero(circuit.kept.any(axis=0))[0]
    whole = {int(u): np.concatenate([writers[u].writes("tail"), writers[u].writes("bulk")], axis=1) for u in used}
    full = patcher.metric_rows((patcher.graph.valid & ~circuit.kept)[None])[0]
    np.testing.assert_allclose(restricted_rows(patcher, circuit.kept, whole), full, atol=1e-4)
    nothing = {int(u): np.zeros((layout.d_model, 0)) for u in used}
    np.testing.assert_allclose(restricted_rows(patcher, circuit.kept, nothing), patcher.corrupted_rows, atol=1e-4)
