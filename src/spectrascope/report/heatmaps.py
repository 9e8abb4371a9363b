"""Heat maps written as files (interactive HTML and a static PNG): the logit lens's top-1 grid
and any layer x position grid of the CLI verbs (patching effects)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..mech.logit_lens import EMBED_LAYER


def top1_grid(lens_df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(layer x position) grids of the top-1 token's probability and its text, from :func:`logit_lens`."""
    top = lens_df[(lens_df["kind"] == "top") & (lens_df["rank"] == 0)]
    prob = top.pivot(index="layer", columns="position", values="prob").sort_index()
    token = top.pivot(index="layer", columns="position", values="token").sort_index()
    return prob, token


def save_lens_heatmap(lens_df: pd.DataFrame, out_dir: str | Path, title: str = "logit lens") -> tuple[Path, Path]:
    """Write the top-1 heat map (layers x positions, colour = top-1 probability, cell text = top-1 token).

    Writes ``out_dir/lens_heatmap.html`` (plotly, plotly.js inlined, works offline) and
    ``out_dir/lens_heatmap.png`` (matplotlib); returns both paths.
    """
    prob, token = top1_grid(lens_df)
    inputs = lens_df.drop_duplicates("position").sort_values("position")["input_token"].tolist()
    x_labels = [f"{p}:{t!r}" for p, t in enumerate(inputs)]
    y_labels = ["emb" if layer == EMBED_LAYER else str(layer) for layer in prob.index]
    cells = [[show_token(t) for t in row] for row in token.values.tolist()]
    return write_heatmap(
        prob.values,
        x_labels,
        y_labels,
        out_dir,
        "lens_heatmap",
        title=title,
        cells=cells,
        x_title="position (input token)",
        colorbar="top-1 prob",
        zmin=0.0,
        zmax=1.0,
    )


def write_heatmap(
    values: Any,
    x_labels: Sequence[str],
    y_labels: Sequence[str],
    out_dir: str | Path,
    stem: str,
    *,
    title: str,
    cells: Sequence[Sequence[str]] | None = None,
    x_title: str = "position",
    y_title: str = "layer",
    colorbar: str = "value",
    zmin: float | None = None,
    zmax: float | None = None,
    diverging: bool = False,
) -> tuple[Path, Path]:
    """A (rows = y, columns = x) heat map as ``out_dir/stem.html`` (plotly, offline) and ``stem.png`` (matplotlib).

    ``cells`` (same shape as ``values``) is written in each cell; ``diverging`` uses a
    red-blue scale centred on 0 (for effects that can be negative). Row 0 is drawn at the bottom.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np
    import plotly.graph_objects as go

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    z = np.asarray(values, dtype=float)
    if diverging and zmin is None and zmax is None:
        bound = float(np.nanmax(np.abs(z))) if z.size and np.isfinite(z).any() else 1.0
        zmin, zmax = -bound, bound
    heat = {
        "z": z,
        "x": list(x_labels),
        "y": list(y_labels),
        "zmin": zmin,
        "zmax": zmax,
        "colorscale": "RdBu" if diverging else "Viridis",
        "reversescale": diverging,
        "colorbar": {"title": colorbar},
    }
    if cells is not None:
        heat.update(
            text=[list(row) for row in cells],
            texttemplate="%{text}",
            hovertemplate=f"{y_title} %{{y}}<br>{x_title} %{{x}}<br>%{{text}}<br>{colorbar} %{{z:.3f}}<extra></extra>",
        )
    fig = go.Figure(go.Heatmap(**heat))
    fig.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        template="plotly_white",
        height=max(400, 22 * len(y_labels) + 150),
    )
    html = out / f"{stem}.html"
    fig.write_html(html, include_plotlyjs=True)

    n_rows, n_cols = z.shape
    fig_mpl, ax = plt.subplots(figsize=(max(6.0, 0.9 * n_cols + 2.5), max(4.0, 0.32 * n_rows + 1.5)))
    image = ax.imshow(z, aspect="auto", origin="lower", cmap="RdBu_r" if diverging else "viridis", vmin=zmin, vmax=zmax)
    if cells is not None:
        font = 7 if n_cols <= 16 else 5
        for i in range(n_rows):
            for j in range(n_cols):
                ax.text(
                    j,
                    i,
                    str(cells[i][j])[:10],
                    ha="center",
                    va="center",
                    fontsize=font,
                    color=_text_colour(image, z[i, j]),
                )
    ax.set_xticks(range(n_cols), list(x_labels), rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n_rows), list(y_labels), fontsize=7)
    ax.set_xlabel(x_title)
    ax.set_ylabel(y_title)
    ax.set_title(title, fontsize=9)
    fig_mpl.colorbar(image, ax=ax, label=colorbar)
    png = out / f"{stem}.png"
    with warnings.catch_warnings():  # tokens in scripts the default font lacks: drawn as boxes, no warning
        warnings.filterwarnings("ignore", message=r"Glyph .* missing from font")
        fig_mpl.tight_layout()
        fig_mpl.savefig(png, dpi=120)
    plt.close(fig_mpl)
    return html, png


def _text_colour(image: Any, value: float) -> str:
    """Black on light cells, white on dark ones."""
    if math.isnan(value):
        return "black"
    red, green, blue, _ = image.cmap(image.norm(value))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def show_token(text: str) -> str:
    """A token for a figure cell: escapes (``\\n``) shown; a whitespace-only token quoted so it stays visible."""
    return repr(text) if not text.strip() else repr(text)[1:-1]
