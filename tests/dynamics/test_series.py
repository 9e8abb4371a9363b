"""Checkpoint series: steps from names, the ways to name a series, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from spectrascope.dynamics.series import (
    Checkpoint,
    SeriesError,
    check_same_architecture,
    checkpoint_series,
    step_of,
)
from spectrascope.dynamics.training import log_schedule


@pytest.mark.parametrize(
    "name, step",
    [
        ("step1000", 1000),
        ("step-20", 20),
        ("checkpoint-250", 250),
        ("global_step7", 7),
        ("ckpt_3.gguf", 3),
        ("run2_step40.safetensors", 40),
        ("model-v2-00012", 12),
        ("pythia-70m", 70),
        ("final", None),
    ],
)
def test_step_of(name, step):
    assert step_of(name) == step


def _touch_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_a_folder_of_step_folders_in_step_order(tmp_path):
    for step in (1000, 20, 300):
        _touch_checkpoint(tmp_path / f"step{step}")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    (tmp_path / "logs").mkdir()  # a folder without a step is not a checkpoint either
    series = checkpoint_series(tmp_path)
    assert [cp.step for cp in series] == [20, 300, 1000]
    assert series[0] == Checkpoint(20, tmp_path / "step20")
    assert series[0].label == "step000000020"


def test_files_globs_and_missing_members(tmp_path):
    for step in (5, 50):
        (tmp_path / f"ckpt-{step}.safetensors").write_bytes(b"")
    assert [cp.step for cp in checkpoint_series(str(tmp_path / "ckpt-*.safetensors"))] == [5, 50]
    # a named checkpoint that does not exist stays in the series (its rows fail when tracked)
    series = checkpoint_series([tmp_path / "ckpt-50.safetensors", tmp_path / "step7", tmp_path / "ckpt-5.safetensors"])
    assert [(cp.step, cp.path.exists()) for cp in series] == [(5, True), (7, False), (50, True)]


def test_series_errors_are_one_line(tmp_path):
    with pytest.raises(SeriesError, match="no checkpoint matches"):
        checkpoint_series(str(tmp_path / "nothing-*"))
    with pytest.raises(SeriesError, match="no training step in its name"):
        checkpoint_series([tmp_path / "final"])
    with pytest.raises(SeriesError, match="two checkpoints for step 10"):
        checkpoint_series([tmp_path / "step10", tmp_path / "checkpoint-10"])
    with pytest.raises(SeriesError, match="holds no weights and no entries named by step"):
        checkpoint_series(tmp_path)
    with pytest.raises(SeriesError, match="no checkpoints given"):
        checkpoint_series([])


def test_mixed_architectures_name_the_difference():
    a, b, c = (Checkpoint(s, Path(f"step{s}")) for s in (0, 10, 20))
    same = {"w": (4, 8), "v": (8, 8)}
    check_same_architecture({a: same, b: dict(same)})
    with pytest.raises(SeriesError, match=r"step 20 \(step20\) has w of shape \(4, 16\) instead of \(4, 8\)"):
        check_same_architecture({a: same, b: same, c: {"w": (4, 16), "v": (8, 8)}})
    with pytest.raises(SeriesError, match="step 10 .* lacks w"):
        check_same_architecture({a: same, b: {"v": (8, 8)}})


def test_log_schedule():
    assert log_schedule(1000, 5) == [0, 1, 10, 100, 1000]
    steps = log_schedule(3000, 40)
    assert steps[0] == 0 and steps[-1] == 3000 and steps == sorted(set(steps))
    assert 30 <= len(steps) <= 40  # early duplicates (1, 1, 1, 2 ...) merge
