"""Every tensor of a checkpoint is accounted for: integer, 1-D, 3-D and 4-D tensors get a row
with status 'skipped' and the reason, counted in summary.json; a checkpoint of only such
tensors ends in a table, a summary and a clear line, not in ``KeyError: 'alpha'``."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

from spectrascope.weights.api import analyze_weights

RNG = np.random.default_rng(0)
ODD_TENSORS = {
    "layers.0.quantized.weight": RNG.integers(-127, 127, (48, 32)).astype(np.int8),
    "layers.0.norm.weight": RNG.standard_normal(32).astype(np.float32),
    "layers.0.conv.weight": RNG.standard_normal((4, 8, 3, 3)).astype(np.float32),
    "layers.0.stack.weight": RNG.standard_normal((3, 16, 12)).astype(np.float32),
    "position_ids": np.arange(64, dtype=np.int64)[None, :],
}
MATRIX = {"layers.0.dense.weight": RNG.standard_normal((64, 32)).astype(np.float32)}


def _write(folder, tensors):
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def test_every_tensor_has_a_row_with_a_reason(tmp_path):
    df = analyze_weights(_write(tmp_path / "m", {**ODD_TENSORS, **MATRIX}), out=tmp_path / "out")
    rows = df.set_index("name")
    assert set(rows.index) == set(ODD_TENSORS) | set(MATRIX)
    assert rows.loc["layers.0.dense.weight", "status"] == "success"
    for name in ODD_TENSORS:
        assert rows.loc[name, "status"] == "skipped", name
    reasons = rows["reason"]
    assert "integer dtype I8" in reasons["layers.0.quantized.weight"]
    assert "integer dtype I64" in reasons["position_ids"]
    assert "1-D tensor of shape (32,)" in reasons["layers.0.norm.weight"]
    assert "4-D tensor of shape (4, 8, 3, 3)" in reasons["layers.0.conv.weight"]
    assert "3-D tensor of shape (3, 16, 12)" in reasons["layers.0.stack.weight"]
    # a vector of length d is d x 1; higher ranks are flattened to (shape[0], rest), long side first
    assert tuple(rows.loc["layers.0.norm.weight", ["N", "M"]]) == (32, 1)
    assert tuple(rows.loc["layers.0.conv.weight", ["N", "M"]]) == (72, 4)

    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["tensors"] == len(ODD_TENSORS) + 1
    assert summary["status_counts"] == {"skipped": len(ODD_TENSORS), "success": 1}
    assert {r["name"] for r in summary["skipped"]} == set(ODD_TENSORS)


def test_in_memory_integer_tensors_are_rows_too():
    import torch

    df = analyze_weights({"a.weight": torch.randn(40, 20), "b.weight": torch.ones(30, 20, dtype=torch.int8)})
    assert dict(zip(df["name"], df["status"], strict=True)) == {"a.weight": "success", "b.weight": "skipped"}
    assert "integer dtype int8" in df.set_index("name").loc["b.weight", "reason"]


def test_checkpoint_of_only_non_matrices_ends_cleanly(tmp_path, monkeypatch, capsys):
    from spectrascope.cli import main

    model, out = _write(tmp_path / "odd", ODD_TENSORS), tmp_path / "out"
    monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
    monkeypatch.setattr(
        sys, "argv", ["spectrascope", "weights", str(model), "--out", str(out), "--quiet", "--workers", "1"]
    )
    main()  # returns: exit code 0
    captured = capsys.readouterr()
    assert "internal error" not in captured.err and "KeyError" not in captured.out + captured.err
    assert "no matrix was analyzed" in captured.out
    table = pd.read_parquet(out / "weights.parquet")
    assert len(table) == len(ODD_TENSORS) and (table["status"] == "skipped").all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status_counts"] == {"skipped": len(ODD_TENSORS)}
    assert summary["mean_alpha"] is None and summary["worst"] == []


@pytest.mark.parametrize("heads", [False, True])
def test_heads_only_or_failed_heads_summaries_do_not_crash(heads):
    from spectrascope.weights.summary import summary_dict

    table = pd.DataFrame({"name": ["x"], "role": ["other"], "status": ["skipped"], "reason": ["1-D tensor"]})
    head_rows = pd.DataFrame(
        {
            "block": [0],
            "head": [-1],
            "kv_head": [-1],
            "circuit": ["all"],
            "status": ["failed"],
            "reason": ["unreadable"],
        }
    )
    summary = summary_dict(table, head_rows if heads else None)
    assert summary["analyzed"] == 0 and summary["by_role"] == []
    assert summary.get("heads", {}) == {}
