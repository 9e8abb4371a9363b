"""Requirement 7: degenerate tensors (NaN, Inf, all-zero, rank 1, tiny) never crash a run and
never hide the other rows: each gets a 'failed' or 'skipped' row with a reason."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from spectrascope.weights.api import analyze_weights

GOOD = ["good.weight", "good2.weight"]
FAILED = ["nan.weight", "inf.weight", "zero.weight", "rank1.weight"]
SKIPPED = ["tiny.weight"]


def degenerate_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    nan = torch.randn(64, 32, generator=g)
    nan[3, 7] = float("nan")
    inf = torch.randn(48, 32, generator=g)
    inf[0, 0] = float("inf")
    return {
        "good.weight": torch.randn(64, 32, generator=g),
        "nan.weight": nan,
        "inf.weight": inf,
        "zero.weight": torch.zeros(40, 32),
        "rank1.weight": torch.outer(torch.randn(64, generator=g), torch.randn(32, generator=g)),
        "tiny.weight": torch.randn(3, 5, generator=g),
        "good2.weight": torch.randn(32, 80, generator=g),
    }


def _check_table(df: pd.DataFrame) -> None:
    assert sorted(df["name"]) == sorted(GOOD + FAILED + SKIPPED)
    by_name = df.set_index("name")
    for name in GOOD:
        assert by_name.loc[name, "status"] == "success", name
        assert np.isfinite(by_name.loc[name, "alpha"]), name
    for name in FAILED:
        assert by_name.loc[name, "status"] == "failed", name
        reason = by_name.loc[name, "reason"]
        assert isinstance(reason, str) and reason.strip(), name
        assert by_name.loc[name, "warning"] != "over-trained", name  # a failure is not a training label
    for name in SKIPPED:
        assert by_name.loc[name, "status"] == "skipped"
        assert isinstance(by_name.loc[name, "reason"], str) and by_name.loc[name, "reason"].strip()
        assert (by_name.loc[name, "N"], by_name.loc[name, "M"]) == (5, 3)
    assert "NaN" in by_name.loc["nan.weight", "reason"] or "nan" in by_name.loc["nan.weight", "reason"].lower()
    assert "Inf" in by_name.loc["inf.weight", "reason"] or "inf" in by_name.loc["inf.weight", "reason"].lower()
    assert "zero" in by_name.loc["zero.weight", "reason"]
    assert "rank" in by_name.loc["rank1.weight", "reason"]


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_degenerate_state_dict(precision):
    _check_table(analyze_weights(degenerate_state(), precision=precision))


def test_degenerate_safetensors_file(tmp_path):
    path = tmp_path / "degenerate.safetensors"
    save_file(degenerate_state(), str(path))
    _check_table(analyze_weights(path))


def test_degenerate_safetensors_with_two_workers(tmp_path):
    path = tmp_path / "degenerate.safetensors"
    save_file(degenerate_state(), str(path))
    _check_table(analyze_weights(path, workers=2))


def test_degenerate_safetensors_through_the_cli(tmp_path):
    path = tmp_path / "degenerate.safetensors"
    save_file(degenerate_state(), str(path))
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spectrascope.cli",
            "weights",
            str(path),
            "--out",
            str(out),
            "--quiet",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    df = pd.read_csv(out / "weights.csv", keep_default_na=False, na_values=[""])
    df["reason"] = df["reason"].fillna("").astype(str)
    _check_table(df)
    assert (out / "weights.parquet").exists() and (out / "summary.json").exists()
    _check_table(pd.read_parquet(out / "weights.parquet"))
