"""``spectrascope circuit``: the toy end to end (tables, summary, report), the figures, and bad input as
one ``error:`` line with exit code 2."""

from __future__ import annotations

import json

import pandas as pd
from transformers import GPT2Config, GPT2LMHeadModel

from spectrascope.circuits.figures import (
    circuit_graph_figure,
    circuit_section,
    faithfulness_figure,
)
from spectrascope.report.html import Section


def test_toy_end_to_end(run_cli, tmp_path):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        "circuit",
        "toy-induction",
        "--task",
        "induction",
        "--method",
        "eap-ig",
        "--n-prompts",
        "8",
        "--out",
        str(out),
        "--quiet",
    )
    assert code == 0, stderr
    assert "faithfulness" in stdout and "head:0.0" in stdout
    summary = json.loads((out / "circuit.json").read_text())
    assert summary["task"] == "induction" and summary["n_prompts"] == 8 and summary["n_edges"] == 110
    assert summary["faithfulness"] >= 0.8 and summary["size"] < 110
    edges = pd.read_parquet(out / "circuit_edges.parquet")
    assert list(edges.columns[:3]) == ["upstream", "downstream", "input"] and len(edges) == 110
    assert edges["in_circuit"].sum() == summary["size"]
    curve = pd.read_csv(out / "circuit_curve.csv")
    assert {"k", "faithfulness", "faithfulness_lo", "faithfulness_hi"} <= set(curve.columns)
    assert (out / "circuit.html").stat().st_size > 10_000 and not (out / "circuit.html.tmp").exists()


def test_figures_and_section(run_cli, tmp_path):
    from spectrascope.circuits.discover import discover_circuit

    circuit = discover_circuit("toy-induction", "induction", n_prompts=6, n_boot=100)
    section = circuit_section(circuit)
    assert isinstance(section, Section) and len(section.figures) == 2 and len(section.tables) == 2
    assert f"keeps {circuit.size} of 110 edges" in section.paragraphs[0]
    graph = circuit_graph_figure(circuit.edges, circuit.nodes)
    drawn = [t for t in graph.data if t.mode == "lines"]
    assert sum(len(t.x) // 3 for t in drawn) == circuit.size  # one segment per kept edge
    widths = {t.line.width for t in drawn}
    assert max(widths) > min(widths)  # wider for larger |score|
    curve = faithfulness_figure(circuit.curve, 0.8, circuit.size)
    assert curve.layout.xaxis.type == "log"


def test_bad_input_is_one_line(run_cli, tmp_path):
    code, _, stderr = run_cli("circuit", "toy-induction", "--task", "nope", "--out", str(tmp_path))
    assert code == 2 and stderr.startswith("error: unknown task 'nope'") and stderr.count("\n") == 1
    code, _, stderr = run_cli("circuit", "toy-induction", "--task", "geography", "--out", str(tmp_path))
    assert code == 2 and "needs a model with a tokenizer" in stderr and stderr.count("\n") == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, stderr = run_cli("circuit", "toy-induction", "--task", str(empty), "--out", str(tmp_path))
    assert code == 2 and stderr.startswith("error:") and stderr.count("\n") == 1
    code, _, stderr = run_cli(
        "circuit", "toy-induction", "--method", "magic", "--task", "induction", "--out", str(tmp_path)
    )
    assert code == 2 and "'magic' is not one of" in stderr and stderr.count("\n") == 1
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20)).save_pretrained(gpt2)
    run_cli("--help")  # (clears the output of save_pretrained's progress bar)
    code, _, stderr = run_cli("circuit", str(gpt2), "--task", "induction", "--out", str(tmp_path))
    assert code == 2 and stderr.startswith("error: circuits support the Llama family only")
    assert stderr.count("\n") == 1
    assert not (tmp_path / "circuit.json").exists()  # nothing half-written
