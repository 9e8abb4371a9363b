"""The built-in experiments end to end: train with checkpoints, track the spectra, detect
change points, compare with controls, write the tables and the report page.

``run_experiment("grokking" | "induction", out)`` writes into ``out``:

    checkpoints/step<N>/          the saved series (config.json + model.safetensors)
    metrics.csv/.parquet          behaviour over steps (grokking: step, train_loss, test_loss,
                                  train_acc, test_acc; induction: step, train_loss, test_loss,
                                  first_copy_loss, in_context_loss, icl_score, induction_score,
                                  previous_token_score, top_induction_head)
    weights_over_steps.*          the weight table of every checkpoint with a step column
    heads_over_steps.*            per-head q/k/v/o/QK/OV spectra of every checkpoint
    changepoints.*                change points of every weight metric series (by matrix)
    changepoints_behaviour.*      change points of the behaviour series (checkpoint steps)
    shuffled_over_steps.*, changepoints_control.*   the randomized-weights control
    untrained_reference.*         weight metrics of 5 freshly initialized models (mean, sd)
    timing.*                      each weight metric's change against the behavioural event
    progress_measures.*, fourier_energy.*   (grokking) Nanda et al.'s progress measures
    head_scores_over_steps.*      (induction) per-head scores at every eval step
    summary.json, report.html     the numbers of the overview, and the page
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import pandas as pd

from ..errors import SpectrascopeError
from ..tables import write_table
from .changepoints import DEFAULT_PERMUTATIONS, change_points_by_model
from .controls import CONTROL_METRICS, shuffled_over_steps, untrained_reference
from .report import (
    WEIGHT_METRICS,
    behaviour_section,
    energy_section,
    present,
    timing_section,
    weight_sections,
    write_page,
)
from .timing import (
    event_window_sentences,
    event_window_table,
    first_crossing,
    timing_sentences,
    timing_table,
)
from .track import TrackResult, track

if TYPE_CHECKING:
    from .grokking import GrokkingConfig
    from .induction import InductionConfig

EXPERIMENTS = ("grokking", "induction")
REFERENCE_SEEDS = range(1, 6)
REPORTED_METRICS = ["alpha", "erg_delta", "entropy", "alpha_weighted", "stable_rank", "log_norm"]
MAX_CHANGES = 5
"""Change points per series the experiments look for (binary segmentation stops earlier when
a piece has no significant split)."""


@dataclass
class ExperimentResult:
    """Paths and headline numbers of an experiment run."""

    name: str
    out: Path
    report: Path
    summary: dict


def _json_ready(value):
    """NaN and infinities as null (JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_summary(out: Path, summary: dict) -> None:
    (out / "summary.json").write_text(json.dumps(_json_ready(summary), indent=2, default=float))


def _behaviour_changes(metrics: pd.DataFrame, steps: list[int], columns: list[str], n_perm: int) -> pd.DataFrame:
    at_checkpoints = metrics[metrics["step"].isin(steps)]
    return change_points_by_model(at_checkpoints, present(at_checkpoints, columns), n_perm=n_perm)


def _spectral_analysis(
    out: Path, tracked, build_untrained, event: float, event_name: str, n_perm: int, controls: bool
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str], dict[str, pd.DataFrame]]:
    """Change points of the tracked weights and heads, the controls, the timing table."""
    ok = tracked.weights[tracked.weights["status"] == "success"]
    changes = change_points_by_model(
        ok, present(ok, WEIGHT_METRICS), by=["name"], n_perm=n_perm, max_changes=MAX_CHANGES
    )
    tables = {"changepoints": changes}
    head_changes = None
    if tracked.heads is not None and len(tracked.heads):
        heads = tracked.heads[tracked.heads["status"] == "success"].copy()
        heads["series"] = [f"L{b} h{h} {c}" for b, h, c in zip(heads["block"], heads["head"], heads["circuit"])]
        head_changes = change_points_by_model(heads, ["alpha"], by=["series"], n_perm=n_perm, max_changes=MAX_CHANGES)
        tables["changepoints_heads"] = head_changes
    control_changes = reference = shuffled = None
    if controls:
        series = sorted(tracked.weights[["step", "checkpoint"]].drop_duplicates().itertuples(index=False))
        from .series import Checkpoint

        shuffled = shuffled_over_steps([Checkpoint(int(s), Path(p)) for s, p in series])
        okc = shuffled[shuffled["status"] == "success"]
        control_changes = change_points_by_model(
            okc, present(okc, CONTROL_METRICS), by=["name"], n_perm=n_perm, max_changes=MAX_CHANGES
        )
        reference = untrained_reference(build_untrained, REFERENCE_SEEDS)
        tables.update(shuffled_over_steps=shuffled, changepoints_control=control_changes, untrained_reference=reference)
    final = ok[ok["step"] == ok["step"].max()]
    timing = timing_table(changes, event, control_changes, reference, final)
    tables["timing"] = timing
    window = event_window_table(tracked.weights, event, REPORTED_METRICS, shuffled, reference)
    if len(window):
        tables["event_window"] = window
    for stem, table in tables.items():
        write_table(table, out, stem)
    sentences = timing_sentences(timing, event_name, event, REPORTED_METRICS[:3])
    sentences += event_window_sentences(window, event_name, REPORTED_METRICS[:3])
    return changes, head_changes, sentences, tables


