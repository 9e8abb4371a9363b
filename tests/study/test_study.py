"""`study` end to end on a tiny random Llama (fast), then resumed."""

import json
import shutil
import warnings

import pandas as pd
import pytest
import torch
from model_builders import N_LAYERS, minilm_llama_dir

from spectrascope.study import StudyBudget, run_study

TABLES = {
    "weights": ["weights", "weights_heads"],
    "activations": [
        "activations",
        "energy",
        "massive_activations",
        "overlap",
        "overlap_modes",
        "cka",
        "cka_null",
        "cka_adjacent",
        "energy_tokens",
        "energy_agreement",
    ],
    "mechanisms": ["head_scores", "lens", "ablation_heads"],
    "bridge": ["layer_damage", "ablation_domains", "layers", "correlation", "alignment"],
}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return minilm_llama_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def study(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    budget = StudyBudget.small().with_overrides(corpora="calendar,arithmetic")
    with warnings.catch_warnings():
        # the sweeps resume and take the activation pass's clean forward without a fallback
        warnings.filterwarnings("error", message="ablation sweep")
        report = run_study(str(tiny_model_dir), out, budget=budget)
    return out, report, budget


def test_every_table_is_written(study):
    out, report, _ = study
    for stage, names in TABLES.items():
        assert (out / stage / "done.json").exists()
        for name in names:
            df = pd.read_parquet(out / stage / f"{name}.parquet")
            assert len(df) > 0 or name == "massive_activations", (stage, name)  # a random tiny model has none
            assert (out / stage / f"{name}.csv").exists()
    assert report.exists() and report.stat().st_size > 100_000
    assert any((out / "figures").glob("*.png"))


def test_report_has_every_section(study):
    html = study[1].read_text()
    for section in [
        "overview",
        "weights",
        "esd",
        "heads",
        "massive",
        "activations",
        "energy",
        "mechanisms",
        "overlap",
        "ablation",
        "alignment",
        "correlation",
        "attribution",
    ]:
        assert f"<section id='{section}'>" in html, section


def test_resume_skips_finished_stages(study, tiny_model_dir):
    out, _, budget = study
    before = {s: json.loads((out / s / "done.json").read_text())["finished"] for s in TABLES}
    shutil.rmtree(out / "bridge")  # as if interrupted during the last stage
    run_study(str(tiny_model_dir), out, budget=budget, resume=True)
    after = {s: json.loads((out / s / "done.json").read_text())["finished"] for s in TABLES}
    assert all(before[s] == after[s] for s in ("weights", "activations", "mechanisms"))
    assert (out / "bridge" / "layer_damage.parquet").exists()
    info = json.loads((out / "study.json").read_text())
    assert info["resumed"] == ["weights", "activations", "mechanisms"]
    assert info["device"] == "cpu" and list(info["corpora"]) == ["calendar", "arithmetic"]
    assert info["seconds"].keys() == set(TABLES)
    assert all(info["seconds"][s] == json.loads((out / s / "done.json").read_text())["seconds"] for s in TABLES)


def test_resume_with_a_circuit_budget_reuses_the_finished_stage(tiny_model_dir, tmp_path):
    """The default budget's circuit tasks are a tuple that done.json stores as a list."""
    from spectrascope.circuits.study import CircuitBudget

    budget = StudyBudget.small().with_overrides(corpora="calendar", circuits=CircuitBudget())
    run_study(str(tiny_model_dir), tmp_path, budget=budget, stages=["weights"])
    run_study(str(tiny_model_dir), tmp_path, budget=budget, stages=["weights"], resume=True)
    assert json.loads((tmp_path / "study.json").read_text())["resumed"] == ["weights"]


def test_a_device_this_machine_lacks_is_refused_before_any_work(tiny_model_dir, tmp_path, monkeypatch):
    from spectrascope.errors import OptionError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(OptionError, match="CUDA is not available"):
        run_study(str(tiny_model_dir), tmp_path / "out", budget=StudyBudget.small(), device="cuda")
    assert not (tmp_path / "out").exists()


def test_budget_refuses_an_unknown_ablation_mode():
    from spectrascope.errors import SpectrascopeError

    with pytest.raises(SpectrascopeError, match="resample"):
        StudyBudget(ablation_mode="resample")
    with pytest.raises(SpectrascopeError, match="unknown ablation mode 'median'"):
        StudyBudget(ablation_mode="median")
    assert StudyBudget(ablation_mode="zero").ablation_mode == "zero"


def test_ablation_tables_record_the_mode(study):
    out, _, budget = study
    assert budget.ablation_mode == "mean"
    for stage, name in [("mechanisms", "ablation_heads"), ("bridge", "ablation_domains"), ("bridge", "layer_damage")]:
        df = pd.read_parquet(out / stage / f"{name}.parquet")
        assert len(df) and (df["mode"] == "mean").all(), name


def test_the_default_plan_leaves_the_circuit_stage_to_be_asked_for():
    from spectrascope.errors import OptionError
    from spectrascope.study.runner import _plan

    budget = StudyBudget()
    assert [s.name for s in _plan(None, budget)] == ["weights", "activations", "mechanisms", "bridge", "features"]
    assert [s.name for s in _plan(None, StudyBudget.small())][-1] == "bridge"  # the small budget skips features
    assert [s.name for s in _plan(["all"], budget)][-2:] == ["features", "circuits"]
    assert [s.name for s in _plan(["circuits", "weights"], budget)] == ["weights", "circuits"]  # the study's order
    assert [s.name for s in _plan(["all"], StudyBudget.small())][-1] == "bridge"  # the small budget has neither
    with pytest.raises(OptionError, match="or all"):
        _plan(["weights", "nope"], budget)
    with pytest.raises(OptionError, match="off in this budget"):
        _plan(["features"], StudyBudget.small())


def test_the_middle_layers_robust_effective_rank_has_its_jackknife_interval(study):
    out, _, _ = study
    acts = pd.read_parquet(out / "activations" / "activations.parquet")
    with_interval = acts[acts["effective_rank_lo"].notna()]
    assert set(with_interval["variant"]) == {"robust"} and with_interval["layer"].nunique() == 1
    assert (with_interval["effective_rank_lo"] <= with_interval["effective_rank"]).all()
    assert (with_interval["effective_rank"] <= with_interval["effective_rank_hi"]).all()


def test_the_domain_ablations_take_their_clean_forward_from_the_activation_pass(study, tiny_model_dir):
    """The activation stage keeps each domain loss's clean forward; the bridge's baselines are
    those losses, which equal the model's own forward of the loss texts."""
    from spectrascope.bridge.clean_losses import FILE_NAME, CleanLosses
    from spectrascope.corpora import corpus_texts
    from spectrascope.mech.metrics import text_loss
    from spectrascope.models.loaded import load_model

    out, _, budget = study
    stored = CleanLosses.load(out / "activations" / FILE_NAME)
    assert stored is not None and set(stored.domains) == {"calendar", "arithmetic"}
    loaded = load_model(str(tiny_model_dir))
    table = pd.read_parquet(out / "bridge" / "ablation_domains.parquet")
    for corpus in corpus_texts(budget.corpora):
        metric = text_loss(
            loaded, corpus.texts, budget.loss_tokens, budget.seq_len, name=corpus.name, min_texts=budget.min_loss_texts
        )
        clean = stored.clean_pass(corpus.name, metric, budget.edited_layers(loaded.arch.n_layers))
        assert clean is not None
        baseline = table.loc[table["domain"] == corpus.name, "baseline"]
        assert baseline.nunique() == 1 and baseline.iloc[0] == pytest.approx(float(clean.baseline.reduce()), abs=1e-12)
        assert float(clean.baseline.reduce()) == pytest.approx(float(metric.rows(loaded).reduce()), rel=1e-5)


def _record_contexts(monkeypatch) -> list:
    """The contexts the runner makes from now on, in order (its ``StudyContext`` patched to record them)."""
    from spectrascope.study import runner

    seen = []

    class Recording(runner.StudyContext):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self)

    monkeypatch.setattr(runner, "StudyContext", Recording)
    return seen


