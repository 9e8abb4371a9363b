"""Collectors of the activation pass (:func:`~spectrascope.trace.passes.run_pass`): per-channel
statistics for massive activations, a token sample for CKA, token energies, and the channel
statistics of weight-matrix inputs. One forward pass per domain feeds them all, beside
:class:`~spectrascope.trace.passes.SiteMoments` (activation spectra) and the eigenmode-overlap
collector (:class:`~spectrascope.bridge.input_shares.InputShares`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..trace.moments import RunningMoments
from ..trace.passes import PassState, PreHook, token_vectors
from .massive import ChannelStats
from .token_energy import ReferenceGaussian


@dataclass
class SiteChannels:
    """:class:`~spectrascope.activations.massive.ChannelStats` of each of ``sites``."""

    sites: list[str]
    stats: dict[str, ChannelStats] = field(default_factory=dict)

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        def record(activation: torch.Tensor, name: str) -> None:
            b = state.batch
            self.stats.setdefault(name, ChannelStats()).update(activation, b.attention_mask, b.stats_mask, b.input_ids)

        return {site: record for site in self.sites}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {}


@dataclass
class GroupMoments:
    """Float64 moments of the statistic tokens at one site, kept per group of texts (text index
    modulo ``n_groups``): with their sum, the leave-one-group-out moments of a jackknife over texts."""

    site: str
    n_groups: int
    groups: dict[int, RunningMoments] = field(default_factory=dict)

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        def record(activation: torch.Tensor, name: str) -> None:
            vectors = token_vectors(activation)[state.stat]
            group = state.token_text % self.n_groups
            for g in torch.unique(group).tolist():
                self.groups.setdefault(int(g), RunningMoments()).update(vectors[group == g])

        return {self.site: record}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {}


@dataclass
class SiteSample:
    """The first ``max_tokens`` statistic tokens' vectors at each site (float32, CPU): a sample
    of the same tokens at every site, for CKA."""

    sites: list[str]
    max_tokens: int
    parts: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    taken: dict[str, int] = field(default_factory=dict)

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        def record(activation: torch.Tensor, name: str) -> None:
            room = self.max_tokens - self.taken.get(name, 0)
            if room <= 0:
                return
            vectors = token_vectors(activation)[state.stat][:room].float().cpu()
            self.parts.setdefault(name, []).append(vectors)
            self.taken[name] = self.taken.get(name, 0) + vectors.shape[0]

        return {site: record for site in self.sites}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        """site -> (n, d) float32 array (the same n tokens at every site)."""
        return {site: torch.cat(parts).numpy() for site, parts in self.parts.items()}


@dataclass
class SiteEnergies:
    """Token energies (:mod:`~spectrascope.activations.token_energy`) of the statistic tokens at each
    site under its reference Gaussian: every token's energy and its text index."""

    references: Mapping[str, ReferenceGaussian]
    energies: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    texts: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        def record(activation: torch.Tensor, name: str) -> None:
            vectors = token_vectors(activation)[state.stat]
            self.energies.setdefault(name, []).append(self.references[name].energy(vectors))
            self.texts.setdefault(name, []).append(state.token_text.cpu())

        return {site: record for site in self.references}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {}

    def per_token(self, site: str) -> tuple[np.ndarray, np.ndarray]:
        """(energies (n,), text index (n,)) of every statistic token at ``site``."""
        return torch.cat(self.energies[site]).numpy(), torch.cat(self.texts[site]).numpy()


@dataclass
class InputChannels:
    """:class:`~spectrascope.activations.massive.ChannelStats` of the inputs of ``modules`` (key ->
    module; a forward pre-hook sees exactly the vectors the module's matrix multiplies)."""

    modules: Mapping[str, nn.Module]
    stats: dict[str, ChannelStats] = field(default_factory=dict)

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        return {}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        def make(key: str) -> PreHook:
            def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
                x = args[0] if args else next(iter(kwargs.values()))
                b = state.batch
                self.stats.setdefault(key, ChannelStats()).update(x, b.attention_mask, b.stats_mask, b.input_ids)

            return hook

        return {module: make(key) for key, module in self.modules.items()}
