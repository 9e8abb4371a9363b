"""What a study's results depend on, so a rerun never mixes results of different inputs.

A stage's fingerprint holds the package version, the model source (every weight file's
name, size and modification time, or the object's identity for an in-memory model), the
seed and every budget. ``--resume`` reuses a finished stage only when its recorded
fingerprint equals the current one; otherwise it says what differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import __version__
from ..fingerprint import differences, model_identity
from .budget import StudyBudget

__all__ = ["canonical", "differences", "stage_fingerprint"]


def stage_fingerprint(stage: str, model: str | Path, seed: int, budget: StudyBudget) -> dict:
    """The fingerprint of one stage's results."""
    return {
        "stage": stage,
        "version": __version__,
        "model": model_identity(model),
        "seed": int(seed),
        "budget": budget.to_dict(),
    }


def canonical(fingerprint: dict) -> str:
    return json.dumps(fingerprint, sort_keys=True)
