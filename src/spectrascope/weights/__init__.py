"""The weights pipeline: every tensor of a model source -> a row of spectral metrics.

Data flow, and the module that owns each step::

    options.py      WeightsOptions: what to compute (checked when built)
    plan.py         source -> tasks (a matrix, or one block's heads) + 'skipped' rows
    tasks.py        one task -> its rows (read tensors, analysis.py, spectra/ numerics)
    backends/       where tasks run: local.py (process pool), gpu.py (batched torch),
                    ray_cluster.py (a Ray cluster); they import tasks.py, never the runner
    rows.py         every row built and ordered in one place (success, failed, skipped)
    runner.py       run_weights: output folder, fingerprint, resume, row logs, tables
    summary.py      per-role summary, worst matrices, summary.json
    api.py          analyze_weights, analyze_heads (the flat API)

The numerics (ESD, power-law fit, metrics, ERG, MP, traps, partial spectra, per-head
spectra) live in :mod:`spectrascope.spectra` and know nothing of files or processes.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"WeightsOptions": "spectrascope.weights.options", "run_weights": "spectrascope.weights.runner"}
__all__ = ["WeightsOptions", "run_weights"]


def __getattr__(name: str):
    """Names imported on first use, so that importing ``weights.options`` stays cheap."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'spectrascope.weights' has no attribute {name!r}")
