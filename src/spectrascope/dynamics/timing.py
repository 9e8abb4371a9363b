"""When do spectral metrics change, relative to a behavioural event (generalization, the
in-context-learning drop)?

The event steps come from the behaviour tables (:func:`first_crossing`); the change points
of each weight metric from :func:`spectrascope.dynamics.changepoints.change_points`. A change
detected at ``step`` with previous checkpoint ``step_before`` happened somewhere in
(step_before, step]; against an event at step E it is

    'before'  when step < E            (it had happened before the event)
    'at'      when step_before < E <= step   (the checkpoint interval holding the event)
    'after'   when step_before >= E    (it had not happened yet at the event)

A series *changes at the event* when one of its significant change points is 'at' it. The
resolution is the checkpoint grid: on a log-spaced schedule the interval holding a late event
is wide, so 'at' means "within that interval", not "at that step".
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
    if step < event:
        return "before"
    if step_before >= event:
        return "after"
    return "at"


def _series_keys(changes: pd.DataFrame) -> list[str]:
    return ["model", "name", "metric"] if "model" in changes else ["name", "metric"]


def _at_event(changes: pd.DataFrame, event: float) -> pd.DataFrame:
    """Per series: whether a significant change point lies in the interval holding the event."""
    keys = _series_keys(changes)
    sig = changes[changes["significant"].astype(bool)]
    hit = [relation(s, b, event) == "at" for s, b in zip(sig["step"], sig["step_before"])]
    flags = sig.assign(at_event=hit).groupby(keys)["at_event"].any()
    return flags.reset_index()


def timing_table(
    changes: pd.DataFrame,
    event: float,
    control: pd.DataFrame | None = None,
    reference: pd.DataFrame | None = None,
    final: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every whole-series change point and every significant one of every (model, matrix,
    metric) series, placed against an event step.

    Args:
        changes: :func:`change_points` (or ``change_points_by_model``) of the tracked weights, ``by=["name"]``.
        event: the event step (e.g. the generalization step).
        control: the same for the randomized-weights control.
        reference: :func:`controls.untrained_reference` (name, metric, mean, sd).
        final: the weight table of the last checkpoint (name, role, block, metric columns).
    Returns:
        One row per change point: (model,) name, metric, test, step, step_before, before, after,
        delta, p_value, q_value, significant, relation ('before' | 'at' | 'after'), lag
        (step - event), at_event (the series has a significant change 'at' the event), and when
        given: control_at_event (the shuffled series has one too), control_p (its whole-series
        p); init_mean, init_sd (untrained models), final, z_final ((final - init_mean) / init_sd);
        role, block.
    """
    keys = _series_keys(changes)
    cols = [*keys, "test", "step", "step_before", "before", "after", "delta", "p_value", "q_value", "significant"]
    out = changes.loc[(changes["test"] == 1) | changes["significant"].astype(bool), cols].copy()
    out["relation"] = [relation(s, b, event) for s, b in zip(out["step"], out["step_before"])]
    out["lag"] = out["step"] - event
    out = out.merge(_at_event(changes, event), on=keys, how="left")
    out["at_event"] = out["at_event"].fillna(False).astype(bool)
    if control is not None and len(control):
        flags = _at_event(control, event).rename(columns={"at_event": "control_at_event"})
        whole = control[control["test"] == 1].drop_duplicates(keys).rename(columns={"p_value": "control_p"})
        out = out.merge(flags, on=keys, how="left").merge(whole[[*keys, "control_p"]], on=keys, how="left")
        out["control_at_event"] = out["control_at_event"].fillna(False).astype(bool)
    if final is not None and len(final):
        present = [m for m in out["metric"].unique() if m in final]
        melted = final.melt(
            id_vars=["name", "role", "block"], value_vars=present, var_name="metric", value_name="final"
        )
        out = out.merge(melted, on=["name", "metric"], how="left")
    if reference is not None and len(reference):
        ref = reference.rename(columns={"mean": "init_mean", "sd": "init_sd"})[
            ["name", "metric", "init_mean", "init_sd"]
        ]
        out = out.merge(ref, on=["name", "metric"], how="left")
        if "final" in out:
            with np.errstate(divide="ignore", invalid="ignore"):
                out["z_final"] = (out["final"] - out["init_mean"]) / out["init_sd"]
    return out.sort_values([*keys, "step"]).reset_index(drop=True)


def _short(name: str) -> str:
    parts = name.replace(".weight", "").split(".")
    return ".".join(p for p in parts[-3:] if p not in ("model", "self_attn", "mlp"))


