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

import re
from dataclasses import dataclass

import numpy as np
import torch

from .alignment import READERS

_LAYER = re.compile(r"^(?P<prefix>.*\.(?:layers|h))\.(?P<layer>\d+)\.")

# family -> reader role -> (norm module below the block, LayerNorm-style centering)
_READER_NORMS: dict[str, dict[str, tuple[str, bool]]] = {
    "llama": {role: ("input_layernorm", False) for role in ("q", "k", "v")}
    | {role: ("post_attention_layernorm", False) for role in ("mlp_gate", "mlp_up")},
    "gpt2": {"mlp_in": ("ln_2", True)},
}
_FAMILY = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "qwen3": "llama", "gpt2": "gpt2"}


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


def reader_norm(hf_model: torch.nn.Module, weight_name: str, role: str) -> ReaderNorm | None:
    """The norm in front of reader ``weight_name`` (role q, k, v, mlp_gate, mlp_up, mlp_in), or
    None when the architecture has no pre-norm for it here (post-norm models, unknown families)."""
    if role not in READERS:
        return None
    family = _FAMILY.get(str(getattr(hf_model.config, "model_type", "")))
    where = _READER_NORMS.get(family or "", {}).get(role)
    match = _LAYER.match(weight_name)
    if where is None or match is None:
        return None
    module = hf_model.get_submodule(f"{match['prefix']}.{match['layer']}.{where[0]}")
    gain = module.weight.detach().double().cpu().numpy()
    return ReaderNorm(gain=gain, centers=where[1])
