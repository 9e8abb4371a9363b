"""Massive activations and outlier channels: found, reported, and left out of the robust view.

A few channels of an LLM's hidden states are not like the others (Sun et al. 2024, "Massive
activations in large language models"; Dettmers et al. 2022, "LLM.int8()"). They dominate
means, covariances, effective ranks and CKA: on SmolLM2-135M three residual channels (247,
507, 308) carry ~25x a typical channel's RMS from layer 5 on, and the first position (the
attention sink) reaches ~11,000x in channel 507. Each site (a residual-stream layer, or the
input of a weight matrix) is described per channel c over its *statistic tokens* (every real
token but each text's first, the sink) by

    rms_c   = sqrt(mean_t x_tc^2)             the channel's typical size
    scale   = median_c rms_c                  a typical channel
    max_c   = max_t |x_tc|                    its largest value

and a channel is

- **massive** when ``max_c >= MASSIVE_RATIO x scale`` (100x): a few tokens carry values
  hundreds of times a typical channel (Sun et al.'s criterion is about 1000x the median
  *activation*; relative to the median channel RMS, 100x is the same order);
- an **outlier** when ``rms_c >= OUTLIER_RATIO x scale`` (10x, i.e. >= 100x a typical variance):
  large at most tokens;
- a **sink** channel when only the first position reaches ``MASSIVE_RATIO x scale`` (reported, not
  excluded: the statistics already leave the first position out).

For i.i.d. Gaussian channels of equal variance and 4,608 tokens, max/scale is ~4.4 and
rms/scale ~1: both thresholds are far from noise. A token *fires* in a channel when its
value reaches ``FIRE_RATIO x scale`` (20x).

**The robust view excludes massive and outlier channels** (rather than standardizing every
channel): massive activations act as near-constant biases whose variance says nothing about
the input (Sun et al.), and excluding a handful of coordinates keeps the geometry of the
other ~99% of channels as the weights see it, while standardizing would give every
low-variance noise channel the weight of a signal channel and change the geometry the
weight matrices' singular vectors live in. Tables name the variant in a ``variant`` column
(``raw`` / ``robust``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

MASSIVE_RATIO = 100.0
OUTLIER_RATIO = 10.0
FIRE_RATIO = 20.0
TOP_PER_TOKEN = 4
"""Largest channels remembered per token (enough to count the fires of a handful of channels)."""

MASSIVE_COLUMNS = [
    "site",
    "layer",
    "channel",
    "kind",
    "max_ratio",
    "rms_ratio",
    "first_position_ratio",
    "n_fires",
    "fire_share",
    "top_tokens",
    "excluded",
]
"""Columns of the massive-activations table (one row per flagged channel of a site):

- ``site``, ``layer``: the residual site (``resid_post``) or matrix input (``q_in``, ``o_in``,
  ``gate_in``, ``down_in`` ...) and its layer; ``channel``: the coordinate;
