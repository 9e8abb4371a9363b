"""Views of a tensor source for tracking: a subset of its tensors, and an entry-shuffled copy.

Both follow the tensor-source protocol (``spectrascope.models.tensor_source``), so the
weights engine runs on them unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np


class SubsetSource:
    """The tensors of ``source`` named in ``names`` (in the source's order); everything else
    passes through. Workers reopen the whole source from its spec and load only these."""

    def __init__(self, source, names: Iterable[str]):
        self.source = source
        keep = set(names)
        self._infos = [info for info in source.tensors() if info.name in keep]
        self.description = source.description

    def tensors(self) -> list:
        return list(self._infos)

    def load(self, name: str) -> np.ndarray:
        return self.source.load(name)

    def config(self) -> dict:
        return self.source.config()

    def spec(self):
        return self.source.spec() if hasattr(self.source, "spec") else None


class ShuffledSource:
    """``source`` with the entries of every 2-D tensor randomly permuted (seeded per tensor
    name): the randomized-weights control. Same entries (so same norms and marginal
    distribution), no correlations. Runs in-process (no spec): one tensor at a time."""

    def __init__(self, source, seed: int = 0):
        self.source = source
        self.seed = int(seed)
        self.description = f"{source.description} (entries shuffled, seed {seed})"

    def tensors(self) -> list:
        return self.source.tensors()

    def load(self, name: str) -> np.ndarray:
        W = np.asarray(self.source.load(name))
        if W.ndim != 2:
            return W
        rng = np.random.default_rng((zlib.crc32(name.encode()) + 1_000_003 * self.seed) % 2**32)
        return rng.permutation(W.ravel()).reshape(W.shape)

    def config(self) -> dict:
        return self.source.config()

    def spec(self):
        return None
