"""The SAE architectures by name. Adding one: a file with a
:class:`~spectrascope.sae.base.SparseAutoencoder` subclass, and one line in :data:`ARCHITECTURES`."""

from __future__ import annotations

from typing import Any

import torch

from .base import SaeError, SparseAutoencoder, check_k, check_sizes
from .batch_topk import BatchTopKSAE
from .jumprelu import JumpReluSAE
from .relu import ReluSAE
from .topk import TopKSAE

ARCHITECTURES: dict[str, type[SparseAutoencoder]] = {
    ReluSAE.architecture: ReluSAE,
    TopKSAE.architecture: TopKSAE,
    BatchTopKSAE.architecture: BatchTopKSAE,
    JumpReluSAE.architecture: JumpReluSAE,
}
"""Registry name -> class."""

ALIASES = {"standard": "relu", "batchtopk": "batch_topk", "batch-topk": "batch_topk", "jump_relu": "jumprelu"}


def architecture_class(name: str) -> type[SparseAutoencoder]:
    """The class of an architecture name (aliases: standard, batchtopk ...); SaeError if unknown."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in ARCHITECTURES:
        raise SaeError(f"unknown SAE architecture {name!r}; choose from {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[key]


def build_sae(
    arch: str, d_in: int, d_sae: int, k: float | None = None, seed: int = 0, **settings: Any
) -> SparseAutoencoder:
    """A freshly initialized SAE (seeded) of architecture ``arch``.

    ``k`` means active features per token for topk (exact) and batch_topk (average), and the
    target L0 for relu and jumprelu (their sparsity coefficient follows it unless given).
    ``settings`` are the architecture's own keyword arguments (``l1_coefficient`` ...).
    """
    cls = architecture_class(arch)
    check_sizes(d_in, d_sae)
    if cls in (TopKSAE, BatchTopKSAE) and k is None:
        raise SaeError(f"{cls.architecture} needs k (active features per token)")
    generator = torch.Generator().manual_seed(int(seed))
    try:
        return cls(d_in, d_sae, k=k, generator=generator, **settings)
    except TypeError as err:
        raise SaeError(f"{cls.architecture}: {err}") from None


def check_settings(arch: str, d_sae: int | None, k: float | None, d_in: int = 1) -> None:
    """Fail early (SaeError) on settings :func:`build_sae` would refuse, before any data is collected."""
    cls = architecture_class(arch)
    if d_sae is not None:
        check_sizes(d_in, d_sae)
    if cls in (TopKSAE, BatchTopKSAE) and k is None:
        raise SaeError(f"{cls.architecture} needs k (active features per token)")
    if k is not None:
        value = check_k(k, d_sae if d_sae is not None else float("inf"))
        if cls is TopKSAE and value != int(value):
            raise SaeError(f"TopK needs a whole number of active features (got k={k}); batch_topk takes fractions")
