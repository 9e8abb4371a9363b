"""``spectrascope study``: the main job. Runs every stage on one model and writes every table
plus a self-contained ``report.html``; see :mod:`spectrascope.study.stages` for the stages and
:class:`~spectrascope.study.budget.StudyBudget` for the budgets."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import SpectrascopeError
from .budget import StudyBudget
from .context import StudyContext
from .stages import STAGE_FUNCTIONS, STAGES

__all__ = ["STAGES", "StudyBudget", "run_study"]


def run_study(model, out: str | Path, workers: int = 1, resume: bool = False, seed: int = 0,
              show_progress: bool = False, stages: tuple[str, ...] = STAGES,
              budget: StudyBudget | None = None, log=None) -> Path:
    """Run the study and return the path of ``report.html``.

    Args:
        model: bundled model name or path (the runnable stages need a model ``load_model`` reads).
        stages: which stages to run, in order (the report shows what exists).
        resume: skip stages already finished with the same budget (the weights stage also
            resumes matrix by matrix).
        log: optional callable(str) for progress lines.

    ``OUT/study.json`` records each stage's seconds (for a resumed stage, those of the run that
    finished it) and which stages were resumed.
    """
    unknown = [s for s in stages if s not in STAGE_FUNCTIONS]
    if unknown:
        raise SpectrascopeError(f"unknown study stage(s) {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = StudyContext(str(model), out, budget or StudyBudget(), workers, seed, show_progress)
    timings, resumed = {}, []
    for stage in stages:
        if resume and ctx.is_done(stage):
            timings[stage] = json.loads((ctx.stage_dir(stage) / "done.json").read_text())["seconds"]
            resumed.append(stage)
            if log:
                log(f"{stage}: done earlier, skipped")
            continue
        start = time.perf_counter()
        STAGE_FUNCTIONS[stage](ctx)
        timings[stage] = round(time.perf_counter() - start, 2)
        ctx.mark_done(stage, timings[stage])
        if log:
            log(f"{stage}: {timings[stage]:.1f} s")
    from ..report.study_report import build_report

    report = build_report(ctx)
    (out / "study.json").write_text(json.dumps({"model": str(model), "seed": seed, "stages": list(stages),
                                                "seconds": timings, "resumed": resumed,
                                                "budget": ctx.budget.to_dict()}, indent=2))
    return report
