"""The spectral question: do weight spectra point to the circuit?

Three tests, each against a control:

1. **Components** (:func:`circuit_vs_rest`): do the circuit's heads and MLPs differ from the
   other heads / MLPs in spectral metrics (per head: OV and QK power-law alpha, ERG gap
   ``erg_delta``, OV stable rank, copying score; per MLP: alpha, ERG gap and stable rank of
   ``down_proj``)? Difference of means (circuit - rest) with a bootstrap interval (resampling
   within each group), a two-sided permutation p-value (membership labels shuffled) and
   Benjamini-Hochberg q-values over the family of metrics.

2. **Spectral priors** (:func:`spectral_edge_scores`, :func:`prior_recovery`): rank edges by a
   score computed from weights alone, the alignment of the upstream writer's power-law tail
   with the downstream reader's tail (the bridge's measure, :mod:`spectrascope.bridge.alignment`):

       enrichment(u -> i) = (||A_u^T B_i||_F^2 / min(a, b)) / (max(a, b) / d)

   with A_u an orthonormal basis of the writer's tail output directions (left singular
   vectors of ``W_O^h`` for a head, of ``down_proj`` for an MLP; right singular vectors of the
   embedding matrix for ``embed``) and B_i of the reader's tail input directions (right
   singular vectors of ``W_Q^h``, ``W_K^h`` or ``W_V^h`` times the input norm's gain for a
   head input; of ``[gate; up]`` times the MLP norm's gain; of ``lm_head`` times the final
   norm's gain for the logits). Precision and recall of the verified circuit's edges among the
   top-k edges of that ranking, against random rankings (the same statistics over
   ``n_random`` shuffles: mean and 95% band); average precision with a permutation p-value.

3. **Eigenmode circuits** (:func:`eigenmode_faithfulness`): the circuit's edges restricted to
   their writer's tail directions (the bulk part of each kept edge is patched to its corrupted
   value too), or to the bulk, against edges restricted to a random subspace of the writer's
   output space with as many directions as its tail. Faithfulness with bootstrap intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from spectrascope.bridge.subspaces import MatrixSubspaces, matrix_subspaces
from spectrascope.circuits.edge_patching import EdgePatcher
from spectrascope.circuits.graph import Graph
from spectrascope.circuits.layout import LlamaLayout, circuit_model, llama_layout
from spectrascope.circuits.verify import faithfulness_of
from spectrascope.errors import SpectrascopeError

HEAD_METRICS = {
    "ov_alpha": ("ov", "alpha"),
    "qk_alpha": ("qk", "alpha"),
    "ov_erg_delta": ("ov", "erg_delta"),
    "qk_erg_delta": ("qk", "erg_delta"),
    "ov_stable_rank": ("ov", "stable_rank"),
    "copying": ("ov", "copying"),
}
"""Per-head metric name -> (circuit row of the head table, column)."""
MLP_METRICS = {"down_alpha": "alpha", "down_erg_delta": "erg_delta", "down_stable_rank": "stable_rank"}
"""Per-MLP metric name -> column of the ``mlp_down`` rows of the matrix table."""


# ----------------------------------------------------------------------------- 1. components


def component_metrics(model: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-head metrics: ``node`` + :data:`HEAD_METRICS`, per-MLP metrics: ``node`` + :data:`MLP_METRICS`)
    from :func:`spectrascope.analyze_heads` and :func:`spectrascope.analyze_weights`."""
    from spectrascope.weights.api import analyze_heads, analyze_weights

    hf, _, _ = circuit_model(model)
    heads = analyze_heads(hf)
    table = pd.DataFrame({"node": sorted({f"head:{b}.{h}" for b, h in zip(heads["block"], heads["head"]) if h >= 0})})
    for name, (circuit, column) in HEAD_METRICS.items():
        rows = heads[heads["circuit"] == circuit]
        if column not in rows:
            continue
        values = dict(zip(rows["block"].astype(str) + "." + rows["head"].astype(str), rows[column], strict=True))
        table[name] = [values.get(n.split(":")[1], np.nan) for n in table["node"]]
    matrices = analyze_weights(hf)
    down = matrices[(matrices["role"] == "mlp_down") & (matrices["status"] == "success")]
    mlps = pd.DataFrame({"node": [f"mlp:{b}" for b in down["block"]]})
    for name, column in MLP_METRICS.items():
        mlps[name] = down[column].to_numpy()
    return table, mlps


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """BH q-values of p-values (NaN stays NaN)."""
    p = np.asarray(p, dtype=float)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return q
    values = p[ok]
    order = np.argsort(values)
    ranked = values[order] * len(values) / np.arange(1, len(values) + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(values)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


COMPARISON_COLUMNS = [
    "component",
    "metric",
    "n_circuit",
    "n_rest",
    "mean_circuit",
    "mean_rest",
    "difference",
    "difference_lo",
    "difference_hi",
    "p",
    "q",
]
"""Columns of :func:`circuit_vs_rest`: ``difference`` = mean_circuit - mean_rest with its 95%
bootstrap interval, ``p`` a two-sided permutation p-value, ``q`` its BH q-value over all rows."""


def circuit_vs_rest(
    members: set[str],
    heads: pd.DataFrame,
    mlps: pd.DataFrame,
    *,
    n_perm: int = 10000,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Do the circuit's components (``members``: node names) differ from the rest? (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rows = []
    for component, table in (("head", heads), ("mlp", mlps)):
        if table is None or table.empty:
            continue
        inside = table["node"].isin(members).to_numpy()
        for metric in [c for c in table.columns if c != "node"]:
            values = table[metric].to_numpy(dtype=float)
            ok = np.isfinite(values)
            a, b = values[ok & inside], values[ok & ~inside]
            row = {
                "component": component,
                "metric": metric,
                "n_circuit": len(a),
                "n_rest": len(b),
                "mean_circuit": np.nan,
                "mean_rest": np.nan,
                "difference": np.nan,
                "difference_lo": np.nan,
                "difference_hi": np.nan,
                "p": np.nan,
            }
            if len(a) >= 2 and len(b) >= 2:
                row.update(_compare(a, b, rng, n_perm, n_boot))
            rows.append(row)
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS[:-1])
    table["q"] = benjamini_hochberg(table["p"].to_numpy()) if len(table) else []
    return table


def _compare(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n_perm: int, n_boot: int) -> dict:
    observed = a.mean() - b.mean()
    pooled = np.concatenate([a, b])
    perms = np.argsort(rng.random((n_perm, len(pooled))), axis=1)[:, : len(a)]
    in_a = np.zeros((n_perm, len(pooled)), dtype=bool)
    np.put_along_axis(in_a, perms, True, axis=1)
    diffs = (pooled * in_a).sum(1) / len(a) - (pooled * ~in_a).sum(1) / len(b)
    p = (1 + np.sum(np.abs(diffs) >= abs(observed) - 1e-12)) / (n_perm + 1)
    boot = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1) - b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    return {
        "mean_circuit": a.mean(),
        "mean_rest": b.mean(),
        "difference": observed,
        "difference_lo": np.percentile(boot, 2.5),
        "difference_hi": np.percentile(boot, 97.5),
        "p": p,
    }


