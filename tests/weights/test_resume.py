"""Results that cannot mix: a second model or a second seed written into the folder of a first
run, with and without resume; tables of an earlier run are never left beside new ones."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from spectrascope.errors import ResumeError
from spectrascope.weights.options import WeightsOptions
from spectrascope.weights.runner import MATRIX_LOG, RUN_FILE, run_weights


@pytest.fixture(scope="module")
def models(tmp_path_factory, synthetic_checkpoints):
    """Two checkpoints with the same tensor names and shapes, different values (seeds 0 and 1)."""
    root = tmp_path_factory.mktemp("resume")
    make = synthetic_checkpoints.make_checkpoint
    return (
        make(root / "a", seed=0, scale=1 / 64, layers=1, shard_mb=1),
        make(root / "b", seed=1, scale=1 / 64, layers=1, shard_mb=1),
    )


def _truncate_log(out, keep: int) -> None:
    """As if the run had been killed after ``keep`` tasks."""
    log = out / MATRIX_LOG
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:keep]))
    for name in ("weights.parquet", "weights.csv", "summary.json"):
        (out / name).unlink()


def test_second_model_with_resume_is_refused_and_says_why(models, tmp_path):
    a, b = models
    out = tmp_path / "out"
    run_weights(a, out_dir=out)
    _truncate_log(out, 3)
    with pytest.raises(ResumeError, match="different model") as err:
        run_weights(b, out_dir=out, resume=True)
    assert "\n" not in str(err.value)


def test_second_model_without_resume_replaces_every_row(models, tmp_path):
    a, b = models
    out = tmp_path / "out"
    run_weights(a, out_dir=out)
    fresh_b, _ = run_weights(b)
    rewritten, _ = run_weights(b, out_dir=out)
    pd.testing.assert_frame_equal(rewritten, fresh_b)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "weights.parquet"), fresh_b)
    assert json.loads((out / "summary.json").read_text())["source"].endswith(str(b))
    assert json.loads((out / RUN_FILE).read_text())["model"]["path"] == str(b.resolve())


def test_second_seed_with_resume_is_refused(models, tmp_path):
    a, _ = models
    out = tmp_path / "out"
    run_weights(a, WeightsOptions(randomize=True, seed=0), out_dir=out)
    _truncate_log(out, 3)
    with pytest.raises(ResumeError, match="different seed"):
        run_weights(a, WeightsOptions(randomize=True, seed=1), out_dir=out, resume=True)


def test_second_seed_without_resume_gives_the_clean_run_of_that_seed(models, tmp_path):
    a, _ = models
    out = tmp_path / "out"
    run_weights(a, WeightsOptions(randomize=True, seed=0), out_dir=out)
    clean, _ = run_weights(a, WeightsOptions(randomize=True, seed=1))
    rerun, _ = run_weights(a, WeightsOptions(randomize=True, seed=1), out_dir=out)
    pd.testing.assert_frame_equal(rerun, clean)


def test_same_inputs_resume_reuses_rows(models, tmp_path):
    a, _ = models
    out = tmp_path / "out"
    first, _ = run_weights(a, out_dir=out)
    _truncate_log(out, 3)
    resumed, _ = run_weights(a, out_dir=out, resume=True)
    pd.testing.assert_frame_equal(resumed, first)


def test_rerun_without_heads_removes_the_earlier_heads_table(models, tmp_path):
    a, _ = models
    out = tmp_path / "out"
    run_weights(a, WeightsOptions(heads=True), out_dir=out)
    assert (out / "weights_heads.parquet").exists()
    run_weights(a, out_dir=out)
    assert not (out / "weights_heads.parquet").exists() and not (out / "weights_heads.csv").exists()


def test_interrupted_rerun_leaves_no_table_of_the_earlier_run(models, tmp_path, monkeypatch):
    from spectrascope.weights.backends import local

    a, b = models
    out = tmp_path / "out"
    run_weights(a, out_dir=out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "run_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_weights(b, out_dir=out)
    assert not (out / "weights.parquet").exists() and not (out / "summary.json").exists()


def test_cli_resume_refusal_names_the_cli_options(models, tmp_path, monkeypatch, capsys):
    from spectrascope.cli import main

    a, b = models
    out = tmp_path / "out"
    run_weights(a, out_dir=out)
    monkeypatch.delenv("SPECTRASCOPE_DEBUG", raising=False)
    monkeypatch.setattr(
        sys, "argv", ["spectrascope", "weights", str(b), "--out", str(out), "--resume", "--quiet", "--workers", "1"]
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert err.startswith("error: --resume: ") and "different model" in err and "run without --resume" in err
    assert "resume=True" not in err and len(err.splitlines()) == 1
