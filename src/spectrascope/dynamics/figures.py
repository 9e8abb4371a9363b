"""Figures of metrics over training steps (plotly), with change points and events marked.

Steps are drawn on a log axis as ``step + 1`` (so the initialization, step 0, is at 1):
log-spaced checkpoints spread evenly, and an early memorization and a late generalization
both stay visible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

_TEMPLATE = "plotly_white"
X_TITLE = "step + 1 (log scale)"
_EVENT_COLORS = ("#888888", "#d62728", "#2ca02c", "#9467bd")
_CHANGE_SYMBOLS = {"rate": "diamond-open", "mean": "circle-open", "linear": "square-open"}


def matrix_label(role: str, block: int) -> str:
    """A short label of a matrix: ``q L0``, ``mlp_down L1``, ``embed``."""
    return str(role) if int(block) < 0 else f"{role} L{int(block)}"


def _add_events(fig: go.Figure, events: Mapping[str, float], y_span: Sequence[float]) -> None:
    """Vertical lines at event steps, as traces (shapes misplace x on log axes)."""
    for (name, step), color in zip(events.items(), _EVENT_COLORS):
        if step is None or not np.isfinite(step):
            continue
        fig.add_trace(
            go.Scatter(
                x=[step + 1, step + 1],
                y=list(y_span),
                mode="lines",
                name=f"{name} (step {step:g})",
                line={"color": color, "dash": "dot", "width": 1.5},
                hoverinfo="name",
            )
        )


def _span(values: Sequence[float]) -> list[float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return [float(v.min()), float(v.max())] if v.size else [0.0, 1.0]


def curves(
    table: pd.DataFrame,
    columns: Sequence[str],
    title: str,
    y_title: str,
    events: Mapping[str, float] | None = None,
    log_y: bool = False,
) -> go.Figure:
    """Lines of ``columns`` against step, with event lines."""
    fig = go.Figure()
    ordered = table.sort_values("step")
    for column in columns:
        if column in ordered:
            fig.add_trace(go.Scatter(x=ordered["step"] + 1, y=ordered[column], mode="lines", name=column))
    values = np.concatenate([ordered[c].to_numpy(dtype=np.float64) for c in columns if c in ordered])
    if log_y:
        values = values[values > 0]
    _add_events(fig, events or {}, _span(values))
    fig.update_layout(
        template=_TEMPLATE,
        title=title,
        xaxis_title=X_TITLE,
        yaxis_title=y_title,
        xaxis_type="log",
        yaxis_type="log" if log_y else None,
        height=400,
    )
    return fig


def series_by(
    table: pd.DataFrame,
    value: str,
    label: pd.Series,
    title: str,
    changes: pd.DataFrame | None = None,
    change_key: str = "name",
    events: Mapping[str, float] | None = None,
    y_title: str | None = None,
) -> go.Figure:
    """One line per series (``label`` per row names it) of ``value`` against step; the
    significant change points of each series (rows of ``changes`` with the same
    ``change_key`` and ``metric == value``) as markers on its line: diamonds for the rate
    model, circles for the level (mean) model."""
    fig = go.Figure()
    data = table.assign(_label=label.values).sort_values("step")
    for name, group in data.groupby("_label", sort=True):
        fig.add_trace(
            go.Scatter(
                x=group["step"] + 1,
                y=group[value],
                mode="lines+markers",
                name=str(name),
                marker={"size": 4},
                legendgroup=str(name),
            )
        )
        if changes is None or changes.empty:
            continue
        keys = set(group[change_key])
        hits = changes[(changes["metric"] == value) & changes[change_key].isin(keys) & changes["significant"]]
        at = group.set_index("step")[value]
        for model, marks in hits.groupby("model") if "model" in hits else [("mean", hits)]:
            text = [
                f"{model} change in ({b:g}, {s:g}], p={p:.3g}"
                for b, s, p in zip(marks["step_before"], marks["step"], marks["p_value"])
            ]
            fig.add_trace(
                go.Scatter(
                    x=marks["step"] + 1,
                    y=[at.get(s, np.nan) for s in marks["step"]],
                    mode="markers",
                    showlegend=False,
                    legendgroup=str(name),
                    text=text,
                    marker={"symbol": _CHANGE_SYMBOLS.get(model, "x-open"), "size": 12, "line": {"width": 2}},
                    hovertemplate=f"{name}: %{{text}}<extra></extra>",
                )
            )
    _add_events(fig, events or {}, _span(data[value]))
    fig.update_layout(
        template=_TEMPLATE, title=title, xaxis_title=X_TITLE, yaxis_title=y_title or value, xaxis_type="log", height=440
    )
    return fig


def step_heatmap(table: pd.DataFrame, row: str, value: str, title: str, row_title: str) -> go.Figure:
    """Heat map with one column per step (in order) and one row per value of ``row``."""
    grid = table.pivot_table(index=row, columns="step", values=value)
    fig = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=[str(c) for c in grid.columns],
            y=[str(i) for i in grid.index],
            colorscale="Viridis",
            colorbar={"title": value},
        )
    )
    fig.update_layout(
        template=_TEMPLATE,
        title=title,
        xaxis_title="checkpoint step",
        yaxis_title=row_title,
        height=max(360, 14 * len(grid.index) + 160),
    )
    return fig
