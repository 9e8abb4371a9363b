"""EAP and EAP-IG: equal to exact patching on the linear micro model, equal to the reference
forward's autograd gradients on nonlinear ones (per-head q/k/v inputs, GQA), independent of
how the work is chunked, and one clear line for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuit_reference import micro_llama, micro_task, reference_forward
from test_edge_patching import linear_model

from spectrascope.circuits.eap import attribute_edges, rows_per_forward
from spectrascope.circuits.edge_patching import EdgePatcher
from spectrascope.circuits.layout import llama_layout
from spectrascope.errors import SpectrascopeError


def reference_scores(model, task, alphas: list[float]) -> np.ndarray:
    """(n_inputs, n_nodes) EAP / EAP-IG scores from the reference forward's gradients."""
    patcher_graph = EdgePatcher(model, task).graph
    embed = model.model.embed_tokens.weight.double().detach()
    e_clean, e_corrupted = embed[task.clean_ids], embed[task.corrupted_ids]
    with torch.no_grad():
        _, clean = reference_forward(model, e_clean)
        _, corrupted = reference_forward(model, e_corrupted)
    scores = np.zeros(patcher_graph.valid.shape)
    for alpha in alphas:
        leaves: dict = {}
        logits, _ = reference_forward(model, e_corrupted + alpha * (e_clean - e_corrupted), leaves=leaves)
        metric = task.metric.per_row(logits[:, task.metric.keep]).mean() / len(alphas)
        keys = list(leaves)
        grads = dict(zip(keys, torch.autograd.grad(metric, [leaves[k] for k in keys]), strict=True))
        for i, inp in enumerate(patcher_graph.inputs):
            grad = grads[(inp.node.name, inp.kind)]
            for u in range(int(patcher_graph.n_upstream[i])):
                name = patcher_graph.nodes[u].name
                scores[i, u] += float(((clean[name] - corrupted[name]) * grad).sum())
    return scores


def test_eap_and_eap_ig_are_exact_on_the_linear_model():
    model = linear_model()
    task = micro_task()
    patcher = EdgePatcher(model, task)
    inputs, nodes = patcher.graph.edge_list()
    exact = patcher.edge_effects(list(zip(inputs, nodes, strict=True)))
    for method, steps in (("eap", 1), ("eap-ig", 4)):
        scores = attribute_edges(model, task, method, steps=steps)
        np.testing.assert_allclose(scores.scores[inputs, nodes], exact, rtol=0, atol=1e-12)
        assert np.all(scores.scores[~patcher.graph.valid] == 0)


@pytest.mark.parametrize("method,alphas", [("eap", [1.0]), ("eap-ig", [0.0, 1 / 3, 2 / 3])])
def test_scores_equal_the_reference_gradients(method, alphas):
    model = micro_llama(n_layers=2, n_heads=4, n_kv_heads=2, seed=1)
    task = micro_task()
    scores = attribute_edges(model, task, method, steps=len(alphas))
    expected = reference_scores(model, task, alphas)
    valid = scores.graph.valid
    np.testing.assert_allclose(scores.scores[valid], expected[valid], rtol=0, atol=1e-10)
    kinds = np.array([inp.kind for inp in scores.graph.inputs])
    for kind in "qkv":  # each head input's own gradient is exercised, not only their sum
        assert np.abs(expected[kinds == kind]).max() > 1e-3


def test_scores_with_rmsnorm_match_the_reference_to_float32_norms():
    model = micro_llama(n_layers=2, n_heads=4, n_kv_heads=2, seed=2, identity_norms=False)
    task = micro_task("prob")
    scores = attribute_edges(model, task, "eap")
    expected = reference_scores(model, task, [1.0])
    valid = scores.graph.valid
    np.testing.assert_allclose(scores.scores[valid], expected[valid], rtol=1e-4, atol=1e-6)
    assert np.abs(expected).max() > 1e-3


def test_chunking_does_not_change_the_scores():
    model = micro_llama(seed=5)
    task = micro_task()
    whole = attribute_edges(model, task, "eap-ig", steps=3)
    chunked = attribute_edges(model, task, "eap-ig", steps=3, max_tokens=1, max_difference_bytes=1)
    by_graph = attribute_edges(model, task, "eap-ig", steps=3, max_graph_bytes=1)
    np.testing.assert_allclose(by_graph.scores, whole.scores, rtol=0, atol=1e-12)
    np.testing.assert_allclose(chunked.scores, whole.scores, rtol=0, atol=1e-12)
    assert whole.clean_metric == pytest.approx(float(EdgePatcher(model, task).clean_rows.mean()), abs=1e-12)


def test_the_model_is_left_as_it_was():
    model = micro_llama(seed=6)
    task = micro_task()
    with torch.no_grad():
        before = model(task.clean_ids).logits.clone()
    attribute_edges(model, task, "eap-ig", steps=2)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(block.self_attn.num_key_value_groups == 2 for block in model.model.layers)
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(model(task.clean_ids).logits, before)


def test_bad_input_is_one_line():
    model = micro_llama(seed=0)
    with pytest.raises(SpectrascopeError, match="unknown attribution method 'ig'"):
        attribute_edges(model, micro_task(), "ig")
    with pytest.raises(SpectrascopeError, match="at least one step"):
        attribute_edges(model, micro_task(), "eap-ig", steps=0)


def test_rows_per_forward_by_hand():
    model = micro_llama(n_layers=2, n_heads=4, n_kv_heads=2)
    task = micro_task()  # 6 positions; d_model 16, d_mlp 24, 4 heads, 2 layers
    per_row = 4 * 2 * (6 * (14 * 16 + 4 * 24) + 3 * 4 * 36)
    layout = llama_layout(model)
    assert rows_per_forward(layout, task, max_tokens=10**9, max_graph_bytes=5 * per_row) == 5
    assert rows_per_forward(layout, task, max_tokens=18, max_graph_bytes=10**12) == 3
    assert rows_per_forward(layout, task, max_tokens=1, max_graph_bytes=1) == 1
