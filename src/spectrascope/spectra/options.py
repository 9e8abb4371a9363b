"""Options of a weight analysis (shared by the engine, the CLI and the Python API)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from .esd import Precision

# weightwatcher's filter defaults (its code uses min_evals=8; its docstring says 10).
DEFAULT_MIN_EVALS = 8
DEFAULT_MAX_EVALS = 15000
DEFAULT_MAX_N = 50000
DEFAULT_PARTIAL_MIN_M = 16384
"""``spectrum="auto"`` computes a partial spectrum for matrices with more columns (short
side) than this, and for matrices the max_evals / max_N filter would otherwise skip."""

Spectrum = Literal["auto", "full", "partial"]


@dataclass(frozen=True)
class WeightsOptions:
    """What to compute for each matrix.

    Attributes:
        precision: "exact" (float64, weightwatcher's numbers) or "fast" (float32).
        device: "cpu", "cuda" or "auto" (cuda when available).
        min_evals, max_evals, max_N: matrices with M < min_evals, M > max_evals or
            N > max_N are skipped (status 'skipped', with the reason).
        mp_fit: add the Marchenko-Pastur columns.
        randomize: add the correlation-trap columns (seeded shuffle).
        heads: also compute per-head and QK/OV circuit spectra.
        spectrum: "full" (every eigenvalue), "partial" (the top by block Lanczos, see
            partial.py) or "auto": partial where M > partial_min_m and for matrices beyond
            max_evals / max_N, full otherwise. With "partial" or "auto" the max_evals and
            max_N filters do not skip a matrix: it gets a partial spectrum instead.
        partial_min_m: the M above which "auto" goes partial.
        matrices: compute whole-matrix rows (False for a heads-only run).
        seed: the one seed for all randomness.
    """

    precision: Precision = "exact"
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    min_evals: int = DEFAULT_MIN_EVALS
    max_evals: int = DEFAULT_MAX_EVALS
    max_N: int = DEFAULT_MAX_N
    mp_fit: bool = False
    randomize: bool = False
    heads: bool = False
    matrices: bool = True
    seed: int = 0
    spectrum: Spectrum = "auto"
    partial_min_m: int = DEFAULT_PARTIAL_MIN_M

    @property
    def eps(self) -> float:
        return float(np.finfo(np.float64 if self.precision == "exact" else np.float32).eps)

    def resolved_device(self) -> str:
        """"cuda" or "cpu". "auto" is "cuda" only when an NVIDIA driver is present and torch
        sees a GPU (without a driver, torch is not even imported: start-up stays cheap)."""
        if self.device != "auto":
            return self.device
        return "cuda" if cuda_available() else "cpu"

    def to_dict(self) -> dict:
        return asdict(self)


def cuda_available() -> bool:
    """True when torch can use a CUDA device (checked without importing torch when no
    NVIDIA driver is loaded)."""
    import os
    import sys

    if "torch" not in sys.modules and not os.path.exists("/proc/driver/nvidia/version") and sys.platform == "linux":
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
