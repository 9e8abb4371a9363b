"""``spectrascope study``: the main job. Runs the analyses on one model and writes every
table plus a self-contained ``report.html``.

Stages (each writes its tables as it goes and is skipped on ``--resume`` when done):
    weights   whole-matrix spectra with MP fit and correlation traps, per-head circuits
Later stages (activations, mechanisms, bridge) plug in here as they land.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .models.open_source import open_source
from .report.figures import alpha_by_layer, esd_loglog, head_heatmap
from .report.html import Section, render
from .spectra.esd import gram_eigenvalues
from .spectra.options import WeightsOptions
from .spectra.summary import GOOD_ALPHA, role_summary, worst_matrices
from .spectra.weights_run import run_weights


def overview_sentences(df: pd.DataFrame, heads: pd.DataFrame | None, source_description: str) -> list[str]:
    """A few sentences, generated from the numbers, on the model's spectral health."""
    ok = df[df["status"] == "success"]
    share = ok["alpha"].between(*GOOD_ALPHA).mean()
    lines = [
        f"Analyzed {len(ok)} of {len(df)} weight matrices of {source_description}; "
        f"{share:.0%} have a power-law exponent alpha in [2, 6] (mean alpha {ok['alpha'].mean():.2f}, "
        f"median {ok['alpha'].median():.2f})."
    ]
    roles = role_summary(df).sort_values("mean_alpha")
    if len(roles) >= 2:
        lo, hi = roles.iloc[0], roles.iloc[-1]
        lines.append(f"The heaviest tails are in the {lo.role} matrices (mean alpha {lo.mean_alpha:.2f}), "
                     f"the lightest in the {hi.role} matrices (mean alpha {hi.mean_alpha:.2f}).")
    n_over, n_under = int((ok["alpha"] < 2).sum()), int((ok["alpha"] > 6).sum())
    lines.append(f"{n_over} matrices are flagged over-trained (alpha < 2) and {n_under} under-trained (alpha > 6).")
    if "erg_delta" in ok:
        lines.append(f"The median ERG gap (power-law xmin minus the ERG tail's lambda_min, normalized units) is "
                     f"{ok['erg_delta'].median():.3f}; SETOL's ideal is 0 with alpha near 2.")
    if "num_traps" in ok:
        trapped = int((ok["num_traps"] > 0).sum())
        lines.append(f"{trapped} matrices show correlation traps (their shuffled copy keeps outlier eigenvalues).")
    if heads is not None and len(heads):
        ov = heads[(heads["circuit"] == "ov") & (heads["status"] == "success")]
        if len(ov):
            best = ov.loc[ov["alpha"].idxmin()]
            lines.append(f"Across {len(ov)} attention heads the OV circuits have mean alpha {ov['alpha'].mean():.2f}; "
                         f"the heaviest-tailed is block {int(best['block'])} head {int(best['head'])} (alpha {best['alpha']:.2f}).")
    failed = df[df["status"] == "failed"]
    if len(failed):
        lines.append(f"{len(failed)} matrices failed: " + "; ".join(f"{r.name} ({r.reason})" for r in failed.itertuples()))
    return lines


def _esd_examples(source, df: pd.DataFrame, k: int = 4) -> list:
    """ESD figures for the worst matrices and one per role (recomputed: cheap)."""
    ok = df[df["status"] == "success"]
    picks = list(worst_matrices(df, k=2)["name"])
    for _, g in ok.groupby("role"):
        if len(picks) >= k:
            break
        name = g.iloc[len(g) // 2]["name"]
        if name not in picks:
            picks.append(name)
    figs = []
    for name in picks:
        r = ok[ok["name"] == name].iloc[0]
        evals = gram_eigenvalues(source.load(name))
        erg_raw = r["erg_lambda_min"] * r["xmin"] / r["pl_lambda_min"] if r["pl_lambda_min"] else None
        figs.append(esd_loglog(name, evals, r["alpha"], r["xmin"], erg_raw))
    return figs


def run_study(model, out: str | Path, workers: int = 1, resume: bool = False, seed: int = 0,
              show_progress: bool = False, stages: tuple[str, ...] = ("weights",)) -> Path:
    """Run the study and return the path of ``report.html``.

    Args:
        stages: which stages to run (see module docstring).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = open_source(model)
    weights_dir = out / "weights"
    options = WeightsOptions(mp_fit=True, randomize=True, heads=True, seed=seed)
    df, heads = run_weights(source, options, weights_dir, workers, resume, show_progress=show_progress)
    sections = [
        Section("overview", "Overview", overview_sentences(df, heads, source.description)),
        Section("weights", "Weight spectra by layer",
                ["Power-law tail exponent alpha of each weight matrix (Clauset MLE, weightwatcher's fit); "
                 "SETOL: alpha near 2 is ideal, 2 to 6 well to weakly trained."],
                [alpha_by_layer(df), alpha_by_layer(df, "erg_delta", "ERG gap (xmin − ERG λmin, normalized units) by layer")],
                [role_summary(df)]),
        Section("esd", "Eigenvalue spectra", ["Log-log ESDs with the fitted power-law tail (dashed), xmin (red) "
                                               "and the start of the ERG / TRACE-LOG tail (purple)."],
                _esd_examples(source, df)),
    ]
    if heads is not None and len(heads):
        sections.append(Section("heads", "Attention heads",
                                ["Tail exponent of each head's OV and QK circuit (nonzero spectrum, rank head_dim)."],
                                [head_heatmap(heads, "ov"), head_heatmap(heads, "qk")]))
    (out / "study.json").write_text(json.dumps({"model": str(model), "seed": seed, "stages": ["weights"]}, indent=2))
    return render(f"spectrascope study: {model}", sections, out / "report.html")
