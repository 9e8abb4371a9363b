"""Plotly figures for the report. Each function takes result tables and returns a Figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..weights.summary import GOOD_ALPHA

_TEMPLATE = "plotly_white"


def alpha_by_layer(df: pd.DataFrame, column: str = "alpha", title: str = "Power-law alpha by layer") -> go.Figure:
    """One line per role: ``column`` against block index; the [2, 6] band shaded for alpha."""
    ok = df[(df["status"] == "success") & (df["block"] >= 0)]
    fig = go.Figure()
    for role, g in ok.groupby("role", sort=True):
        g = g.sort_values("block")
        fig.add_trace(
            go.Scatter(
                x=g["block"],
                y=g[column],
                mode="lines+markers",
                name=role,
                text=g["name"],
                hovertemplate="%{text}<br>%{y:.3f}<extra></extra>",
            )
        )
    if column == "alpha":
        fig.add_hrect(
            y0=GOOD_ALPHA[0],
            y1=GOOD_ALPHA[1],
            fillcolor="green",
            opacity=0.07,
            line_width=0,
            annotation_text="2 ≤ α ≤ 6",
            annotation_position="top left",
        )
    fig.update_layout(template=_TEMPLATE, title=title, xaxis_title="block", yaxis_title=column, height=420)
    return fig


def esd_loglog(
    name: str, evals: np.ndarray, alpha: float, xmin: float, erg_lambda_min_raw: float | None = None
) -> go.Figure:
    """Histogram of an ESD on log-log axes (log-spaced bins) with the fitted power-law tail."""
    x = evals[evals > 1e-12]
    bins = np.logspace(np.log10(x.min()), np.log10(x.max()), 60)
    density, edges = np.histogram(x, bins=bins, density=True)
    centers = np.sqrt(edges[:-1] * edges[1:])
    keep = density > 0
    fig = go.Figure(go.Scatter(x=centers[keep], y=density[keep], mode="markers", name="ESD"))
    if np.isfinite(alpha):
        tail_share = np.mean(x >= xmin)
        grid = np.logspace(np.log10(xmin), np.log10(x.max()), 50)
        pdf = tail_share * (alpha - 1) / xmin * (grid / xmin) ** (-alpha)
        fig.add_trace(go.Scatter(x=grid, y=pdf, mode="lines", name=f"power law α={alpha:.2f}", line={"dash": "dash"}))
    y_span = [density[keep].min(), density[keep].max()]
    if np.isfinite(xmin):
        fig.add_trace(_vertical(xmin, y_span, "xmin", "red"))
    if erg_lambda_min_raw is not None and np.isfinite(erg_lambda_min_raw):
        fig.add_trace(_vertical(erg_lambda_min_raw, y_span, "ERG λmin", "purple"))
    fig.update_layout(
        template=_TEMPLATE,
        title=name,
        xaxis_type="log",
        yaxis_type="log",
        xaxis_title="eigenvalue λ",
        yaxis_title="density",
        height=360,
    )
    return fig


def _vertical(x: float, y_span: list[float], name: str, color: str) -> go.Scatter:
    """A vertical marker line as a trace (shapes misplace x on log axes)."""
    return go.Scatter(x=[x, x], y=y_span, mode="lines", name=name, line={"color": color, "width": 1.5})


def head_heatmap(heads: pd.DataFrame, circuit: str = "ov", column: str = "alpha") -> go.Figure:
    """Block x head heat map of one circuit's metric."""
    sub = heads[(heads["circuit"] == circuit) & (heads["status"] == "success")]
    grid = sub.pivot_table(index="block", columns="head", values=column)
    fig = go.Figure(
        go.Heatmap(z=grid.values, x=grid.columns, y=grid.index, colorscale="Viridis", colorbar={"title": column})
    )
    fig.update_layout(
        template=_TEMPLATE,
        title=f"{circuit.upper()} circuit {column} by head",
        xaxis_title="head",
        yaxis_title="block",
        height=460,
    )
    return fig


