"""Per-example activations at one token position, layer by layer: the input of probes.

:func:`collect_activations` runs a model over labeled texts in padded batches and keeps,
for every text, the activation of one site kind (``resid_post`` by default) at one token
position in every requested layer: ``{layer: (n_texts, d) float32 array}``.

Positions (``position=``), counted over the *real* tokens of each text (special tokens
the tokenizer adds, such as a BOS, count; padding never does), so right and left padding
give the same answer:

- ``"last"``: the last real token;
- ``"mean"``: the mean over the real tokens, leaving out the first one when the text has
  more than one (position 0 of a causal LM is the attention sink, a huge text-independent
  activation that would dominate the mean);
- an ``int``: that token index; negative counts from the end (``-1`` is ``"last"``);
- any other ``str``: a word; the position is the token that holds the word's last
  character in its first whole-word, case-sensitive occurrence (``"May"`` does not match
  ``"Mayor"`` or ``"may"``); the text must contain it (needs a fast tokenizer);
- a sequence of the above, one per text (e.g. each text's own month name).

For a causal LM (every supported family but BERT and RoBERTa) tokens after the last needed position
cannot change the activation there, so each batch is cut after its largest position, and
the forward pass stops after the last requested layer (no later block, no unembedding).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..activations.batching import pad_rows
from ..errors import SpectrascopeError
from ..models.handle import ModelLike, as_model
from ..trace import hooks
from ..trace.architectures import bind
from ..trace.sites import site_name, vector_site_kind
from ..trace.tracer import SiteFn

Position = str | int
"""One position spec: ``"last"``, ``"mean"``, a token index, or a word (see the module doc)."""

_SPECIAL = ("last", "mean")
_MEAN = -1  # internal marker: average over the real tokens (see module doc)


class _StopForward(Exception):
    """Raised by a hook after the last requested layer to skip the rest of the forward pass."""


def is_causal(model: ModelLike) -> bool:
    """Whether the model attends only to earlier tokens (its family spec's ``causal``: all but BERT)."""
    return bind(model).spec.causal


def check_layers(model: ModelLike, layers: Sequence[int] | int | None) -> list[int]:
    """Sorted unique layer indices (``None`` = all); negative indices count from the end."""
    n_layers = bind(model).n_layers
    if layers is None:
        return list(range(n_layers))
    if isinstance(layers, int | np.integer):
        layers = [int(layers)]
    out = []
    for layer in layers:
        index = int(layer) + n_layers if int(layer) < 0 else int(layer)
        if not 0 <= index < n_layers:
            raise SpectrascopeError(f"layer {layer} does not exist (the model has layers 0..{n_layers - 1})")
        out.append(index)
    if not out:
        raise SpectrascopeError("no layers requested")
    return sorted(set(out))


def collect_activations(
    model: ModelLike,
    texts: Sequence[str],
    site: str = "resid_post",
    position: Position | Sequence[Position] = "last",
    layers: Sequence[int] | int | None = None,
    batch_size: int = 32,
    max_length: int = 256,
) -> dict[int, np.ndarray]:
    """Activations of ``texts`` at one position per text, for each layer.

    Args:
        model: a model with a tokenizer (anything ``as_model`` accepts: what ``load_model``
            returns, a bundled model name or a path).
        texts: the inputs, one example each.
        site: the site kind in every layer: ``resid_post`` (default), ``resid_pre``,
            ``resid_mid``, ``attn_out``, ``mlp_out``, ``mlp_post`` or ``z`` (flattened heads).
        position: see the module doc; one spec for all texts or one per text.
        layers: layer indices (default all; negative counts from the end).
        batch_size: texts per forward pass (texts are sorted by length to limit padding).
        max_length: texts are truncated to this many tokens.

    Returns:
        ``{layer: (len(texts), d) float32 array}``, rows in the order of ``texts``
        (``d`` = d_model, d_mlp or H * d_head depending on ``site``).

    Raises:
        SpectrascopeError: no texts or tokenizer, a bad site or layer, a position outside a
            text or a word a text does not contain.
    """
    model = as_model(model)
    hf = model.hf
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise SpectrascopeError("this model has no tokenizer: cannot collect activations of texts")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise SpectrascopeError("collect_activations needs a non-empty list of strings")
    if batch_size < 1:
        raise SpectrascopeError(f"batch_size must be at least 1 (got {batch_size})")
    kind = vector_site_kind(site)
    layer_list = check_layers(model, layers)
    specs = _per_text(position, len(texts))
    token_ids, token_pos = _tokenize_positions(tokenizer, texts, specs, max_length)

    causal = is_causal(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = model.device
    names = {site_name(layer, kind): layer for layer in layer_list}
    last_site = site_name(layer_list[-1], kind)
    out: dict[int, np.ndarray] = {}
    order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, mask, where = _batch(token_ids, token_pos, rows, pad_id, causal)
        ids, mask, where = ids.to(device), mask.to(device), where.to(device)
        got: dict[int, torch.Tensor] = {}

        def record(activation: torch.Tensor, name: str, got=got, mask=mask, where=where) -> None:
            got[names[name]] = _gather(activation, mask, where)

        def stop(_activation: torch.Tensor, _name: str) -> None:
            raise _StopForward

        plan: dict[str, list[SiteFn]] = {name: [record] for name in names}
        plan[last_site] = [record, stop]
        try:
            with hooks(model, plan), torch.no_grad():
                hf(input_ids=ids, attention_mask=mask)
        except _StopForward:
            pass
        for layer, values in got.items():
            if layer not in out:
                out[layer] = np.empty((len(texts), values.shape[-1]), dtype=np.float32)
            out[layer][rows] = values.float().cpu().numpy()
    return {layer: out[layer] for layer in layer_list}


def probed_tokens(
    model: ModelLike, texts: Sequence[str], position: Position | Sequence[Position] = "last", max_length: int = 256
) -> list[int | None]:
    """The token id at each text's probe position (None for ``"mean"``): the input *type* of
    Hewitt & Liang's control task (:mod:`spectrascope.mech.probes`)."""
    tokenizer = as_model(model).tokenizer
    if tokenizer is None:
        raise SpectrascopeError("this model has no tokenizer: cannot find the probed tokens")
    texts = list(texts)
    token_ids, positions = _tokenize_positions(tokenizer, texts, _per_text(position, len(texts)), max_length)
    return [None if p == _MEAN else int(ids[p]) for ids, p in zip(token_ids, positions, strict=True)]


def _per_text(position: Position | Sequence[Position], n: int) -> list[Position]:
    if isinstance(position, str | int | np.integer):
        return [position] * n
    specs = list(position)
    if len(specs) != n:
        raise SpectrascopeError(f"got {len(specs)} positions for {n} texts: give one position, or one per text")
    return specs


def _tokenize_positions(
    tokenizer: Any, texts: list[str], specs: list[Position], max_length: int
) -> tuple[list[list[int]], list[int]]:
    """Token ids of each text and the index of its position (``_MEAN`` for ``"mean"``)."""
    need_offsets = any(isinstance(s, str) and s not in _SPECIAL for s in specs)
    if need_offsets and not getattr(tokenizer, "is_fast", False):
        raise SpectrascopeError("word positions need a fast tokenizer (with offsets); give token indices instead")
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=need_offsets)
    token_ids = [list(ids) for ids in encoded["input_ids"]]
    positions: list[int] = []
    for i, (text, spec) in enumerate(zip(texts, specs, strict=True)):
        n_tokens = len(token_ids[i])
        if n_tokens == 0:
            raise SpectrascopeError(f"text {i} has no tokens: {text[:60]!r}")
        if isinstance(spec, bool) or not isinstance(spec, str | int | np.integer):
            raise SpectrascopeError(f"position must be 'last', 'mean', an int or a word, got {spec!r}")
        if spec == "last":
            positions.append(n_tokens - 1)
        elif spec == "mean":
            positions.append(_MEAN)
        elif isinstance(spec, str):
            positions.append(_word_position(text, spec, encoded["offset_mapping"][i], i))
        else:
            index = int(spec) + n_tokens if int(spec) < 0 else int(spec)
            if not 0 <= index < n_tokens:
                raise SpectrascopeError(f"position {spec} is outside text {i}, which has {n_tokens} tokens")
            positions.append(index)
    return token_ids, positions


def _word_position(text: str, word: str, offsets: Sequence[tuple[int, int]], i: int) -> int:
    """Index of the token holding the last character of the first whole-word ``word`` in ``text``."""
    if not word.strip():
        raise SpectrascopeError("a position word must not be empty")
    match = re.search(rf"(?<!\w){re.escape(word.strip())}(?!\w)", text)
    if match is None:
        raise SpectrascopeError(f"text {i} does not contain the word {word.strip()!r}: {text[:80]!r}")
    last_char = match.end() - 1
    for index, (begin, end) in enumerate(offsets):
        if begin <= last_char < end:
            return index
    raise SpectrascopeError(f"text {i}: the word {word.strip()!r} lies beyond the truncation length")


def _batch(
    token_ids: list[list[int]], token_pos: list[int], rows: list[int], pad_id: int, causal: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (ids, mask) of ``rows`` and the position per row; causal batches end at their last needed token."""
    lengths = [len(token_ids[r]) for r in rows]
    if causal:
        lengths = [
            length if token_pos[r] == _MEAN else token_pos[r] + 1 for r, length in zip(rows, lengths, strict=True)
        ]
    ids, mask = pad_rows([token_ids[r][:length] for r, length in zip(rows, lengths, strict=True)], pad_id)
    where = torch.tensor([token_pos[r] for r in rows], dtype=torch.long)
    return ids, mask, where


def _gather(activation: torch.Tensor, mask: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """(batch, d) rows of a (batch, pos, ...) activation at ``where`` (``_MEAN``: mean over real tokens but the first)."""
    values = activation.detach().flatten(2).float()  # (batch, pos, d); z: heads flattened
    rows = torch.arange(values.shape[0], device=values.device)
    picked = values[rows, where.clamp(min=0)]
    is_mean = where == _MEAN
    if bool(is_mean.any()):
        weights = mask.to(values.dtype).clone()
        weights[:, 0] = torch.where(weights.sum(1) > 1, torch.zeros_like(weights[:, 0]), weights[:, 0])
        means = (values * weights[..., None]).sum(1) / weights.sum(1, keepdim=True)
        picked = torch.where(is_mean[:, None], means, picked)
    return picked
