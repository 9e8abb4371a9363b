"""Exact edge patching on the unmodified Hugging Face model, with PyTorch hooks.

A downstream input reads the residual stream, the sum of the contributions of every node
upstream of it (:mod:`spectrascope.circuits.graph`). Patching the edge ``u -> i`` runs the
clean prompt but replaces ``u``'s contribution *in input i only* by its value in the
corrupted run:

    input_i  =  x_i  +  delta_i,     delta_i = sum over patched u of (a_u^corrupted - a_u^current)

where ``x_i`` is the residual the model computes at that point of the current (patched)
forward, ``a_u^current`` is node ``u``'s output in that same forward (its own inputs may be
patched too), and ``a_u^corrupted`` its output in the unpatched corrupted run. When most
edges into an input are patched, the same delta is computed from the kept ones:
``delta_i = (x_i^corrupted - x_i) - sum over kept u of (a_u^corrupted - a_u^current)``,
because the residual is the sum of all contributions (the ``o_proj`` bias, if any, is in
both residuals and cancels).

How each input is edited (the model's forward runs unchanged; see
:mod:`spectrascope.circuits.layout`):

- a head's q, k or v input: a forward hook on ``q_proj`` / ``k_proj`` / ``v_proj`` recomputes
  that head's slice of the projection from ``input_layernorm(x_pre + delta)`` with the
  module's own norm and the projection's weight rows, leaving every other head's slice (and
  every row of the batch without a patch) bit-identical. With grouped-query attention a key
  or value is shared by several query heads; so that one query head's k or v input can be
  patched alone, a layer with such a patch computes one key and value per *query* head
  (the grouped key repeated, as the attention would repeat it) and tells the attention module
  (``num_key_value_groups = 1``, restored after the module ran) not to repeat them again;
- an MLP's input: a forward pre-hook on ``post_attention_layernorm`` replaces its argument
  by ``x_mid + delta`` (the residual the block adds the MLP output to is untouched);
- the logits' input: a forward pre-hook on the final norm, likewise.

Batching: a stacked batch holds J copies of the task's n prompts; copy j gets its own edge
mask (block j of rows), so one forward evaluates J circuits or J single-edge patches. A forward
whose masks patch nothing before layer L starts at layer L from the clean run's block input;
each node's output is computed once per forward (and the corrupted run's once per patcher) and
J is bounded by tokens, logits and the memory those outputs take.

An edge mask is (n_inputs, n_nodes) bool (``True`` = patched). *Partial* patches (eigenmode
circuits) patch only a projection of an edge: ``delta_i += P_u (a_u^corrupted - a_u^current)``
for a projector ``P_u`` per upstream node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from spectrascope.circuits.graph import HEAD_INPUTS, Graph, model_graph
from spectrascope.circuits.layout import LlamaLayout, circuit_model, llama_layout
from spectrascope.circuits.tasks import Task
from spectrascope.errors import SpectrascopeError
from spectrascope.mech.metrics import keep_logits
from spectrascope.trace import run_with_cache
from spectrascope.trace.tracer import model_output_tensor

DEFAULT_MAX_TOKENS = 8192
"""Bound on rows x positions of one stacked forward."""

UPSTREAM_CHUNK = 32
"""Upstream nodes whose differences are held at once while a delta is assembled."""


# ----------------------------------------------------------------------------- caches of one run


@dataclass
class RunCache:
    """What edge patching needs from one run, per layer (all (rows, pos, ...) tensors).

    Attributes:
        x_pre: (rows, pos, d) the block inputs (``x_pre[0]`` is the embedding output).
        z: (rows, pos, H, d_head) per-head attention outputs (input of ``o_proj``).
        x_mid: (rows, pos, d) the MLP norm's inputs.
        mlp_out: (rows, pos, d) the MLP outputs.
        x_final: (rows, pos, d) the final norm's input.
    """

    x_pre: list[torch.Tensor]
    z: list[torch.Tensor]
    x_mid: list[torch.Tensor]
    mlp_out: list[torch.Tensor]
    x_final: torch.Tensor | None


def cache_run(
    layout: LlamaLayout,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    keep: torch.Tensor,
) -> tuple[torch.Tensor, RunCache]:
    """One forward (no grad) of ``input_ids``: (logits at positions ``keep``, :class:`RunCache`)."""
    n_layers = layout.n_layers
    sites = [
        f"blocks.{layer}.{kind}"
        for layer in range(n_layers)
        for kind in ("hook_resid_pre", "attn.hook_z", "hook_resid_mid", "hook_mlp_out")
    ]
    sites.append(f"blocks.{n_layers - 1}.hook_resid_post")
    logits, cache = run_with_cache(
        layout.hf, input_ids, sites, attention_mask=attention_mask, use_cache=False, **keep_logits(layout.hf, keep)
    )
    run = RunCache(
        x_pre=[cache[f"blocks.{layer}.hook_resid_pre"] for layer in range(n_layers)],
        z=[cache[f"blocks.{layer}.attn.hook_z"] for layer in range(n_layers)],
        x_mid=[cache[f"blocks.{layer}.hook_resid_mid"] for layer in range(n_layers)],
        mlp_out=[cache[f"blocks.{layer}.hook_mlp_out"] for layer in range(n_layers)],
        x_final=cache[f"blocks.{n_layers - 1}.hook_resid_post"],
    )
    return _kept(logits, keep), run


def _kept(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Logits at ``keep`` whether or not the forward already restricted them."""
    return logits if logits.shape[1] == keep.numel() else logits[:, keep.to(logits.device)]