- ``kind``: ``massive``, ``outlier``, ``massive+outlier`` or ``sink`` (see the module docstring);
- ``max_ratio``, ``rms_ratio``: max_c / scale and rms_c / scale over the statistic tokens;
- ``first_position_ratio``: the largest |x| at a text's first position / scale;
- ``n_fires``, ``fire_share``: statistic tokens where |x| >= FIRE_RATIO x scale, and their share;
- ``top_tokens``: the tokens it fires on most often (``'.' x12, '\\n' x4``);
- ``excluded``: whether the robust view leaves the channel out (massive or outlier).
"""


@dataclass
class ChannelStats:
    """Streaming per-channel statistics of one site (see the module docstring).

    ``update`` takes (rows, pos, d) activations with the batch's masks and token ids; memory is
    O(d) plus TOP_PER_TOKEN entries per statistic token.
    """

    sum_sq: torch.Tensor | None = None
    max_abs: torch.Tensor | None = None
    first_max: torch.Tensor | None = None
    count: int = 0
    top_values: list[torch.Tensor] = field(default_factory=list)
    top_channels: list[torch.Tensor] = field(default_factory=list)
    top_token_ids: list[torch.Tensor] = field(default_factory=list)

    def update(
        self, x: torch.Tensor, attention_mask: torch.Tensor, stats_mask: torch.Tensor, input_ids: torch.Tensor
    ) -> None:
        x = x.detach().flatten(2) if x.dim() == 4 else x.detach()
        d = x.shape[-1]
        if self.sum_sq is None:
            self.sum_sq = torch.zeros(d, dtype=torch.float64)
            self.max_abs = torch.zeros(d)
            self.first_max = torch.zeros(d)
        stat = stats_mask.to(x.device).bool()
        tokens = x[stat].float().cpu()
        if tokens.numel():
            self.sum_sq += tokens.double().square().sum(0)
            self.max_abs = torch.maximum(self.max_abs, tokens.abs().max(0).values)
            self.count += tokens.shape[0]
            top = tokens.abs().topk(min(TOP_PER_TOKEN, d), dim=1)
            self.top_values.append(top.values)
            self.top_channels.append(top.indices.to(torch.int32))
            self.top_token_ids.append(input_ids.to(x.device)[stat].cpu().to(torch.int64))
        real_first = attention_mask[:, 0].to(x.device).bool()
        if bool(real_first.any()):
            self.first_max = torch.maximum(self.first_max, x[real_first, 0].abs().float().cpu().max(0).values)

    def rms(self) -> np.ndarray:
        return np.sqrt(self.sum_sq.numpy() / max(1, self.count))

    def scale(self) -> float:
        return float(np.median(self.rms()))

    def excluded(self) -> np.ndarray:
        """Sorted channels the robust view leaves out (massive or outlier)."""
        scale = self.scale()
        if self.count == 0 or scale <= 0:
            return np.zeros(0, dtype=np.int64)
        flag = (self.max_abs.numpy() >= MASSIVE_RATIO * scale) | (self.rms() >= OUTLIER_RATIO * scale)
        return np.flatnonzero(flag)

    def rows(self, site: str, layer: int, decode=None) -> list[dict]:
        """Rows of :data:`MASSIVE_COLUMNS` for every flagged channel (``decode(token_id) -> str``)."""
        scale = self.scale()
        if self.count == 0 or scale <= 0:
            return []
        rms, max_abs, first = self.rms(), self.max_abs.numpy(), self.first_max.numpy()
        massive = max_abs >= MASSIVE_RATIO * scale
        outlier = rms >= OUTLIER_RATIO * scale
        sink = (first >= MASSIVE_RATIO * scale) & ~massive & ~outlier
        flagged = np.flatnonzero(massive | outlier | sink)
        fires = self._fires(flagged, FIRE_RATIO * scale)
        out = []
        for c in flagged:
            kind = "+".join(k for k, f in (("massive", massive[c]), ("outlier", outlier[c])) if f) or "sink"
            counts = fires.get(int(c), Counter())
            top = ", ".join(f"{_show(decode, t)} x{n}" for t, n in counts.most_common(3))
            out.append(
                {
                    "site": site,
                    "layer": layer,
                    "channel": int(c),
                    "kind": kind,
                    "max_ratio": float(max_abs[c] / scale),
                    "rms_ratio": float(rms[c] / scale),
                    "first_position_ratio": float(first[c] / scale),
                    "n_fires": int(sum(counts.values())),
                    "fire_share": float(sum(counts.values()) / self.count),
                    "top_tokens": top,
                    "excluded": bool(massive[c] or outlier[c]),
                }
            )
        return out

    def _fires(self, channels: np.ndarray, threshold: float) -> dict[int, Counter]:
        """channel -> Counter of token ids at which it fires (from the per-token top channels)."""
        if not self.top_values or channels.size == 0:
            return {}
        values = torch.cat(self.top_values)
        chans = torch.cat(self.top_channels)
        ids = torch.cat(self.top_token_ids)
        out: dict[int, Counter] = {}
        wanted = {int(c) for c in channels}
        hit = values >= threshold
        for row, col in zip(*torch.nonzero(hit, as_tuple=True), strict=True):
            c = int(chans[row, col])
            if c in wanted:
                out.setdefault(c, Counter())[int(ids[row])] += 1
        return out


def _show(decode, token_id: int) -> str:
    text = decode(token_id) if decode is not None else str(token_id)
    return repr(text)


def massive_table(rows: list[dict]) -> pd.DataFrame:
    """The massive-activations table from :meth:`ChannelStats.rows` of every site."""
    return pd.DataFrame(rows, columns=MASSIVE_COLUMNS)


def keep_channels(d: int, excluded: np.ndarray) -> np.ndarray:
    """The channels 0..d-1 that the robust view keeps."""
    keep = np.ones(d, dtype=bool)
    keep[np.asarray(excluded, dtype=np.int64)] = False
    return np.flatnonzero(keep)