def timing_sentences(timing: pd.DataFrame, event_name: str, event: float, metrics: list[str]) -> list[str]:
    """One sentence per (model, metric): how many matrices change significantly at all, which
    change in the checkpoint interval holding the event (and whether the control does too),
    and where the others' first change lies."""
    lines = []
    models = timing["model"].unique() if "model" in timing else [None]
    for model in models:
        rows = timing if model is None else timing[timing["model"] == model]
        label = {"rate": "rate test (abrupt change)", "mean": "level test"}.get(model, "change")
        for metric in metrics:
            sub = rows[rows["metric"] == metric]
            if sub.empty:
                continue
            n = sub["name"].nunique()
            sig = sub[sub["significant"].astype(bool)]
            text = f"{metric}, {label}: {sig['name'].nunique()} of {n} matrices change (BH q < 0.05)"
            at = sig[sig["relation"] == "at"]
            if np.isfinite(event):
                text += f"; in the interval holding the {event_name} (step {event:g}): {at['name'].nunique()}"
                if len(at):
                    first = at.iloc[0]
                    names = ", ".join(sorted({_short(x) for x in at["name"]}))
                    text += f" ({names}; interval ({first['step_before']:g}, {first['step']:g}], min p {at['p_value'].min():.3g})"
                    if "control_at_event" in at:
                        text += f", of which {at.drop_duplicates('name')['control_at_event'].sum()} also in the shuffled control"
                earliest = sig.sort_values("step").drop_duplicates("name")["relation"].value_counts()
                text += (
                    f"; first change before / at / after it: {int(earliest.get('before', 0))} / "
                    f"{int(earliest.get('at', 0))} / {int(earliest.get('after', 0))}"
                )
            lines.append(text + ".")
    return lines


def event_window_table(
    weights: pd.DataFrame,
    event: float,
    metrics: list[str],
    shuffled: pd.DataFrame | None = None,
    reference: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each matrix's metrics on either side of the checkpoint interval holding the event.

    For every (matrix, metric): ``value_before`` at the last checkpoint before the event and
    ``value_after`` at the first one at or after it, ``jump`` = after - before, ``jump_rank``
    (1 = the largest |increment| between consecutive checkpoints of that series: a
    description, not a test, since increments over a log-spaced grid are not exchangeable),
    ``final``; with ``shuffled`` the same jump of the entry-shuffled matrix
    (``control_jump``); with ``reference`` the untrained spread ``init_sd`` and
    ``jump_over_init_sd``. Empty when the event is outside the checkpoint range.
    """
    ok = weights[weights["status"] == "success"]
    steps = np.sort(ok["step"].unique())
    if not np.isfinite(event) or event <= steps[0] or event > steps[-1]:
        return pd.DataFrame()
    after = steps[np.searchsorted(steps, event)]
    before = steps[np.searchsorted(steps, event) - 1]
    control = None
    if shuffled is not None and len(shuffled):
        okc = shuffled[shuffled["status"] == "success"]
        control = okc.pivot_table(index="step", columns="name", values=[m for m in metrics if m in okc])
    rows = []
    for (name, role, block), group in ok.groupby(["name", "role", "block"], sort=True):
        series = group.set_index("step").sort_index()
        for metric in metrics:
            if metric not in series or before not in series.index or after not in series.index:
                continue
            values = pd.to_numeric(series[metric], errors="coerce")
            jump = float(values[after] - values[before])
            increments = values.diff().abs().dropna()
            row = {
                "name": name,
                "role": role,
                "block": int(block),
                "metric": metric,
                "step_before": int(before),
                "step_after": int(after),
                "value_before": float(values[before]),
                "value_after": float(values[after]),
                "jump": jump,
                "jump_rank": int((increments > abs(jump) + 1e-12).sum() + 1),
                "n_increments": int(increments.size),
                "final": float(values.iloc[-1]),
            }
            if control is not None and (metric, name) in control:
                c = control[(metric, name)]
                row["control_jump"] = float(c.get(after, np.nan) - c.get(before, np.nan))
            rows.append(row)
    out = pd.DataFrame(rows)
    if reference is not None and len(reference) and len(out):
        ref = reference.rename(columns={"sd": "init_sd", "mean": "init_mean"})[
            ["name", "metric", "init_mean", "init_sd"]
        ]
        out = out.merge(ref, on=["name", "metric"], how="left")
        with np.errstate(divide="ignore", invalid="ignore"):
            out["jump_over_init_sd"] = out["jump"] / out["init_sd"]
    return out


def event_window_sentences(window: pd.DataFrame, event_name: str, metrics: list[str], top_rank: int = 3) -> list[str]:
    """Per metric: the matrices for which the jump across the event's interval is among their
    ``top_rank`` largest of the run, with sizes and controls."""
    if window.empty:
        return []
    first = window.iloc[0]
    lines = [
        (
            f"Across the checkpoint interval ({first['step_before']:g}, {first['step_after']:g}] holding the "
            f"{event_name}:"
        )
    ]
    for metric in metrics:
        sub = window[window["metric"] == metric]
        if sub.empty:
            continue
        top = sub[sub["jump_rank"] <= top_rank]
        text = (
            f"{metric} makes one of its {top_rank} largest jumps between consecutive checkpoints (of "
            f"{int(sub['n_increments'].max())}) here in {len(top)} of {len(sub)} matrices"
        )
        if len(top):
            parts = [
                f"{_short(r.name)} {r.value_before:.2f} → {r.value_after:.2f} (rank {r.jump_rank})"
                for r in top.itertuples()
            ]
            text += f" ({'; '.join(parts)})"
            if "control_jump" in top:
                text += f"; the shuffled control moves by at most {top['control_jump'].abs().max():.2f} there"
            if "jump_over_init_sd" in top:
                text += f"; |jump| / untrained sd {top['jump_over_init_sd'].abs().min():.1f} to {top['jump_over_init_sd'].abs().max():.1f}"
        lines.append(text + ".")
    return lines