class _TrainingRun(Protocol):
    """What a trainer returns: at least the behaviour table ``metrics`` (one row per eval step)."""

    @property
    def metrics(self) -> pd.DataFrame: ...


RunT = TypeVar("RunT", bound=_TrainingRun)


def _train_and_track(
    out: str | Path, train: Callable[[Path], RunT], workers: int
) -> tuple[Path, RunT, TrackResult, dict[str, float]]:
    """Train (``train(checkpoint_root)`` returns a run with ``metrics``), write ``metrics``, track
    the saved series with per-head spectra; (out, run, tracked, seconds per phase)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    run = train(out / "checkpoints")
    timings["train"] = time.perf_counter() - t0
    write_table(run.metrics, out, "metrics")
    t0 = time.perf_counter()
    tracked = track(out / "checkpoints", out=out, heads=True, workers=workers)
    timings["track"] = time.perf_counter() - t0
    return out, run, tracked, timings


def run_grokking(
    out: str | Path,
    config: GrokkingConfig | None = None,
    n_perm: int = DEFAULT_PERMUTATIONS,
    controls: bool = True,
    workers: int = 1,
    show_progress: bool = False,
) -> ExperimentResult:
    """Grokking on modular addition end to end (see :mod:`.grokking`)."""
    from .grokking import GrokkingConfig, grokking_model, train_grokking

    config = config or GrokkingConfig()
    out, run, tracked, timings = _train_and_track(
        out, lambda root: train_grokking(config, root, show_progress), workers
    )
    write_table(run.measures, out, "progress_measures")
    write_table(run.energy, out, "fourier_energy")
    events = {
        "memorized (train acc ≥ 0.99)": first_crossing(run.metrics, "train_acc", 0.99),
        "generalizing (test acc ≥ 0.5)": first_crossing(run.metrics, "test_acc", 0.5),
        "grokked (test acc ≥ 0.95)": first_crossing(run.metrics, "test_acc", 0.95),
    }
    memorized, generalizing, grokked = events.values()
    steps = [cp.step for cp in run.checkpoints]
    behaviour = run.metrics.merge(run.measures.drop(columns=["key_frequencies"]), on="step", how="outer")
    t0 = time.perf_counter()
    behaviour_changes = _behaviour_changes(
        behaviour,
        steps,
        [
            "train_loss",
            "test_loss",
            "train_acc",
            "test_acc",
            "restricted_loss",
            "excluded_loss",
            "key_share",
            "weight_norm",
        ],
        n_perm,
    )
    write_table(behaviour_changes, out, "changepoints_behaviour")
    changes, head_changes, sentences, tables = _spectral_analysis(
        out,
        tracked,
        lambda seed: grokking_model(replace(config, seed=seed)),
        generalizing,
        "generalization step",
        n_perm,
        controls,
    )
    timings["analysis"] = time.perf_counter() - t0
    final = run.metrics.iloc[-1]
    summary = {
        "experiment": "grokking",
        "config": config.to_dict(),
        "events": events,
        "final": {k: float(final[k]) for k in ("train_loss", "test_loss", "train_acc", "test_acc")},
        "key_frequencies": run.key_frequencies,
        "seconds": timings,
        "timing": sentences,
    }
    overview = [
        (
            f"One-layer Llama (d_model {config.d_model}, {config.n_heads} heads, MLP {config.d_mlp}) on a + b mod {config.p}, "
            f"{config.train_fraction:.0%} of the {config.p**2} pairs for training, AdamW lr {config.lr:g}, weight decay "
            f"{config.weight_decay:g}, full batch, seed {config.seed}: {config.steps} steps, {len(steps)} log-spaced checkpoints."
        ),
        (
            f"Train accuracy reaches 0.99 at step {memorized:g}; test accuracy crosses 0.5 at step {generalizing:g} and 0.95 at "
            f"step {grokked:g} (final train / test accuracy {final['train_acc']:.3f} / {final['test_acc']:.3f})."
        ),
        (
            f"Key Fourier frequencies of the final embedding: {', '.join(map(str, run.key_frequencies)) or 'none'} "
            f"of {(config.p - 1) // 2}."
        ),
        *sentences,
        (
            f"Timings: training {timings['train']:.0f} s, tracking {timings['track']:.0f} s, change points and controls "
            f"{timings['analysis']:.0f} s."
        ),
    ]
    curve_events = {"memorized": memorized, "generalizing": generalizing, "grokked": grokked}
    sections = [
        behaviour_section("overview", "Overview", overview, run.metrics, [], {}),
        behaviour_section(
            "behaviour",
            "Memorization, then generalization",
            [],
            run.metrics,
            [
                (["train_acc", "test_acc"], "Accuracy", "accuracy", False),
                (["train_loss", "test_loss"], "Loss", "loss (nats)", True),
            ],
            curve_events,
        ),
        behaviour_section(
            "progress",
            "Progress measures (Nanda et al. 2023)",
            [
                (
                    "Restricted loss: test loss with only the key frequencies of the logits kept; excluded "
                    "loss: train loss with them removed (dynamics/fourier.py)."
                )
            ],
            behaviour,
            [
                (
                    ["train_loss", "test_loss", "restricted_loss", "excluded_loss"],
                    "Restricted and excluded loss",
                    "loss (nats)",
                    True,
                ),
                (["key_share"], "Share of embedding energy in the key frequencies", "share", False),
                (["weight_norm"], "L2 norm of all parameters", "norm", False),
            ],
            curve_events,
        ),
        energy_section(run.energy, run.key_frequencies),
        *weight_sections(tracked.weights, changes, curve_events, tracked.heads, head_changes),
        timing_section(tables["timing"], sentences, "generalization step", tables.get("event_window")),
    ]
    report = write_page(f"Grokking: a + b mod {config.p}", sections, out / "report.html")
    _write_summary(out, summary)
    return ExperimentResult("grokking", out, report, summary)


def run_induction(
    out: str | Path,
    config: InductionConfig | None = None,
    n_perm: int = DEFAULT_PERMUTATIONS,
    controls: bool = True,
    workers: int = 1,
    show_progress: bool = False,
) -> ExperimentResult:
    """Induction heads forming in the toy model end to end (see :mod:`.induction`)."""
    from .induction import InductionConfig, build_model, train_with_checkpoints

    config = config or InductionConfig()
    out, run, tracked, timings = _train_and_track(
        out, lambda root: train_with_checkpoints(config, root, show_progress), workers
    )
    write_table(run.scores, out, "head_scores_over_steps")
    metrics = run.metrics
    in_context = first_crossing(
        metrics.assign(ratio=metrics["in_context_loss"] / metrics["first_copy_loss"]), "ratio", 0.5, above=False
    )
    induction = first_crossing(metrics, "induction_score", 0.5)
    steps = [cp.step for cp in run.checkpoints]
    t0 = time.perf_counter()
    behaviour_changes = _behaviour_changes(
        metrics,
        steps,
        [
            "train_loss",
            "test_loss",
            "first_copy_loss",
            "in_context_loss",
            "icl_score",
            "induction_score",
            "previous_token_score",
        ],
        n_perm,
    )
    write_table(behaviour_changes, out, "changepoints_behaviour")
    changes, head_changes, sentences, tables = _spectral_analysis(
        out, tracked, build_model, in_context, "in-context-loss drop", n_perm, controls
    )
    timings["analysis"] = time.perf_counter() - t0
    final_scores = run.scores[run.scores["step"] == run.scores["step"].max()]
    induction_heads = [f"{int(r.layer)}.{int(r.head)}" for r in final_scores.itertuples() if r.induction >= 0.5]
    previous_heads = [f"{int(r.layer)}.{int(r.head)}" for r in final_scores.itertuples() if r.previous_token >= 0.5]
    final = metrics.iloc[-1]
    summary = {
        "experiment": "induction",
        "config": config.to_dict(),
        "events": {"in_context_step": in_context, "induction_step": induction},
        "final": {k: float(final[k]) for k in ("first_copy_loss", "in_context_loss", "induction_score")},
        "induction_heads": induction_heads,
        "previous_token_heads": previous_heads,
        "seconds": timings,
        "timing": sentences,
    }
    overview = [
        (
            f"Toy 2-layer attention-only Llama (shipped recipe) on repeated random tokens: {config.trained_steps} steps "
            f"(of a {config.steps}-step schedule) of batch {config.batch}, seed {config.seed}, {len(steps)} log-spaced "
            "checkpoints."
        ),
        (
            f"The in-context loss falls below half the first-copy loss at step {in_context:g}; a head's induction score first "
            f"reaches 0.5 at step {induction:g}. Final: first-copy loss {final['first_copy_loss']:.3f}, in-context loss "
            f"{final['in_context_loss']:.4f} nats; induction heads (score ≥ 0.5) {', '.join(induction_heads) or 'none'}, "
            f"previous-token heads {', '.join(previous_heads) or 'none'}."
        ),
        *sentences,
        (
            f"Timings: training {timings['train']:.0f} s, tracking {timings['track']:.0f} s, change points and controls "
            f"{timings['analysis']:.0f} s."
        ),
    ]
    curve_events = {"in-context drop": in_context, "induction score 0.5": induction}
    per_head = run.scores.assign(series=[f"{int(r.layer)}.{int(r.head)}" for r in run.scores.itertuples()])
    score_wide = per_head.pivot_table(index="step", columns="series", values="induction").reset_index()
    heads_of_interest = tracked.heads
    if heads_of_interest is not None and (induction_heads or previous_heads):
        keep = {tuple(map(int, h.split("."))) for h in induction_heads + previous_heads}
        mask = [(int(b), int(h)) in keep for b, h in zip(heads_of_interest["block"], heads_of_interest["head"])]
        heads_of_interest = heads_of_interest[mask]
    sections = [
        behaviour_section("overview", "Overview", overview, metrics, [], {}),
        behaviour_section(
            "behaviour",
            "The in-context-learning phase change",
            [],
            metrics,
            [
                (
                    ["first_copy_loss", "in_context_loss", "test_loss"],
                    "Loss on repeated random tokens",
                    "loss (nats)",
                    True,
                ),
                (["induction_score", "previous_token_score"], "Top head scores", "score", False),
            ],
            curve_events,
        ),
        behaviour_section(
            "head-scores",
            "Induction score per head",
            [],
            score_wide,
            [
                (
                    [c for c in score_wide.columns if c != "step"],
                    "Induction score per head (layer.head)",
                    "induction score",
                    False,
                )
            ],
            curve_events,
        ),
        *weight_sections(tracked.weights, changes, curve_events, heads_of_interest, head_changes),
        timing_section(tables["timing"], sentences, "in-context-loss drop", tables.get("event_window")),
    ]
    report = write_page("Induction heads forming (toy model)", sections, out / "report.html")
    _write_summary(out, summary)
    return ExperimentResult("induction", out, report, summary)


def run_experiment(
    name: str,
    out: str | Path,
    *,
    quick: bool = False,
    steps: int | None = None,
    n_checkpoints: int | None = None,
    seed: int = 0,
    n_perm: int = DEFAULT_PERMUTATIONS,
    controls: bool = True,
    workers: int = 1,
    show_progress: bool = False,
) -> ExperimentResult:
    """Run a built-in experiment end to end and write its tables and report page to ``out``.

    Args:
        name: "grokking" or "induction".
        quick: the shortened configuration the tests use.
        steps, n_checkpoints, seed: override the configuration.
        n_perm: permutations of the change-point tests.
        controls: also run the randomized-weights and untrained controls.
    """
    if name not in EXPERIMENTS:
        raise SpectrascopeError(f"unknown experiment {name!r} (choose from {', '.join(EXPERIMENTS)})")
    overrides = {k: v for k, v in (("steps", steps), ("n_checkpoints", n_checkpoints)) if v is not None}
    if name == "grokking":
        from .grokking import GrokkingConfig

        grokking = replace(GrokkingConfig.quick() if quick else GrokkingConfig(), seed=seed, **overrides)
        return run_grokking(out, grokking, n_perm, controls, workers, show_progress)
    from .induction import InductionConfig

    induction = replace(InductionConfig.quick() if quick else InductionConfig(), seed=seed, **overrides)
    return run_induction(out, induction, n_perm, controls, workers, show_progress)
