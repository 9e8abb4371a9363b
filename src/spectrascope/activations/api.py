"""Python API for activation spectra (the ``activations`` verb)."""

from __future__ import annotations

import pandas as pd

from ..corpora import DEFAULT_CORPORA
from .run import run_activations


def analyze_activations(
    model,
    corpora: str = DEFAULT_CORPORA,
    sites: str = "resid_post",
    max_tokens: int = 4608,
    calibration_tokens: int = 768,
    seq_len: int = 128,
    seed: int = 0,
    out: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(activations, energy, massive_activations) tables; see :mod:`spectrascope.activations.run` for columns."""
    return run_activations(model, corpora, sites, max_tokens, calibration_tokens, seq_len, seed=seed, out_dir=out)
