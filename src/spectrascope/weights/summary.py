"""Summaries of a weights table: per role, the worst matrices, and what was not analyzed."""

from __future__ import annotations

import numpy as np
import pandas as pd

GOOD_ALPHA = (2.0, 6.0)


def role_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per role: matrices analyzed, mean alpha, share with alpha in [2, 6], mean alpha_weighted,
    mean ERG delta. Columns: role, n, mean_alpha, share_alpha_2_6, mean_alpha_weighted, mean_erg_delta."""
    ok = df[df["status"] == "success"]
    if ok.empty:
        return pd.DataFrame(
            columns=["role", "n", "mean_alpha", "share_alpha_2_6", "mean_alpha_weighted", "mean_erg_delta"]
        )
    in_range = ok["alpha"].between(*GOOD_ALPHA)
    return (
        ok.assign(in_range=in_range)
        .groupby("role", sort=True)
        .agg(
            n=("alpha", "size"),
            mean_alpha=("alpha", "mean"),
            share_alpha_2_6=("in_range", "mean"),
            mean_alpha_weighted=("alpha_weighted", "mean"),
            mean_erg_delta=("erg_delta", "mean"),
        )
        .reset_index()
    )


def worst_matrices(df: pd.DataFrame, k: int = 5) -> pd.DataFrame:
    """The k matrices whose alpha lies farthest outside [2, 6] (nothing if all are inside).
    Columns: name, role, alpha, warning."""
    ok = df[df["status"] == "success"].copy()
    if ok.empty:
        return pd.DataFrame(columns=["name", "role", "alpha", "warning"])
    lo, hi = GOOD_ALPHA
    ok["distance"] = np.maximum(lo - ok["alpha"], ok["alpha"] - hi)
    out = ok[ok["distance"] > 0].sort_values("distance", ascending=False).head(k)
    return out[["name", "role", "alpha", "warning"]].reset_index(drop=True)


def summary_dict(df: pd.DataFrame, heads: pd.DataFrame | None = None) -> dict:
    """JSON-ready summary of a weights run: ``tensors`` (rows of the table: every tensor,
    expert matrices counted one by one), ``status_counts`` (success, failed, skipped), the
    alpha statistics of the fitted matrices, and the failed and skipped rows with reasons."""
    ok = df[df["status"] == "success"]
    out = {
        "tensors": len(df),
        "analyzed": len(ok),
        "status_counts": {k: int(v) for k, v in df["status"].value_counts().items()},
        "mean_alpha": float(ok["alpha"].mean()) if len(ok) else None,
        "share_alpha_2_6": float(ok["alpha"].between(*GOOD_ALPHA).mean()) if len(ok) else None,
        "by_role": role_summary(df).to_dict(orient="records"),
        "worst": worst_matrices(df).to_dict(orient="records"),
        "failed": df.loc[df["status"] == "failed", ["name", "reason"]].to_dict(orient="records"),
        "skipped": df.loc[df["status"] == "skipped", ["name", "reason"]].to_dict(orient="records"),
    }
    if heads is not None and len(heads):
        okh = heads[heads["status"] == "success"]
        out["heads"] = okh.groupby("circuit")["alpha"].mean().to_dict() if len(okh) else {}
    return out
