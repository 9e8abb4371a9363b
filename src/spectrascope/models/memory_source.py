"""In-memory sources: a ``torch.nn.Module`` or a state dict, from the Python API."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .tensor_source import SourceSpec, TensorInfo


class StateDictSource:
    """Tensors of a state dict or module. Shared (tied) parameters are listed once."""

    def __init__(self, tensors: Mapping[str, torch.Tensor] | torch.nn.Module, config: dict | None = None):
        if isinstance(tensors, torch.nn.Module):
            module = tensors
            hf_config = getattr(module, "config", None)
            if config is None and hf_config is not None and hasattr(hf_config, "to_dict"):
                config = hf_config.to_dict()
            tensors = dict(module.named_parameters())  # named_parameters skips tied duplicates
            self.description = f"module: {type(module).__name__}"
        else:
            tensors = _dedupe(dict(tensors))
            self.description = "state dict"
        self._tensors = tensors
        self._config = config or {}

    def tensors(self) -> list[TensorInfo]:
        return [TensorInfo(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in self._tensors.items()]

    def load(self, name: str) -> np.ndarray:
        return self._tensors[name].detach().to("cpu", torch.float32).numpy()

    def config(self) -> dict:
        return dict(self._config)

    def spec(self) -> SourceSpec | None:
        return None


def _dedupe(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop entries that are the same tensor as an earlier one (tied weights): same data
    pointer (storage start + offset), shape and strides. Distinct views of one buffer stay."""
    seen: set[tuple[int, tuple, tuple]] = set()
    out = {}
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            continue
        key = (v.data_ptr(), tuple(v.shape), tuple(v.stride())) if v.numel() else (id(v), (), ())
        if key in seen:
            continue
        seen.add(key)
        out[k] = v
    return out
