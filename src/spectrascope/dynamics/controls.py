"""Controls for metric series over training: randomized weights and untrained models.

- Randomized-weights control (:func:`shuffled_over_steps`): at every checkpoint, the
  entries of each matrix shuffled (seeded per matrix, as weightwatcher's randomize). The
  shuffled matrix keeps the entries, hence the norm and the entry distribution, and loses
  every correlation. A change that the shuffled series shows too is a change of scale or
  of the entry distribution (weight decay shrinking the weights, say), not of structure.
- Untrained reference (:func:`untrained_reference`): the same architecture freshly
  initialized with several seeds. Its spread per matrix says how far a metric moves by
  chance of initialization alone; ``z = (value - mean) / sd`` places a trained value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import SpectrascopeError
from ..models.open_source import open_source
from ..weights.options import WeightsOptions
from ..weights.runner import run_weights
from .series import Checkpoint
from .sources import ShuffledSource

CONTROL_METRICS = ["alpha", "alpha_weighted", "erg_delta", "entropy", "stable_rank", "log_norm"]


def shuffled_over_steps(series: Sequence[Checkpoint], precision: str = "exact", seed: int = 0) -> pd.DataFrame:
    """Weight tables of the entry-shuffled checkpoints, one row per (step, matrix).

    Columns: step, then the weights table's (name, block, role, ..., alpha, ... status).
    A checkpoint that cannot be opened is left out. Runs in-process, one tensor at a time.
    """
    options = WeightsOptions(precision=precision, seed=seed)
    frames = []
    for cp in series:
        try:
            source = open_source(cp.path)
        except (SpectrascopeError, OSError):  # open_source's failures: SourceError, unreadable files
            continue
        table, _ = run_weights(ShuffledSource(source, seed), options)
        table.insert(0, "step", cp.step)
        frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["step", "name"])


def untrained_reference(
    build: Callable[[int], object],
    seeds: Iterable[int] = range(1, 6),
    metrics: Sequence[str] = CONTROL_METRICS,
    precision: str = "exact",
) -> pd.DataFrame:
    """Mean and spread of weight metrics over freshly initialized models.

    Args:
        build: ``build(seed)`` returns a freshly initialized model (nn.Module or state dict).
        seeds: the initialization seeds.
    Returns:
        One row per (name, metric): name, role, block, metric, mean, sd, n (successful fits).
    """
    options = WeightsOptions(precision=precision)
    frames = []
    for seed in seeds:
        table, _ = run_weights(build(seed), options)
        frames.append(table.assign(seed=seed))
    tables = pd.concat(frames, ignore_index=True)
    ok = tables[tables["status"] == "success"]
    rows = []
    for (name, role, block), group in ok.groupby(["name", "role", "block"], sort=True):
        for metric in metrics:
            values = pd.to_numeric(group[metric], errors="coerce").dropna()
            rows.append(
                {
                    "name": name,
                    "role": role,
                    "block": int(block),
                    "metric": metric,
                    "mean": float(values.mean()) if len(values) else np.nan,
                    "sd": float(values.std(ddof=1)) if len(values) > 1 else np.nan,
                    "n": len(values),
                }
            )
    return pd.DataFrame(rows)
