"""Stage ``weights``: the spectra of every weight matrix, with the MP fit, correlation traps
(the randomized-weights control per matrix) and per-head QK/OV circuits. No data.

Tables: weights, weights_heads.
"""

from __future__ import annotations

import pandas as pd

from ...weights.options import WeightsOptions
from ...weights.runner import run_weights
from ..context import StudyContext


def run(ctx: StudyContext) -> dict[str, pd.DataFrame]:
    options = WeightsOptions(mp_fit=True, randomize=True, heads=True, seed=ctx.seed)
    matrices, heads = run_weights(ctx.model, options, None, ctx.workers, show_progress=ctx.show_progress)
    return {"weights": matrices, "weights_heads": heads if heads is not None else pd.DataFrame()}
