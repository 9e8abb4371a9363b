"""When do spectral metrics change, relative to a behavioural event (generalization, the
in-context-learning drop)?

The event steps come from the behaviour tables (:func:`first_crossing`); the change points
of each weight metric from :func:`spectrascope.dynamics.changepoints.change_points`. A change
detected at ``step`` with previous checkpoint ``step_before`` happened somewhere in
(step_before, step]; against an event at step E it is

    'before'  when step <= E           (it had happened by the time of the event)
    'after'   when step_before >= E    (it had not happened yet at the event)
    'at'      otherwise                (the checkpoint interval holding the event)
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def first_crossing(table: pd.DataFrame, column: str, threshold: float, above: bool = True, step: str = "step") -> float:
    """The first step at which ``column`` is >= (or, with ``above=False``, <=) ``threshold``; NaN if never."""
    ordered = table.sort_values(step)
    values = ordered[column].to_numpy(dtype=np.float64)
    hit = values >= threshold if above else values <= threshold
    return float(ordered[step].to_numpy()[np.argmax(hit)]) if hit.any() else float("nan")


def relation(step: float, step_before: float, event: float) -> str:
    """'before', 'at' or 'after' (module docstring); '' when the event never happened."""
    if not np.isfinite(event):
        return ""
    if step <= event:
        return "before"
    if step_before >= event:
        return "after"
    return "at"


def timing_table(changes: pd.DataFrame, event: float, control: pd.DataFrame | None = None,
                 reference: pd.DataFrame | None = None, final: pd.DataFrame | None = None) -> pd.DataFrame:
    """The whole-series change point(s) of every (matrix, metric) against an event step.

    Args:
        changes: :func:`change_points` of the tracked weights, ``by=["name"]`` (with role, block
            columns if present in ``final``).
        event: the event step (e.g. the generalization step).
        control: :func:`change_points` of the randomized-weights control (same keys).
        reference: :func:`controls.untrained_reference` (name, metric, mean, sd).
        final: the weight table of the last checkpoint (name, role, block, metric columns).
    Returns:
        One row per change point of test 1: (model,) name, metric, step, step_before, before, after,
        delta, p_value, q_value, significant, relation ('before' | 'at' | 'after'), lag
        (step - event), and when given: control_step, control_p, control_q,
        control_significant (the shuffled series' whole-series change); init_mean, init_sd,
        final, z_final ((final - init_mean) / init_sd); role, block.
    """
    keys = ["model", "name", "metric"] if "model" in changes else ["name", "metric"]
    cols = [*keys, "step", "step_before", "before", "after", "delta", "p_value", "q_value", "significant"]
    out = changes.loc[changes["test"] == 1, cols].copy()
    out["relation"] = [relation(s, b, event) for s, b in zip(out["step"], out["step_before"])]
    out["lag"] = out["step"] - event
    if control is not None and len(control):
        first = control[control["test"] == 1].sort_values("step").drop_duplicates(keys)
        first = first.rename(columns={"step": "control_step", "p_value": "control_p", "q_value": "control_q",
                                      "significant": "control_significant"})
        out = out.merge(first[[*keys, "control_step", "control_p", "control_q", "control_significant"]],
                        on=keys, how="left")
    if final is not None and len(final):
        melted = final.melt(id_vars=["name", "role", "block"], value_vars=[m for m in out["metric"].unique() if m in final],
                            var_name="metric", value_name="final")
        out = out.merge(melted, on=["name", "metric"], how="left")
    if reference is not None and len(reference):
        ref = reference.rename(columns={"mean": "init_mean", "sd": "init_sd"})[["name", "metric", "init_mean", "init_sd"]]
        out = out.merge(ref, on=["name", "metric"], how="left")
        if "final" in out:
            with np.errstate(divide="ignore", invalid="ignore"):
                out["z_final"] = (out["final"] - out["init_mean"]) / out["init_sd"]
    return out.reset_index(drop=True)


def timing_sentences(timing: pd.DataFrame, event_name: str, event: float, metrics: list[str]) -> list[str]:
    """One sentence per (model, metric): how many matrices change significantly, and when
    their first change point lies relative to the event."""
    lines = []
    models = timing["model"].unique() if "model" in timing else [None]
    for model in models:
        rows = timing if model is None else timing[timing["model"] == model]
        label = {"rate": "abrupt change (rate test)", "mean": "level change (mean test)"}.get(model, "change")
        for metric in metrics:
            sub = rows[rows["metric"] == metric].sort_values("step").drop_duplicates("name")
            if sub.empty:
                continue
            sig = sub[sub["significant"].astype(bool)]
            text = f"{metric}, {label}: {len(sig)} of {len(sub)} matrices (BH q < 0.05)"
            if len(sig):
                counts = sig["relation"].value_counts()
                parts = ", ".join(f"{int(counts.get(r, 0))} {r}" for r in ("before", "at", "after"))
                text += (f"; first change relative to the {event_name} (step {event:g}): {parts}; "
                         f"median step {sig['step'].median():g}, min p {sig['p_value'].min():.3g}")
                if "control_significant" in sig:
                    both = int(sig["control_significant"].fillna(False).astype(bool).sum())
                    text += f"; {both} of them also change in the shuffled-weights control"
            lines.append(text + ".")
    return lines
