"""Run the stages of a study in order, write their tables, resume only what is provably the same.

Each stage's tables are written to ``OUT/<stage>/`` under temporary names and renamed when
complete; its ``done.json`` marker (seconds and fingerprint) is written last. Without
``resume`` every requested stage is computed again (its folder replaced). With ``resume`` a
stage is skipped only when its marker's fingerprint equals the current one (model files, seed,
device, the corpora's texts, budgets, version); a different fingerprint is refused in one line
that says what differs.
Before any work, every table a requested stage reads must be produced earlier in this run or
exist from a finished stage with the same fingerprint.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ..errors import InputError, OptionError, ResumeError
from ..heap import release_memory
from ..outdir import OutputFolder
from ..tables import write_table
from .budget import StudyBudget
from .context import MARKER, StudyContext, read_marker
from .fingerprint import differences, stage_fingerprint, study_identity
from .stage import Stage
from .stages.registry import BY_NAME, DEFAULT_STAGE_NAMES, STAGE_NAMES, STAGES


def _plan(stages: Sequence[str] | None, budget: StudyBudget) -> list[Stage]:
    """The stages to run, in the study's order: ``None`` = the default ones, ``["all"]`` = every one."""
    stages = DEFAULT_STAGE_NAMES if stages is None else (STAGE_NAMES if list(stages) == ["all"] else stages)
    unknown = [s for s in stages if s not in BY_NAME]
    if unknown:
        raise OptionError(
            f"unknown study stage(s) {', '.join(unknown)}; choose from {', '.join(STAGE_NAMES)} or all",
            option="stages",
        )
    off = [s for s in stages if s != "all" and not BY_NAME[s].enabled(budget)]
    if off and tuple(stages) not in (DEFAULT_STAGE_NAMES, STAGE_NAMES):  # asked for by name
        raise OptionError(
            f"stage(s) {', '.join(off)} are off in this budget (--budget default or large)", option="stages"
        )
    return [s for s in STAGES if s.name in set(stages) and s.enabled(budget)]


def _check_inputs(plan: list[Stage], out: Path, fingerprints: dict[str, dict]) -> None:
    """Every required table is produced earlier in this run or finished before with this fingerprint."""
    produced: set[str] = set()
    for stage in plan:
        for needed in stage.requires:
            source, table = needed.split("/")
            if needed in produced:
                continue
            marker = read_marker(out, source)
            fresh = marker is not None and not differences(marker.get("fingerprint", {}), fingerprints[source])
            if not fresh or not (out / source / f"{table}.parquet").exists():
                why = "is missing" if marker is None else "was computed with other inputs"
                raise InputError(
                    f"stage {stage.name!r} reads {needed}, which {why} in {out}: run the {source!r} stage first "
                    f"(--stages {source},{stage.name})"
                )
        produced.update(f"{stage.name}/{t}" for t in stage.produces)


def _write(out: Path, stage: Stage, tables: dict[str, pd.DataFrame]) -> None:
    """The stage's tables into its folder (each file renamed into place when complete)."""
    missing = set(stage.produces) - set(tables)
    if missing:
        raise RuntimeError(f"stage {stage.name} did not produce {sorted(missing)}")
    for name, table in tables.items():
        write_table(table, out / stage.name, name)


def run_study(
    model,
    out: str | Path,
    workers: int = 1,
    resume: bool = False,
    seed: int = 0,
    show_progress: bool = False,
    stages: Sequence[str] | None = None,
    budget: StudyBudget | None = None,
    log: Callable[[str], None] | None = None,
    device: str = "cpu",
) -> Path:
    """Run the study and return the path of ``report.html``.

    Args:
        model: bundled model name or path (the runnable stages need a model ``load_model`` reads).
        stages: which stages to run (in the study's order); None: weights, activations,
            mechanisms, bridge and features
            (:data:`~spectrascope.study.stages.registry.DEFAULT_STAGE_NAMES`; the budget may
            switch features off); ``["all"]``: also the circuits.
        resume: skip stages finished earlier with the same fingerprint (see the module docstring).
        log: optional callable(str) for progress lines.
        device: where the model runs and the SAE trains ("cpu", "cuda", "cuda:N"; checked before
            any work). Part of each stage's fingerprint: a resume never mixes devices.

    ``OUT/study.json`` records every budget by name, each stage's seconds (for a resumed stage,
    those of the run that finished it) and which stages were resumed.
    """
    out = Path(out)
    budget = budget or StudyBudget()
    plan = _plan(stages, budget)
    from ..models.loaded import resolve_device

    device = str(resolve_device(device))
    with OutputFolder(out, option="out"):  # checked writable and held by this run, before any work
        return _run(model, out, plan, workers, resume, seed, show_progress, budget, log, device)


def _run(
    model,
    out: Path,
    plan: list[Stage],
    workers: int,
    resume: bool,
    seed: int,
    show_progress: bool,
    budget: StudyBudget,
    log: Callable[[str], None] | None,
    device: str,
) -> Path:
    identity = study_identity(model, seed, budget, device)
    fingerprints = {s.name: stage_fingerprint(s.name, identity) for s in STAGES}
    ctx = StudyContext(str(model), out, budget, workers, seed, show_progress, device, fingerprints)
    if resume:
        for stage in plan:
            marker = read_marker(out, stage.name)
            if marker is not None:
                changed = differences(marker.get("fingerprint", {}), fingerprints[stage.name])
                if changed:
                    raise ResumeError(
                        f"{{option}}: stage {stage.name!r} in {out} was computed with a different {', '.join(changed)}",
                        option="resume=True",
                        hint="rerun without {option} to recompute it, or write to another folder",
                    )
    _check_inputs(plan, out, fingerprints)
    timings, resumed = {}, []
    for stage in plan:
        marker = read_marker(out, stage.name)
        if resume and marker is not None:
            timings[stage.name] = marker["seconds"]
            resumed.append(stage.name)
            if log:
                log(f"{stage.name}: done earlier with the same inputs, skipped")
            continue
        shutil.rmtree(out / stage.name, ignore_errors=True)  # nothing of an earlier run stays beside the new tables
        start = time.perf_counter()
        tables = stage.run(ctx)
        _write(out, stage, tables)
        del tables
        release_memory()
        timings[stage.name] = round(time.perf_counter() - start, 2)
        (out / stage.name / MARKER).write_text(
            json.dumps(
                {
                    "stage": stage.name,
                    "seconds": timings[stage.name],
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "fingerprint": fingerprints[stage.name],
                },
                indent=2,
            )
        )
        if log:
            log(f"{stage.name}: {timings[stage.name]:.1f} s")
    from ..report.study_report import build_report

    report = build_report(ctx)
    (out / "study.json").write_text(
        json.dumps(
            {
                "model": str(model),
                "seed": seed,
                "device": device,
                "corpora": identity["corpora"],
                "stages": [s.name for s in plan],
                "seconds": timings,
                "resumed": resumed,
                "budget": budget.to_dict(),
            },
            indent=2,
        )
    )
    return report
