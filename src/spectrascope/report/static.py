"""Static PNG copies of the report's figures (for papers), drawn with matplotlib from the
plotly figures' data: heat maps as images, line/scatter/bar traces as lines and bars."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "figure"


def figure_to_png(fig, path: Path) -> None:
    """Render one plotly figure's traces with matplotlib."""
    layout = fig.layout
    heat = [t for t in fig.data if t.type == "heatmap"]
    mpl, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    if heat:
        t = heat[0]
        z = np.array(t.z, dtype=float)
        im = ax.imshow(z, aspect="auto", origin="lower", cmap="viridis")
        ax.set_xticks(range(len(t.x)), [str(v) for v in t.x], rotation=90, fontsize=6)
        ax.set_yticks(range(len(t.y)), [str(v) for v in t.y], fontsize=6)
        mpl.colorbar(im, ax=ax)
    else:
        for t in fig.data:
            if t.type == "bar":
                ax.bar([str(v) for v in t.x], t.y, label=t.name, alpha=0.7)
                ax.tick_params(axis="x", rotation=90, labelsize=6)
            elif t.x is not None and t.y is not None:
                ax.plot(
                    t.x,
                    t.y,
                    marker="." if t.mode and "markers" in t.mode else None,
                    label=t.name,
                    linestyle="none" if t.mode == "markers" else "-",
                )
        if layout.xaxis.type == "log":
            ax.set_xscale("log")
        if layout.yaxis.type == "log":
            ax.set_yscale("log")
        if len(fig.data) > 1:
            ax.legend(fontsize=6)
    ax.set_title(layout.title.text or "", fontsize=9)
    ax.set_xlabel(layout.xaxis.title.text or "")
    ax.set_ylabel(layout.yaxis.title.text or "")
    mpl.tight_layout()
    mpl.savefig(path)
    plt.close(mpl)


def save_static(sections, folder: Path) -> list[Path]:
    """PNG of every figure of every section into ``folder``; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in sections:
        for i, fig in enumerate(s.figures):
            path = folder / f"{s.id}_{i}_{_slug(fig.layout.title.text or '')}.png"
            figure_to_png(fig, path)
            paths.append(path)
    return paths
