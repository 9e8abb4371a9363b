"""Report sections for tracked checkpoint series and the built-in experiments.

Every function takes the tables a run wrote and returns :class:`spectrascope.report.html.Section`
objects (for the study report, or a standalone page via :func:`write_page`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..report.html import Section, render
from .figures import curves, matrix_label, series_by, step_heatmap

WEIGHT_METRICS = [
    "alpha",
    "alpha_weighted",
    "erg_delta",
    "entropy",
    "stable_rank",
    "log_norm",
    "num_spikes",
    "num_traps",
]
"""The weight-table columns tracked for change points (those present in the table)."""
HEAD_CIRCUITS = ("qk", "ov")
TIMING_COLUMNS = [
    "model",
    "name",
    "metric",
    "test",
    "step_before",
    "step",
    "relation",
    "before",
    "after",
    "p_value",
    "q_value",
    "at_event",
    "control_at_event",
    "control_p",
    "init_mean",
    "init_sd",
    "final",
    "z_final",
]


def present(table: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns of ``columns`` that ``table`` has with at least one finite value."""
    return [c for c in columns if c in table and pd.to_numeric(table[c], errors="coerce").notna().any()]


def _labels(table: pd.DataFrame) -> pd.Series:
    return pd.Series([matrix_label(r, b) for r, b in zip(table["role"], table["block"])], index=table.index)


def weight_sections(
    weights: pd.DataFrame,
    changes: pd.DataFrame | None,
    events: Mapping[str, float] | None = None,
    heads: pd.DataFrame | None = None,
    head_changes: pd.DataFrame | None = None,
) -> list[Section]:
    """Weight metrics over steps per role and layer (one figure per metric, change points
    marked), the per-head QK/OV alpha over steps, and the change-point table."""
    ok = weights[weights["status"] == "success"]
    figures = [
        series_by(ok, metric, _labels(ok), f"{metric} over training, per matrix", changes, events=events)
        for metric in present(ok, WEIGHT_METRICS)
    ]
    sections = [
        Section(
            "weights",
            "Weight spectra over training",
            [
                (
                    f"{ok['name'].nunique()} matrices at {ok['step'].nunique()} checkpoints. Markers: change points "
                    "that survive Benjamini-Hochberg over all series (q < 0.05, permutation null; "
                    "dynamics/changepoints.py): diamonds for an abrupt change against the metric's own drift "
                    "(rate test), circles for a change of level (mean test). Dotted lines: behavioural events."
                )
            ],
            figures,
        )
    ]
    if heads is not None and len(heads):
        okh = heads[heads["status"] == "success"].copy()
        okh["series"] = [f"L{b} h{h} {c}" for b, h, c in zip(okh["block"], okh["head"], okh["circuit"])]
        head_figs = []
        for circuit in HEAD_CIRCUITS:
            sub = okh[okh["circuit"] == circuit]
            if len(sub):
                head_figs.append(
                    series_by(
                        sub,
                        "alpha",
                        sub["series"],
                        f"{circuit.upper()} circuit alpha per head",
                        head_changes,
                        change_key="series",
                        events=events,
                    )
                )
        sections.append(
            Section(
                "heads",
                "Attention heads over training",
                ["Power-law alpha of each head's QK and OV circuit (spectrascope.spectra.heads)."],
                head_figs,
            )
        )
    if changes is not None and len(changes):
        table = changes[changes["test"] == 1].sort_values(["significant", "p_value"], ascending=[False, True])
        cols = [
            c
            for c in [
                "model",
                "name",
                "metric",
                "step_before",
                "step",
                "before",
                "after",
                "share",
                "p_value",
                "q_value",
                "significant",
            ]
            if c in table
        ]
        sections.append(
            Section(
                "changes",
                "Change points (whole-series test)",
                [
                    (
                        "Each row: the best split of one series under one model (rate: increments; mean: "
                        "levels); p from permutations of the series, q Benjamini-Hochberg over all series of "
                        "that model."
                    )
                ],
                tables=[table[cols].head(60)],
            )
        )
    return sections