def test_stages_can_tell_which_finished_stages_are_this_studys(study, tiny_model_dir, monkeypatch):
    """The runner gives its context every stage's fingerprint, so a stage may trust an earlier
    stage's files (beyond its required tables) only when they are this study's."""
    from spectrascope.study import runner

    seen = _record_contexts(monkeypatch)
    out, _, budget = study
    run_study(str(tiny_model_dir), out, budget=budget, resume=True)  # every stage skipped
    assert seen and seen[0].finished("activations") and seen[0].finished("bridge")
    assert not seen[0].finished("features")  # the small budget has no SAE stage
    assert not runner.StudyContext("m", out, budget).finished("activations")  # no fingerprints: trust nothing
    other = {name: {**fingerprint, "seed": 1} for name, fingerprint in seen[0].fingerprints.items()}
    assert not runner.StudyContext("m", out, budget, fingerprints=other).finished("activations")


def test_the_mean_ablation_reference_is_kept_by_the_calibration_pass(study, tiny_model_dir, monkeypatch):
    """The bridge's block means come from the activation stage's file when that stage is this
    study's (no forward run for them), and a context that cannot trust it recomputes the same
    means from the calibration texts."""
    from spectrascope.corpora import corpus_texts
    from spectrascope.mech.ablation import PositionMeans
    from spectrascope.mech.mean_reference import FILE_NAME
    from spectrascope.study import runner
    from spectrascope.study.stages import bridge

    out, _, budget = study
    assert (out / "activations" / FILE_NAME).exists()
    seen = _record_contexts(monkeypatch)
    run_study(str(tiny_model_dir), out, budget=budget, resume=True)  # every stage skipped
    domains = corpus_texts(budget.corpora, seed=0)
    computed = bridge.block_replacements(runner.StudyContext(str(tiny_model_dir), out, budget), domains)

    def no_pass(*args, **kwargs):
        raise AssertionError("the kept means were not used")

    monkeypatch.setattr(bridge, "run_pass", no_pass)
    kept = bridge.block_replacements(seen[0], domains)
    assert set(kept) == set(computed) and len(kept) == 2 * N_LAYERS
    for component, means in kept.items():
        assert isinstance(means, PositionMeans)
        torch.testing.assert_close(means.first, computed[component].first, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(means.rest, computed[component].rest, rtol=1e-5, atol=1e-6)
