"""The study report opens in headless Chromium without console errors, every section has a figure."""

import re
import shutil
import subprocess

import pytest
import torch
import transformers

from spectrascope.study import run_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=200,
    )
    model_dir = tmp_path_factory.mktemp("model")
    transformers.LlamaForCausalLM(cfg).save_pretrained(model_dir)
    out = tmp_path_factory.mktemp("study")
    return run_study(str(model_dir), out, workers=1, stages=("weights",))


def test_report_sections_present(report):
    html = report.read_text()
    for section in ["overview", "weights", "esd", "heads"]:
        assert f"<section id='{section}'>" in html
    assert html.count("Plotly.newPlot") >= 5


def test_report_renders_in_headless_chromium(report):
    assert CHROMIUM, "chromium is not installed (the README's test command installs it)"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console_errors = [
        l for l in proc.stderr.splitlines() if "CONSOLE" in l and re.search(r"error|Uncaught", l, re.IGNORECASE)
    ]
    assert not console_errors, console_errors
    dom = proc.stdout
    sections = re.split(r"<section id=", dom)[1:]
    assert len(sections) >= 4
    for s in sections:
        if s.startswith('"overview"'):
            continue
        assert "main-svg" in s, s[:200]  # plotly drew at least one figure in this section


def test_wide_tables_scroll_inside_the_page(tmp_path):
    """A table wider than the page sits in its own horizontally scrolling box."""
    import pandas as pd

    from spectrascope.report.html import Section, render

    wide = pd.DataFrame([{f"column_{i}": 0.5 for i in range(30)}])
    text = render("t", [Section("s", "S", tables=[wide])], tmp_path / "r.html").read_text()
    assert re.search(r"<div class='table-wrap'><table[^>]*>.*column_29.*</table>\s*</div>", text, re.DOTALL)
    assert ".table-wrap { overflow-x: auto" in text
