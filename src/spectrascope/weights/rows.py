"""The rows of the weights tables: built in one place, ordered in one place.

A matrix row starts with the lead columns ``name, block, role, expert, N, M, Q`` and ends
with ``status`` ('success', 'failed' or 'skipped') and ``reason``; a head row starts with
``block, head, kv_head, circuit``. Every tensor of a checkpoint gets a matrix row: the
tensors that are not analyzed (integer dtypes, 1-D, 3-D and other non-matrix tensors, matrices
outside the size filters) get status 'skipped' and the reason, those that could not be read
or fitted get 'failed'.

For a tensor that is not a matrix, N and M describe it flattened to ``(shape[0], rest)``
(long side first; a vector of length d is d x 1); the reason gives its real shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

LEAD_COLUMNS = ["name", "block", "role", "expert", "N", "M", "Q"]
HEAD_LEAD = ["block", "head", "kv_head", "circuit"]
HEAD_SORT = ["block", "circuit", "head"]


def oriented_shape(shape: Sequence[int]) -> tuple[int, int]:
    """(N, M): the long and the short side of a tensor flattened to ``(shape[0], rest)``."""
    if len(shape) == 0:
        return 1, 1
    rows, cols = int(shape[0]), int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    return max(rows, cols), min(rows, cols)


def shape_columns(shape: Sequence[int]) -> dict:
    """N, M and Q = N / M of a tensor (NaN for an empty one)."""
    N, M = oriented_shape(shape)
    return {"N": N, "M": M, "Q": N / M if M else np.nan}


def matrix_lead(name: str, block: int, role: str, expert: int | None, shape: Sequence[int]) -> dict:
    """The lead columns of one matrix row."""
    return {"name": name, "block": block, "role": role, "expert": expert, **shape_columns(shape)}


def skipped_row(lead: dict, reason: str) -> dict:
    """A row for a tensor that is not analyzed, and why."""
    return {**lead, "status": "skipped", "reason": reason}


def failed_row(lead: dict, reason: str) -> dict:
    """A row for a tensor that could not be read or analyzed, and why."""
    return {**lead, "status": "failed", "reason": reason}


def failed_head_rows(block: int, reason: str) -> list[dict]:
    """The one row that stands for a block whose heads could not be analyzed."""
    return [{"block": block, "head": -1, "kv_head": -1, "circuit": "all", "status": "failed", "reason": reason}]


def natural_key(name: str) -> tuple:
    """Sort key under which layers.2 comes before layers.10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def matrix_table(rows: list[dict]) -> pd.DataFrame:
    """Matrix rows as a DataFrame in natural name order, lead columns first (a GGUF and a
    safetensors copy of one model give the same table, whatever the file order)."""
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=LEAD_COLUMNS + ["status", "reason"])
    df["expert"] = (df["expert"] if "expert" in df else pd.Series(pd.NA, index=df.index)).astype("Int64")
    df = df.iloc[sorted(range(len(df)), key=lambda i: natural_key(df["name"].iat[i]))]
    return df[LEAD_COLUMNS + [c for c in df.columns if c not in LEAD_COLUMNS]].reset_index(drop=True)


def head_table(rows: list[dict]) -> pd.DataFrame:
    """Head rows as a DataFrame ordered by block, circuit and head, lead columns first."""
    heads = pd.DataFrame(rows)
    if heads.empty:
        return pd.DataFrame(columns=HEAD_LEAD + ["status", "reason"])
    heads = heads.sort_values(HEAD_SORT, kind="stable").reset_index(drop=True)
    return heads[HEAD_LEAD + [c for c in heads.columns if c not in HEAD_LEAD]]
