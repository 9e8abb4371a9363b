"""Reader matrices in residual-stream coordinates: the normalization's gain folded in.

A pre-norm block does not apply its q, k, v (or gate, up) matrix to the residual stream x but
to the normalized stream ``g * x / rms(x)`` (RMSNorm; LayerNorm also centers: ``g * (x -
mean(x)) / std(x)``). The directions a writer adds to the stream (the left singular vectors of
o_proj / down_proj) live in x's coordinates, so comparing them with the right singular vectors
of the raw reader W mixes two coordinate systems: a channel with gain 5 is read 5x more than W
says. As TransformerLens's ``fold_ln`` does, the reader is rewritten in x's coordinates:

    RMSNorm:    W_x = W diag(g)                      (out, d)
    LayerNorm:  W_x = W diag(g) (I - 1 1^T / d)      (centering: the direction 1 is never read)

The scalar 1 / rms(x) changes every direction's weight equally and does not change which
directions are read. Gemma-style norms multiply by (1 + g); the gain used is then 1 + g.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..arch import NormKind, weight_role
from ..models.handle import ModelLike, as_model
from .alignment import READERS


@dataclass(frozen=True)
class ReaderNorm:
    """The normalization in front of one reader matrix: its gain (d,) and whether it centers."""

    gain: np.ndarray
    centers: bool


def fold_norm(W: np.ndarray, norm: ReaderNorm) -> np.ndarray:
    """The reader ``W`` (out, d) in residual-stream coordinates (see the module docstring)."""
    W = np.asarray(W, dtype=np.float64) * np.asarray(norm.gain, dtype=np.float64)[None, :]
    if norm.centers:
        W = W - W.mean(axis=1, keepdims=True)  # W (I - 1 1^T / d)
    return W


def reader_norm(model: ModelLike, weight_name: str, role: str) -> ReaderNorm | None:
    """The norm in front of reader ``weight_name`` (role q, k, v, mlp_gate, mlp_up, mlp_in), from
    the family's spec (:attr:`~spectrascope.arch.ArchSpec.readers`), or None when the reader takes
    the raw residual stream (post-norm models), the role is not a reader, or the family is unknown."""
    handle = as_model(model)
    if role not in READERS or not handle.has_spec:
        return None
    spec = handle.spec
    norm = spec.readers.get(role)
    block = weight_role(weight_name, spec).block
    if norm is None or block < 0:
        return None
    base = getattr(handle.hf, "base_model", handle.hf)
    module = base.get_submodule(f"{spec.layers}.{block}.{norm.module}")
    gain = norm.kind.gain(module.weight.detach().double().cpu().numpy())
    return ReaderNorm(gain=gain, centers=norm.kind is NormKind.LAYER)
