"""``spectrascope study``: the main job. Runs the stages on one model and writes every table
plus a self-contained ``report.html``; see :mod:`spectrascope.study.stages` for the stages and
:class:`~spectrascope.study.budget.StudyBudget` for the budgets."""

from __future__ import annotations

from .budget import BudgetPreset, StudyBudget
from .runner import run_study
from .stages.registry import STAGE_NAMES

STAGES = STAGE_NAMES

__all__ = ["STAGES", "BudgetPreset", "StudyBudget", "run_study"]
