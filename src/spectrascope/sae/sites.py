"""An SAE bound to one site of a model: width checks, held-out text, edits inside the forward.

:func:`bind_site` resolves the site (the SAE's ``hook_name`` when none is given), checks that
its width equals the SAE's ``d_in`` and returns a :class:`SiteBinding`. Edits use the
tracer's hooks (:func:`spectrascope.trace.hooks`): :meth:`SiteBinding.edit` returns a site
function that replaces the kept tokens' vectors by ``fn(vectors)`` ((n, d_in) -> (n, d_in))
and leaves the first position (the attention sink the SAE never saw), padding and
massive-activation tokens (:mod:`spectrascope.sae.massive`) alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..trace.sites import SiteKind, parse_site
from .base import SaeError, SparseAutoencoder
from .massive import MASSIVE_FACTOR, massive_mask
from .store import TextBatch, by_length, is_held_out, resolve_site, site_width, text_batches

RESIDUAL_KINDS = (SiteKind.RESID_PRE, SiteKind.RESID_MID, SiteKind.RESID_POST, SiteKind.ATTN_OUT, SiteKind.MLP_OUT)
"""Sites whose vectors live in the residual stream (d_model): decoder directions there can be
read through the unembedding and added by steering."""


@dataclass
class SiteBinding:
    """A loaded model, one of its sites and an SAE that reads it.

    Attributes:
        loaded: the model (``.hf``, ``.tokenizer``).
        site: full site name; layer, kind: its parts.
        sae: the SAE (on the model's device).
        massive_factor: massive-token factor (None: no token is treated as massive).
    """

    loaded: Any
    site: str
    layer: int
    kind: SiteKind
    sae: SparseAutoencoder
    massive_factor: float | None = MASSIVE_FACTOR

    @property
    def hf(self) -> torch.nn.Module:
        return self.loaded.hf

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def in_residual_stream(self) -> bool:
        return self.kind in RESIDUAL_KINDS

    def edit(self, fn: Callable[[torch.Tensor], torch.Tensor], keep: list[torch.Tensor]) -> Callable:
        """A tracer site function replacing the kept vectors x by ``fn(x)``.

        ``keep`` is a one-element list holding the current batch's (batch, pos) bool mask
        (set before each forward), so one hook serves every batch.
        """

        def site_fn(activation: torch.Tensor, _name: str) -> torch.Tensor:
            flat = activation.flatten(start_dim=2) if activation.dim() == 4 else activation
            mask = keep[0].to(flat.device)
            rows = flat[mask]
            ordinary = ~massive_mask(rows, self.massive_factor)
            new_rows = rows.clone()
            new_rows[ordinary] = fn(rows[ordinary].float()).to(flat.dtype)
            edited = flat.clone()
            edited[mask] = new_rows
            return edited.view_as(activation)

        return site_fn

    def held_out_batches(
        self, texts: list[str], max_tokens: int, seq_len: int, skip_first: bool = True
    ) -> Iterator[TextBatch]:
        """Batches of a corpus's held-out texts (:func:`~spectrascope.sae.store.is_held_out`): the
        first ones up to ``max_tokens`` kept tokens, batched longest first (:func:`~spectrascope.sae.store.by_length`)."""
        tokenizer = self.loaded.tokenizer
        indices = [i for i in range(len(texts)) if is_held_out(i)]
        batches = (batch for batch, _ in text_batches(tokenizer, texts, indices, max_tokens, seq_len, skip_first))
        pad = getattr(tokenizer, "pad_token_id", None)
        yield from by_length(batches, pad if pad is not None else 0)


def as_loaded(model: Any) -> Any:
    """A loaded model (``.hf`` and ``.tokenizer``), loading a name or path."""
    if hasattr(model, "hf") and hasattr(model, "tokenizer"):
        return model
    from ..models.loaded import load_model

    return load_model(model)


def bind_site(
    model: Any, sae: SparseAutoencoder, site: str | None = None, massive_factor: float | None = MASSIVE_FACTOR
) -> SiteBinding:
    """Bind ``sae`` to ``site`` of ``model`` (a name, path or loaded model).

    Raises:
        SaeError: no site given and none recorded in the SAE, or widths that differ.
        SiteError: a site the model does not have.
    """
    site = site or sae.metadata.get("hook_name")
    if not site:
        raise SaeError("no site given and the SAE records none (metadata hook_name); pass --site")
    loaded = as_loaded(model)
    name = resolve_site(loaded.hf, site)
    width = site_width(loaded.hf, name)
    if width != sae.d_in:
        raise SaeError(f"the SAE reads vectors of width d_in = {sae.d_in} but {name} of this model has width {width}")
    layer, kind = parse_site(name)
    sae = sae.to(next(loaded.hf.parameters()).device).eval()
    return SiteBinding(loaded, name, layer, kind, sae, massive_factor)


def resume_layer(binding: SiteBinding) -> int | None:
    """The block whose ``hook_resid_pre`` is the binding's site (``resid_post`` of L: L + 1;
    ``resid_pre`` of L: L) when the model's forward can be resumed there, else None."""
    from ..models.handle import as_model
    from ..trace.resume import resumable

    b = binding
    layer = b.layer + 1 if b.kind is SiteKind.RESID_POST else b.layer if b.kind is SiteKind.RESID_PRE else None
    if layer is None or not resumable(b.loaded) or layer >= as_model(b.loaded).n_layers:
        return None
    return layer


def resume_checked(
    binding: SiteBinding,
    layer: int,
    hidden: torch.Tensor,
    full_logits: torch.Tensor,
    attention_mask: torch.Tensor | None,
    logits_to_keep: torch.Tensor | None = None,
) -> bool:
    """Whether the forward resumed at ``layer`` from the clean ``hidden`` (batch, pos, d)
    reproduces ``full_logits`` (:func:`spectrascope.trace.resume.resume_checked`)."""
    from ..trace import resume

    def resumed() -> torch.Tensor:
        return resume.forward_from_layer(binding.loaded, layer, hidden, attention_mask, logits_to_keep)

    return resume.resume_checked(binding.hf, layer, attention_mask is not None, resumed, full_logits)
