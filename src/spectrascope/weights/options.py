"""Options of a weight analysis (shared by the runner, the backends, the CLI and the Python API).

Every choice is an Enum whose values are the strings the CLI and the API accept; every
option is checked when :class:`WeightsOptions` is built, so a bad value fails before any work.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from ..errors import OptionError, at_least, choice

# weightwatcher's filter defaults (its code uses min_evals=8; its docstring says 10).
DEFAULT_MIN_EVALS = 8
DEFAULT_MAX_EVALS = 15000
DEFAULT_MAX_N = 50000
DEFAULT_PARTIAL_MIN_M = 16384
"""``spectrum="auto"`` computes a partial spectrum for matrices with more columns (short
side) than this, and for matrices the max_evals / max_N filter would otherwise skip."""


class Precision(StrEnum):
    """Floating-point type of the spectra."""

    EXACT = "exact"
    """float64: weightwatcher's numbers."""
    FAST = "fast"
    """float32: the tail is the same, the smallest eigenvalues lose accuracy."""


class Device(StrEnum):
    """Where full spectra are computed."""

    CPU = "cpu"
    CUDA = "cuda"
    """On the GPU, batched across matrices of one shape (backends/gpu.py)."""
    AUTO = "auto"
    """CUDA when a GPU is present, else the CPU."""


class Spectrum(StrEnum):
    """Which eigenvalues of each matrix are computed."""

    FULL = "full"
    """Every eigenvalue."""
    PARTIAL = "partial"
    """The top eigenvalues by block Lanczos (spectra/partial.py)."""
    AUTO = "auto"
    """Partial above ``partial_min_m`` columns and beyond max_evals / max_N, full otherwise."""


class Backend(StrEnum):
    """Where the tasks of a run execute (see :mod:`spectrascope.weights.backends`)."""

    LOCAL = "local"
    """A pool of worker processes on this machine (or, with device cuda, batches on its GPU)."""
    RAY = "ray"
    """Ray tasks on a cluster (``pip install 'spectrascope[ray]'``)."""


@dataclass(frozen=True)
class WeightsOptions:
    """What to compute for each matrix.

    Attributes:
        precision: :class:`Precision` ("exact" or "fast").
        device: :class:`Device` ("cpu", "cuda" or "auto").
        min_evals, max_evals, max_N: matrices with M < min_evals, M > max_evals or
            N > max_N are skipped (status 'skipped', with the reason).
        mp_fit: add the Marchenko-Pastur columns.
        randomize: add the correlation-trap columns (seeded shuffle).
        heads: also compute per-head and QK/OV circuit spectra.
        spectrum: :class:`Spectrum`: "full" (every eigenvalue), "partial" (the top by block
            Lanczos, see spectra/partial.py) or "auto": partial where M > partial_min_m and for
            matrices beyond max_evals / max_N, full otherwise. With "partial" or "auto" the
            max_evals and max_N filters do not skip a matrix: it gets a partial spectrum instead.
        partial_min_m: the M above which "auto" goes partial.
        matrices: compute whole-matrix rows (False for a heads-only run).
        seed: the one seed for all randomness (>= 0).
    Raises:
        OptionError: a value out of range or not one of its choices.
    """

    precision: Precision = Precision.EXACT
    device: Device = Device.CPU
    min_evals: int = DEFAULT_MIN_EVALS
    max_evals: int = DEFAULT_MAX_EVALS
    max_N: int = DEFAULT_MAX_N
    mp_fit: bool = False
    randomize: bool = False
    heads: bool = False
    matrices: bool = True
    seed: int = 0
    spectrum: Spectrum = Spectrum.AUTO
    partial_min_m: int = DEFAULT_PARTIAL_MIN_M

    if TYPE_CHECKING:  # the constructor also takes the choices as strings (__post_init__ converts them)

        def __init__(
            self,
            precision: Precision | str = ...,
            device: Device | str = ...,
            min_evals: int = ...,
            max_evals: int = ...,
            max_N: int = ...,
            mp_fit: bool = ...,
            randomize: bool = ...,
            heads: bool = ...,
            matrices: bool = ...,
            seed: int = ...,
            spectrum: Spectrum | str = ...,
            partial_min_m: int = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        for name, enum in (("precision", Precision), ("device", Device), ("spectrum", Spectrum)):
            object.__setattr__(self, name, choice(enum, getattr(self, name), name))
        for name in ("min_evals", "max_evals", "max_N", "partial_min_m"):
            at_least(getattr(self, name), 1, name)
        at_least(self.seed, 0, "seed")
        if self.max_evals < self.min_evals:
            raise OptionError(
                f"max_evals ({self.max_evals}) is below min_evals ({self.min_evals}): every matrix would be skipped",
                option="max_evals",
            )

    @property
    def eps(self) -> float:
        return float(np.finfo(np.float64 if self.precision is Precision.EXACT else np.float32).eps)

    def resolved_device(self) -> Device:
        """CUDA or CPU. AUTO is CUDA only when an NVIDIA driver is present and torch sees a GPU
        (without a driver, torch is not even imported: start-up stays cheap)."""
        if self.device is not Device.AUTO:
            return self.device
        return Device.CUDA if cuda_available() else Device.CPU

    def to_dict(self) -> dict:
        """JSON-ready: every option by name, choices as their strings."""
        return {k: str(v) if isinstance(v, StrEnum) else v for k, v in asdict(self).items()}

    def result_options(self) -> dict:
        """The options that change the numbers of the tables (not where they are computed)."""
        return {k: v for k, v in self.to_dict().items() if k != "device"}


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