def head_outputs(layout: LlamaLayout, layer: int, z: torch.Tensor, heads: Sequence[int] | None = None) -> torch.Tensor:
    """(len(heads), rows, pos, d) what heads of ``layer`` write: ``z_h W_O[:, h]^T`` (no bias)."""
    z = z.unflatten(-1, (layout.n_heads, layout.head_dim)) if z.ndim == 3 else z
    w_o = layout.o_columns(layer)  # (H, d, d_head)
    if heads is not None:
        index = torch.as_tensor(list(heads), dtype=torch.long, device=z.device)
        z, w_o = z.index_select(2, index), w_o.index_select(0, index)
    return torch.einsum("rphe,hde->hrpd", z, w_o.to(z.dtype))


def node_outputs(
    layout: LlamaLayout, graph: Graph, run: RunCache, nodes: Sequence[int], rows: slice = slice(None)
) -> torch.Tensor:
    """(len(nodes), rows, pos, d) the outputs of upstream nodes in one run."""
    parts: list[torch.Tensor] = []
    heads_by_layer: dict[int, list[int]] = {}
    order: list[tuple[str, int, int]] = []
    for u in nodes:
        node = graph.nodes[u]
        if node.kind == "head":
            heads_by_layer.setdefault(node.layer, []).append(node.head)
        order.append((node.kind, node.layer, node.head if node.kind == "head" else -1))
    computed = {
        layer: dict(zip(heads, head_outputs(layout, layer, run.z[layer][rows], heads), strict=True))
        for layer, heads in heads_by_layer.items()
    }
    for kind, layer, head in order:
        if kind == "embed":
            parts.append(run.x_pre[0][rows])
        elif kind == "mlp":
            parts.append(run.mlp_out[layer][rows])
        else:
            parts.append(computed[layer][head])
    return torch.stack(parts)


# ----------------------------------------------------------------------------- hook helpers