# ----------------------------------------------------------------------------- 2. spectral priors


def _w(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float64).numpy()


def _gain(norm: torch.nn.Module, d: int) -> np.ndarray:
    weight = getattr(norm, "weight", None)
    return np.ones(d) if weight is None else _w(weight)


def writer_subspaces(layout: LlamaLayout, graph: Graph) -> list[MatrixSubspaces]:
    """Per upstream node, the SVD of what it writes: ``embed`` (embedding^T), heads (W_O^h), MLPs (down_proj)."""
    out = []
    for node in graph.nodes:
        if node.kind == "embed":
            out.append(matrix_subspaces(_w(layout.embed.weight).T))  # (d, vocab): writes in d-space
        elif node.kind == "head":
            o = _w(layout.projection(node.layer, "o").weight)
            out.append(matrix_subspaces(o[:, node.head * layout.head_dim : (node.head + 1) * layout.head_dim]))
        else:
            out.append(matrix_subspaces(_w(layout.mlp(node.layer).down_proj.weight)))
    return out


def reader_subspaces(layout: LlamaLayout, graph: Graph) -> list[MatrixSubspaces]:
    """Per downstream input, the SVD of what it reads (norm gain folded in): W_Q/W_K/W_V rows of
    the head, ``[gate; up]`` of the MLP, ``lm_head`` for the logits."""
    d = layout.d_model
    out = []
    for inp in graph.inputs:
        node = inp.node
        if node.kind == "head":
            gain = _gain(layout.input_norm(node.layer), d)
            rows = layout.head_rows(node.head, inp.kind)
            out.append(matrix_subspaces(_w(layout.projection(node.layer, inp.kind).weight)[rows] * gain))
        elif node.kind == "mlp":
            mlp = layout.mlp(node.layer)
            stacked = np.concatenate([_w(mlp.gate_proj.weight), _w(mlp.up_proj.weight)])
            out.append(matrix_subspaces(stacked * _gain(layout.mlp_norm(node.layer), d)))
        else:
            out.append(matrix_subspaces(_w(layout.unembed.weight) * _gain(layout.final_norm, d)))
    return out


