"""A study's working state: output folders, the model (loaded once, lazily), stage markers."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .budget import StudyBudget


@dataclass
class StudyContext:
    """Everything the stages share. Each stage writes into ``out / stage`` and marks itself
    done with ``done.json`` (its seconds and budget); ``--resume`` skips marked stages."""

    model: str
    out: Path
    budget: StudyBudget
    workers: int = 1
    seed: int = 0
    show_progress: bool = False
    _loaded: object | None = field(default=None, repr=False)

    def loaded(self):
        """The runnable model (loaded on first use)."""
        if self._loaded is None:
            from ..models.loaded import load_model

            self._loaded = load_model(self.model)
        return self._loaded

    def stage_dir(self, stage: str) -> Path:
        path = self.out / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def is_done(self, stage: str) -> bool:
        marker = self.out / stage / "done.json"
        if not marker.exists():
            return False
        try:
            return json.loads(marker.read_text()).get("budget") == self.budget.to_dict()
        except ValueError:
            return False

    def mark_done(self, stage: str, seconds: float) -> None:
        info = {"stage": stage, "seconds": round(seconds, 2), "budget": self.budget.to_dict(),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        (self.stage_dir(stage) / "done.json").write_text(json.dumps(info, indent=2))
