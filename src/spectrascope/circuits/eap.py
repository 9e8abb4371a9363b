"""Edge attribution patching (EAP) and EAP with integrated gradients (EAP-IG), every edge at once.

The score of edge ``u -> i`` estimates how much of the clean behaviour it carries, the drop
of the metric m when the edge alone is patched to its corrupted value (the exact effect is
:meth:`EdgePatcher.edge_effects`), to first order:

    EAP     score(u -> i) = (a_u^clean - a_u^corrupted) . dm/dx_i |_clean
    EAP-IG  score(u -> i) = (a_u^clean - a_u^corrupted) . (1/m) sum_{k=0}^{m-1} dm/dx_i |_{alpha_k = k/m}

(Syed et al. 2023; Hanna et al. 2024). ``x_i`` is input i (the residual it reads), ``a_u``
node u's output, the dot product runs over every position and coordinate, and m is the mean
over prompts of the task's metric. EAP-IG integrates the gradient along the straight path
from the corrupted to the clean input embeddings (``alpha = 0``: corrupted; left Riemann sum
with ``steps`` points, as in Hanna et al.'s code). Scores are in metric units: positive = the
edge supports the clean answer.

Gradients per input. The gradient with respect to an MLP's or the logits' input is taken
with a zero tensor added to the input of ``post_attention_layernorm`` / the final norm (an
addition that changes nothing, :mod:`spectrascope.mech.attribution`). A head's q input is
``input_layernorm(x_pre)`` seen through ``W_Q^h`` only, so its gradient is

    dm/dx_{h,q} = J_norm(x_pre)^T (W_Q^h)^T dm/dq_h

with ``dm/dq_h`` from a zero tensor added to ``q_proj``'s output and the norm's
vector-Jacobian product computed by autograd through the model's own norm module (likewise
k and v; with grouped-query attention keys and values are computed per query head, as in
edge patching, so each query head's k and v gradients are its own).

Cost and memory. Per chunk of prompts: one clean and one corrupted forward without
gradients (for the activation differences), then ``steps`` interpolated forwards with one
backward, stacked into forwards of at most ``max_tokens`` rows x positions whose saved
activations are estimated to fit in ``max_graph_bytes`` (eager attention keeps heads x
positions^2 weights per row and layer, so long prompts run few rows per forward). Gradients are
turned into scores layer by layer after each backward; memory is bounded by that forward, the
activation differences of every node for the chunk's prompts (``max_difference_bytes``), and
one layer's input gradients.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from spectrascope.circuits.edge_patching import (
    DEFAULT_MAX_TOKENS,
    UPSTREAM_CHUNK,
    cache_run,
    first_input,
    hook_set,
    node_outputs,
    replace_input,
    ungroup,
)
from spectrascope.circuits.graph import HEAD_INPUTS, Graph, model_graph
from spectrascope.circuits.layout import LlamaLayout, circuit_model, llama_layout
from spectrascope.circuits.tasks import Task
from spectrascope.errors import SpectrascopeError
from spectrascope.mech.metrics import keep_logits
from spectrascope.progress import progress_bar
from spectrascope.trace.tracer import model_output_tensor

METHODS = ("eap", "eap-ig")
DEFAULT_STEPS = 5
DEFAULT_DIFFERENCE_BYTES = 1 << 30
"""Bound on the activation differences (every node, one chunk of prompts) held at once."""
DEFAULT_GRAPH_BYTES = 2 << 30
"""Bound on the activations autograd keeps for one gradient forward (estimated)."""


@dataclass
class EdgeScores:
    """Scores of every edge of a graph.

    Attributes:
        graph: the model's graph.
        scores: (n_inputs, n_nodes) float64 (0 where (input, node) is not an edge).
        method: ``eap``, ``eap-ig`` or ``exact``.
        steps: integration steps (1 for EAP).
        seconds: wall time of the computation.
        clean_metric, corrupted_metric: the task metric (mean over prompts) of the two runs.
    """

    graph: Graph
    scores: np.ndarray
    method: str
    steps: int = 1
    seconds: float = float("nan")
    clean_metric: float = float("nan")
    corrupted_metric: float = float("nan")
    notes: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per edge (:meth:`Graph.edges_table` columns and ``score``), with ``abs_score``
        and ``rank`` (1 = largest |score|)."""
        table = self.graph.edges_table(self.scores)
        table["abs_score"] = table["score"].abs()
        table["rank"] = table["abs_score"].rank(ascending=False, method="first").astype(int)
        return table


