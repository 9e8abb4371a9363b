"""Writing and reading result tables (Parquet + CSV) and the append-only row logs that let
long runs write results as they go and resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd


def write_table(df: pd.DataFrame, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
    """Write ``df`` as ``out_dir/stem.parquet`` and ``out_dir/stem.csv``; return both paths.

    Each file is written under a temporary name and renamed when complete, so a reader (or a
    run interrupted half-way) never sees a half-written table under its final name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq, csv = out / f"{stem}.parquet", out / f"{stem}.csv"
    tmp_pq, tmp_csv = out / f".{stem}.parquet.partial", out / f".{stem}.csv.partial"
    df.to_parquet(tmp_pq, index=False)
    df.to_csv(tmp_csv, index=False)
    os.replace(tmp_pq, pq)
    os.replace(tmp_csv, csv)
    return pq, csv


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) else value
    if isinstance(value, np.bool_):
        return bool(value)
    return value


class RowLog:
    """An append-only JSON-lines file of finished results, keyed by a task key.

    Each line is {"key": ..., "rows": [...]}; a line is flushed as soon as its task ends, so an
    interrupted run loses at most the tasks in flight. A torn last line is ignored on read.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def done(self) -> dict[str, list[dict]]:
        """key -> rows of the tasks already finished (empty if no log)."""
        if not self.path.exists():
            return {}
        finished = {}
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            finished[entry["key"]] = entry["rows"]
        return finished

    def append(self, key: str, rows: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": key, "rows": [{k: _jsonable(v) for k, v in r.items()} for r in rows]})
        with open(self.path, "a+b") as fh:
            torn = False
            if fh.seek(0, 2) > 0:  # a previous run may have been cut mid-line
                fh.seek(-1, 2)
                torn = fh.read(1) != b"\n"
            fh.write((b"\n" if torn else b"") + line.encode() + b"\n")
            fh.flush()

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()
