"""Tracking a checkpoint series written by a short training run, with a corrupt checkpoint."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from series_builders import CORRUPT_STEP, SERIES_STEPS, tiny_llama

from spectrascope import analyze_weights
from spectrascope.dynamics.digest import TensorDigests
from spectrascope.dynamics.series import SeriesError
from spectrascope.dynamics.track import track
from spectrascope.dynamics.training import save_checkpoint
from spectrascope.errors import SpectrascopeError
from spectrascope.models.open_source import open_source

FROZEN = ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.down_proj.weight")
TRAINED = ("lm_head.weight", "model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight")


@pytest.fixture(scope="module")
def tracked(series_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("track-out")
    return track(series_dir, out=out, heads=True), out


def test_corrupt_checkpoint_fails_its_rows_and_keeps_the_others(tracked):
    result, _ = tracked
    status = result.checkpoints.set_index("step")
    assert list(status.index) == list(SERIES_STEPS)
    assert status.loc[CORRUPT_STEP, "status"] == "failed"
    assert "safetensors" in status.loc[CORRUPT_STEP, "reason"]
    assert (status.drop(CORRUPT_STEP)["status"] == "ok").all()
    rows = result.weights
    bad = rows[rows["step"] == CORRUPT_STEP]
    good = rows[rows["step"] == 0]
    assert sorted(bad["name"]) == sorted(good["name"]) and len(good) == 16  # one failed row per matrix
    assert (bad["status"] == "failed").all() and bad["reason"].str.contains("safetensors").all()
    assert (rows[rows["step"] != CORRUPT_STEP]["status"] == "success").all()
    assert list(rows.columns[:2]) == ["step", "checkpoint"]


def test_unchanged_tensors_are_reused_and_equal_a_fresh_analysis(tracked, series_dir):
    result, _ = tracked
    rows = result.weights.set_index(["step", "name"])
    for step in (2, 10, 20):
        assert all(rows.loc[(step, n), "reused"] for n in FROZEN)
        assert not any(rows.loc[(step, n), "reused"] for n in TRAINED)
    status = result.checkpoints.set_index("step")
    assert status.loc[0, "computed"] == 16 and status.loc[0, "reused"] == 0
    assert status.loc[20, "reused"] == 8  # the embedding + the 7 matrices of block 0 (lm_head is trained)
    # every row (reused or not) equals the engine's own analysis of that checkpoint
    fresh = analyze_weights(series_dir / "step20", mp_fit=True, randomize=True).set_index("name")
    fresh = fresh[fresh["status"] != "skipped"]  # norm vectors: rows of the weights table, not tracked
    mine = rows.loc[20]
    for column in ("alpha", "erg_delta", "entropy", "stable_rank", "num_spikes", "num_traps"):
        assert np.allclose(mine.loc[fresh.index, column].astype(float), fresh[column].astype(float), equal_nan=True)
    # the trained matrices did move
    assert rows.loc[(20, TRAINED[1]), "alpha"] != rows.loc[(0, TRAINED[1]), "alpha"]


def test_heads_of_unchanged_blocks_are_reused(tracked):
    result, _ = tracked
    heads = result.heads
    assert set(heads["circuit"]) == {"q", "k", "v", "o", "qk", "ov"}
    at_20 = heads[heads["step"] == 20]
    assert at_20[at_20["block"] == 0]["reused"].all()
    assert not at_20[at_20["block"] == 1]["reused"].any()
    assert CORRUPT_STEP not in set(heads["step"])


def test_tables_written_and_resume_gives_the_same_result(tracked, series_dir):
    result, out = tracked
    written = pd.read_csv(out / "weights_over_steps.csv")
    assert list(written.columns[:2]) == ["step", "checkpoint"] and len(written) == len(result.weights)
    assert (out / "checkpoint_status.csv").exists() and (out / "heads_over_steps.parquet").exists()
    assert not (out / "work").exists()
    # interrupted after step 10: the last checkpoint's tables and the final tables are gone
    for path in list((out / "steps").glob("step000000020.*")) + [out / "weights_over_steps.parquet"]:
        path.unlink()
    resumed = track(series_dir, out=out, heads=True, resume=True)
    assert resumed.checkpoints.set_index("step").loc[10, "computed"] == 8  # loaded: the cache learns from the file
    pd.testing.assert_frame_equal(resumed.weights.drop(columns="reused"), result.weights.drop(columns="reused"))
    with pytest.raises(SpectrascopeError, match="different options"):
        track(series_dir, out=out, heads=False, resume=True)


def test_digests_follow_content(series_dir, tmp_path):
    first = TensorDigests(open_source(series_dir / "step0"))
    last = TensorDigests(open_source(series_dir / "step20"))
    assert first.digest(FROZEN[0]) == last.digest(FROZEN[0])
    assert first.digest(TRAINED[0]) != last.digest(TRAINED[0])
    # an in-memory source hashes the loaded tensor: same content, same digest
    module = TensorDigests(open_source(tiny_llama()))
    assert module.digest("model.embed_tokens.weight") == TensorDigests(open_source(tiny_llama())).digest(
        "model.embed_tokens.weight"
    )


def test_mixed_architectures_are_one_clear_error(series_dir, tmp_path, run_cli):
    save_checkpoint(tiny_llama(hidden=48), tmp_path / "step30")
    with pytest.raises(SeriesError, match="mixed architectures in the series: step 30"):
        track([series_dir / "step0", series_dir / "step2", tmp_path / "step30"])
    code, _, err = run_cli(
        "track", str(series_dir / "step0"), str(tmp_path / "step30"), "--out", str(tmp_path / "o"), "--quiet"
    )
    assert code == 2 and err.startswith("error: mixed architectures") and "Traceback" not in err


def test_model_level_extras_and_missing_checkpoint(series_dir, tmp_path):
    calls = []

    def weight_norm(loaded) -> dict:
        calls.append(loaded)
        return {"norm": float(sum(p.detach().double().pow(2).sum() for p in loaded.hf.parameters()) ** 0.5)}

    result = track(
        [series_dir / "step0", series_dir / "step20", tmp_path / "step99"],
        head_scores=True,
        metric=weight_norm,
        mp_fit=False,
        randomize=False,
    )
    status = result.checkpoints.set_index("step")
    assert status.loc[99, "status"] == "failed" and "no such file" in status.loc[99, "reason"]
    assert list(result.metrics["step"]) == [0, 20] and result.metrics["norm"].iloc[0] != result.metrics["norm"].iloc[1]
    assert len(calls) == 2
    scores = result.scores
    assert set(scores["step"]) == {0, 20} and len(scores) == 2 * 2 * 4  # steps x layers x heads
    assert scores["induction"].between(0, 1).all()


def test_cli_track_writes_tables_and_report(series_dir, tmp_path, run_cli):
    out = tmp_path / "cli"
    code, stdout, err = run_cli(
        "track", str(series_dir), "--out", str(out), "--workers", "1", "--quiet", "--n-perm", "99"
    )
    assert code == 0, err
    assert "5 checkpoints" in stdout and "failed 1" in stdout
    table = pd.read_csv(out / "weights_over_steps.csv")
    assert table["step"].tolist() == sorted(table["step"])
    changes = pd.read_csv(out / "changepoints.csv")
    assert {"name", "metric", "step", "p_value", "q_value"} <= set(changes.columns)
    assert "Spectra over training checkpoints" in (out / "report.html").read_text()
    from spectrascope.dynamics.report import sections_from_folder

    sections = sections_from_folder(out)  # what a study report would embed
    assert [s.id for s in sections] == ["overview", "weights", "changes", "checkpoints"]
    assert len(sections[1].figures) >= 6


def test_a_gguf_series(tmp_path):
    import torch
    from model_builders import write_llama_gguf

    model = tiny_llama()
    write_llama_gguf(tmp_path / "ckpt-100.gguf", model)
    with torch.no_grad():
        model.model.layers[1].self_attn.q_proj.weight.mul_(-0.5).add_(0.05)
    write_llama_gguf(tmp_path / "ckpt-200.gguf", model)
    result = track(str(tmp_path / "ckpt-*.gguf"), mp_fit=False, randomize=False)
    assert (result.checkpoints["status"] == "ok").all()
    rows = result.weights.set_index(["step", "name"])
    changed = "model.layers.1.self_attn.q_proj.weight"
    assert not rows.loc[(200, changed), "reused"] and rows.loc[(200, FROZEN[0]), "reused"]
    assert result.checkpoints.set_index("step").loc[200, "computed"] == 1
    fresh = analyze_weights(tmp_path / "ckpt-200.gguf").set_index("name")
    fresh = fresh[fresh["status"] != "skipped"]
    assert np.allclose(rows.loc[200].loc[fresh.index, "alpha"].astype(float), fresh["alpha"].astype(float))


def test_activation_spectra_per_checkpoint(tmp_path):
    import transformers

    from spectrascope.models.zoo import bundled_path

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(bundled_path("minilm-l6")), local_files_only=True)
    folder = save_checkpoint(tiny_llama(vocab=tokenizer.vocab_size), tmp_path / "step50")
    tokenizer.save_pretrained(folder)
    result = track(tmp_path, activations="arithmetic", activation_tokens=256, mp_fit=False, randomize=False)
    acts = result.activations
    assert set(acts["step"]) == {50} and set(acts["layer"]) == {0, 1}
    assert (acts["domain"] == "arithmetic").all() and acts["effective_rank"].notna().all()


def test_a_bad_tensor_fails_its_row_and_marks_the_checkpoint_partial(tmp_path):
    import torch

    model = tiny_llama()
    save_checkpoint(model, tmp_path / "step1")
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[0, 0] = float("nan")
    save_checkpoint(model, tmp_path / "step2")
    result = track(tmp_path, mp_fit=False, randomize=False)
    status = result.checkpoints.set_index("step")
    assert status.loc[1, "status"] == "ok" and status.loc[2, "status"] == "partial"
    assert status.loc[2, "reason"].startswith("1 of 16 matrices failed: tensor has NaN or Inf")
    rows = result.weights.set_index(["step", "name"])
    assert rows.loc[(2, "model.layers.1.mlp.up_proj.weight"), "status"] == "failed"
    assert rows.loc[(2, "model.layers.1.mlp.down_proj.weight"), "reused"]


def test_resume_inside_a_large_checkpoint_uses_the_engine_row_log(series_dir, tmp_path, monkeypatch):
    import json

    import spectrascope.dynamics.track as tracking

    monkeypatch.setattr(tracking, "WORK_LOG_MIN_BYTES", 0)  # every checkpoint counts as large
    real = tracking.run_weights

    def interrupted_at_step_20(source, options, out_dir=None, *args, **kwargs):
        result = real(source, options, out_dir, *args, **kwargs)
        if out_dir is not None and "step000000020" in str(out_dir):
            raise KeyboardInterrupt  # the row log is written, the step's table is not
        return result

    monkeypatch.setattr(tracking, "run_weights", interrupted_at_step_20)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        track(series_dir, out=out, mp_fit=False, randomize=False)
    log = out / "work" / "step000000020" / "matrices" / "weights.rows.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    entries[0]["rows"][0]["alpha"] = 123.0  # a sentinel: the resumed run must take rows from the log
    log.write_text("".join(json.dumps(e) + "\n" for e in entries))
    monkeypatch.setattr(tracking, "run_weights", real)
    resumed = track(series_dir, out=out, mp_fit=False, randomize=False, resume=True)
    assert resumed.weights.set_index(["step", "name"]).loc[(20, entries[0]["key"]), "alpha"] == 123.0
    assert not (out / "work").exists()
