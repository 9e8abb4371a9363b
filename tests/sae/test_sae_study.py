"""The study stage on a tiny model with tiny budgets: every table written, report sections built."""

from __future__ import annotations

from pathlib import Path

from spectrascope.report.html import render
from spectrascope.sae.study import PRODUCES, SaeBudget, features_sections, run
from spectrascope.study.budget import StudyBudget
from spectrascope.study.context import StudyContext
from spectrascope.tables import write_table


def test_stage_returns_its_tables_and_the_report_reads_them(tiny, tmp_path):
    budget = StudyBudget(corpora="calendar,arithmetic", seq_len=64, features=SaeBudget(
        layer=0, expansion=2, k=4, store_tokens=2000, train_tokens=4096, batch_size=256,
        eval_tokens=64, feature_tokens=128, loss_tokens=48, top_features=2))
    ctx = StudyContext("tiny", tmp_path, budget)
    ctx._loaded = tiny
    tiny.arch = type("Arch", (), {"n_layers": 2, "d_model": 32})()
    tables = run(ctx)
    assert set(tables) == set(PRODUCES) and all(len(t) for t in tables.values())
    folder = tmp_path / "features"
    for name, table in tables.items():  # as the study runner writes them
        write_table(table, folder, name)
    assert (folder / "sae" / "cfg.json").exists() and (folder / "activations" / "meta.json").exists()
    sections = features_sections(tmp_path, cards=2)
    assert sections[0].id == "features" and len(sections) == 3
    assert any("explains" in p for p in sections[0].paragraphs)
    page = render("t", sections, tmp_path / "report.html")
    assert "Feature" in Path(page).read_text()
    assert SaeBudget.from_study(budget).k == 4
