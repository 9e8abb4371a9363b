"""Study integration (the stage writes, the report reads back) and the comparisons with other tools
(head overlap by hand, the logit lens on the toy)."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from spectrascope.circuits.compare import head_overlap, lens_emergence
from spectrascope.circuits.edge_patching import EdgePatcher
from spectrascope.circuits.study import (
    CircuitBudget,
    circuit_report_sections,
    read_circuit,
    run,
)
from spectrascope.circuits.tasks import induction_task
from spectrascope.mech.toy_models import load_toy_induction


def test_head_overlap_by_hand():
    ranking = pd.DataFrame({"node": [f"head:0.{i}" for i in range(10)], "score": np.arange(10.0)})
    result = head_overlap({"head:0.9", "head:0.8", "head:0.1"}, ranking, top=3, n_heads=10)
    assert result["top"] == ["head:0.9", "head:0.8", "head:0.7"]
    assert result["n_overlap"] == 2 and result["expected"] == pytest.approx(0.9)
    assert result["p"] == pytest.approx(hypergeom.sf(1, 10, 3, 3))


def test_lens_on_the_toy_ends_at_the_models_metric():
    toy = load_toy_induction()
    task = induction_task(toy, n=8, seed=1)
    table, summary = lens_emergence(toy, task, n_boot=200)
    assert table["layer"].tolist() == [-1, 0, 1]
    assert table["metric"].iloc[-1] == pytest.approx(float(EdgePatcher(toy, task).clean_rows.mean()), abs=1e-4)
    assert table["share"].iloc[0] == 0 and table["share"].iloc[-1] == pytest.approx(1.0)
    assert summary["half_layer"] == 1  # induction needs both layers


def test_stage_writes_and_the_report_reads_back(tmp_path):
    toy = load_toy_induction()
    budget = types.SimpleNamespace(circuits=CircuitBudget(tasks=("induction",), n_prompts=8))
    ctx = types.SimpleNamespace(loaded=lambda: toy, out=tmp_path, budget=budget, seed=0, show_progress=False)
    summary = run(ctx)["circuits"]
    assert summary["task"].tolist() == ["induction"] and summary["status"].tolist() == ["ok"]
    row = summary.iloc[0]
    assert row["size_lo"] <= row["size"] <= row["size_hi"] and row["faithfulness"] >= row["target"] - 0.05
    assert row["prior_random_ap"] < row["prior_average_precision"]  # the toy's k-edges lead the prior
    folder = tmp_path / "circuits" / "induction"
    assert (folder / "circuit_eigenmodes.parquet").exists() and (folder / "circuit_lens.parquet").exists()
    circuit = read_circuit(folder)
    assert int(circuit.kept.sum()) == circuit.size and circuit.graph.n_edges == 110
    sections = circuit_report_sections(tmp_path / "circuits")
    assert [s.id for s in sections] == ["circuit-induction", "circuit-spectra-induction"]
    assert any("Logit lens" in p for p in sections[0].paragraphs)
    assert circuit_report_sections(tmp_path / "nothing") == []


def test_stage_says_when_the_family_is_not_supported(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20)).eval()
    handle = types.SimpleNamespace(hf=gpt2, tokenizer=None, name="gpt2")
    budget = types.SimpleNamespace(circuits=CircuitBudget(tasks=("induction", "geography")))
    ctx = types.SimpleNamespace(loaded=lambda: handle, out=tmp_path, budget=budget, seed=0, show_progress=False)
    summary = run(ctx)["circuits"]
    assert summary["task"].tolist() == ["induction", "geography"]
    assert summary["status"].str.startswith("skipped: circuits support the Llama family only").all()
    assert not (tmp_path / "circuits").exists()
