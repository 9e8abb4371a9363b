"""The tensor-source protocol: a model as a lazy collection of named tensors.

A source lists its tensors (name in the Hugging Face convention, shape, dtype) without
reading them, and loads one tensor at a time, so peak memory is one tensor whatever the
model size. ``spec`` is a small picklable description from which a worker process can reopen
the same source (None for in-memory sources, which are analyzed in-process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a source: HF-convention ``name``, ``shape`` and storage ``dtype`` (str)."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class SourceSpec:
    """Picklable recipe to reopen a file-backed source in another process."""

    kind: str  # "safetensors" | "gguf"
    paths: tuple[str, ...]
    config: dict = field(default_factory=dict, hash=False, compare=False)


class TensorSource(Protocol):
    """What every model source provides."""

    description: str

    def tensors(self) -> list[TensorInfo]:
        """All tensors, in file order, tied duplicates removed."""
        ...

    def load(self, name: str) -> np.ndarray:
        """One tensor as a float32 numpy array (HF layout: Linear weights are (out, in))."""
        ...

    def config(self) -> dict:
        """The model's HF-style config dict ({} when unknown)."""
        ...

    def spec(self) -> SourceSpec | None:
        """How a worker reopens this source, or None if it only lives in this process."""
        ...
