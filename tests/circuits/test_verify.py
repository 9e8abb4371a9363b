"""Verification: top-k masks, faithfulness by hand, the curve's end points and intervals, the size at a
target, ACDC's bookkeeping, the nodes of a circuit, and the graph's layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from circuit_reference import micro_llama, micro_task

from spectrascope.circuits.edge_patching import EdgePatcher
from spectrascope.circuits.graph import Graph
from spectrascope.circuits.verify import (
    FaithfulnessCurve,
    acdc,
    circuit_nodes,
    faithfulness_curve,
    faithfulness_of,
    top_k_mask,
)
from spectrascope.errors import SpectrascopeError


def test_graph_layout():
    graph = Graph(n_layers=2, n_heads=3)
    assert [n.name for n in graph.nodes] == [
        "embed",
        "head:0.0",
        "head:0.1",
        "head:0.2",
        "mlp:0",
        "head:1.0",
        "head:1.1",
        "head:1.2",
        "mlp:1",
    ]
    assert graph.inputs[graph.head_input(1, 2, "k")].name == "head:1.2<k>"
    assert graph.inputs[graph.mlp_input(0)].name == "mlp:0<resid>"
    assert graph.n_upstream[graph.head_input(1, 0, "q")] == 5  # embed, three heads, mlp:0
    assert graph.n_upstream[graph.mlp_input(1)] == 8  # ... and the heads of its own layer
    # per layer: 3 inputs x 3 heads x upstream + the MLP's upstream; logits read all 9 nodes
    assert graph.n_edges == 9 * 1 + 4 + 9 * 5 + 8 + 9
    with pytest.raises(SpectrascopeError, match="not an edge"):
        graph.edge("head:1.0", "head:0.1", "q")
    with pytest.raises(SpectrascopeError, match="no edge between heads of one layer|not an edge"):
        graph.edge("head:1.0", "head:1.1", "v")
    table = graph.edges_table(np.arange(graph.valid.size, dtype=float).reshape(graph.valid.shape))
    assert len(table) == graph.n_edges
    assert graph.mask_from_edges(table.iloc[:5]).sum() == 5


def test_top_k_mask():
    valid = np.array([[True, False, True], [True, True, True]])
    scores = np.array([[1.0, 99.0, -3.0], [2.0, -2.0, 0.5]])
    assert top_k_mask(valid, scores, 0).sum() == 0
    assert top_k_mask(valid, scores, 1).tolist() == [[False, False, True], [False, False, False]]
    three = top_k_mask(valid, scores, 3)  # |-3| then the tie |2| = |-2| in edge order
    assert three.tolist() == [[False, False, True], [True, True, False]]
    assert top_k_mask(valid, scores, 100).sum() == valid.sum()  # never an invalid entry


def test_faithfulness_by_hand():
    clean, corrupted = np.array([4.0, 6.0]), np.array([0.0, 2.0])
    assert faithfulness_of(np.array([3.0, 3.0]), clean, corrupted) == pytest.approx((3 - 1) / (5 - 1))
    with pytest.raises(SpectrascopeError, match="same metric"):
        faithfulness_of(np.array([1.0]), np.array([1.0]), np.array([1.0]))


def test_size_at_a_target_by_hand():
    rows = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [3.0, 3.0, 3.0]])  # circuits k = 0, 5, 9
    curve = FaithfulnessCurve(
        pd.DataFrame({"k": [0, 5, 9], "faithfulness": [0.0, 0.5, 1.0]}),
        rows,
        clean_rows=np.array([3.0, 3.0, 3.0]),
        corrupted_rows=np.zeros(3),
        boot_index=np.array([[0, 0, 0], [2, 2, 2], [0, 1, 2]]),
    )
    assert curve.bootstrap().tolist() == [[0.0, 2 / 3, 1.0], [0.0, 0.0, 1.0], [0.0, 1 / 3, 1.0]]
    k, lo, hi = curve.size_at(0.5)
    assert k == 5 and (lo, hi) == (np.percentile([5, 9, 9], 2.5), np.percentile([5, 9, 9], 97.5))
    assert curve.size_at(2.0)[0] is None


@pytest.fixture(scope="module")
def patcher():
    return EdgePatcher(micro_llama(seed=1), micro_task())


def test_curve_end_points_and_intervals(patcher):
    scores = np.random.default_rng(0).normal(size=patcher.graph.valid.shape)
    curve = faithfulness_curve(patcher, scores, n_points=8, target=0.5, n_boot=300)
    table = curve.table.set_index("k")
    assert table.loc[0, "faithfulness"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc[patcher.graph.n_edges, "faithfulness"] == pytest.approx(1.0, abs=1e-12)
    assert (curve.table["faithfulness_lo"] <= curve.table["faithfulness"] + 1e-12).all()
    assert (curve.table["faithfulness"] <= curve.table["faithfulness_hi"] + 1e-12).all()
    assert curve.table["k"].is_monotonic_increasing and curve.table["k"].is_unique
    masks = [patcher.graph.valid & ~top_k_mask(patcher.graph.valid, scores, int(k)) for k in curve.table["k"]]
    np.testing.assert_allclose(curve.rows, patcher.metric_rows(masks), atol=1e-12)


def test_acdc_bookkeeping(patcher):
    graph = patcher.graph
    kept, log = acdc(patcher, threshold=0.05)
    assert len(log) == graph.n_edges and log["step"].tolist() == list(range(graph.n_edges))
    assert tuple(log.iloc[0][["upstream", "downstream", "input"]]) == (graph.nodes[-1].name, "logits", "resid")
    removed = {(r.upstream, r.downstream, r.input) for r in log.itertuples() if r.removed}
    assert int(graph.valid.sum() - kept.sum()) == len(removed)
    assert all(not kept[graph.edge(*e)] for e in removed)
    final = float(patcher.metric_rows((graph.valid & ~kept)[None])[0].mean())
    last = log.iloc[-1]
    assert final == pytest.approx(last["metric_after"] if last["removed"] else last["metric_before"], abs=1e-12)
    assert (log.loc[log["removed"], "drop"] < 0.05).all() and (log.loc[~log["removed"], "drop"] >= 0.05).all()
    nothing_left, _ = acdc(patcher, threshold=1e9)
    assert nothing_left.sum() == 0
    with pytest.raises(SpectrascopeError, match="one forward per edge"):
        acdc(patcher, max_edges=10)


def test_circuit_nodes_follow_kept_paths_to_the_logits():
    graph = Graph(n_layers=2, n_heads=2)
    kept = graph.empty_mask()
    kept[graph.logits_input, graph.node_index["head:1.0"]] = True
    kept[graph.head_input(1, 0, "k"), graph.node_index["head:0.1"]] = True
    kept[graph.head_input(0, 1, "v"), graph.node_index["embed"]] = True
    kept[graph.head_input(1, 1, "q"), graph.node_index["head:0.0"]] = True  # 1.1 reaches nothing: dangling
    names = {graph.nodes[u].name for u in np.nonzero(circuit_nodes(graph, kept))[0]}
    assert names == {"head:1.0", "head:0.1", "embed"}