def spectral_edge_scores(model: Any, part: str = "tail") -> tuple[Graph, np.ndarray]:
    """(graph, (n_inputs, n_nodes) tail-alignment enrichment of every edge; 0 off the edges).

    ``part``: ``tail`` (power-law tails) or ``erg`` (ERG tails). A writer or reader whose fit
    failed has an empty tail and enrichment 0.
    """
    hf, _, _ = circuit_model(model)
    layout = llama_layout(hf)
    graph = Graph(layout.n_layers, layout.n_heads)
    writers = [w.writes(part) for w in writer_subspaces(layout, graph)]
    readers = [r.reads(part) for r in reader_subspaces(layout, graph)]
    d = layout.d_model
    A = np.concatenate(writers, axis=1)  # (d, sum a)
    B = np.concatenate(readers, axis=1)  # (d, sum b)
    squared = (A.T @ B) ** 2
    a_sizes = np.array([w.shape[1] for w in writers])
    b_sizes = np.array([r.shape[1] for r in readers])
    row_sums = _block_sums(squared, a_sizes, axis=0)  # (U, sum b)
    block = _block_sums(row_sums, b_sizes, axis=1)  # (U, I)
    small = np.minimum(a_sizes[:, None], b_sizes[None, :])
    large = np.maximum(a_sizes[:, None], b_sizes[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        enrichment = np.where(small > 0, block / np.maximum(small, 1) / (large / d), 0.0)
    return graph, np.where(graph.valid, enrichment.T, 0.0)


def _block_sums(values: np.ndarray, sizes: np.ndarray, axis: int) -> np.ndarray:
    """Sums of consecutive blocks of ``sizes`` along ``axis`` (empty blocks give 0)."""
    out_shape = list(values.shape)
    out_shape[axis] = len(sizes)
    out = np.zeros(out_shape)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for k, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        if size:
            index = [slice(None)] * values.ndim
            index[axis] = slice(start, start + size)
            target = [slice(None)] * values.ndim
            target[axis] = k
            out[tuple(target)] = values[tuple(index)].sum(axis=axis)
    return out


RECOVERY_COLUMNS = ["k", "precision", "recall", "random_precision", "random_precision_lo", "random_precision_hi"]


@dataclass
class PriorRecovery:
    """How much of a circuit a weight-only ranking recovers.

    Attributes:
        table: :data:`RECOVERY_COLUMNS` per k.
        average_precision: of the ranking; ``random_ap`` the mean over random rankings and
            ``p`` the share of random rankings at least as good (one-sided, +1 smoothed).
        n_positive, n_edges: circuit edges and all edges.
    """

    table: pd.DataFrame
    average_precision: float
    random_ap: float
    random_ap_lo: float
    random_ap_hi: float
    p: float
    n_positive: int
    n_edges: int


def average_precision(order: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of a ranking (``order``: edge indices best first) for the positives."""
    hits = positive[order]
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def prior_recovery(
    scores: np.ndarray,
    circuit: np.ndarray,
    valid: np.ndarray,
    ks: list[int] | None = None,
    *,
    n_random: int = 1000,
    seed: int = 0,
) -> PriorRecovery:
    """Precision / recall of the circuit's edges (mask ``circuit``) among the top-k edges of ``scores``."""
    flat = np.flatnonzero(valid)
    positive = circuit.ravel()[flat]
    if not positive.any():
        raise SpectrascopeError("the circuit has no edges: nothing to recover")
    order = np.argsort(-scores.ravel()[flat], kind="stable")
    n = len(flat)
    ks = ks or sorted({int(k) for k in np.unique(np.round(np.geomspace(1, n, 20)))} | {int(positive.sum())})
    rng = np.random.default_rng(seed)
    random_orders = np.argsort(rng.random((n_random, n)), axis=1)
    hits = np.cumsum(positive[order])
    random_hits = np.cumsum(positive[random_orders], axis=1)
    rows = []
    for k in ks:
        precision_random = random_hits[:, k - 1] / k
        rows.append(
            {
                "k": k,
                "precision": hits[k - 1] / k,
                "recall": hits[k - 1] / positive.sum(),
                "random_precision": precision_random.mean(),
                "random_precision_lo": np.percentile(precision_random, 2.5),
                "random_precision_hi": np.percentile(precision_random, 97.5),
            }
        )
    ap = average_precision(order, positive)
    random_ap = np.array([average_precision(o, positive) for o in random_orders])
    return PriorRecovery(
        pd.DataFrame(rows, columns=RECOVERY_COLUMNS),
        ap,
        float(random_ap.mean()),
        float(np.percentile(random_ap, 2.5)),
        float(np.percentile(random_ap, 97.5)),
        float((1 + np.sum(random_ap >= ap)) / (n_random + 1)),
        int(positive.sum()),
        n,
    )


# ----------------------------------------------------------------------------- 3. eigenmode circuits


EIGENMODE_COLUMNS = ["restriction", "faithfulness", "faithfulness_lo", "faithfulness_hi", "directions"]
"""Columns of :func:`eigenmode_faithfulness`: ``restriction`` = full, tail, bulk, random (a random
subspace per writer with as many directions as its tail; one row per draw); ``directions`` =
the mean number of writer directions a kept edge carries."""


def restricted_rows(patcher: EdgePatcher, kept: np.ndarray, bases: dict[int, np.ndarray]) -> np.ndarray:
    """(n,) per-prompt metric of the circuit ``kept`` whose edges out of node u carry only the
    directions of ``bases[u]`` ((d, k) orthonormal): every other edge is patched, and the part of
    each kept edge outside its writer's kept directions too (projector ``I - B_u B_u^T``)."""
    parameter = next(patcher.layout.hf.parameters())
    eye = np.eye(patcher.layout.d_model)
    projectors = {
        u: torch.as_tensor(eye - b @ b.T, dtype=parameter.dtype, device=parameter.device) for u, b in bases.items()
    }
    return patcher.metric_rows((patcher.graph.valid & ~kept)[None], kept[None], projectors)[0]


def eigenmode_faithfulness(
    patcher: EdgePatcher, kept: np.ndarray, *, n_random: int = 3, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Faithfulness of a circuit whose kept edges carry only part of their writer's directions."""
    layout, graph = patcher.layout, patcher.graph
    writers = writer_subspaces(layout, graph)
    used = sorted({int(u) for u in np.nonzero(kept.any(axis=0))[0]})
    if not used:
        raise SpectrascopeError("the circuit has no edges")
    tail = {u: writers[u].writes("tail") for u in used}
    bulk = {u: writers[u].writes("bulk") for u in used}
    output_space = {u: np.concatenate([tail[u], bulk[u]], axis=1) for u in used}  # the writer's column space
    rng = np.random.default_rng(seed)
    variants: list[tuple[str, dict[int, np.ndarray]]] = [("tail", tail), ("bulk", bulk)]
    for _ in range(n_random):
        drawn = {}
        for u in used:
            q, _ = np.linalg.qr(rng.normal(size=(output_space[u].shape[1], max(tail[u].shape[1], 1))))
            drawn[u] = (output_space[u] @ q)[:, : tail[u].shape[1]]
        variants.append(("random", drawn))
    kept_writers = np.nonzero(kept)[1]
    results = [
        (
            "full",
            patcher.metric_rows((graph.valid & ~kept)[None])[0],
            float(np.mean([output_space[u].shape[1] for u in kept_writers])),
        )
    ]
    for label, basis in variants:
        rows = restricted_rows(patcher, kept, basis)
        results.append((label, rows, float(np.mean([basis[u].shape[1] for u in kept_writers]))))
    boot = np.random.default_rng(seed + 1).integers(0, patcher.n, (n_boot, patcher.n))
    table = []
    for label, rows, size in results:
        point = float(faithfulness_of(rows, patcher.clean_rows, patcher.corrupted_rows))
        draws = faithfulness_of(rows[boot], patcher.clean_rows[boot], patcher.corrupted_rows[boot])
        table.append(
            {
                "restriction": label,
                "faithfulness": point,
                "faithfulness_lo": np.percentile(draws, 2.5),
                "faithfulness_hi": np.percentile(draws, 97.5),
                "directions": size,
            }
        )
    return pd.DataFrame(table, columns=EIGENMODE_COLUMNS)


# ----------------------------------------------------------------------------- all three


@dataclass
class SpectralFindings:
    """The three spectral tests for one circuit.

    Attributes:
        components: :data:`COMPARISON_COLUMNS` (circuit vs other heads / MLPs).
        heads: per-head metrics with an ``in_circuit`` column (copying score included).
        recovery: the tail-alignment ranking's recovery of the circuit's edges.
        eigenmodes: :data:`EIGENMODE_COLUMNS`.
    """

    components: pd.DataFrame
    heads: pd.DataFrame
    recovery: PriorRecovery
    eigenmodes: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        """Stem -> table, for :func:`spectrascope.tables.write_table`."""
        summary = pd.DataFrame(
            [
                {
                    "average_precision": self.recovery.average_precision,
                    "random_ap": self.recovery.random_ap,
                    "random_ap_lo": self.recovery.random_ap_lo,
                    "random_ap_hi": self.recovery.random_ap_hi,
                    "p": self.recovery.p,
                    "n_positive": self.recovery.n_positive,
                    "n_edges": self.recovery.n_edges,
                }
            ]
        )
        return {
            "circuit_spectral_components": self.components,
            "circuit_spectral_heads": self.heads,
            "circuit_prior_recovery": self.recovery.table,
            "circuit_prior_summary": summary,
            "circuit_eigenmodes": self.eigenmodes,
        }


def spectral_question(
    model: Any, circuit, patcher: EdgePatcher, *, n_perm: int = 10000, n_random: int = 1000, seed: int = 0
) -> SpectralFindings:
    """Run the three tests of the module docstring for a discovered circuit."""
    heads, mlps = component_metrics(model)
    members = set(circuit.circuit_node_names())
    components = circuit_vs_rest(members, heads, mlps, n_perm=n_perm, seed=seed)
    heads = heads.assign(in_circuit=heads["node"].isin(members))
    graph, scores = spectral_edge_scores(model)
    recovery = prior_recovery(scores, circuit.kept, graph.valid, n_random=n_random, seed=seed)
    eigenmodes = eigenmode_faithfulness(patcher, circuit.kept, seed=seed)
    return SpectralFindings(components, heads, recovery, eigenmodes)
