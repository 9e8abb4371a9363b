"""Logit lens: read every layer's residual stream with the model's own final norm and unembedding.

For a prompt of ``n_pos`` tokens, the lens takes the residual stream at ``n_layers + 1``
points and turns each vector into a next-token distribution,
``softmax(lm_head(final_norm(resid)))`` (see :mod:`spectrascope.mech.unembed`):

- ``layer = -1``: the embedding output, i.e. ``blocks.0.hook_resid_pre`` (token embeddings,
  plus position embeddings for GPT-2);
- ``layer = L`` (0 .. n_layers - 1): ``blocks.{L}.hook_resid_post``, the residual stream
  leaving block ``L``.

At the last layer this *is* the model's own computation (same modules, same tensor), so
the lens there reproduces the model's next-token distribution.

:func:`logit_lens` returns a long table, one row per (layer, position, reported token):

==================  ======================================================================
``layer``           -1 (embeddings = ``blocks.0.hook_resid_pre``) or the block index L
``site``            the site read: ``blocks.0.hook_resid_pre`` or ``blocks.{L}.hook_resid_post``
``position``        0-based token position in the prompt
``input_token``     the prompt's token at that position (decoded string)
``kind``            ``"top"``: one of the k most probable tokens; ``"target"``: a requested token
``token``           the reported token (decoded string)
``token_id``        its id
``prob``            its probability under the lens at (layer, position), in [0, 1]
``rank``            the number of tokens with a higher logit: 0 = the top token (0-based, as
                    TransformerLens reports ranks); from logits, so tokens whose probability
                    underflows to 0 still get distinct ranks
==================  ======================================================================

The distribution at ``position`` p is the prediction of the token at p + 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch

from spectrascope.errors import SpectrascopeError
from spectrascope.mech.unembed import unembed_parts
from spectrascope.models.handle import ModelLike, as_model
from spectrascope.trace import run_with_cache
from spectrascope.trace.architectures import bind
from spectrascope.trace.sites import SiteKind, site_name

EMBED_LAYER = -1
"""The ``layer`` label of the embedding output (``blocks.0.hook_resid_pre``)."""

LENS_COLUMNS = ["layer", "site", "position", "input_token", "kind", "token", "token_id", "prob", "rank"]


def first_token_id(tokenizer: Any, text: str | int) -> int:
    """The id of the first token of ``text`` (no special tokens added); an int is returned as is.

    ``" Paris"`` (leading space) and ``"Paris"`` are different tokens in most BPE vocabularies.
    """
    if isinstance(text, int):
        return int(text)
    if tokenizer is None:
        raise SpectrascopeError(f"cannot turn {text!r} into a token id: the model has no tokenizer (pass token ids)")
    if not isinstance(text, str) or not text:
        raise SpectrascopeError(f"a target token must be a non-empty string or a token id (got {text!r})")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise SpectrascopeError(f"{text!r} encodes to no token")
    return int(ids[0])


def encode_prompt(model: ModelLike, prompt: str | Sequence[int] | torch.Tensor) -> torch.Tensor:
    """(1, pos) token ids of a prompt (a string, tokenized as the tokenizer does by default, or ids).

    Raises:
        SpectrascopeError: empty prompt, no tokenizer for a string, several sequences.
    """
    handle = as_model(model)
    hf = handle.hf
    if isinstance(prompt, str):
        tokenizer = handle.tokenizer
        if tokenizer is None:
            raise SpectrascopeError("the model has no tokenizer: pass the prompt as token ids")
        if not prompt:
            raise SpectrascopeError("the prompt is empty")
        ids = torch.tensor([tokenizer(prompt)["input_ids"]], dtype=torch.long)
    else:
        ids = torch.as_tensor(prompt, dtype=torch.long)
        if ids.dim() == 1:
            ids = ids.unsqueeze(0)
        if ids.dim() != 2 or ids.shape[0] != 1:
            raise SpectrascopeError(f"expected one sequence of token ids, got shape {tuple(ids.shape)}")
    if ids.shape[1] == 0:
        raise SpectrascopeError(f"the prompt {prompt!r} encodes to no tokens")
    vocab = getattr(getattr(hf, "config", None), "vocab_size", None)
    if vocab is not None and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise SpectrascopeError(f"token ids must lie in 0..{vocab - 1} (got {int(ids.min())}..{int(ids.max())})")
    return ids.to(handle.device)


def lens_sites(model: ModelLike) -> list[tuple[int, str]]:
    """(layer label, site name) of every point the lens reads, in forward order (embeddings first)."""
    n_layers = bind(model).n_layers
    return [(EMBED_LAYER, site_name(0, SiteKind.RESID_PRE))] + [
        (layer, site_name(layer, SiteKind.RESID_POST)) for layer in range(n_layers)
    ]


@torch.no_grad()
def lens_residuals(
    model: ModelLike, input_ids: torch.Tensor
) -> tuple[list[tuple[int, str]], dict[str, torch.Tensor], torch.Tensor]:
    """One forward pass recording the residual stream at every lens point.

    Returns:
        ``(points, residuals, logits)``: ``points`` as :func:`lens_sites`; ``residuals`` site name
        -> (1, pos, d_model); ``logits`` the model's own (1, pos, vocab) output of that pass
        (bit-identical to a plain forward: the hooks only observe).
    """
    handle = as_model(model)
    points = lens_sites(handle)
    logits, cache = run_with_cache(handle, input_ids, [name for _, name in points])
    return points, cache, logits


@torch.no_grad()
def lens_logits(model: ModelLike, input_ids: torch.Tensor) -> tuple[list[tuple[int, str]], torch.Tensor, torch.Tensor]:
    """Logits of every lens point for one sequence, and the model's own logits.

    Holds all (n_layers + 1) x pos x vocab logits at once; :func:`logit_lens` goes layer by
    layer instead.

    Args:
        model: a loaded model, a Hugging Face language model of a supported family, a name
            (anything ``as_model`` accepts).
        input_ids: (1, pos) token ids.

    Returns:
        ``(points, lens, logits)``: ``points`` as :func:`lens_sites`; ``lens`` the
        (n_layers + 1, pos, vocab) logits of each point in the model's dtype; ``logits`` the
        model's own (1, pos, vocab) output logits.
    """
    readout = unembed_parts(model)
    points, residuals, logits = lens_residuals(model, input_ids)
    return points, torch.stack([readout(residuals[name][0]) for _, name in points]), logits


def logit_lens(
    model: ModelLike,
    prompt: str | Sequence[int] | torch.Tensor,
    targets: Sequence[str | int] | None = None,
    k: int = 5,
) -> pd.DataFrame:
    """The logit lens of one prompt: top-k tokens and the targets' probability and rank per layer and position.

    Args:
        model: a language model of a supported family with its unembedding (anything
            ``as_model`` accepts: what ``load_model`` returns, a Hugging Face module, a name).
        prompt: the text (tokenized as the tokenizer does by default) or its token ids.
        targets: tokens to follow: strings (the first token of each is used, e.g. ``" Paris"``)
            or token ids; None for none.
        k: number of top tokens reported per (layer, position).

    Returns:
        the long table described in the module docstring (columns :data:`LENS_COLUMNS`),
        sorted by layer, position, kind (targets after top), rank.
    """
    if k < 0:
        raise SpectrascopeError(f"k must be >= 0 (got {k})")
    model = as_model(model)
    tokenizer = model.tokenizer
    input_ids = encode_prompt(model, prompt)
    target_ids = [first_token_id(tokenizer, t) for t in (targets or [])]
    readout = unembed_parts(model)
    points, residuals, logits = lens_residuals(model, input_ids)
    vocab = logits.shape[-1]
    bad = [t for t in target_ids if not 0 <= t < vocab]
    if bad:
        raise SpectrascopeError(f"target token id(s) {bad} outside the vocabulary (0..{vocab - 1})")
    k = min(k, vocab)
    decode = _decoder(tokenizer)
    input_tokens = [decode(int(t)) for t in input_ids[0]]
    n_pos = input_ids.shape[1]
    frames = []
    for layer, site in points:
        with torch.no_grad():
            scores = readout(
                residuals[site][0]
            ).float()  # (pos, vocab); ranks from logits: probabilities underflow to ties
        probs = torch.softmax(scores, dim=-1)
        top_id = scores.topk(k, dim=-1).indices
        top_prob = probs.gather(-1, top_id)
        rows = {
            "position": torch.arange(n_pos).repeat_interleave(k).tolist(),
            "kind": ["top"] * (n_pos * k),
            "token_id": top_id.flatten().tolist(),
            "prob": top_prob.flatten().tolist(),
            "rank": list(range(k)) * n_pos,
        }
        if target_ids:
            ids = torch.tensor(target_ids, device=probs.device)
            target_prob = probs[:, ids]  # (pos, n_targets)
            target_rank = (scores.unsqueeze(1) > scores[:, ids].unsqueeze(-1)).sum(-1)  # (pos, n_targets)
            rows["position"] += torch.arange(n_pos).repeat_interleave(len(ids)).tolist()
            rows["kind"] += ["target"] * (n_pos * len(ids))
            rows["token_id"] += target_ids * n_pos
            rows["prob"] += target_prob.flatten().tolist()
            rows["rank"] += target_rank.flatten().tolist()
        frame = pd.DataFrame(rows)
        frame.insert(0, "layer", layer)
        frame.insert(1, "site", site)
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    df["input_token"] = [input_tokens[p] for p in df["position"]]
    vocab_strings = {t: decode(t) for t in df["token_id"].unique().tolist()}
    df["token"] = df["token_id"].map(vocab_strings)
    df["kind"] = pd.Categorical(df["kind"], categories=["top", "target"])
    df = df.sort_values(["layer", "position", "kind", "rank"], kind="stable").reset_index(drop=True)
    df["kind"] = df["kind"].astype(str)
    return df[LENS_COLUMNS]


def _decoder(tokenizer: Any):
    """id -> token text (the id as ``<id>`` when there is no tokenizer)."""
    if tokenizer is None:
        return lambda token_id: f"<{token_id}>"
    return lambda token_id: tokenizer.decode([token_id])
