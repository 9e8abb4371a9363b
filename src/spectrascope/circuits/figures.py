"""Figures and report sections of a circuit: the graph (nodes by layer, edge width by score) and the
faithfulness curve, as plotly figures and :class:`spectrascope.report.html.Section` objects the
study report can include."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from spectrascope.report.html import Section

INPUT_COLORS = {"q": "#1f77b4", "k": "#d62728", "v": "#2ca02c", "resid": "#7f7f7f"}
WIDTH_BINS = 5
_TEMPLATE = "plotly_white"


def _position(node: str, layer: int, head: int | None, n_heads: int, n_layers: int) -> tuple[float, float]:
    """(x, y) of a node: x = layer (embed at -1, logits at n_layers), y = head (MLP above the heads)."""
    if node == "embed":
        return -1.0, (n_heads - 1) / 2
    if node == "logits":
        return float(n_layers), (n_heads - 1) / 2
    if node.startswith("mlp"):
        return float(layer) + 0.35, float(n_heads)
    return float(layer), float(head)


def circuit_graph_figure(edges: pd.DataFrame, nodes: pd.DataFrame, title: str = "Circuit") -> go.Figure:
    """The circuit's kept edges between nodes laid out by layer; edge width grows with |score|.

    Args:
        edges: a ``circuit_edges`` table (only ``in_circuit`` rows are drawn).
        nodes: the ``circuit_nodes`` table.
    """
    heads = nodes[nodes["kind"] == "head"]
    n_heads = int(heads["head"].max()) + 1 if len(heads) else 1
    n_layers = int(nodes.loc[nodes["kind"] == "logits", "layer"].iloc[0]) if (nodes["kind"] == "logits").any() else 1
    where = {
        r.node: _position(r.node, int(r.layer), None if pd.isna(r.head) else int(r.head), n_heads, n_layers)
        for r in nodes.itertuples()
    }
    kept = edges[edges["in_circuit"]]
    fig = go.Figure()
    if len(kept):
        top = float(kept["abs_score"].max()) or 1.0
        bins = np.minimum((kept["abs_score"] / top * WIDTH_BINS).astype(int), WIDTH_BINS - 1)
        for kind, color in INPUT_COLORS.items():
            for b in range(WIDTH_BINS):
                part = kept[(kept["input"] == kind) & (bins == b)]
                if part.empty:
                    continue
                xs, ys = [], []
                for r in part.itertuples():
                    (x0, y0), (x1, y1) = where[r.upstream], where[r.downstream]
                    xs += [x0, x1, None]
                    ys += [y0, y1, None]
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines",
                        line={"color": color, "width": 1 + 2.5 * b},
                        opacity=0.75,
                        name=f"into {kind}",
                        legendgroup=kind,
                        showlegend=b == int(bins[kept["input"] == kind].min()),
                        hoverinfo="skip",
                    )
                )
    member = nodes[nodes["in_circuit"]]
    other = nodes[~nodes["in_circuit"]]
    for table, color, name, size in ((other, "#d9d9d9", "other nodes", 6), (member, "#222222", "circuit nodes", 11)):
        if table.empty:
            continue
        points = [where[n] for n in table["node"]]
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[1] for p in points],
                mode="markers",
                marker={"color": color, "size": size},
                name=name,
                text=table["node"],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        template=_TEMPLATE,
        title=title,
        height=420 + 12 * n_heads,
        xaxis={"title": "layer (embed at -1, logits last)", "zeroline": False},
        yaxis={"title": "head (MLP on top)", "zeroline": False},
    )
    return fig


def faithfulness_figure(
    curve: pd.DataFrame,
    target: float | None = None,
    size: int | None = None,
    title: str = "Faithfulness of the top-k edges",
) -> go.Figure:
    """Faithfulness against k (log axis) with its 95% bootstrap band and the target."""
    curve = curve[curve["k"] > 0]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=list(curve["k"]) + list(curve["k"])[::-1],
            y=list(curve["faithfulness_hi"]) + list(curve["faithfulness_lo"])[::-1],
            fill="toself",
            line={"width": 0},
            fillcolor="rgba(74,120,194,0.2)",
            name="95% interval (prompts)",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=curve["k"], y=curve["faithfulness"], mode="lines+markers", name="faithfulness", line={"color": "#4a78c2"}
        )
    )
    if target is not None:
        fig.add_hline(y=target, line={"dash": "dash", "color": "gray"}, annotation_text=f"target {target:g}")
    if size is not None:
        fig.add_vline(x=size, line={"dash": "dot", "color": "black"}, annotation_text=f"k = {size}")
    fig.update_layout(
        template=_TEMPLATE,
        title=title,
        xaxis_type="log",
        xaxis_title="edges kept (k)",
        yaxis_title="faithfulness",
        height=380,
    )
    return fig


def circuit_section(circuit, *, top: int = 15) -> Section:
    """A report section for a :class:`~spectrascope.circuits.discover.Circuit`: a summary
    paragraph, the graph and curve figures, the top edges and the circuit's nodes."""
    heads = circuit.circuit_node_names("head")
    mlps = circuit.circuit_node_names("mlp")
    summary = (
        f"{circuit.method.upper()} on {circuit.task} ({circuit.n_prompts} prompts, metric {circuit.metric_kind}: "
        f"clean {circuit.clean_metric:.3f}, corrupted {circuit.corrupted_metric:.3f}). The smallest circuit with "
        f"faithfulness >= {circuit.target:g} keeps {circuit.size} of {circuit.graph.n_edges} edges "
        f"(bootstrap 95% interval of the size {circuit.size_lo:g}-{circuit.size_hi:g}); its faithfulness is "
        f"{circuit.faithfulness:.3f} [{circuit.faithfulness_lo:.3f}, {circuit.faithfulness_hi:.3f}]. "
        f"Heads: {', '.join(heads) or 'none'}. MLPs: {', '.join(mlps) or 'none'}."
    )
    paragraphs = [summary, *circuit.notes]
    edges = circuit.circuit_edges().head(top)[["rank", "upstream", "downstream", "input", "score"]]
    nodes = circuit.nodes[circuit.nodes["in_circuit"]][["node", "kind", "kept_in", "kept_out", "score_in", "score_out"]]
    return Section(
        id=f"circuit-{circuit.task}",
        title=f"Circuit: {circuit.task} ({circuit.model})",
        paragraphs=paragraphs,
        figures=[
            circuit_graph_figure(circuit.edges, circuit.nodes, f"{circuit.task}: circuit of {circuit.size} edges"),
            faithfulness_figure(circuit.curve, circuit.target, circuit.size),
        ],
        tables=[edges, nodes],
    )


