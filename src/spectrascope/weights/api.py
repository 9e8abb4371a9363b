"""Python API for weight spectra (the ``weights`` verb): :func:`analyze_weights`, :func:`analyze_heads`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import pandas as pd

from .options import DEFAULT_MAX_EVALS, DEFAULT_MAX_N, DEFAULT_MIN_EVALS, Device, Precision, WeightsOptions
from .runner import run_weights

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

    ModelLike: TypeAlias = str | Path | torch.nn.Module | Mapping


def analyze_weights(
    model: ModelLike,
    *,
    precision: Precision | str = Precision.EXACT,
    device: Device | str = Device.CPU,
    mp_fit: bool = False,
    randomize: bool = False,
    seed: int = 0,
    min_evals: int = DEFAULT_MIN_EVALS,
    max_evals: int = DEFAULT_MAX_EVALS,
    max_N: int = DEFAULT_MAX_N,
    workers: int = 1,
    out: str | Path | None = None,
    resume: bool = False,
    allow_pickle: bool = False,
) -> pd.DataFrame:
    """Spectral metrics of every weight matrix: one row per tensor of the model.

    Args:
        model: bundled model name, path (HF dir, .safetensors, .gguf), nn.Module or state dict.
        precision: "exact" (float64; weightwatcher's numbers) or "fast" (float32).
        out: a folder for the tables, ``summary.json`` and the row logs (see
            :mod:`spectrascope.weights.runner`); resume: reuse the rows of an interrupted run
            there with the same model, options and seed.
    Returns:
        DataFrame with columns name, block, role, expert, N, M, Q, alpha, xmin, xmax, D, sigma,
        num_pl_spikes, alpha_weighted, log_norm, log_spectral_norm, log_alpha_norm,
        stable_rank, entropy, matrix_rank, lambda_max, erg_num, erg_lambda_min,
        pl_lambda_min, erg_delta, warning, status, reason (+ MP and trap columns on request).
        Tensors that are not analyzed (integer, 1-D, 3-D ...) have status 'skipped' and the reason.
    """
    options = WeightsOptions(
        precision=precision,
        device=device,
        mp_fit=mp_fit,
        randomize=randomize,
        seed=seed,
        min_evals=min_evals,
        max_evals=max_evals,
        max_N=max_N,
    )
    matrices, _ = run_weights(model, options, out, workers, resume, allow_pickle=allow_pickle)
    return matrices


def analyze_heads(
    model: ModelLike,
    *,
    precision: Precision | str = Precision.EXACT,
    workers: int = 1,
    allow_pickle: bool = False,
) -> pd.DataFrame:
    """Per-head spectra (q, k, v, o slices) and QK / OV circuit spectra, one row per
    (block, head, circuit). See :mod:`spectrascope.spectra.heads` for definitions. The ``ov``
    rows of Llama-family models carry the eigenvalue ``copying`` score
    (:mod:`spectrascope.spectra.copying`); the column is NaN elsewhere."""
    from ..models.open_source import open_source
    from .copying import add_copying_column

    options = WeightsOptions(precision=precision, heads=True, matrices=False)
    source = open_source(model, allow_pickle)
    _, heads = run_weights(source, options, None, workers, False, allow_pickle=allow_pickle)
    return add_copying_column(heads, source)