def attribute_edges(
    model: Any,
    task: Task,
    method: str = "eap-ig",
    *,
    steps: int = DEFAULT_STEPS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_difference_bytes: int = DEFAULT_DIFFERENCE_BYTES,
    max_graph_bytes: int = DEFAULT_GRAPH_BYTES,
    show_progress: bool = False,
) -> EdgeScores:
    """EAP or EAP-IG scores of every edge for a task (see the module docstring).

    Args:
        model: a name (``toy-induction``, a bundled model, a path), a loaded model or a HF model.
        task: a :class:`~spectrascope.circuits.tasks.Task`.
        method: ``eap`` or ``eap-ig``.
        steps: EAP-IG's integration points (ignored by EAP).
        max_tokens: bound on rows x positions of one forward (interpolation steps are stacked).
        max_difference_bytes: bound on the activation differences held at once (prompts are
            processed in chunks that fit).
        max_graph_bytes: bound on autograd's saved activations of one forward (estimated,
            :func:`rows_per_forward`); long prompts run one row per forward at worst.
    """
    method = method.lower()
    if method not in METHODS:
        raise SpectrascopeError(f"unknown attribution method {method!r}; use {', '.join(METHODS)}")
    if method == "eap-ig" and steps < 1:
        raise SpectrascopeError(f"EAP-IG needs at least one step (got {steps})")
    started = time.perf_counter()
    hf, _, _ = circuit_model(model)
    layout = llama_layout(hf)
    graph = model_graph(layout)
    device = next(hf.parameters()).device
    task = task.to(device)
    alphas = [1.0] if method == "eap" else [k / steps for k in range(steps)]
    scores = np.zeros(graph.valid.shape)
    element = torch.finfo(next(hf.parameters()).dtype).bits // 8
    per_prompt = graph.n_nodes * task.n_positions * layout.d_model * element
    forward_rows = rows_per_forward(layout, task, max_tokens, max_graph_bytes)
    prompts_per_chunk = max(1, min(task.n, max_difference_bytes // per_prompt, forward_rows))
    chunks = [list(range(s, min(s + prompts_per_chunk, task.n))) for s in range(0, task.n, prompts_per_chunk)]
    clean_total = corrupted_total = 0.0
    with progress_bar(f"{method} scores", len(chunks) * len(alphas), show_progress) as advance:
        for rows in chunks:
            sub = task.subset(rows) if len(rows) < task.n else task
            clean_sum, corrupted_sum = _score_chunk(layout, graph, sub, alphas, scores, task.n, forward_rows, advance)
            clean_total += clean_sum
            corrupted_total += corrupted_sum
    return EdgeScores(
        graph=graph,
        scores=scores,
        method=method,
        steps=len(alphas),
        seconds=time.perf_counter() - started,
        clean_metric=clean_total / task.n,
        corrupted_metric=corrupted_total / task.n,
    )


def _score_chunk(
    layout: LlamaLayout,
    graph: Graph,
    task: Task,
    alphas: list[float],
    scores: np.ndarray,
    n_total: int,
    rows_per_forward: int,
    advance,
) -> tuple[float, float]:
    """Add one chunk of prompts' contribution to ``scores``; (sum of clean, sum of corrupted metrics)."""
    keep = task.metric.keep
    with torch.no_grad():
        clean_logits, clean = cache_run(layout, task.clean_ids, task.attention_mask, keep)
        corrupted_logits, corrupted = cache_run(layout, task.corrupted_ids, task.attention_mask, keep)
        embed_clean, embed_corrupted = clean.x_pre[0], corrupted.x_pre[0]
        difference = torch.empty(
            (graph.n_nodes, *embed_clean.shape), dtype=embed_clean.dtype, device=embed_clean.device
        )
        for start in range(0, graph.n_nodes, UPSTREAM_CHUNK):
            nodes = list(range(start, min(start + UPSTREAM_CHUNK, graph.n_nodes)))
            difference[nodes] = node_outputs(layout, graph, clean, nodes) - node_outputs(
                layout, graph, corrupted, nodes
            )
        difference = difference.flatten(1)  # (U, n * pos * d)
    metric = task.metric
    sums = float(metric.per_row(clean_logits).sum()), float(metric.per_row(corrupted_logits).sum())
    del clean, corrupted, clean_logits, corrupted_logits
    steps_per_forward = max(1, rows_per_forward // task.n)
    for start in range(0, len(alphas), steps_per_forward):
        chunk = alphas[start : start + steps_per_forward]
        alpha = torch.tensor(chunk, dtype=embed_clean.dtype, device=embed_clean.device)[:, None, None, None]
        embeds = (embed_corrupted + alpha * (embed_clean - embed_corrupted)).flatten(0, 1)
        gradients = _input_gradients(layout, graph, task, embeds, weight=1.0 / (n_total * len(alphas)))
        for inputs, grad in gradients:
            summed = grad.view(len(inputs), len(chunk), -1).sum(dim=1)  # (I, n * pos * d), steps summed
            n_up = int(graph.n_upstream[inputs[0]])
            scores[inputs, :n_up] += _dot_float64(summed, difference[:n_up])
        advance(len(chunk))
    return sums


DOT_CHUNK = 1 << 16
"""Columns of the flattened activations widened to float64 at once when scores are summed."""


def _dot_float64(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(len(a), len(b)) ``a @ b.T`` accumulated in float64, a column chunk at a time (bounded memory)."""
    out = torch.zeros((a.shape[0], b.shape[0]), dtype=torch.float64, device=a.device)
    with torch.no_grad():
        for start in range(0, a.shape[1], DOT_CHUNK):
            out += a[:, start : start + DOT_CHUNK].double() @ b[:, start : start + DOT_CHUNK].double().T
    return out.cpu().numpy()


def rows_per_forward(layout: LlamaLayout, task: Task, max_tokens: int, max_graph_bytes: int) -> int:
    """Rows one gradient forward holds: at most ``max_tokens`` rows x positions, and autograd's saved
    activations estimated at 4 bytes x layers x (positions x (14 d_model + 4 d_mlp) + 3 heads x
    positions^2) per row (the last term: eager attention's weights) within ``max_graph_bytes``."""
    config = layout.hf.config
    T = task.n_positions
    d_mlp = int(getattr(config, "intermediate_size", 4 * layout.d_model))
    per_row = 4 * layout.n_layers * (T * (14 * layout.d_model + 4 * d_mlp) + 3 * layout.n_heads * T * T)
    return max(1, min(max_tokens // T, max_graph_bytes // per_row))


def _input_gradients(layout: LlamaLayout, graph: Graph, task: Task, embeds: torch.Tensor, weight: float):
    """Yield ``(input indices, gradient (len, rows, pos, d))`` layer by layer for one stacked forward.

    The loss is ``weight * sum of per-row metrics``, so gradients of several forwards add up to
    the gradient of the mean over prompts and steps.
    """
    copies = embeds.shape[0] // task.n
    mask = None if task.attention_mask is None else task.attention_mask.repeat(copies, 1)
    x_pre: list[torch.Tensor | None] = [None] * layout.n_layers
    leaves: dict[tuple[int, str], torch.Tensor] = {}
    gqa = layout.group > 1

    def leaf_for(key: tuple[int, str], value: torch.Tensor) -> torch.Tensor:
        leaves[key] = torch.zeros_like(value, requires_grad=True)
        return value + leaves[key]

    with torch.enable_grad(), hook_set() as hooks:
        for layer in range(layout.n_layers):
            attention = layout.attention(layer)

            def block_pre(_m, args, kwargs, layer=layer, attention=attention):
                x_pre[layer] = first_input(args, kwargs)[0].detach()
                if gqa:
                    hooks.ungroup_attention(attention)

            def projection_post(_m, _args, output, layer=layer, kind="q"):
                if kind != "q":
                    output = ungroup(layout, output)
                return leaf_for((layer, kind), output)

            def attention_post(_m, _args, _output, attention=attention):
                hooks.regroup_attention(attention)

            def mlp_pre(_m, args, kwargs, layer=layer):
                x, where = first_input(args, kwargs)
                return replace_input(args, kwargs, where, leaf_for((layer, "mlp"), x))

            hooks.pre(layout.block(layer), block_pre)
            for kind in HEAD_INPUTS:
                hooks.post(
                    layout.projection(layer, kind),
                    lambda m, a, o, layer=layer, kind=kind: projection_post(m, a, o, layer, kind),
                )
            hooks.post(attention, attention_post)
            hooks.pre(layout.mlp_norm(layer), mlp_pre)

        def final_pre(_m, args, kwargs):
            x, where = first_input(args, kwargs)
            return replace_input(args, kwargs, where, leaf_for((layout.n_layers, "logits"), x))

        hooks.pre(layout.final_norm, final_pre)
        output = layout.hf(
            inputs_embeds=embeds, attention_mask=mask, use_cache=False, **keep_logits(layout.hf, task.metric.keep)
        )
        logits = model_output_tensor(output)
        if logits.shape[1] != task.metric.keep.numel():
            logits = logits[:, task.metric.keep]
        loss = task.metric.per_row(logits).sum() * weight
    keys = list(leaves)
    if not loss.requires_grad:
        raise SpectrascopeError("the task metric does not depend on the model's activations (no gradient)")
    # allow_unused: None for a leaf the metric does not depend on
    grads: dict[tuple[int, str], torch.Tensor | None] = dict(
        zip(keys, torch.autograd.grad(loss, [leaves[k] for k in keys], allow_unused=True), strict=True)
    )
    leaves.clear()
    block_inputs = [x for x in x_pre if x is not None]
    assert len(block_inputs) == layout.n_layers  # the forward ran every block's pre-hook
    for layer in range(layout.n_layers):
        head_grads = {kind: grads.pop((layer, kind)) for kind in HEAD_INPUTS}
        yield (
            np.arange(graph.layer_inputs(layer).start, graph.layer_inputs(layer).stop),
            head_input_gradients(layout, layer, block_inputs[layer], head_grads),
        )
        yield np.array([graph.mlp_input(layer)]), _or_zeros(grads.pop((layer, "mlp")), block_inputs[layer])[None]
    yield np.array([graph.logits_input]), _or_zeros(grads.pop((layout.n_layers, "logits")), block_inputs[0])[None]


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad


def head_input_gradients(
    layout: LlamaLayout,
    layer: int,
    x_pre: torch.Tensor,
    projection_grads: dict[str, torch.Tensor | None],
) -> torch.Tensor:
    """(3 H, rows, pos, d) the gradient of the metric with respect to each head's q, k and v input.

    Args:
        x_pre: (rows, pos, d) the block input.
        projection_grads: kind -> (rows, pos, H d_head) gradient at the projection's output
            (per query head for k and v), or None when the metric does not depend on it.
    """
    H, hd = layout.n_heads, layout.head_dim
    x = x_pre.detach().requires_grad_(True)
    with torch.enable_grad():
        normed = layout.input_norm(layer)(x)
    out = torch.zeros((3 * H, *x.shape), dtype=x.dtype, device=x.device)
    for k_index, kind in enumerate(HEAD_INPUTS):
        grad = projection_grads.get(kind)
        if grad is None:
            continue
        weight = layout.projection(layer, kind).weight  # (heads * hd, d)
        per_head = weight.view(-1, hd, weight.shape[-1])
        if kind != "q":
            per_head = per_head.repeat_interleave(layout.group, dim=0)  # one key/value head per query head
        with torch.no_grad():
            vectors = torch.einsum("rphe,hed->hrpd", grad.unflatten(-1, (H, hd)), per_head.to(grad.dtype))
        for head in range(H):
            (vjp,) = torch.autograd.grad(normed, x, vectors[head].to(normed.dtype), retain_graph=True)
            out[k_index * H + head] = vjp.detach()
    return out