def timing_section(
    timing: pd.DataFrame, sentences: list[str], event_name: str, window: pd.DataFrame | None = None
) -> Section:
    """The spectral change points against the behavioural event, with the controls."""
    cols = [c for c in TIMING_COLUMNS if c in timing]
    table = timing[timing["significant"].astype(bool)].sort_values(["relation", "p_value"])[cols]
    notes = [
        (
            "Significant change points only (whole-series test: BH q < 0.05; later tests inside significant "
            "pieces: p < 0.05). relation: where (step_before, step] lies against the event; at_event: the series "
            "changes in the interval holding the event; control_at_event: so does the same matrix with its entries "
            "shuffled (then the change is one of scale or entry distribution, not of correlations); z_final: the "
            "final value against 5 freshly initialized models."
        )
    ]
    tables = [table.head(120)]
    if window is not None and len(window):
        notes.append(
            "Second table: every matrix's metrics on both sides of the checkpoint interval holding the event "
            "(jump_rank 1: the largest change between consecutive checkpoints of the whole run; control_jump: "
            "the same matrix with shuffled entries; jump_over_init_sd: against the spread of 5 untrained models)."
        )
        tables.append(window.sort_values(["metric", "jump_rank"]))
    return Section("timing", f"Spectral changes relative to the {event_name}", sentences + notes, tables=tables)


def track_sections(
    weights: pd.DataFrame, changes: pd.DataFrame, checkpoints: pd.DataFrame, heads: pd.DataFrame | None = None
) -> list[Section]:
    """The sections of ``spectrascope track``'s page: overview, weights over steps, checkpoints."""
    failed = checkpoints[checkpoints["status"] != "ok"]
    overview = [
        (
            f"{len(checkpoints)} checkpoints from step {checkpoints['step'].min()} to {checkpoints['step'].max()}; "
            f"{len(failed)} failed or partial."
        )
    ]
    if len(changes):
        keys = [c for c in ("name", "metric") if c in changes]
        for model, rows in changes[changes["test"] == 1].groupby("model" if "model" in changes else lambda _: "mean"):
            series = rows.drop_duplicates(keys)
            overview.append(
                f"{model} test: {int(series['significant'].sum())} of {len(series)} metric series change "
                "significantly (whole-series test, BH q < 0.05)."
            )
    sections = [Section("overview", "Overview", overview)]
    sections += weight_sections(weights, changes, heads=heads)
    sections.append(Section("checkpoints", "Checkpoints", [], tables=[checkpoints]))
    return sections


def write_page(title: str, sections: list[Section], path: str | Path) -> Path:
    """A standalone HTML page (plotly inlined, works offline)."""
    return render(title, sections, path)


def behaviour_section(
    section_id: str,
    title: str,
    paragraphs: list[str],
    table: pd.DataFrame,
    groups: list[tuple[list[str], str, str, bool]],
    events: Mapping[str, float],
) -> Section:
    """A section of behaviour curves: ``groups`` is a list of (columns, title, y title, log y)."""
    figures = [curves(table, cols, t, y, events, log_y) for cols, t, y, log_y in groups if present(table, cols)]
    return Section(section_id, title, paragraphs, figures)


def energy_section(energy: pd.DataFrame, keys: list[int]) -> Section:
    """The embedding's Fourier energy per frequency over checkpoints (grokking)."""
    fig = step_heatmap(energy, "frequency", "energy", "Embedding energy per Fourier frequency", "frequency k")
    return Section(
        "fourier",
        "Fourier structure of the embedding",
        [
            (
                f"Key frequencies of the final embedding: {', '.join(map(str, keys)) or 'none'} "
                "(the top frequencies by energy, down to the largest gap of at least 2x; dynamics/fourier.py)."
            )
        ],
        [fig],
    )


def sections_from_folder(out: str | Path) -> list[Section]:
    """The sections of a folder written by ``spectrascope track`` (or an experiment): the
    weights over steps with their change points, the heads, the checkpoint status. For a
    study report that wants a tracked run beside its own sections."""
    out = Path(out)

    def read(stem: str) -> pd.DataFrame | None:
        path = out / f"{stem}.parquet"
        return pd.read_parquet(path) if path.exists() else None

    weights, status = read("weights_over_steps"), read("checkpoint_status")
    if weights is None or status is None:
        return []
    changes = read("changepoints")
    return track_sections(weights, changes if changes is not None else pd.DataFrame(), status, read("heads_over_steps"))
