"""Exact edge patching: hand formulas on a linear micro model, an independent reference forward on
nonlinear ones (float64, to 1e-10), identities, batching, and the model left untouched.

The linear micro model (``linear_model``): two layers of two query heads sharing one key/value
head (GQA), W_Q = 0 (every position attends uniformly to itself and all earlier positions), the
MLPs' down projections zero and every norm the identity. With e the embeddings, M the causal
running mean over positions and A_{l,h} = W_O^h W_V^h, head (l, h) writes M(x_l) A_{l,h}^T where
x_0 = e and x_1 = e + sum_h M(e) A_{0,h}^T; the metric is u . (x_1 + sum_h M(x_1) A_{1,h}^T)
at the scored positions with u = W_U[answer] - W_U[wrong]. So adding delta to an input changes
the metric by a formula written down below (``response``), and the effect of patching an edge
u -> i is minus the response of i to (a_u^corrupted - a_u^clean).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuit_reference import micro_llama, micro_task, reference_metric_rows
from transformers import GPT2Config, GPT2LMHeadModel

from spectrascope.circuits.edge_patching import EdgePatcher
from spectrascope.circuits.layout import CircuitArchitectureError, llama_layout
from spectrascope.circuits.tasks import Task

TOL = 1e-10


def linear_model():
    return micro_llama(n_layers=2, n_heads=2, n_kv_heads=1, zero_queries=True, zero_mlp=True, seed=3)


def _running_mean(x: torch.Tensor) -> torch.Tensor:
    counts = torch.arange(1, x.shape[1] + 1, dtype=x.dtype)[None, :, None]
    return x.cumsum(dim=1) / counts


def linear_terms(model, task: Task):
    """(embeddings of both runs, A per layer and head, clean and corrupted node outputs) by hand."""
    E = model.model.embed_tokens.weight.detach()
    A = {}
    for layer, block in enumerate(model.model.layers):
        attn = block.self_attn
        for h in range(2):
            W_O = attn.o_proj.weight[:, h * 4 : (h + 1) * 4].detach()
            W_V = attn.v_proj.weight[:4].detach()  # the one key/value head
            A[layer, h] = W_O @ W_V
    outputs = {}
    for run, ids in (("clean", task.clean_ids), ("corrupted", task.corrupted_ids)):
        e = E[ids]
        out = {"embed": e}
        for h in range(2):
            out[f"head:0.{h}"] = _running_mean(e) @ A[0, h].T
        x1 = e + out["head:0.0"] + out["head:0.1"]
        for h in range(2):
            out[f"head:1.{h}"] = _running_mean(x1) @ A[1, h].T
        out["mlp:0"] = out["mlp:1"] = torch.zeros_like(e)
        outputs[run] = out
    return A, outputs


def response(model, task: Task, A, downstream: str, kind: str, delta: torch.Tensor) -> float:
    """Change of the mean metric when ``delta`` (n, pos, d) is added to one input, by hand."""
    W_U = model.lm_head.weight.detach()
    m = task.metric
    u = W_U[m.answer] - W_U[m.wrong]  # (n, k, d)

    def read(final_change: torch.Tensor) -> float:  # metric change from a change of the final residual
        picked = final_change[torch.arange(task.n)[:, None], m.positions]  # (n, k, d)
        per_row = ((picked * u).sum(-1) * m.scored).sum(1) / m.scored.sum(1)
        return float(per_row.mean())

    if kind in ("q", "k") or downstream.startswith("mlp"):
        return 0.0  # W_Q = 0: attention is uniform whatever q and k read; the MLPs write 0
    if downstream == "logits":
        return read(delta)
    layer, head = (int(x) for x in downstream.split(":")[1].split("."))
    change = _running_mean(delta) @ A[layer, head].T
    if layer == 1:
        return read(change)
    return read(change + sum(_running_mean(change) @ A[1, h].T for h in range(2)))


def test_every_edge_of_the_linear_model_matches_the_hand_formula():
    model = linear_model()
    task = micro_task()
    A, outputs = linear_terms(model, task)
    patcher = EdgePatcher(model, task)
    graph = patcher.graph
    assert graph.n_edges == 2 * 3 * 1 + 3 + 2 * 3 * 4 + 6 + 7  # into layer 0 heads, mlp:0, layer 1, mlp:1, logits
    inputs, nodes = graph.edge_list()
    exact = patcher.edge_effects(list(zip(inputs, nodes, strict=True)))
    expected = []
    for i, u in zip(inputs, nodes, strict=True):
        up, inp = graph.nodes[u].name, graph.inputs[i]
        delta = outputs["corrupted"][up] - outputs["clean"][up]
        expected.append(-response(model, task, A, inp.node.name, inp.kind, delta))
    np.testing.assert_allclose(exact, expected, rtol=0, atol=1e-12)
    assert np.abs(expected).max() > 0.5  # the formula is not trivially zero
    zero = [
        graph.inputs[i].kind in ("q", "k") or graph.inputs[i].node.kind == "mlp" or graph.nodes[u].kind == "mlp"
        for i, u in zip(inputs, nodes, strict=True)
    ]
    assert np.abs(exact[zero]).max() < 1e-13  # no effect up to the rounding of a stacked batch


def test_clean_and_corrupted_rows_match_the_hand_forward():
    model = linear_model()
    task = micro_task()
    _, outputs = linear_terms(model, task)
    patcher = EdgePatcher(model, task)
    for run, rows in (("clean", patcher.clean_rows), ("corrupted", patcher.corrupted_rows)):
        out = outputs[run]
        final = out["embed"] + sum(out[f"head:{layer}.{h}"] for layer in range(2) for h in range(2))
        logits = final @ model.lm_head.weight.detach().T
        np.testing.assert_allclose(rows, task.metric.per_row(logits[:, task.metric.keep]).numpy(), atol=1e-12)


@pytest.fixture(scope="module")
def nonlinear():
    """A nonlinear micro Llama (real queries and MLPs, GQA 4/2, identity norms), its task and patcher."""
    model = micro_llama(n_layers=2, n_heads=4, n_kv_heads=2, seed=1)
    task = micro_task()
    return model, task, EdgePatcher(model, task)


def _edge_names(graph, i: int, u: int) -> tuple[str, str, str]:
    return graph.nodes[u].name, graph.inputs[i].node.name, graph.inputs[i].kind


def test_every_single_edge_matches_the_reference(nonlinear):
    model, task, patcher = nonlinear
    graph = patcher.graph
    inputs, nodes = graph.edge_list()
    exact = patcher.edge_effects(list(zip(inputs, nodes, strict=True)))
    clean = float(patcher.clean_rows.mean())
    expected = [
        clean - float(reference_metric_rows(model, task, {_edge_names(graph, i, u)}).mean())
        for i, u in zip(inputs, nodes, strict=True)
    ]
    np.testing.assert_allclose(exact, expected, rtol=0, atol=TOL)
    one_at_a_time = EdgePatcher(model, task, max_tokens=1)  # each forward starts at its edge's layer
    np.testing.assert_allclose(
        one_at_a_time.edge_effects(list(zip(inputs, nodes, strict=True))), expected, rtol=0, atol=TOL
    )
    by_kind = {kind: np.abs(exact[[graph.inputs[i].kind == kind for i in inputs]]).max() for kind in "qkv"}
    assert min(by_kind.values()) > 1e-3  # q, k and v edges all matter here: each path is exercised


def test_circuits_of_many_edges_match_the_reference(nonlinear):
    """Masks dense and sparse exercise both ways of computing a delta (patched sum, complement)."""
    model, task, patcher = nonlinear
    graph = patcher.graph
    rng = np.random.default_rng(0)
    masks = [rng.random(graph.valid.shape) < density for density in (0.05, 0.3, 0.6, 0.95)]
    masks = [m & graph.valid for m in masks]
    rows = patcher.metric_rows(masks)
    for mask, got in zip(masks, rows, strict=True):
        edges = {_edge_names(graph, i, u) for i, u in zip(*np.nonzero(mask), strict=True)}
        np.testing.assert_allclose(got, reference_metric_rows(model, task, edges).numpy(), rtol=0, atol=TOL)


def test_rmsnorm_model_matches_the_reference_to_float32_norms():
    """Real RMSNorms (HF computes them in float32): agreement to the norm's precision."""
    model = micro_llama(n_layers=2, n_heads=4, n_kv_heads=2, seed=2, identity_norms=False)
    task = micro_task()
    patcher = EdgePatcher(model, task)
    graph = patcher.graph
    np.testing.assert_allclose(patcher.clean_rows, reference_metric_rows(model, task, set()).numpy(), atol=1e-5)
    rng = np.random.default_rng(1)
    inputs, nodes = graph.edge_list()
    pick = rng.choice(len(inputs), size=25, replace=False)
    exact = patcher.edge_effects([(inputs[j], nodes[j]) for j in pick])
    clean = float(reference_metric_rows(model, task, set()).mean())
    expected = [
        clean - float(reference_metric_rows(model, task, {_edge_names(graph, inputs[j], nodes[j])}).mean())
        for j in pick
    ]
    np.testing.assert_allclose(exact, expected, rtol=1e-4, atol=1e-5)
    assert np.abs(expected).max() > 0.1


