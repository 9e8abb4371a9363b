"""Python API for activation spectra (the ``activations`` verb)."""

from __future__ import annotations

import pandas as pd

from .run import run_activations


def analyze_activations(model, corpora: str = "code,python-docs,legal,calendar,arithmetic,geography",
                        sites: str = "resid_post", max_tokens: int = 4096, energy_tokens: int = 1024,
                        seq_len: int = 128, out: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(activations table, energy table); see :mod:`spectrascope.activations.run` for columns."""
    return run_activations(model, corpora, sites, max_tokens, energy_tokens, seq_len, out_dir=out)
