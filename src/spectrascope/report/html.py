"""Assemble a self-contained HTML report (plotly.js inlined, works offline)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

_STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.7em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .9em; } td, th { padding: .25em .6em; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f6f6f6; } td:first-child, th:first-child { text-align: left; }
.table-wrap { overflow-x: auto; max-width: 100%; margin: .5em 0; }
.overview { background: #f7f9fc; border-left: 4px solid #4a78c2; padding: .6em 1em; }
"""


@dataclass
class Section:
    """A titled report section: paragraphs, figures and tables, in that order."""

    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)
    figures: list[go.Figure] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)


def render(title: str, sections: list[Section], path: str | Path) -> Path:
    """Write the report to ``path`` and return it."""
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style><script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    for s in sections:
        parts.append(f"<section id='{s.id}'><h2>{html.escape(s.title)}</h2>")
        for p in s.paragraphs:
            parts.append(f"<p class='{'overview' if s.id == 'overview' else ''}'>{html.escape(p)}</p>")
        for fig in s.figures:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
        for t in s.tables:
            table = t.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0)
            parts.append(f"<div class='table-wrap'>{table}</div>")  # wide tables scroll, the page does not
        parts.append("</section>")
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
