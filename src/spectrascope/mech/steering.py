"""Activation steering: difference-of-means vectors added to the residual stream.

- :func:`steering_vector`: ``mean(act | positive prompts) - mean(act | negative prompts)``
  at one layer's site (``resid_post`` by default), each prompt's activation taken at its
  last token or averaged over its tokens (see
  :func:`~spectrascope.mech.activation_cache.collect_activations`);
- :func:`steer`: a ``with`` block in which every forward pass adds ``scale * vector`` to
  that site at every position, at the last position, or at given per-row positions;
  the hook is removed on exit, whatever happens, so the model is left as it was;
- :func:`steering_effect`: for a list of prompts and scales, the next-token distribution
  at each prompt's last token compared with the unsteered one.

Scale 1 adds the whole difference of means: on average it moves a negative prompt's
activation to where positive prompts sit. The vector is in activation units (not
normalized).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..activations.batching import pad_rows
from ..errors import SpectrascopeError
from ..models.handle import ModelLike, as_model
from ..trace import hooks
from ..trace.sites import site_name, vector_site_kind
from .activation_cache import check_layers, collect_activations

#: Columns of :func:`steering_effect`.
EFFECT_COLUMNS: dict[str, str] = {
    "scale": "steering scale (0 = unsteered)",
    "prompt": "index of the prompt",
    "text": "the prompt",
    "kl_from_unsteered": "KL(p_unsteered || p_steered) of the next-token distribution, nats",
    "target_logprob": "log of the total probability of the target tokens (NaN without targets)",
    "target_logprob_change": "target_logprob minus its unsteered value",
    "top_token": "the most likely next token",
    "top_prob": "its probability",
}


def steering_vector(
    model: ModelLike,
    positive: Sequence[str],
    negative: Sequence[str],
    layer: int,
    site: str = "resid_post",
    position: str | int = "mean",
) -> torch.Tensor:
    """(d,) float32 difference of means of the activations of ``positive`` minus ``negative`` prompts.

    ``position`` is ``"mean"`` (each prompt's tokens averaged, the first left out),
    ``"last"`` or a token index, as in ``collect_activations``.
    """
    positive, negative = list(positive), list(negative)
    if not positive or not negative:
        raise SpectrascopeError("a steering vector needs at least one positive and one negative prompt")
    acts = collect_activations(model, positive + negative, site=site, position=position, layers=[layer])
    x = next(iter(acts.values()))
    diff = x[: len(positive)].mean(axis=0) - x[len(positive) :].mean(axis=0)
    return torch.from_numpy(diff.astype(np.float32))


@contextmanager
def steer(
    model: ModelLike,
    layer: int,
    vector: torch.Tensor | np.ndarray,
    scale: float = 1.0,
    site: str = "resid_post",
    positions: str | torch.Tensor = "all",
) -> Iterator[None]:
    """Add ``scale * vector`` to ``blocks.{layer}.{site}`` in every forward pass inside the block.

    Args:
        model: a model of a supported family (anything ``as_model`` accepts).
        layer: block index (negative counts from the end).
        vector: (d,) direction in the site's units.
        scale: multiplier; ``scale=0`` leaves the outputs bit-identical.
        site: site kind (``resid_post``, ``resid_pre``, ``resid_mid``, ``attn_out``, ``mlp_out``).
        positions: ``"all"`` positions, ``"last"`` (the final column of the batch: use
            one prompt per forward or left padding), or a (batch,) tensor of per-row
            positions (the last real token of right-padded rows).
    """
    model = as_model(model).require_causal_lm("steering (it reads next-token logits)")
    (index,) = check_layers(model, [layer])
    kind = vector_site_kind(site)
    direction = torch.as_tensor(np.asarray(vector) if not isinstance(vector, torch.Tensor) else vector)
    if direction.ndim != 1:
        raise SpectrascopeError(f"a steering vector must be 1-D (d,), got shape {tuple(direction.shape)}")
    if isinstance(positions, str) and positions not in ("all", "last"):
        raise SpectrascopeError(f"steering positions must be 'all', 'last' or a tensor of positions, got {positions!r}")
    name = site_name(index, kind)

    def add(activation: torch.Tensor, _name: str) -> torch.Tensor | None:
        if scale == 0:
            return None
        if activation.shape[-1] != direction.shape[0]:
            raise SpectrascopeError(
                f"steering vector has {direction.shape[0]} dimensions; {name} has {activation.shape[-1]}"
            )
        delta = (scale * direction).to(dtype=activation.dtype, device=activation.device)
        if isinstance(positions, str) and positions == "all":
            return activation + delta
        steered = activation.clone()
        if isinstance(positions, str):  # "last"
            steered[:, -1] += delta
        else:
            rows = torch.arange(activation.shape[0], device=activation.device)
            steered[rows, positions.to(activation.device)] += delta
        return steered

    with hooks(model, {name: add}):
        yield


def steering_effect(
    model: ModelLike,
    prompts: Sequence[str],
    vector: torch.Tensor | np.ndarray,
    layer: int,
    scales: Sequence[float] = (0.0, 1.0, 2.0, 4.0),
    targets: Sequence[str] | None = None,
    site: str = "resid_post",
    positions: str = "all",
) -> pd.DataFrame:
    """Next-token distributions of ``prompts`` under steering at each scale (:data:`EFFECT_COLUMNS`).

    Args:
        model: a loaded causal LM (``.hf`` and ``.tokenizer``).
        prompts: texts whose next token is measured (at each one's last real token).
        vector, layer, site: as in :func:`steer`.
        scales: one row per (scale, prompt); the unsteered reference is always computed.
        targets: strings whose first token's probability is tracked (e.g. ``" Paris"``);
            ``target_logprob`` is the log of their summed probability.
        positions: ``"all"`` or ``"last"`` (each prompt's last real token).
    """
    model = as_model(model).require_causal_lm("steering (it reads next-token logits)")
    hf = model.hf
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise SpectrascopeError("steering_effect needs a model with a tokenizer")
    prompts = list(prompts)
    if not prompts:
        raise SpectrascopeError("no prompts to steer")
    if positions not in ("all", "last"):
        raise SpectrascopeError(f"positions must be 'all' or 'last', got {positions!r}")
    target_ids = target_token_ids(tokenizer, targets) if targets else []
    ids, mask, last = _right_padded(tokenizer, prompts, model.device)
    rows_index = torch.arange(len(prompts), device=ids.device)

    def next_logprobs(scale: float) -> torch.Tensor:
        where = last if positions == "last" else "all"
        with steer(model, layer, vector, scale, site, where), torch.no_grad():
            logits = hf(input_ids=ids, attention_mask=mask).logits
        return torch.log_softmax(logits[rows_index, last].double(), dim=-1)

    reference = next_logprobs(0.0)
    ref_target = _target_logprob(reference, target_ids)
    records = []
    for scale in scales:
        logp = reference if scale == 0 else next_logprobs(float(scale))
        kl = (reference.exp() * (reference - logp)).sum(-1).clamp(min=0.0)
        target = _target_logprob(logp, target_ids)
        top_prob, top_id = logp.exp().max(-1)
        for i, text in enumerate(prompts):
            records.append(
                {
                    "scale": float(scale),
                    "prompt": i,
                    "text": text,
                    "kl_from_unsteered": float(kl[i]),
                    "target_logprob": float(target[i]),
                    "target_logprob_change": float(target[i] - ref_target[i]),
                    "top_token": tokenizer.decode([int(top_id[i])]),
                    "top_prob": float(top_prob[i]),
                }
            )
    return pd.DataFrame(records, columns=list(EFFECT_COLUMNS))


def next_token_table(model: ModelLike, prompt: str, top_k: int = 10, steering: dict | None = None) -> pd.DataFrame:
    """Top-k next tokens of ``prompt`` (columns ``rank``, ``token``, ``prob``), optionally under ``steer(**steering)``."""
    model = as_model(model).require_causal_lm("the next-token table")
    if model.tokenizer is None:
        raise SpectrascopeError("next_token_table needs a model with a tokenizer")
    hf = model.hf
    ids, mask, last = _right_padded(model.tokenizer, [prompt], model.device)
    with steer(model, **steering) if steering else _nothing(), torch.no_grad():
        logits = hf(input_ids=ids, attention_mask=mask).logits[0, int(last[0])]
    probs = torch.softmax(logits.double(), dim=-1)
    top = torch.topk(probs, min(top_k, probs.numel()))
    return pd.DataFrame(
        {
            "rank": range(1, len(top.indices) + 1),
            "token": [model.tokenizer.decode([int(t)]) for t in top.indices],
            "prob": top.values.numpy(),
        }
    )


def target_token_ids(tokenizer: Any, targets: Sequence[str]) -> list[int]:
    """The first token id of each target string (without special tokens); unique, in order."""
    out: list[int] = []
    for target in targets:
        ids = tokenizer(target, add_special_tokens=False)["input_ids"]
        if not ids:
            raise SpectrascopeError(f"target {target!r} has no tokens")
        if ids[0] not in out:
            out.append(int(ids[0]))
    return out


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _right_padded(
    tokenizer: Any, prompts: list[str], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, mask) right-padded on ``device`` and the index of each row's last real token."""
    encoded = tokenizer(prompts)["input_ids"]
    if any(len(e) == 0 for e in encoded):
        raise SpectrascopeError("a prompt has no tokens")
    ids, mask = pad_rows(encoded, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    last = torch.tensor([len(e) - 1 for e in encoded])
    return ids.to(device), mask.to(device), last.to(device)


def _target_logprob(logp: torch.Tensor, target_ids: list[int]) -> torch.Tensor:
    if not target_ids:
        return torch.full((logp.shape[0],), float("nan"), dtype=logp.dtype)
    return torch.logsumexp(logp[:, target_ids], dim=-1)
