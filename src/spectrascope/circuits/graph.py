"""The computational graph of a transformer as nodes and edges (Elhage et al. 2021; ACDC).

Nodes, with the names the ablation components use (:mod:`spectrascope.mech.ablation`):

- ``embed``: the token embeddings (the residual stream entering block 0);
- ``head:L.H``: attention head H of layer L, its output through its slice of ``W_O``;
- ``mlp:L``: the MLP of layer L, its output;
- ``logits``: the unembedding (reads the final residual stream through the final norm).

The residual stream a node reads is the sum of the contributions of every node before it,
so every earlier node feeds every later one. An **edge** is one upstream node's contribution
to one **input** of a downstream node: a head has three inputs, ``q``, ``k`` and ``v`` (the
residual it computes its query, key and value from: Q-, K- and V-composition), an MLP and the
logits one, ``resid``. Heads of one layer read the same residual (the block's input), so
there is no edge between heads of one layer; an MLP reads the heads of its own layer.

Order. Upstream nodes are listed in topological order (``embed``, the heads of layer 0,
``mlp:0``, the heads of layer 1, ...); downstream inputs in the order the forward pass reads
them (layer 0's q inputs of heads 0..H-1, then k, then v, then ``mlp:0``'s input, ...,
``logits`` last). The upstream nodes of an input are always a prefix of the node list, so an
edge set is a dense (n_inputs, n_nodes) mask whose entry (i, u) is valid for u < n_upstream[i].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from spectrascope.errors import SpectrascopeError

HEAD_INPUTS = ("q", "k", "v")
"""The three inputs of an attention head."""
RESID = "resid"
"""The one input of an MLP and of the logits."""


@dataclass(frozen=True)
class Node:
    """A node of the graph.

    Attributes:
        kind: ``embed``, ``head``, ``mlp`` or ``logits``.
        layer: the block (``embed``: -1; ``logits``: n_layers).
        head: the query head index for heads, else None.
    """

    kind: str
    layer: int
    head: int | None = None

    @property
    def name(self) -> str:
        if self.kind == "head":
            return f"head:{self.layer}.{self.head}"
        if self.kind == "mlp":
            return f"mlp:{self.layer}"
        return self.kind


@dataclass(frozen=True)
class Input:
    """One input of a downstream node: ``(node, kind)`` with kind q, k, v or resid."""

    node: Node
    kind: str

    @property
    def name(self) -> str:
        return f"{self.node.name}<{self.kind}>"


class Graph:
    """Nodes, downstream inputs and edges of a model with ``n_layers`` blocks of ``n_heads`` heads.

    Attributes:
        nodes: upstream nodes in topological order (everything but ``logits``).
        inputs: downstream inputs in forward order.
        n_upstream: (n_inputs,) int array: input i reads nodes ``0 .. n_upstream[i] - 1``.
        valid: (n_inputs, n_nodes) bool: which (input, node) pairs are edges.
    """

    def __init__(self, n_layers: int, n_heads: int) -> None:
        if n_layers < 1 or n_heads < 1:
            raise SpectrascopeError(f"a graph needs at least one layer and one head (got {n_layers}, {n_heads})")
        self.n_layers = int(n_layers)
        self.n_heads = int(n_heads)
        nodes = [Node("embed", -1)]
        inputs: list[Input] = []
        n_upstream: list[int] = []
        for layer in range(n_layers):
            heads = [Node("head", layer, h) for h in range(n_heads)]
            for kind in HEAD_INPUTS:
                for head in heads:
                    inputs.append(Input(head, kind))
                    n_upstream.append(len(nodes))
            nodes.extend(heads)
            mlp = Node("mlp", layer)
            inputs.append(Input(mlp, RESID))
            n_upstream.append(len(nodes))
            nodes.append(mlp)
        inputs.append(Input(Node("logits", n_layers), RESID))
        n_upstream.append(len(nodes))
        self.nodes = nodes
        self.inputs = inputs
        self.n_upstream = np.asarray(n_upstream, dtype=np.int64)
        self.valid = np.arange(len(nodes))[None, :] < self.n_upstream[:, None]
        self.node_index = {node.name: i for i, node in enumerate(nodes)}
        self.input_index = {(inp.node.name, inp.kind): i for i, inp in enumerate(inputs)}

    # ------------------------------------------------------------------ sizes and lookups

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)

    @property
    def n_edges(self) -> int:
        return int(self.valid.sum())

    def head_node(self, layer: int, head: int) -> int:
        """Index of ``head:layer.head`` in :attr:`nodes`."""
        return 1 + layer * (self.n_heads + 1) + head

    def mlp_node(self, layer: int) -> int:
        return 1 + layer * (self.n_heads + 1) + self.n_heads

    def head_input(self, layer: int, head: int, kind: str) -> int:
        """Index of head ``(layer, head)``'s ``kind`` input (q, k, v) in :attr:`inputs`."""
        return layer * (3 * self.n_heads + 1) + HEAD_INPUTS.index(kind) * self.n_heads + head

    def mlp_input(self, layer: int) -> int:
        return layer * (3 * self.n_heads + 1) + 3 * self.n_heads

    @property
    def logits_input(self) -> int:
        return self.n_inputs - 1

    def layer_inputs(self, layer: int) -> slice:
        """The q, k, v inputs of layer ``layer``'s heads, as a slice of :attr:`inputs` (3 H of them)."""
        start = layer * (3 * self.n_heads + 1)
        return slice(start, start + 3 * self.n_heads)

    def edge(self, upstream: str, downstream: str, kind: str = RESID) -> tuple[int, int]:
        """(input index, node index) of the edge ``upstream -> downstream`` into input ``kind``.

        Raises:
            SpectrascopeError: unknown node or input, or the pair is not an edge.
        """
        if upstream not in self.node_index:
            raise SpectrascopeError(f"unknown upstream node {upstream!r} (embed, head:L.H, mlp:L)")
        key = (downstream, kind)
        if key not in self.input_index:
            raise SpectrascopeError(
                f"unknown downstream input {downstream!r} ({kind}); heads have q, k, v, MLPs and logits have resid"
            )
        i, u = self.input_index[key], self.node_index[upstream]
        if not self.valid[i, u]:
            raise SpectrascopeError(f"{upstream} -> {downstream} ({kind}) is not an edge: {upstream} is not upstream")
        return i, u

    # ------------------------------------------------------------------ edge sets and tables

    def empty_mask(self) -> np.ndarray:
        """(n_inputs, n_nodes) all-False edge mask."""
        return np.zeros(self.valid.shape, dtype=bool)

    def full_mask(self) -> np.ndarray:
        """(n_inputs, n_nodes) mask of every edge."""
        return self.valid.copy()

    def edge_list(self) -> tuple[np.ndarray, np.ndarray]:
        """(input index, node index) arrays of every edge, in the order of :meth:`edges_table`."""
        inputs, nodes = np.nonzero(self.valid)
        return inputs, nodes

    def edges_table(self, scores: np.ndarray | torch.Tensor | None = None) -> pd.DataFrame:
        """One row per edge: ``upstream``, ``downstream``, ``input`` (q/k/v/resid),
        ``upstream_layer``, ``downstream_layer``, and ``score`` from an (n_inputs, n_nodes)
        array when given. Rows are ordered by downstream input, then upstream node."""
        inputs, nodes = self.edge_list()
        table = pd.DataFrame(
            {
                "upstream": [self.nodes[u].name for u in nodes],
                "downstream": [self.inputs[i].node.name for i in inputs],
                "input": [self.inputs[i].kind for i in inputs],
                "upstream_layer": [self.nodes[u].layer for u in nodes],
                "downstream_layer": [self.inputs[i].node.layer for i in inputs],
            }
        )
        if scores is not None:
            values = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
            table["score"] = values[inputs, nodes].astype(np.float64)
        return table

    def mask_from_edges(self, edges: pd.DataFrame) -> np.ndarray:
        """An edge mask from a table with ``upstream``, ``downstream`` and ``input`` columns."""
        mask = self.empty_mask()
        for up, down, kind in zip(edges["upstream"], edges["downstream"], edges["input"], strict=True):
            i, u = self.edge(up, down, kind)
            mask[i, u] = True
        return mask


def model_graph(layout) -> Graph:
    """The graph of a model from its :class:`~spectrascope.circuits.layout.LlamaLayout`."""
    return Graph(layout.n_layers, layout.n_heads)
