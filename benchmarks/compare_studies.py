"""Compare two study folders table by table: how far apart are the numbers of two runs?

    python benchmarks/compare_studies.py A B [--stages activations,bridge]

For a study run twice with the same model, seed, budget and corpus texts (``study.json``'s
``corpora`` hashes say whether the texts were the same) on two devices, or two machines, it
prints per table the row count and its numeric columns furthest apart: the largest absolute
difference and the median relative difference over rows, and the count of rows where only
one run has a number (NaN in the other). Rows are compared in order when both tables have the
same rows (their text and boolean columns equal); otherwise the table is reported as
having other rows and its numbers are not compared.

This is how the README's CPU-vs-GPU agreement was measured (a study on an H200 against one on
this project's 2-core CPU machine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def table_difference(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[str, float, float, int]]:
    """(column, max |a - b|, median |a - b| / |b|, rows with a number in one table only) per
    numeric column: rows with a number in one table only first, then the largest median
    relative gap, then the largest absolute one; tables with the same rows in the same order."""
    out = []
    for column in [c for c in a.columns if a[c].dtype.kind in "fiu" and c in b.columns]:
        x, y = a[column].to_numpy(float), b[column].to_numpy(float)
        both = np.isfinite(x) & np.isfinite(y)
        one_only = int((np.isfinite(x) != np.isfinite(y)).sum())
        if not both.any():
            continue
        gap = np.abs(x[both] - y[both])
        relative = gap / np.maximum(np.abs(y[both]), np.finfo(float).tiny)
        out.append((column, float(gap.max()), float(np.median(relative)), one_only))
    return sorted(out, key=lambda r: (-r[3], -r[2], -r[1]))


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Both tables list the same rows: equal length and equal text and boolean columns."""
    if len(a) != len(b) or list(a.columns) != list(b.columns):
        return False
    keys = [c for c in a.columns if a[c].dtype.kind in "OUSb" or str(a[c].dtype) in ("string", "str")]
    return all(a[c].reset_index(drop=True).equals(b[c].reset_index(drop=True)) for c in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--stages", default=None, help="comma-separated stage folders (default: all)")
    args = parser.parse_args()
    for run in (args.a, args.b):
        info = json.loads((run / "study.json").read_text()) if (run / "study.json").exists() else {}
        print(f"{run}: device {info.get('device', '?')}, corpora {info.get('corpora', '?')}")
    stages = set(args.stages.split(",")) if args.stages else None
    for path in sorted(args.a.glob("*/*.parquet")):
        stage = path.parent.name
        if stages and stage not in stages:
            continue
        other = args.b / stage / path.name
        name = f"{stage}/{path.stem}"
        if not other.exists():
            print(f"{name}: only in {args.a}")
            continue
        a, b = pd.read_parquet(path), pd.read_parquet(other)
        if not same_rows(a, b):
            print(f"{name}: other rows ({len(a)} vs {len(b)})")
            continue
        worst = table_difference(a, b)[:3]
        text = "; ".join(
            f"{c} max |d| {m:.2g}, median rel {r:.1g}" + (f", {k} NaN in one" if k else "") for c, m, r, k in worst
        )
        print(f"{name} [{len(a)} rows]: {text or 'no numeric columns'}")


if __name__ == "__main__":
    main()