def test_identities(nonlinear):
    _, _, patcher = nonlinear
    graph = patcher.graph
    none, every = patcher.metric_rows([graph.empty_mask(), graph.full_mask()])
    np.testing.assert_allclose(none, patcher.clean_rows, rtol=0, atol=1e-12)
    np.testing.assert_allclose(every, patcher.corrupted_rows, rtol=0, atol=1e-12)
    into_logits = graph.empty_mask()
    into_logits[graph.logits_input] = graph.valid[graph.logits_input]
    np.testing.assert_allclose(patcher.metric_rows(into_logits[None])[0], patcher.corrupted_rows, atol=1e-12)


def test_batched_equals_one_mask_per_forward(nonlinear):
    model, task, patcher = nonlinear
    graph = patcher.graph
    rng = np.random.default_rng(2)
    masks = [(rng.random(graph.valid.shape) < d) & graph.valid for d in (0.1, 0.5, 0.9)]
    stacked = patcher.metric_rows(masks)
    one_by_one = EdgePatcher(model, task, max_tokens=1)  # one copy of the prompts per forward
    assert one_by_one.copies_per_forward() == 1
    np.testing.assert_allclose(stacked, one_by_one.metric_rows(masks), rtol=0, atol=1e-12)


def test_eager_attention_gives_the_same_effects():
    task = micro_task()
    sdpa = EdgePatcher(micro_llama(seed=4), task)
    eager = EdgePatcher(micro_llama(seed=4, attention="eager"), task)  # softmax in float32
    graph = sdpa.graph
    inputs, nodes = graph.edge_list()
    edges = list(zip(inputs[::7], nodes[::7], strict=True))
    np.testing.assert_allclose(eager.edge_effects(edges), sdpa.edge_effects(edges), atol=1e-5)


def test_the_model_is_left_as_it_was(nonlinear):
    model, task, patcher = nonlinear
    graph = patcher.graph
    with torch.no_grad():
        before = model(task.clean_ids).logits.clone()
    patcher.metric_rows([graph.full_mask()])
    partial = graph.empty_mask()
    partial[graph.logits_input, 0] = True
    with pytest.raises(RuntimeError):  # a projector of the wrong size fails inside the forward
        patcher.metric_rows([graph.empty_mask()], [partial], {0: torch.eye(3, dtype=torch.float64)})
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(block.self_attn.num_key_value_groups == 2 for block in model.model.layers)
    with torch.no_grad():
        assert torch.equal(model(task.clean_ids).logits, before)


def test_other_architectures_are_refused_in_one_line():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20)).eval()
    with pytest.raises(CircuitArchitectureError, match="Llama family only.*'gpt2'") as info:
        llama_layout(gpt2)
    assert "\n" not in str(info.value)
