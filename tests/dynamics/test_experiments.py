"""The built-in experiments, shortened: the qualitative facts of grokking and of induction heads forming."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from spectrascope.dynamics.experiment import run_experiment
from spectrascope.dynamics.grokking import GrokkingConfig
from spectrascope.dynamics.induction import InductionConfig
from spectrascope.errors import SpectrascopeError


@pytest.fixture(scope="module")
def grokking(tmp_path_factory):
    """``spectrascope experiment grokking --quick`` through the CLI entry point."""
    from spectrascope.cli import main

    out = tmp_path_factory.mktemp("grokking")
    argv = ["spectrascope", "experiment", "grokking", "--quick", "--out", str(out), "--quiet", "--n-perm", "199"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        try:
            main()
        except SystemExit as done:
            assert not done.code
    return out


def test_grokking_memorizes_long_before_it_generalizes(grokking):
    metrics = pd.read_csv(grokking / "metrics.csv")
    assert list(metrics.columns) == ["step", "train_loss", "test_loss", "train_acc", "test_acc"]
    memorized = metrics.loc[metrics["train_acc"] >= 0.99, "step"].min()
    rising = metrics.loc[metrics["test_acc"] >= 0.5, "step"].min()
    assert rising >= 3 * memorized  # train accuracy reaches 1 long before test accuracy rises
    at_memorization = metrics.set_index("step").loc[memorized]
    assert at_memorization["test_acc"] < 0.4 and at_memorization["test_loss"] > at_memorization["train_loss"] + 2
    assert metrics["test_acc"].iloc[-1] > 0.95 and metrics["train_acc"].iloc[-1] == 1.0
    summary = json.loads((grokking / "summary.json").read_text())
    assert summary["events"]["generalizing (test acc ≥ 0.5)"] == rising


def test_grokking_uses_a_handful_of_key_frequencies(grokking):
    summary = json.loads((grokking / "summary.json").read_text())
    p = GrokkingConfig.quick().p
    keys = summary["key_frequencies"]
    # fewer than half of the (p - 1) / 2 = 21 frequencies: the quick run ends with 7 on torch's
    # avx512 code path and 9 on its avx2 one (the training trajectory is not bit-stable across CPUs)
    assert 1 <= len(keys) and 2 * len(keys) < (p - 1) // 2 and all(1 <= k <= (p - 1) // 2 for k in keys)
    measures = pd.read_csv(grokking / "progress_measures.csv").set_index("step")
    final = measures.iloc[-1]
    assert final["key_share"] > 0.5 > measures["key_share"].iloc[0]  # sparse in Fourier at the end, not at init
    assert final["restricted_loss"] < 0.5 * np.log(p)  # the key frequencies alone carry the answer
    train_loss = pd.read_csv(grokking / "metrics.csv")["train_loss"].iloc[-1]
    assert final["excluded_loss"] > train_loss + 1.0  # removing them breaks the fit of the training set


def test_grokking_tables_and_report(grokking):
    weights = pd.read_csv(grokking / "weights_over_steps.csv")
    steps = sorted(weights["step"].unique())
    assert steps[0] == 0 and steps[-1] == GrokkingConfig.quick().steps and len(steps) >= 12
    assert (weights.groupby("step")["name"].nunique() == 9).all() and (weights["status"] == "success").all()
    changes = pd.read_csv(grokking / "changepoints.csv")
    assert set(changes["model"]) == {"rate", "mean"} and changes["p_value"].between(0, 1).all()
    timing = pd.read_csv(grokking / "timing.csv")
    assert {"relation", "control_p", "init_mean", "z_final"} <= set(timing.columns)
    assert set(timing["relation"].dropna()) <= {"before", "at", "after"}
    reference = pd.read_csv(grokking / "untrained_reference.csv")
    assert (reference["n"] == 5).all()
    page = (grokking / "report.html").read_text()
    assert "Grokking: a + b mod 43" in page and "Progress measures" in page


@pytest.fixture(scope="module")
def induction(tmp_path_factory):
    out = tmp_path_factory.mktemp("induction")
    run_experiment("induction", out, quick=True, n_perm=99, controls=False)
    return out


def test_in_context_loss_drops_when_induction_heads_form(induction):
    metrics = pd.read_csv(induction / "metrics.csv").set_index("step")
    assert {"train_loss", "test_loss", "in_context_loss", "induction_score"} <= set(metrics.columns)
    summary = json.loads((induction / "summary.json").read_text())
    in_context, formed = summary["events"]["in_context_step"], summary["events"]["induction_step"]
    assert abs(in_context - formed) <= InductionConfig.quick().eval_every  # they coincide on the eval grid
    before = metrics.loc[metrics.index < min(in_context, formed) - 50]
    after = metrics.loc[metrics.index >= max(in_context, formed)]
    assert (before["in_context_loss"] > 3.5).all() and (before["induction_score"] < 0.2).all()
    assert (after["in_context_loss"] < 0.5).all() and (after["induction_score"] > 0.9).all()
    assert summary["induction_heads"] and all(h.startswith("1.") for h in summary["induction_heads"])


def test_induction_heads_spectra_are_tracked(induction):
    heads = pd.read_csv(induction / "heads_over_steps.csv")
    summary = json.loads((induction / "summary.json").read_text())
    layer, head = map(int, summary["induction_heads"][0].split("."))
    mine = heads[(heads["block"] == layer) & (heads["head"] == head) & heads["circuit"].isin(["qk", "ov"])]
    assert mine["step"].nunique() == len(set(heads["step"])) and mine["alpha"].notna().all()
    scores = pd.read_csv(induction / "head_scores_over_steps.csv")
    assert {"step", "layer", "head", "induction", "previous_token"} <= set(scores.columns)


def test_unknown_experiment_is_one_line(tmp_path):
    with pytest.raises(SpectrascopeError, match="unknown experiment 'mnist'"):
        run_experiment("mnist", tmp_path)
