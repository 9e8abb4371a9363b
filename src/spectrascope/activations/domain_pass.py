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

from ..errors import SpectrascopeError
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
    """The same statistic tokens' vectors at each site (float32, CPU), for CKA: of each text in
    ``allowance`` (text index -> n), its first n statistic tokens (:func:`~spectrascope.activations.batching.first_tokens`).

    :meth:`arrays` orders them by text and position whatever order the pass ran the texts in
    (a pass batched by length holds the same sample)."""

    sites: list[str]
    allowance: Mapping[int, int]
    parts: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    keys: list[torch.Tensor] = field(default_factory=list)

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        def record(activation: torch.Tensor, name: str) -> None:
            chosen = self._chosen(state)
            if chosen is None:
                return
            if name == self.sites[0]:
                self._key(state, chosen)
            self.parts.setdefault(name, []).append(
                token_vectors(activation)[chosen.to(activation.device)].float().cpu()
            )

        return {site: record for site in self.sites}

    def _chosen(self, state: PassState) -> torch.Tensor | None:
        """(rows, pos) mask of this batch's sampled tokens, or None when it has none."""
        batch = state.batch
        assert batch is not None
        stat = batch.stats_mask.bool().cpu()
        quota = torch.tensor([self.allowance.get(int(t), 0) for t in batch.text_index.tolist()])
        if not int(quota.sum()):
            return None
        return stat & (torch.cumsum(stat, dim=1) <= quota[:, None])

    def _key(self, state: PassState, chosen: torch.Tensor) -> None:
        """Each sampled token's (text index, position), in the order its vectors were taken."""
        batch = state.batch
        assert batch is not None
        texts = batch.text_index.cpu()[:, None].expand_as(chosen)[chosen]
        positions = torch.arange(chosen.shape[1])[None, :].expand_as(chosen)[chosen]
        self.keys.append(torch.stack([texts, positions], dim=1))

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {}

    def arrays(self) -> dict[str, np.ndarray]:
        """site -> (n, d) float32 array (the same n tokens at every site, by text and position)."""
        keys = torch.cat(self.keys).numpy() if self.keys else np.zeros((0, 2), dtype=np.int64)
        order = np.lexsort((keys[:, 1], keys[:, 0]))  # by text, then position
        out = {site: torch.cat(parts).numpy() for site, parts in self.parts.items()}
        for site, values in out.items():  # one record per site and batch, as the keys (sites[0]'s)
            if len(values) != len(keys):
                raise SpectrascopeError(f"the CKA sample of {site} holds {len(values)} tokens, {len(keys)} keyed")
        return {site: values[order] for site, values in out.items()}


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