def heatmap(
    grid: pd.DataFrame,
    title: str,
    colorbar: str,
    x_title: str,
    y_title: str,
    colorscale: str = "Viridis",
    zmid: float | None = None,
    text: pd.DataFrame | None = None,
) -> go.Figure:
    """A labeled heat map of a pivoted table (index = rows, columns = columns)."""
    fig = go.Figure(
        go.Heatmap(
            z=grid.values,
            x=[str(c) for c in grid.columns],
            y=[str(i) for i in grid.index],
            colorscale=colorscale,
            zmid=zmid,
            colorbar={"title": colorbar},
            text=None if text is None else text.values,
            texttemplate="%{text}" if text is not None else None,
        )
    )
    fig.update_layout(
        template=_TEMPLATE,
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        height=max(360, 18 * len(grid.index) + 140),
    )
    return fig


def lines_by(df: pd.DataFrame, x: str, y: str, color: str, title: str, y_title: str | None = None) -> go.Figure:
    """One line per value of ``color``."""
    fig = go.Figure()
    for key, g in df.groupby(color, sort=True):
        g = g.sort_values(x)
        fig.add_trace(go.Scatter(x=g[x], y=g[y], mode="lines+markers", name=str(key)))
    fig.update_layout(template=_TEMPLATE, title=title, xaxis_title=x, yaxis_title=y_title or y, height=400)
    return fig


def grouped_bars(df: pd.DataFrame, x: str, y: str, color: str, title: str, y_title: str) -> go.Figure:
    """Bars of ``y`` per ``x`` with one bar per ``color`` value."""
    fig = go.Figure()
    for key, g in df.groupby(color, sort=True):
        fig.add_trace(go.Bar(x=g[x], y=g[y], name=str(key)))
    fig.update_layout(template=_TEMPLATE, title=title, barmode="group", yaxis_title=y_title, height=440)
    return fig


def bars_with_intervals(
    df: pd.DataFrame,
    x: str,
    y: str,
    color: str,
    title: str,
    y_title: str,
    lo: str | None = None,
    hi: str | None = None,
    zero_line: bool = True,
) -> go.Figure:
    """Grouped bars of ``y`` per ``x``, one bar per ``color`` value, with error bars [lo, hi]
    (default columns ``{y}_lo`` and ``{y}_hi``)."""
    lo, hi = lo or f"{y}_lo", hi or f"{y}_hi"
    fig = go.Figure()
    for key, g in df.groupby(color, sort=True):
        error = {
            "type": "data",
            "symmetric": False,
            "array": (g[hi] - g[y]).clip(lower=0),
            "arrayminus": (g[y] - g[lo]).clip(lower=0),
            "thickness": 1,
            "width": 2,
        }
        fig.add_trace(go.Bar(x=g[x], y=g[y], name=str(key), error_y=error))
    if zero_line:
        fig.add_hline(y=0, line_width=1, line_color="#888")
    fig.update_layout(template=_TEMPLATE, title=title, barmode="group", yaxis_title=y_title, height=460)
    return fig


def lines_with_band(
    df: pd.DataFrame,
    x: str,
    y: str,
    color: str,
    title: str,
    y_title: str | None = None,
    lo: str | None = None,
    hi: str | None = None,
    reference: float | None = None,
    dashed: set[str] | None = None,
) -> go.Figure:
    """One line per ``color`` value with a shaded [lo, hi] band (when the columns exist); an
    optional horizontal reference line; ``dashed`` values (controls) drawn dashed."""
    lo, hi = lo or f"{y}_lo", hi or f"{y}_hi"
    fig = go.Figure()
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
    ]
    for i, (key, g) in enumerate(df.groupby(color, sort=True)):
        g = g.sort_values(x)
        colour = palette[i % len(palette)]
        if lo in g and hi in g and g[lo].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=list(g[x]) + list(g[x])[::-1],
                    y=list(g[hi]) + list(g[lo])[::-1],
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.15,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=g[x],
                y=g[y],
                mode="lines+markers",
                name=str(key),
                line={"color": colour, "dash": "dash" if dashed and key in dashed else "solid"},
            )
        )
    if reference is not None:
        fig.add_hline(y=reference, line_width=1, line_dash="dot", line_color="#555")
    fig.update_layout(template=_TEMPLATE, title=title, xaxis_title=x, yaxis_title=y_title or y, height=420)
    return fig
