"""The clean forward of the domain losses, taken from the activation pass instead of run again.

The bridge ablates blocks and spectral edits on each domain's loss texts
(:func:`~spectrascope.mech.metrics.text_loss`: the first texts of the domain, ``loss_tokens``
in all). Each sweep starts with a clean forward over those texts: their per-text losses (the
baseline) and the residual stream entering the edited layers (each edit resumes there). The
activation stage has already run the same texts through the same model (its texts are the
first ``activation_tokens`` of the domain, a superset), so :class:`CleanLossCapture` rides
along that pass and keeps, for each loss text it sees whole:

- ``blocks.L.hook_resid_pre`` at the edited layers, its real positions only, float32;
- the text's next-token loss from the last block's residual through the model's own readout
  (:func:`~spectrascope.mech.unembed.unembed_parts`), scored by the same
  :class:`~spectrascope.mech.metrics.NextTokenLoss` as the bridge's metric (mean over its
  targets, weight = their number).

:class:`CleanLosses` writes them to one safetensors file in the activation stage's folder
and gives the bridge a :class:`~spectrascope.mech.ablation_sweep.CleanPass` for a metric
only when every row's token ids equal a captured text's (else None: the sweep runs its own
clean forward). The file is trusted as the activation stage's tables are: the study runner
removes a stage's folder before running it and the bridge requires that stage's finished,
fingerprinted tables; the sweep still checks the first row against a forward of its own.

The SAE stage's feature removals read the same file: their loss is over the first of the same
texts (a smaller budget), and the activation stage keeps the block after the SAE's site too.

Sizes on SmolLM2-135M: 4,096 tokens x 576 x 4 bytes = 9.4 MB per domain and kept layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import SpectrascopeError
from ..mech.ablation_sweep import CleanPass
from ..mech.metrics import NextTokenLoss, RowScores
from ..mech.unembed import Unembed
from ..models.handle import as_model
from ..trace.passes import PassState, PreHook
from ..trace.sites import SiteKind, site_name

FILE_NAME = "clean_losses.safetensors"

READOUT_TOKENS = 256
"""Positions read out at a time (SmolLM2: 256 x 49,152 float32 logits = 50 MB, and as much for
the log-softmax): small, so the pass's resident size does not rise (above 2 GiB the heap is
trimmed often, :mod:`spectrascope.heap`, and the passes slow down)."""


@dataclass
class CleanLossCapture:
    """A pass collector keeping the clean residuals and losses of one domain's loss texts.

    Attributes:
        expected: text index (in the domain's text list) -> the loss row's token ids.
        layers: the layers whose ``hook_resid_pre`` is kept.
        last_layer: index of the model's last block (its ``hook_resid_post`` is read out).
        readout: the model's final norm and unembedding.
        resid: text index -> layer -> (len, d_model) float32 (filled by the pass).
        scores: text index -> (mean loss over its targets, number of targets).
    """

    expected: Mapping[int, Sequence[int]]
    layers: Sequence[int]
    last_layer: int
    readout: Unembed
    resid: dict[int, dict[int, torch.Tensor]] = field(default_factory=dict)
    scores: dict[int, tuple[float, float]] = field(default_factory=dict)

    def _rows(self, state: PassState) -> list[tuple[int, int, int]]:
        """(row, text index, length) of the batch's rows that hold a whole expected loss text."""
        batch = state.batch
        assert batch is not None
        found = []
        for row, text in enumerate((batch.text_index + state.text_offset).tolist()):
            ids = self.expected.get(text)
            if ids is None:
                continue
            n = len(ids)
            if int(batch.attention_mask[row].sum()) != n or batch.input_ids.shape[1] < n:
                continue
            if torch.equal(batch.input_ids[row, :n].cpu(), torch.as_tensor(list(ids), dtype=batch.input_ids.dtype)):
                found.append((row, text, n))
        return found

    def site_functions(self, state: PassState) -> Mapping[str, Callable]:
        def keep(activation: torch.Tensor, name: str) -> None:
            layer = layer_of[name]
            for row, text, n in self._rows(state):
                self.resid.setdefault(text, {})[layer] = activation[row, :n].detach().float().cpu().clone()

        def score(activation: torch.Tensor, name: str) -> None:
            rows = self._rows(state)
            if not rows:
                return
            batch = state.batch
            assert batch is not None
            width = max(n for _, _, n in rows)
            per_chunk = max(1, READOUT_TOKENS // width)
            for start in range(0, len(rows), per_chunk):
                part = rows[start : start + per_chunk]
                index = torch.tensor([r for r, _, _ in part], device=activation.device)
                ids = batch.input_ids[index, :width]
                metric = NextTokenLoss(ids, batch.attention_mask[index, :width])
                with torch.no_grad():
                    logits = self.readout(activation[index, :width][:, metric.logit_positions.to(activation.device)])
                found = metric.row_scores(logits).detached()
                for (_, text, _), value, weight in zip(
                    part, found.values.tolist(), found.weights.tolist(), strict=True
                ):
                    self.scores[text] = (value, weight)

        layer_of = {site_name(layer, SiteKind.RESID_PRE): layer for layer in self.layers}
        functions: dict[str, Callable] = {site: keep for site in layer_of}
        functions[site_name(self.last_layer, SiteKind.RESID_POST)] = score
        return functions

    def module_hooks(self, state: PassState) -> Mapping[nn.Module, PreHook]:
        return {}

    def complete(self) -> bool:
        """Whether every expected text was seen whole (its residuals at every layer and its loss)."""
        return all(t in self.scores and set(self.resid.get(t, {})) >= set(self.layers) for t in self.expected)


@dataclass(frozen=True)
class DomainClean:
    """One domain's captured loss texts, in the order of its loss rows.

    Attributes:
        ids: list of (len,) int64 token ids per text.
        values, weights: (texts,) float64 per-text losses and target counts.
        resid: layer -> list of (len, d_model) float32.
    """

    ids: list[torch.Tensor]
    values: torch.Tensor
    weights: torch.Tensor
    resid: dict[int, list[torch.Tensor]]


class CleanLosses:
    """Captured clean passes of several domains: built from captures, saved, loaded, matched."""

    def __init__(self, domains: dict[str, DomainClean]) -> None:
        self.domains = domains

    @classmethod
    def from_captures(cls, captures: Mapping[str, CleanLossCapture]) -> CleanLosses:
        """The complete captures (a domain with a text seen in part is left out)."""
        domains = {}
        for name, capture in captures.items():
            if not capture.expected or not capture.complete():
                continue
            order = list(capture.expected)
            domains[name] = DomainClean(
                ids=[torch.as_tensor(list(capture.expected[t]), dtype=torch.long) for t in order],
                values=torch.tensor([capture.scores[t][0] for t in order], dtype=torch.float64),
                weights=torch.tensor([capture.scores[t][1] for t in order], dtype=torch.float64),
                resid={layer: [capture.resid[t][layer] for t in order] for layer in capture.layers},
            )
        return cls(domains)

    def save(self, path: str | Path) -> None:
        """One safetensors file (written to a temporary name, then renamed)."""
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        for i, (name, d) in enumerate(self.domains.items()):
            key = f"d{i}"
            tensors[f"{key}.lengths"] = torch.tensor([len(t) for t in d.ids], dtype=torch.long)
            tensors[f"{key}.ids"] = torch.cat(d.ids)
            tensors[f"{key}.values"] = d.values
            tensors[f"{key}.weights"] = d.weights
            for layer, parts in d.resid.items():
                tensors[f"{key}.resid.{layer}"] = torch.cat(parts).contiguous()
        names = {f"d{i}": name for i, name in enumerate(self.domains)}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={f"name.{k}": v for k, v in names.items()})
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> CleanLosses | None:
        """The file's domains (None when there is no file or it cannot be read)."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.exists():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        except (SafetensorError, OSError):  # corrupt or unreadable: the sweeps run their own clean forward
            return None
        try:
            return cls(_domains(metadata, tensors))
        except (KeyError, ValueError, RuntimeError):  # a file of another layout
            return None

    def clean_pass(self, domain: str, metric: NextTokenLoss, layers: Sequence[int]) -> CleanPass | None:
        """The sweep's clean pass for ``metric`` (the loss of ``domain``'s texts) when its rows are
        the first of the captured texts, in order (all of them for the bridge's loss; the first
        for a smaller budget of the same texts, e.g. the SAE stage's), and every layer in
        ``layers`` was kept; else None."""
        found = self.domains.get(domain)
        if found is None or metric.attention_mask is None or len(found.ids) < metric.n_rows:
            return None
        if not set(layers) <= set(found.resid):
            return None
        rows, width = metric.input_ids.shape
        lengths = metric.attention_mask.sum(dim=1).cpu()
        for row, ids in enumerate(found.ids[:rows]):
            if int(lengths[row]) != len(ids) or not torch.equal(metric.input_ids[row, : len(ids)].cpu(), ids):
                return None
        resid = {}
        for layer in layers:
            parts = found.resid[layer][:rows]
            padded = torch.zeros(rows, width, parts[0].shape[-1], dtype=parts[0].dtype)
            for row, part in enumerate(parts):
                padded[row, : part.shape[0]] = part
            resid[layer] = padded.to(metric.input_ids.device)
        return CleanPass(RowScores(found.values[:rows].clone(), found.weights[:rows].clone()), resid)


def _domains(metadata: Mapping[str, str], tensors: Mapping[str, torch.Tensor]) -> dict[str, DomainClean]:
    """Domains of a file's metadata (``name.<key>`` -> domain) and tensors (``<key>.<part>``)."""
    domains = {}
    for meta_key, name in metadata.items():
        if not meta_key.startswith("name."):
            continue
        key = meta_key[len("name.") :]
        lengths = tensors[f"{key}.lengths"].tolist()
        prefix = f"{key}.resid."
        domains[name] = DomainClean(
            ids=list(tensors[f"{key}.ids"].split(lengths)),
            values=tensors[f"{key}.values"],
            weights=tensors[f"{key}.weights"],
            resid={int(k[len(prefix) :]): list(v.split(lengths)) for k, v in tensors.items() if k.startswith(prefix)},
        )
    return domains


def loss_capture(
    loaded, texts: Sequence[str], loss_tokens: int, seq_len: int, layers: Sequence[int]
) -> CleanLossCapture | None:
    """A capture of the loss rows :func:`~spectrascope.mech.metrics.text_loss` builds from
    ``texts`` (None for a model without a causal-LM readout or a tokenizer: no domain loss)."""
    from ..mech.metrics import loss_texts
    from ..mech.unembed import unembed_parts

    try:
        as_model(loaded).require_causal_lm("a next-token loss")
        readout = unembed_parts(loaded)
    except SpectrascopeError:
        return None
    if loaded.tokenizer is None:
        return None
    expected = dict(loss_texts(loaded.tokenizer, texts, loss_tokens, seq_len))
    return CleanLossCapture(expected, list(layers), int(loaded.arch.n_layers) - 1, readout)