def spectral_section(findings, task: str) -> Section:
    """A report section for :class:`~spectrascope.circuits.spectral.SpectralFindings`."""
    rec = findings.recovery
    eig = findings.eigenmodes.set_index("restriction")
    random_rows = findings.eigenmodes[findings.eigenmodes["restriction"] == "random"]
    significant = findings.components[findings.components["q"] < 0.05]
    tail_only = (
        f"Eigenmode circuits: kept edges restricted to their writer's power-law tail keep faithfulness "
        f"{eig.loc['tail', 'faithfulness']:.3f} [{eig.loc['tail', 'faithfulness_lo']:.3f}, "
        f"{eig.loc['tail', 'faithfulness_hi']:.3f}], to the bulk {eig.loc['bulk', 'faithfulness']:.3f}, "
        f"to random subspaces of the tail's size {random_rows['faithfulness'].min():.3f}-"
        f"{random_rows['faithfulness'].max():.3f} (full circuit {eig.loc['full', 'faithfulness']:.3f})."
    )
    if len(significant):
        differ = (
            "Spectral metrics that differ between the circuit's components and the rest (BH q < 0.05): "
            + ", ".join(f"{r.component} {r.metric} ({r.difference:+.3f})" for r in significant.itertuples())
        )
    else:
        differ = "No spectral metric differs between the circuit's components and the rest at BH q < 0.05."
    prior = (
        f"Tail-alignment ranking of edges (weights only): average precision {rec.average_precision:.3f} for the "
        f"{rec.n_positive} circuit edges among {rec.n_edges}, against {rec.random_ap:.3f} "
        f"[{rec.random_ap_lo:.3f}, {rec.random_ap_hi:.3f}] for random rankings (p = {rec.p:.3g})."
    )
    paragraphs = [prior, tail_only, differ]
    return Section(
        id=f"circuit-spectra-{task}",
        title=f"Do weight spectra point to the {task} circuit?",
        paragraphs=paragraphs,
        tables=[findings.components, findings.eigenmodes, findings.recovery.table],
    )
