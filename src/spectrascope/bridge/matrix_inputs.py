"""Streaming moments of the inputs of weight matrices (what each matrix reads), per domain.

A forward pre-hook on a Linear (or GPT-2 Conv1D) module sees exactly the vectors the matrix
multiplies: for q/k/v the normalized residual stream, for o the concatenated head outputs,
for down_proj the MLP hidden activation. Matrices that read the same tensor (q, k and v;
gate and up) share one accumulator. Only moments are kept (float64, O(d^2) per input).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..errors import SpectrascopeError
from ..models.handle import device_of
from ..trace.moments import RunningMoments

# Matrices that read the same input as another one (HF names): role -> the role hooked.
SHARED_INPUT = {"k": "q", "v": "q", "mlp_up": "mlp_gate"}


def module_of(hf_model: torch.nn.Module, tensor_name: str) -> torch.nn.Module:
    """The module owning weight ``tensor_name`` (e.g. 'model.layers.0.self_attn.q_proj.weight')."""
    try:
        return hf_model.get_submodule(tensor_name.removesuffix(".weight"))
    except AttributeError:
        raise SpectrascopeError(f"no module for weight {tensor_name!r} in {type(hf_model).__name__}") from None


def accumulate_input_moments(hf_model: torch.nn.Module, tensor_names: list[str],
                             batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, RunningMoments]:
    """Moments of the input vectors of each named weight matrix over ``batches``.

    Args:
        tensor_names: HF weight names whose module inputs to record.
        batches: dicts with input_ids, attention_mask and optionally stats_mask (batch, pos).
    Returns:
        weight name -> RunningMoments over the tokens selected by stats_mask (or attention_mask).
    """
    moments = {name: RunningMoments() for name in tensor_names}
    mask: list[torch.Tensor | None] = [None]
    handles = []

    def make_hook(name: str):
        def hook(_module, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()))
            moments[name].update(x.detach(), mask[0])

        return hook

    try:
        for name in tensor_names:
            handles.append(module_of(hf_model, name).register_forward_pre_hook(make_hook(name), with_kwargs=True))
        device = device_of(hf_model)
        with torch.no_grad():
            for batch in batches:
                batch = dict(batch)
                stats = batch.pop("stats_mask", None)
                mask[0] = (stats if stats is not None else batch.get("attention_mask"))
                mask[0] = mask[0].to(device) if mask[0] is not None else None
                hf_model(**{k: v.to(device) for k, v in batch.items()})
    finally:
        for h in handles:
            h.remove()
    return moments
