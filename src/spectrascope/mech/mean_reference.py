"""The mean-ablation reference of activation components, accumulated by a pass that runs anyway.

:func:`~spectrascope.mech.ablation.reference_values` runs its own forwards over a reference
batch. The study's reference is its calibration texts, which the activation stage already runs
through the model (:func:`~spectrascope.activations.run.calibrate`); :class:`MeanReference`
rides along that pass and gives the same :class:`~spectrascope.mech.ablation.PositionMeans`:
per component, the mean of its activation over the rows' first positions (the attention sink)
and over the pass's statistic tokens (every other real token the pass measures), float64 sums.
The means are written to a small safetensors file (two vectors of d per component) that the
bridge stage reads back when the activation stage finished with its fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import InputError
from ..trace.passes import PassState, PreHook
from .ablation import PositionMeans
from .components import ActivationComponent

FILE_NAME = "mean_reference.safetensors"
"""Where the activation stage writes the calibration texts' means (in its folder)."""


@dataclass
class MeanReference:
    """Collector of float64 sums of each component's activation at the first positions and at
    the statistic tokens of a pass (see the module docstring).

    Attributes:
        components: heads or blocks (their :attr:`~ActivationComponent.site` is hooked).
        first, rest: component -> running sums, shape of the component's part of one token.
        n_first, n_rest: component -> how many vectors each sum holds.
    """

    components: Sequence[ActivationComponent]
    first: dict[ActivationComponent, torch.Tensor] = field(default_factory=dict)
    rest: dict[ActivationComponent, torch.Tensor] = field(default_factory=dict)
    n_first: dict[ActivationComponent, int] = field(default_factory=dict)
    n_rest: dict[ActivationComponent, int] = field(default_factory=dict)

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        by_site: dict[str, list[ActivationComponent]] = {}
        for component in self.components:
            by_site.setdefault(component.site, []).append(component)

        def record(activation: torch.Tensor, name: str) -> None:
            stat = state.stat.to(activation.device)
            for component in by_site[name]:
                part = component.part(activation.detach())  # (rows, pos, ...)
                first, rest = part[:, 0].double().sum(dim=0), part[stat].double().sum(dim=0)
                if component in self.first:
                    self.first[component] += first
                    self.rest[component] += rest
                else:
                    self.first[component], self.rest[component] = first, rest
                    self.n_first[component] = self.n_rest[component] = 0
                self.n_first[component] += int(part.shape[0])
                self.n_rest[component] += int(stat.sum())

        return {site: record for site in by_site}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {}

    def values(self, dtype: torch.dtype) -> dict[ActivationComponent, PositionMeans]:
        """Each component's :class:`PositionMeans` in ``dtype`` (the model's)."""
        missing = [c.name for c in self.components if not self.n_rest.get(c)]
        if missing:
            raise InputError(f"the pass gave no statistic token at {', '.join(missing)}")
        return {
            c: PositionMeans((self.first[c] / self.n_first[c]).to(dtype), (self.rest[c] / self.n_rest[c]).to(dtype))
            for c in self.components
        }


def save_means(path: Path, values: Mapping[ActivationComponent, PositionMeans]) -> None:
    """Write the means (``<name>/first`` and ``<name>/rest`` per component) atomically."""
    tensors = {}
    for component, means in values.items():
        tensors[f"{component.name}/first"] = means.first.detach().cpu().contiguous()
        tensors[f"{component.name}/rest"] = means.rest.detach().cpu().contiguous()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)


def load_means(
    path: Path, components: Sequence[ActivationComponent], device: torch.device | str = "cpu"
) -> dict[ActivationComponent, PositionMeans] | None:
    """The means of ``components`` from :func:`save_means`'s file; None when the file is missing,
    unreadable or lacks one of them."""
    try:
        tensors = load_file(str(path), device=str(device))
    except (OSError, SafetensorError):
        return None
    out = {}
    for component in components:
        first, rest = tensors.get(f"{component.name}/first"), tensors.get(f"{component.name}/rest")
        if first is None or rest is None:
            return None
        out[component] = PositionMeans(first, rest)
    return out
