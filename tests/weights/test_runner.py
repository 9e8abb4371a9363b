"""Requirement 8: the parallel engine gives the same table as the serial one, writes its outputs,
and resumes from its row log (running only what is missing, ignoring a torn last line)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from model_builders import plain_state, tiny_llama, write_hf_dir

import spectrascope.weights.backends.local as local_backend
from spectrascope.weights.api import analyze_weights
from spectrascope.weights.options import WeightsOptions
from spectrascope.weights.runner import MATRIX_LOG, run_weights

N_MATRICES = 2 * 7 + 2  # 7 per block + embedding + untied lm_head
N_TENSORS = N_MATRICES + 2 * 2 + 1  # + 2 norm vectors per block and the final norm (skipped rows)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = tiny_llama()
    return write_hf_dir(tmp_path_factory.mktemp("engine") / "tiny-llama", plain_state(model), model.config.to_dict())


@pytest.fixture
def counted_run_task(monkeypatch):
    """Count the tasks the engine really runs (in-process, i.e. workers=1)."""
    ran: list[str] = []
    original = local_backend.run_task

    def counting(spec_or_source, task, options, device="cpu"):
        ran.append(task.key)
        return original(spec_or_source, task, options, device)

    monkeypatch.setattr(local_backend, "run_task", counting)
    return ran


def test_two_workers_equal_one_worker(model_dir):
    serial = analyze_weights(model_dir, workers=1)
    parallel = analyze_weights(model_dir, workers=2)
    assert len(serial) == N_TENSORS
    assert (serial["status"] == "success").sum() == N_MATRICES
    assert (serial.loc[serial["status"] != "success", "reason"].str.contains("1-D tensor")).all()
    pd.testing.assert_frame_equal(serial, parallel)


def test_two_workers_equal_one_worker_with_heads_and_extras(model_dir):
    options = WeightsOptions(heads=True, mp_fit=True, randomize=True, seed=3)
    m1, h1 = run_weights(model_dir, options, workers=1)
    m2, h2 = run_weights(model_dir, options, workers=2)
    pd.testing.assert_frame_equal(m1, m2)
    pd.testing.assert_frame_equal(h1, h2)


def test_outputs_are_written(model_dir, tmp_path):
    out = tmp_path / "out"
    df = analyze_weights(model_dir, out=out)
    for name in ["weights.parquet", "weights.csv", "summary.json", MATRIX_LOG]:
        assert (out / name).exists(), name
    pd.testing.assert_frame_equal(pd.read_parquet(out / "weights.parquet"), df)
    assert len(pd.read_csv(out / "weights.csv")) == len(df)
    assert isinstance(json.loads((out / "summary.json").read_text()), dict)
    assert len((out / MATRIX_LOG).read_text().splitlines()) == N_MATRICES


def test_resume_runs_only_missing_tasks(model_dir, tmp_path, counted_run_task):
    out = tmp_path / "out"
    first = analyze_weights(model_dir, out=out, workers=1)
    assert len(counted_run_task) == N_MATRICES

    log = out / MATRIX_LOG
    lines = log.read_text().splitlines()
    assert len(lines) == N_MATRICES
    kept = lines[: len(lines) // 2]
    log.write_text("".join(line + "\n" for line in kept))
    kept_keys = {json.loads(line)["key"] for line in kept}

    counted_run_task.clear()
    resumed = analyze_weights(model_dir, out=out, workers=1, resume=True)
    analyzed = first.loc[first["status"] == "success", "name"]
    assert sorted(counted_run_task) == sorted(set(analyzed) - kept_keys)
    assert len(counted_run_task) == N_MATRICES - len(kept)
    pd.testing.assert_frame_equal(resumed, first)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "weights.parquet"), first)

    counted_run_task.clear()
    again = analyze_weights(model_dir, out=out, workers=1, resume=True)
    assert counted_run_task == []  # everything is in the log now
    pd.testing.assert_frame_equal(again, first)


def _tear_log(out, n_kept: int) -> tuple[list[str], str]:
    """Keep n_kept whole lines of the row log, then half of the next one (no newline): the run
    died while writing it. Returns (all original lines, key of the torn task)."""
    log = out / MATRIX_LOG
    lines = log.read_text().splitlines()
    torn = lines[n_kept][: len(lines[n_kept]) // 2]
    log.write_text("".join(line + "\n" for line in lines[:n_kept]) + torn)
    return lines, json.loads(lines[n_kept])["key"]


def test_resume_ignores_a_torn_last_line(model_dir, tmp_path, counted_run_task):
    out = tmp_path / "out"
    first = analyze_weights(model_dir, out=out, workers=1)
    _, torn_key = _tear_log(out, 5)

    counted_run_task.clear()
    resumed = analyze_weights(model_dir, out=out, workers=1, resume=True)
    assert len(counted_run_task) == N_MATRICES - 5
    assert torn_key in counted_run_task  # the torn task is redone
    pd.testing.assert_frame_equal(resumed, first)


def test_log_is_complete_after_resuming_over_a_torn_line(model_dir, tmp_path, counted_run_task):
    out = tmp_path / "out"
    first = analyze_weights(model_dir, out=out, workers=1)
    _tear_log(out, 5)
    analyze_weights(model_dir, out=out, workers=1, resume=True)

    # every task finished in the resumed run must be in the log: a second resume has nothing to do
    counted_run_task.clear()
    again = analyze_weights(model_dir, out=out, workers=1, resume=True)
    assert counted_run_task == [], f"re-ran {counted_run_task}: its row was glued onto the torn line and lost"
    pd.testing.assert_frame_equal(again, first)


def test_without_resume_the_log_is_restarted(model_dir, tmp_path, counted_run_task):
    out = tmp_path / "out"
    analyze_weights(model_dir, out=out, workers=1)
    counted_run_task.clear()
    analyze_weights(model_dir, out=out, workers=1)
    assert len(counted_run_task) == N_MATRICES
    assert len((out / MATRIX_LOG).read_text().splitlines()) == N_MATRICES


def test_in_memory_module_with_workers_runs_in_process():
    model = tiny_llama()
    pd.testing.assert_frame_equal(analyze_weights(model, workers=2), analyze_weights(model, workers=1))


def test_resume_with_different_options_does_not_reuse_stale_rows(model_dir, tmp_path):
    # Rows logged by a run without --mp-fit must not be passed off as rows of an --mp-fit run:
    # resuming must either recompute them or refuse with a clear error.
    from spectrascope.errors import SpectrascopeError

    out = tmp_path / "out"
    analyze_weights(model_dir, out=out, workers=1)
    fresh = analyze_weights(model_dir, workers=1, mp_fit=True)
    try:
        resumed = analyze_weights(model_dir, out=out, workers=1, resume=True, mp_fit=True)
    except SpectrascopeError:
        return
    pd.testing.assert_frame_equal(resumed, fresh)
