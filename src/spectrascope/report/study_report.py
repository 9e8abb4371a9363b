"""The study report: the overview's findings, then every section whose tables exist."""

from __future__ import annotations

from pathlib import Path

from ..circuits.study import circuit_report_sections
from ..sae.study import features_sections
from .findings import overview
from .html import Section, render
from .sections import SECTIONS
from .static import save_static
from .tables import StudyTables


def build_report(ctx) -> Path:
    """Write ``report.html`` (and static PNGs under figures/) from the study's tables."""
    tables = StudyTables(ctx.out)
    sections = [Section("overview", "Overview", overview(tables, ctx.model, ctx.budget))]
    sections += [s for build in SECTIONS if (s := build(tables, ctx.model)) is not None]
    sections += features_sections(ctx.out)
    sections += circuit_report_sections(ctx.out / "circuits")
    save_static(sections, ctx.out / "figures")
    return render(f"spectrascope study: {ctx.model}", sections, ctx.out / "report.html")