def first_input(args: tuple, kwargs: dict) -> tuple[torch.Tensor, int | str]:
    """A module's first tensor input and where it is (position 0 or the ``hidden_states`` keyword)."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0], 0
    if isinstance(kwargs.get("hidden_states"), torch.Tensor):
        return kwargs["hidden_states"], "hidden_states"
    raise SpectrascopeError("cannot find the module's input tensor in its arguments")


def replace_input(args: tuple, kwargs: dict, where: int | str, value: torch.Tensor) -> tuple[tuple, dict]:
    if isinstance(where, int):
        return (value, *args[1:]), kwargs
    return args, {**kwargs, where: value}


def ungroup(layout: LlamaLayout, projected: torch.Tensor) -> torch.Tensor:
    """(rows, pos, H d_head): a k or v projection output with one key/value per query head
    (each key/value head repeated for its group, as the attention would repeat it)."""
    if layout.group == 1 or projected.shape[-1] == layout.n_heads * layout.head_dim:
        return projected
    heads = projected.unflatten(-1, (layout.n_kv_heads, layout.head_dim))
    return heads.repeat_interleave(layout.group, dim=-2).flatten(-2)


class HookSet:
    """Registered hooks and temporary attribute changes, all undone by :meth:`close`."""

    def __init__(self) -> None:
        self.handles: list[RemovableHandle] = []
        self.saved_groups: dict[nn.Module, int] = {}

    def pre(self, module: nn.Module, fn: Callable) -> None:
        self.handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))

    def post(self, module: nn.Module, fn: Callable) -> None:
        self.handles.append(module.register_forward_hook(fn))

    def ungroup_attention(self, attention: nn.Module) -> None:
        """Make ``attention`` take one key/value per query head for its next forward."""
        self.saved_groups.setdefault(attention, attention.num_key_value_groups)
        attention.num_key_value_groups = 1

    def regroup_attention(self, attention: nn.Module) -> None:
        if attention in self.saved_groups:
            attention.num_key_value_groups = self.saved_groups.pop(attention)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        for attention, groups in self.saved_groups.items():
            attention.num_key_value_groups = groups
        self.handles.clear()
        self.saved_groups.clear()


@contextmanager
def hook_set() -> Iterator[HookSet]:
    hooks = HookSet()
    try:
        yield hooks
    finally:
        hooks.close()


# ----------------------------------------------------------------------------- edits


@dataclass
class InputEdit:
    """An addition to one downstream input in some rows of a stacked batch.

    Attributes:
        rows: (r,) the batch rows edited (distinct).
        delta: (r, pos, d) what is added to the input there.
    """

    rows: torch.Tensor
    delta: torch.Tensor


HeadEdits = dict[int, InputEdit]
"""One layer's head-input edits: ``kind_index * H + head`` (kind q = 0, k = 1, v = 2) -> edit."""


def edited_heads(edits: HeadEdits, kind: str, n_heads: int) -> list[int]:
    """Heads whose ``kind`` input has an edit."""
    offset = HEAD_INPUTS.index(kind) * n_heads
    return [h for h in range(n_heads) if offset + h in edits]


def recompute_head_slices(
    layout: LlamaLayout,
    layer: int,
    kind: str,
    output: torch.Tensor,
    x_pre: torch.Tensor,
    edits: HeadEdits,
) -> torch.Tensor:
    """The ``kind`` projection output with edited heads' slices recomputed in the edited rows.

    Args:
        output: (rows, pos, H d_head) the projection's output (ungrouped for k and v).
        x_pre: (rows, pos, d) the block input of this forward.
    """
    heads = edited_heads(edits, kind, layout.n_heads)
    if not heads:
        return output
    offset = HEAD_INPUTS.index(kind) * layout.n_heads
    norm = layout.input_norm(layer)
    proj = layout.projection(layer, kind)
    result = output.unflatten(-1, (layout.n_heads, layout.head_dim)).clone()
    for head in heads:
        edit = edits[offset + head]
        rows_w = layout.head_rows(head, kind)
        bias = None if proj.bias is None else proj.bias[rows_w]
        normed = norm(x_pre[edit.rows] + edit.delta.to(x_pre.dtype))
        result[edit.rows, :, head] = nn.functional.linear(normed, proj.weight[rows_w], bias).to(result.dtype)
    return result.flatten(-2)


