"""One forward pass over a domain's tokens that feeds every statistic reading the same activations.

Activation spectra, token energies, the inputs of the eigenmode overlap, the CKA sample and
the massive-activation statistics all read the hidden states of the same tokens. Rather than
one pass each, :func:`run_pass` runs the model once per batch with the hooks of every
:class:`Collector` installed, and each collector keeps only what it needs (moments, per-text
sums, a bounded sample). The pass runs the model's base (no unembedding: no statistic here
reads logits).

A collector sees the current batch through a :class:`PassState` (its statistic mask and
which text each row is), so it can keep per-text sums for bootstrap intervals over texts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ..progress import progress_bar
from ..trace import hooks
from ..trace.moments import RunningMoments
from .batching import TextBatch
from .massive import ChannelStats
from .token_energy import ReferenceGaussian

PreHook = Callable[[nn.Module, tuple, dict], None]


@dataclass
class PassState:
    """The batch being run, as the hooks see it.

    Attributes:
        batch: the current :class:`~spectrascope.activations.batching.TextBatch` (on the model's device).
        text_offset: added to ``batch.text_index`` to number texts across several passes.
    """

    batch: TextBatch | None = None
    text_offset: int = 0

    @property
    def stat(self) -> torch.Tensor:
        """(rows, pos) bool: the statistic tokens."""
        return self.batch.stats_mask.bool()

    @property
    def token_text(self) -> torch.Tensor:
        """(n_stat,) the text index of each statistic token, in ``x[stat]`` order."""
        rows = self.batch.text_index + self.text_offset
        return rows[:, None].expand_as(self.batch.stats_mask)[self.stat]


class Collector(Protocol):
    """Something a pass feeds: tracer site functions and module pre-hooks (both may be empty)."""

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        ...

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        ...


def run_pass(hf: nn.Module, batches: Iterable[TextBatch], collectors: list[Collector], state: PassState | None = None,
             description: str = "", show_progress: bool = False, total: int | None = None) -> PassState:
    """Run the model's base over ``batches`` once, feeding every collector; returns the state."""
    state = state or PassState()
    device = next(hf.parameters()).device
    site_fns: dict[str, list[Callable]] = {}
    for collector in collectors:
        for site, fn in collector.site_functions(state).items():
            site_fns.setdefault(site, []).append(fn)
    handles = []
    base = getattr(hf, "base_model", hf)
    try:
        for collector in collectors:
            for module, hook in collector.module_hooks(state).items():
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        with hooks(hf, site_fns), torch.no_grad(), progress_bar(description, total or 0, show_progress and bool(total)) as advance:
            for batch in batches:
                state.batch = TextBatch(*(t.to(device) for t in (batch.input_ids, batch.attention_mask,
                                                                  batch.stats_mask, batch.text_index)))
                base(**state.batch.model_inputs(device), use_cache=False)
                advance(batch.n_stat_tokens)
    finally:
        for handle in handles:
            handle.remove()
        state.batch = None
    return state


def _token_vectors(activation: torch.Tensor) -> torch.Tensor:
    """(rows, pos, d) vectors of a site ((rows, pos, H, d_head) heads concatenated)."""
    return activation.flatten(start_dim=2) if activation.dim() == 4 else activation


@dataclass
class SiteMoments:
    """Float64 moments (count, sum, X^T X) of the statistic tokens at each of ``sites``."""

    sites: list[str]
    moments: dict[str, RunningMoments] = field(default_factory=dict)

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        def record(activation: torch.Tensor, name: str) -> None:
            self.moments.setdefault(name, RunningMoments()).update(_token_vectors(activation), state.stat)

        return {site: record for site in self.sites}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {}


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
            vectors = _token_vectors(activation)[state.stat][:room].float().cpu()
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
            vectors = _token_vectors(activation)[state.stat]
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
