"""The bridge stage's table helpers on hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spectrascope.study.stages.bridge import MIN_INTERVAL_TEXTS, without_thin_intervals


def test_intervals_over_too_few_texts_are_dropped_and_the_estimate_kept():
    table = pd.DataFrame(
        {
            "component": ["mlp:0", "attn:0", "mlp:1"],
            "damage": [1.0, 0.2, 0.1],
            "damage_lo": [0.8, 0.1, 0.05],
            "damage_hi": [1.2, 0.3, 0.15],
            "n_rows": [2, MIN_INTERVAL_TEXTS - 1, MIN_INTERVAL_TEXTS],
        }
    )
    out = without_thin_intervals(table)
    assert out["damage"].tolist() == [1.0, 0.2, 0.1]
    assert np.isnan(out["damage_lo"][:2]).all() and np.isnan(out["damage_hi"][:2]).all()
    assert (out["damage_lo"][2], out["damage_hi"][2]) == (0.05, 0.15)
    assert table["damage_lo"].notna().all()  # the input is not changed