def add_edit(x: torch.Tensor, edit: InputEdit | None) -> torch.Tensor | None:
    """``x`` with ``edit`` added in its rows (a new tensor), or None without an edit."""
    if edit is None:
        return None
    return x.index_add(0, edit.rows, edit.delta.to(x.dtype))


# ----------------------------------------------------------------------------- the patcher


MAX_LOGIT_BYTES = 512 * 2**20
"""Bound on the logits of one stacked forward (rows x kept positions x vocab, float64 once scored)."""

MAX_CACHE_BYTES = 2 * 2**30
"""Bound on the node outputs a stacked forward keeps (and on the corrupted run's, kept once)."""


class EdgePatcher:
    """Exact edge patching of one task on one model (see the module docstring).

    The clean and corrupted runs are cached once; :meth:`metric_rows` then evaluates any number
    of edge masks, J copies of the task's prompts per stacked forward. A forward whose masks
    patch nothing before layer L starts at layer L from the clean block input (HF's own forward
    over the later layers), since the layers before are the clean run's.

    Attributes:
        layout, graph, task: the model's layout, its graph, the task (on the model's device).
        clean_rows, corrupted_rows: (n,) float64 per-prompt metric of the unpatched runs.
    """

    def __init__(self, model: Any, task: Task, *, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        hf, _, _ = circuit_model(model)
        self.layout = llama_layout(hf)
        self.graph = model_graph(self.layout)
        device = next(hf.parameters()).device
        self.task = task.to(device)
        self.max_tokens = int(max_tokens)
        self.keep = self.task.metric.keep
        with torch.no_grad():
            clean_logits, self.clean = cache_run(self.layout, self.task.clean_ids, self.task.attention_mask, self.keep)
            corrupted_logits, self.corrupted = cache_run(
                self.layout, self.task.corrupted_ids, self.task.attention_mask, self.keep
            )
            self.clean_rows = self.task.metric.per_row(clean_logits).cpu().numpy()
            self.corrupted_rows = self.task.metric.per_row(corrupted_logits).cpu().numpy()
        self.input_layer = np.array([inp.node.layer for inp in self.graph.inputs])
        self._corrupted_outputs: torch.Tensor | None = None

    @property
    def n(self) -> int:
        return self.task.n

    def _node_bytes(self) -> int:
        """Bytes of one node's output for the task's prompts."""
        element = self.clean.x_pre[0].element_size()
        return self.task.n * self.task.n_positions * self.layout.d_model * element

    def corrupted_outputs(self, nodes: list[int]) -> torch.Tensor:
        """(len(nodes), n, pos, d) the corrupted run's node outputs (all of them computed once and
        kept when they fit in :data:`MAX_CACHE_BYTES`)."""
        if self._corrupted_outputs is None and self.graph.n_nodes * self._node_bytes() <= MAX_CACHE_BYTES:
            self._corrupted_outputs = node_outputs(
                self.layout, self.graph, self.corrupted, list(range(self.graph.n_nodes))
            )
        if self._corrupted_outputs is not None:
            return self._corrupted_outputs[nodes]
        return node_outputs(self.layout, self.graph, self.corrupted, nodes)

    def copies_per_forward(self) -> int:
        """Copies of the prompts one stacked forward holds: bounded by tokens, logits, and the node
        outputs a forward keeps (every node, every copy, at worst)."""
        by_tokens = self.max_tokens // (self.task.n * self.task.n_positions)
        vocab = int(self.layout.hf.config.vocab_size)
        by_logits = MAX_LOGIT_BYTES // max(1, self.task.n * int(self.keep.numel()) * vocab * 8)
        by_cache = MAX_CACHE_BYTES // max(1, self.graph.n_nodes * self._node_bytes())
        return max(1, min(by_tokens, by_logits, by_cache))

    @torch.no_grad()
    def metric_rows(
        self,
        masks: np.ndarray | Sequence[np.ndarray],
        partial: np.ndarray | Sequence[np.ndarray] | None = None,
        projectors: dict[int, torch.Tensor] | None = None,
    ) -> np.ndarray:
        """(J, n) float64: the per-prompt metric with each edge mask's edges patched.

        Args:
            masks: J (n_inputs, n_nodes) bool masks, True = patched (a (J, I, U) array too).
            partial: J masks of edges patched only through ``projectors`` (eigenmode circuits).
            projectors: upstream node index -> (d, d) projector ``P_u`` (symmetric).
        """
        masks = np.asarray(masks, dtype=bool).reshape(-1, *self.graph.valid.shape) & self.graph.valid
        if partial is not None:
            partial = np.asarray(partial, dtype=bool).reshape(masks.shape) & self.graph.valid
            missing = sorted({int(u) for u in np.nonzero(partial.any(axis=(0, 1)))[0]} - set(projectors or {}))
            if missing:
                raise SpectrascopeError(f"partial patches of nodes without a projector: {missing[:5]}")
        touched = masks.any(axis=2) if partial is None else masks.any(axis=2) | partial.any(axis=2)  # (J, I)
        first = np.where(
            touched.any(axis=1), np.where(touched, self.input_layer[None, :], 1 << 30).min(axis=1), self.layout.n_layers
        )
        order = np.argsort(-first, kind="stable")  # forwards that may start late go together
        out = np.empty((masks.shape[0], self.n))
        step = self.copies_per_forward()
        for start in range(0, len(order), step):
            chunk = order[start : start + step]
            part = None if partial is None else partial[chunk]
            out[chunk] = self._forward(masks[chunk], part, projectors, int(first[chunk].min()))
        return out

    def edge_effects(self, edges: Sequence[tuple[int, int]]) -> np.ndarray:
        """(len(edges),) exact effect of patching each edge alone: mean clean metric minus
        mean metric with the edge patched (positive = the edge carries clean behaviour)."""
        masks = np.zeros((len(edges), *self.graph.valid.shape), dtype=bool)
        for j, (i, u) in enumerate(edges):
            masks[j, i, u] = True
        return float(self.clean_rows.mean()) - self.metric_rows(masks).mean(axis=1)

    # ------------------------------------------------------------------ one stacked forward

    def _forward(
        self,
        masks: np.ndarray,
        partial: np.ndarray | None,
        projectors: dict[int, torch.Tensor] | None,
        first_layer: int,
    ) -> np.ndarray:
        layout, graph, task = self.layout, self.graph, self.task
        copies = masks.shape[0]
        first_layer = min(first_layer, layout.n_layers)
        attention_mask = None if task.attention_mask is None else task.attention_mask.repeat(copies, 1)
        state = _LiveState(layout.n_layers, self.clean, first_layer)
        assembler = _DeltaAssembler(self, masks, partial, projectors, state)
        with hook_set() as hooks:
            for layer in range(first_layer, layout.n_layers):
                self._hook_layer(hooks, layer, state, assembler)
            hooks.pre(
                layout.final_norm, _resid_edit(lambda x: assembler.resid(graph.logits_input, x, self.corrupted.x_final))
            )
            kwargs = {"attention_mask": attention_mask, "use_cache": False, **keep_logits(layout.hf, self.keep)}
            if first_layer == 0:
                output = layout.hf(input_ids=task.clean_ids.repeat(copies, 1), **kwargs)
            else:
                start = self.clean.x_pre[first_layer] if first_layer < layout.n_layers else self.clean.x_final
                output = forward_from_layer(layout, first_layer, start.repeat(copies, 1, 1), kwargs)
        logits = _kept(model_output_tensor(output), self.keep)
        return task.metric.per_row(logits).view(copies, self.n).cpu().numpy()

    def _hook_layer(self, hooks: HookSet, layer: int, state: _LiveState, assembler: _DeltaAssembler) -> None:
        layout, graph = self.layout, self.graph
        attention = layout.attention(layer)

        def block_pre(_module, args, kwargs):
            x_pre, _ = first_input(args, kwargs)
            state.x_pre[layer] = x_pre
            edits = assembler.heads(layer, x_pre)
            state.head_edits = edits
            if (
                edits
                and layout.group > 1
                and (edited_heads(edits, "k", layout.n_heads) or edited_heads(edits, "v", layout.n_heads))
            ):
                hooks.ungroup_attention(attention)

        def projection_post(kind: str):
            def fn(_module, _args, output):
                edits = state.head_edits
                if not edits:
                    return None
                if kind != "q" and attention.num_key_value_groups == 1:
                    output = ungroup(layout, output)
                return recompute_head_slices(layout, layer, kind, output, state.x_pre[layer], edits)

            return fn

        def attention_post(_module, _args, _output):
            hooks.regroup_attention(attention)
            state.head_edits = None

        def o_pre(_module, args, kwargs):
            state.z[layer] = first_input(args, kwargs)[0]

        def mlp_post(_module, _args, output):
            state.mlp_out[layer] = output

        hooks.pre(layout.block(layer), block_pre)
        for kind in HEAD_INPUTS:
            hooks.post(layout.projection(layer, kind), projection_post(kind))
        hooks.post(attention, attention_post)
        hooks.pre(layout.projection(layer, "o"), o_pre)
        hooks.pre(
            layout.mlp_norm(layer),
            _resid_edit(lambda x: assembler.resid(graph.mlp_input(layer), x, self.corrupted.x_mid[layer])),
        )
        hooks.post(layout.mlp(layer), mlp_post)


def forward_from_layer(layout: LlamaLayout, layer: int, hidden: torch.Tensor, kwargs: dict) -> Any:
    """HF's own forward over blocks ``layer..`` from ``hidden`` = the block input of ``layer``
    (the decoder's block list is swapped for its tail during the call and restored after)."""
    base = layout.hf.model
    blocks = base.layers
    try:
        base.layers = nn.ModuleList(list(blocks)[layer:])
        return layout.hf(inputs_embeds=hidden, **kwargs)
    finally:
        base.layers = blocks


def _resid_edit(edit_of: Callable[[torch.Tensor], InputEdit | None]) -> Callable:
    """A forward pre-hook replacing a norm's input ``x`` by ``x`` plus an edit (when there is one)."""

    def fn(_module, args, kwargs):
        x, where = first_input(args, kwargs)
        edited = add_edit(x, edit_of(x))
        return None if edited is None else replace_input(args, kwargs, where, edited)

    return fn


class _LiveState:
    """Activations of the forward in progress: the current run's node outputs.

    Layers before ``first_layer`` were not run (the forward started later): their outputs
    are the clean run's, the same in every copy.
    """

    def __init__(self, n_layers: int, clean: RunCache, first_layer: int) -> None:
        self.x_pre: list[torch.Tensor | None] = [None] * n_layers
        self.z: list[torch.Tensor | None] = [None] * n_layers
        self.mlp_out: list[torch.Tensor | None] = [None] * n_layers
        self.head_edits: HeadEdits | None = None
        self.clean = clean
        self.first_layer = first_layer
        self.cache: dict[tuple[int, int], torch.Tensor] = {}

    def outputs(self, layout: LlamaLayout, graph: Graph, nodes: list[int], rows: slice) -> torch.Tensor:
        """(len(nodes), n, pos, d) the current outputs of ``nodes`` in batch rows ``rows``.

        Each (node, block of rows) is computed once per forward and kept until it ends: a node's
        output feeds the deltas of every later layer.
        """
        missing = [u for u in nodes if (u, rows.start) not in self.cache]
        early = [u for u in missing if graph.nodes[u].layer < self.first_layer]
        late = [u for u in missing if graph.nodes[u].layer >= self.first_layer]
        if early:
            self.cache.update(
                ((u, rows.start), out)
                for u, out in zip(early, node_outputs(layout, graph, self.clean, early), strict=True)
            )
        if late:
            live = RunCache(self.x_pre, self.z, [], self.mlp_out, None)
            self.cache.update(
                ((u, rows.start), out)
                for u, out in zip(late, node_outputs(layout, graph, live, late, rows), strict=True)
            )
        return torch.stack([self.cache[(u, rows.start)] for u in nodes])


class _DeltaAssembler:
    """Computes each input's edit for the forward in progress (see the module docstring)."""

    def __init__(
        self,
        patcher: EdgePatcher,
        masks: np.ndarray,
        partial: np.ndarray | None,
        projectors: dict[int, torch.Tensor] | None,
        state: _LiveState,
    ) -> None:
        self.patcher = patcher
        self.masks = masks
        self.partial = partial
        self.projectors = projectors or {}
        self.state = state

    def heads(self, layer: int, x_pre: torch.Tensor) -> HeadEdits:
        span = self.patcher.graph.layer_inputs(layer)
        return self._edits(np.arange(span.start, span.stop), x_pre, self.patcher.corrupted.x_pre[layer])

    def resid(self, input_index: int, x: torch.Tensor, x_corrupted: torch.Tensor) -> InputEdit | None:
        return self._edits(np.array([input_index]), x, x_corrupted).get(0)

    def _edits(self, inputs: np.ndarray, x: torch.Tensor, x_corrupted: torch.Tensor) -> dict[int, InputEdit]:
        """Local input index -> edit, for the inputs ``inputs`` (one layer's, same upstream)."""
        graph, n = self.patcher.graph, self.patcher.n
        n_up = int(graph.n_upstream[inputs[0]])
        full = self.masks[:, inputs, :n_up]  # (J, I, U)
        part = None if self.partial is None else self.partial[:, inputs, :n_up]
        touched = full.any(axis=2) if part is None else full.any(axis=2) | part.any(axis=2)  # (J, I)
        pieces: dict[int, list[tuple[int, torch.Tensor]]] = {}
        for j in np.nonzero(touched.any(axis=1))[0]:
            local = np.nonzero(touched[j])[0]
            rows = slice(int(j) * n, (int(j) + 1) * n)
            patched = full[j, local]  # (I_j, U)
            complement = patched.sum(axis=1) > n_up - patched.sum(axis=1)
            coef = np.where(complement[:, None], -(~patched).astype(np.float64), patched.astype(np.float64))
            block = torch.zeros((len(local), n, *x.shape[1:]), dtype=x.dtype, device=x.device)
            if complement.any():
                flags = torch.as_tensor(complement, device=x.device)[:, None, None, None]
                block += flags * (x_corrupted - x[rows]).unsqueeze(0)
            self._add_differences(block, coef, rows, projected=False)
            if part is not None and part[j, local].any():
                self._add_differences(block, part[j, local].astype(np.float64), rows, projected=True)
            for slot, i in enumerate(local):
                pieces.setdefault(int(i), []).append((int(j), block[slot]))
        edits = {}
        for i, items in pieces.items():
            rows = torch.cat([torch.arange(j * n, (j + 1) * n, device=x.device) for j, _ in items])
            edits[i] = InputEdit(rows, torch.cat([delta for _, delta in items]))
        return edits

    def _add_differences(self, block: torch.Tensor, coef: np.ndarray, rows: slice, projected: bool) -> None:
        """``block += sum_u coef[:, u] (P_u)(a_u^corrupted - a_u^current)`` over nonzero columns."""
        columns = np.nonzero(np.abs(coef).sum(axis=0))[0]
        patcher = self.patcher
        for start in range(0, len(columns), UPSTREAM_CHUNK):
            chunk = columns[start : start + UPSTREAM_CHUNK].tolist()
            corrupted = patcher.corrupted_outputs(chunk)
            current = self.state.outputs(patcher.layout, patcher.graph, chunk, rows)
            difference = corrupted - current  # (k, n, pos, d)
            if projected:
                difference = torch.stack([d @ self.projectors[u].to(d) for d, u in zip(difference, chunk, strict=True)])
            weights = torch.as_tensor(coef[:, chunk], dtype=block.dtype, device=block.device)
            block += torch.einsum("iu,unpd->inpd", weights, difference)
