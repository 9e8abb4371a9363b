"""The inputs of weight matrices (what each matrix reads).

A forward pre-hook on a Linear (or GPT-2 Conv1D) module sees exactly the vectors the matrix
multiplies: for q/k/v the normalized residual stream, for o the concatenated head outputs,
for down_proj the MLP hidden activation. Matrices that read the same tensor (q, k and v;
gate and up) share one hook (:data:`SHARED_INPUT`).
"""

from __future__ import annotations

import torch

from ..errors import ArchitectureError

# Matrices that read the same input as another one (HF names): role -> the role hooked.
SHARED_INPUT = {"k": "q", "v": "q", "mlp_up": "mlp_gate"}


def module_of(hf_model: torch.nn.Module, tensor_name: str) -> torch.nn.Module:
    """The module owning weight ``tensor_name`` (e.g. 'model.layers.0.self_attn.q_proj.weight')."""
    try:
        return hf_model.get_submodule(tensor_name.removesuffix(".weight"))
    except AttributeError:
        raise ArchitectureError(f"no module for weight {tensor_name!r} in {type(hf_model).__name__}") from None
