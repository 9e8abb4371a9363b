"""A study's working state: the model (loaded once, lazily), the budgets, and its tables."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import InputError
from .budget import StudyBudget
from .fingerprint import differences

MARKER = "done.json"
"""A finished stage's marker in its folder: seconds, time and fingerprint, written last."""


def read_marker(out: Path, stage: str) -> dict | None:
    """The marker of ``stage`` in study folder ``out`` (None when missing or unreadable)."""
    path = Path(out) / stage / MARKER
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


STUDY_ATTENTION = None
"""The study's attention implementation: transformers' default (``sdpa`` where the model supports
it, else eager). The study reads no attention pattern but through
:func:`~spectrascope.trace.eager_attention` (the head scores switch to eager and back); sdpa's
fused attention made SmolLM2's forward resumed at layer 15 4 % faster than eager on 16
128-token texts and 0-4 % on 200 12-token ones (two cores, best of three, alternating; losses
equal to 1e-8), and the study is bound by such forwards. Part of every stage's fingerprint."""


@dataclass
class StudyContext:
    """Everything the stages share. Stages return their tables; the runner writes them under
    ``out/<stage>/<table>.parquet`` (and .csv); a later stage reads them with :meth:`read`.
    ``device`` is where the model runs and the SAE trains ("cpu", "cuda", "cuda:N"); the weight
    spectra run on the CPU workers either way. ``fingerprints`` (stage -> fingerprint, set by the
    runner) tell :meth:`finished` whose files a stage may trust."""

    model: str
    out: Path
    budget: StudyBudget
    workers: int = 1
    seed: int = 0
    show_progress: bool = False
    device: str = "cpu"
    fingerprints: dict[str, dict] = field(default_factory=dict)
    _loaded: Any = field(default=None, repr=False)

    def loaded(self):
        """The runnable model (loaded on first use, on :attr:`device`, with :data:`STUDY_ATTENTION`)."""
        if self._loaded is None:
            from ..models.loaded import load_model

            self._loaded = load_model(self.model, device=self.device, attn_implementation=STUDY_ATTENTION)
        return self._loaded

    def finished(self, stage: str) -> bool:
        """Whether ``stage``'s folder holds a finished run with this study's fingerprint (this
        run's, or an earlier one with the same inputs): what a later stage may read beyond the
        tables it requires (False when the runner gave no fingerprints)."""
        marker, expected = read_marker(self.out, stage), self.fingerprints.get(stage)
        return marker is not None and expected is not None and not differences(marker.get("fingerprint", {}), expected)

    def table_path(self, stage: str, table: str) -> Path:
        return self.out / stage / f"{table}.parquet"

    def read(self, stage: str, table: str, missing_ok: bool = False) -> pd.DataFrame | None:
        """Table ``table`` of stage ``stage`` (None when missing and ``missing_ok``)."""
        path = self.table_path(stage, table)
        if not path.exists():
            if missing_ok:
                return None
            raise InputError(f"table {stage}/{table} is missing: run the {stage!r} stage first")
        return pd.read_parquet(path)
