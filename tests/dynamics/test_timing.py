"""Change points against an event step: relations, per-series flags, controls, sentences."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from spectrascope.dynamics.timing import (
    first_crossing,
    relation,
    timing_sentences,
    timing_table,
)


def test_relation_of_an_interval_to_an_event():
    assert relation(100, 50, 200) == "before"
    assert relation(200, 100, 200) == "at"  # the event step is the interval's end
    assert relation(300, 150, 200) == "at"
    assert relation(400, 200, 200) == "after"  # the interval starts at the event
    assert relation(400, 300, float("nan")) == ""


def test_first_crossing():
    table = pd.DataFrame({"step": [30, 0, 10, 20], "acc": [0.9, 0.0, 0.2, 0.6]})
    assert first_crossing(table, "acc", 0.5) == 20
    assert first_crossing(table, "acc", 0.1, above=False) == 0
    assert math.isnan(first_crossing(table, "acc", 0.95))


def _changes(rows):
    columns = [
        "model",
        "name",
        "metric",
        "test",
        "step",
        "step_before",
        "before",
        "after",
        "delta",
        "p_value",
        "q_value",
        "significant",
    ]
    return pd.DataFrame([dict(zip(columns, r)) for r in rows])


def test_timing_table_flags_changes_at_the_event_and_in_the_control():
    changes = _changes(
        [
            ("mean", "a", "alpha", 1, 100, 50, 3.0, 2.0, -1.0, 0.001, 0.004, True),  # before the event
            ("mean", "a", "alpha", 2, 400, 200, 2.0, 1.5, -0.5, 0.01, None, True),  # in (200, 400]: at
            ("mean", "b", "alpha", 1, 800, 400, 3.0, 3.1, 0.1, 0.6, 0.6, False),  # not significant
            ("mean", "c", "alpha", 1, 800, 400, 3.0, 5.0, 2.0, 0.002, 0.004, True),  # after
        ]
    )
    control = _changes([("mean", "a", "alpha", 1, 400, 200, 3.0, 2.0, -1.0, 0.003, 0.01, True)])
    reference = pd.DataFrame({"name": ["a"], "metric": ["alpha"], "mean": [3.0], "sd": [0.5]})
    final = pd.DataFrame(
        {"name": ["a", "b", "c"], "role": ["q", "k", "v"], "block": [0, 0, 0], "alpha": [1.5, 3.1, 5.0]}
    )
    table = timing_table(changes, 300, control, reference, final)
    assert list(table["relation"]) == ["before", "at", "after", "after"]
    flags = table.drop_duplicates("name").set_index("name")
    assert flags["at_event"].to_dict() == {"a": True, "b": False, "c": False}
    assert flags["control_at_event"].to_dict() == {"a": True, "b": False, "c": False}
    assert flags.loc["a", "z_final"] == -3.0 and flags.loc["a", "role"] == "q"
    (sentence,) = timing_sentences(table, "generalization step", 300, ["alpha"])
    assert sentence.startswith(
        "alpha, level test: 2 of 3 matrices change (BH q < 0.05); in the interval holding "
        "the generalization step (step 300): 1 (a; interval (200, 400], min p 0.01), of which "
        "1 also in the shuffled control; first change before / at / after it: 1 / 0 / 1."
    )


def test_event_window_table_by_hand():
    from spectrascope.dynamics.timing import event_window_table

    steps = [0, 10, 100, 1000]
    weights = pd.DataFrame(
        {
            "step": steps * 2,
            "name": ["a"] * 4 + ["b"] * 4,
            "role": ["q"] * 4 + ["k"] * 4,
            "block": [0] * 8,
            "status": ["success"] * 8,
            "alpha": [3.0, 3.1, 2.0, 1.9, 5.0, 5.0, 5.0, 4.0],
        }
    )
    shuffled = weights.assign(alpha=[6.0, 6.0, 6.1, 6.1, 6.0, 6.0, 6.0, 6.0])
    reference = pd.DataFrame({"name": ["a", "b"], "metric": ["alpha", "alpha"], "mean": [3.0, 5.0], "sd": [0.5, 0.25]})
    # the event at step 50 lies in (10, 100]: a jumps by -1.1 (its largest increment), b by 0
    table = event_window_table(weights, 50, ["alpha"], shuffled, reference).set_index("name")
    assert table.loc["a", ["step_before", "step_after"]].tolist() == [10, 100]
    assert table.loc["a", "jump"] == pytest.approx(-1.1) and table.loc["a", "jump_rank"] == 1
    assert table.loc["b", "jump"] == 0 and table.loc["b", "jump_rank"] == 2  # b's largest is the last increment (1.0)
    assert table.loc["a", "control_jump"] == pytest.approx(0.1)
    assert table.loc["a", "jump_over_init_sd"] == pytest.approx(-2.2)
    assert table.loc["a", "final"] == 1.9
    assert event_window_table(weights, 5000, ["alpha"]).empty
