"""Read a study's tables by name (each read once)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


class StudyTables:
    """The tables under a study's output folder: ``get(stage, table)`` or None when absent."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self._cache: dict[tuple[str, str], pd.DataFrame | None] = {}

    def get(self, stage: str, table: str) -> pd.DataFrame | None:
        key = (stage, table)
        if key not in self._cache:
            path = self.out / stage / f"{table}.parquet"
            self._cache[key] = pd.read_parquet(path) if path.exists() else None
        return self._cache[key]
