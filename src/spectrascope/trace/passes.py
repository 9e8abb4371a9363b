"""One pass over batches of token ids with hooks at named sites: the runner of every streaming
statistic (activation spectra, energies, eigenmode-overlap inputs, calibration, moments).

:func:`run_pass` runs the model's base (no unembedding) once per :class:`TextBatch` with the
hooks of every :class:`Collector` installed; each collector keeps only what it needs. A
collector sees the current batch through a :class:`PassState` (its statistic mask and which
text each row is), so it can keep per-text sums for bootstrap intervals over texts.
:class:`SiteMoments` is the basic collector: float64 moments of the statistic tokens at sites.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from ..progress import progress_bar
from .moments import RunningMoments
from .tracer import hooks

PreHook = Callable[[nn.Module, tuple, dict], None]
"""A forward pre-hook ``(module, args, kwargs) -> None`` (registered ``with_kwargs=True``)."""


@dataclass(frozen=True)
class TextBatch:
    """One padded batch of texts (right padding).

    Attributes:
        input_ids: (rows, pos) token ids.
        attention_mask: (rows, pos) 1 for real tokens, 0 for padding.
        stats_mask: (rows, pos) 1 for the tokens that enter statistics.
        text_index: (rows,) the index of each row's text in the list the batches came from.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    stats_mask: torch.Tensor
    text_index: torch.Tensor

    def model_inputs(self, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """``{"input_ids", "attention_mask"}`` on ``device``, ready for the model's forward."""
        return {"input_ids": self.input_ids.to(device), "attention_mask": self.attention_mask.to(device)}

    @property
    def n_stat_tokens(self) -> int:
        return int(self.stats_mask.sum())


@dataclass
class PassState:
    """The batch being run, as the hooks see it.

    Attributes:
        batch: the current :class:`TextBatch` (on the model's device).
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

    def site_functions(self, state: PassState) -> Mapping[str, Callable]: ...

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]: ...


def run_pass(
    hf: nn.Module,
    batches: Iterable[TextBatch],
    collectors: list[Collector],
    state: PassState | None = None,
    description: str = "",
    show_progress: bool = False,
    total: int | None = None,
) -> PassState:
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
        with (
            hooks(hf, site_fns),
            torch.no_grad(),
            progress_bar(description, total or 0, show_progress and bool(total)) as advance,
        ):
            for batch in batches:
                state.batch = TextBatch(
                    *(t.to(device) for t in (batch.input_ids, batch.attention_mask, batch.stats_mask, batch.text_index))
                )
                base(**state.batch.model_inputs(device), use_cache=False)
                advance(batch.n_stat_tokens)
    finally:
        for handle in handles:
            handle.remove()
        state.batch = None
    return state


def token_vectors(activation: torch.Tensor) -> torch.Tensor:
    """(rows, pos, d) vectors of a site ((rows, pos, H, d_head) heads concatenated)."""
    return activation.flatten(start_dim=2) if activation.dim() == 4 else activation


@dataclass
class SiteMoments:
    """Float64 moments (count, sum, X^T X) of the statistic tokens at each of ``sites``."""

    sites: list[str]
    moments: dict[str, RunningMoments] = field(default_factory=dict)

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        def record(activation: torch.Tensor, name: str) -> None:
            self.moments.setdefault(name, RunningMoments()).update(token_vectors(activation), state.stat)

        return {site: record for site in self.sites}

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {}
