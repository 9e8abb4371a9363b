"""Stage ``mechanisms``: head scores, the logit lens, and the induction-loss ablation of every head.

- head scores (induction, previous-token, duplicate-token) on ``head_sequences`` repeated
  random sequences;
- the logit lens on one prompt;
- the exact ablation of every head on the loss of the second copy of repeated random sequences
  (``sweep_sequences``, a screen), then the heads it ranks highest together with the top
  induction and previous-token heads re-measured on ``head_sequences`` *fresh* sequences
  (selection and measurement on different data: no winner's curse), with bootstrap intervals
  over sequences, and on the first copy of the same sequences (``damage_first_copy``: the
  control, a loss induction cannot lower; read from the same forwards). The reference of mean
  ablation is other repeated sequences.

Tables: head_scores, lens, ablation_heads.
"""

from __future__ import annotations

import pandas as pd

from ...mech.ablation import all_heads
from ...mech.ablation_sweep import ablation_rows, damage_intervals
from ...mech.components import Head
from ...mech.head_scores import head_scores
from ...mech.logit_lens import logit_lens
from ...mech.metrics import REPEAT_LENGTH, JointMetric, repeated_loss
from ...mech.references import other_sequences
from ...stats.bootstrap import weighted_mean_interval
from ..context import StudyContext

PATTERN_CANDIDATES = 3
"""Top heads by induction score and by previous-token score always re-measured."""


def run(ctx: StudyContext) -> dict[str, pd.DataFrame]:
    loaded, b = ctx.loaded(), ctx.budget
    scores = head_scores(loaded, n_seq=b.head_sequences, seed=ctx.seed)
    lens = logit_lens(loaded, b.lens_prompt, targets=[b.lens_target])
    return {"head_scores": scores, "lens": lens, "ablation_heads": induction_sweep(ctx, scores)}


def induction_sweep(ctx: StudyContext, scores: pd.DataFrame) -> pd.DataFrame:
    """Screen every head on ``sweep_sequences``, confirm the candidates on fresh ``head_sequences``."""
    loaded, b = ctx.loaded(), ctx.budget
    reference = other_sequences(loaded, b.sweep_sequences, REPEAT_LENGTH, ctx.seed)
    screen_metric = repeated_loss(loaded, n_seq=b.sweep_sequences, seed=ctx.seed, copy="second")
    screen = ablation_rows(
        loaded, all_heads(loaded), screen_metric, b.ablation_mode, reference, show_progress=ctx.show_progress
    )
    screen_table = damage_intervals(screen, screen_metric, b.n_boot, ctx.seed).rename(
        columns={
            "damage": "damage_screen",
            "damage_lo": "damage_screen_lo",
            "damage_hi": "damage_screen_hi",
            "n_rows": "n_screen",
        }
    )
    candidates = _candidates(screen_table, scores, b.confirm_heads)
    confirm_metric = repeated_loss(loaded, n_seq=b.head_sequences, seed=ctx.seed + 2, copy="second")
    # the control: the same ablations on the first copy of the same sequences, which induction
    # cannot predict (a head that raises both losses alike is not specific to induction); read
    # from the same forwards as the second copy's loss
    first = repeated_loss(loaded, n_seq=b.head_sequences, seed=ctx.seed + 2, copy="first")
    both = JointMetric([confirm_metric, first])
    confirmed, first_copy = ablation_rows(loaded, candidates, both, b.ablation_mode, reference).split()
    confirmed_table = damage_intervals(confirmed, confirm_metric, b.n_boot, ctx.seed)
    confirmed_table = confirmed_table[["component", "damage", "damage_lo", "damage_hi", "n_rows"]].rename(
        columns={"n_rows": "n_confirm"}
    )
    first_table = damage_intervals(first_copy, first, b.n_boot, ctx.seed)[
        ["component", "damage", "damage_lo", "damage_hi"]
    ].rename(columns=lambda c: c.replace("damage", "damage_first_copy"))
    confirmed_table = confirmed_table.merge(first_table, on="component", how="left")
    table = screen_table.drop(columns="kind").merge(confirmed_table, on="component", how="left")
    table["confirmed"] = table["damage"].notna()
    table["mode"] = b.ablation_mode.value
    # the two copies' losses on the same fresh sequences, each with its interval over them
    for name, rows in (("baseline", confirmed.baseline), ("first_copy_loss", first_copy.baseline)):
        interval = weighted_mean_interval(rows.values.numpy(), rows.weights.numpy(), b.n_boot, ctx.seed)
        for column, value in interval.columns(name).items():
            table[column] = value
    return table.merge(scores, on=["layer", "head"], how="left")


def _candidates(screen: pd.DataFrame, scores: pd.DataFrame, k: int) -> list[Head]:
    """The ``k`` heads the screen finds most damaging, plus the top induction and previous-token heads."""
    ranked = screen.sort_values("damage_screen", ascending=False).head(k)
    chosen = [Head(int(layer), int(head)) for layer, head in zip(ranked["layer"], ranked["head"], strict=True)]
    for kind in ("induction", "previous_token"):
        if kind in scores:
            for _, row in scores.sort_values(kind, ascending=False).head(PATTERN_CANDIDATES).iterrows():
                chosen.append(Head(int(row["layer"]), int(row["head"])))
    return list(dict.fromkeys(chosen))
