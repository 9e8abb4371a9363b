"""Attention implementation: ``hook_pattern`` needs eager attention.

Hugging Face models (transformers 5.x) load with ``sdpa`` attention by default.
``torch.nn.functional.scaled_dot_product_attention`` (and flash / flex attention) never
materialise the attention probabilities: the attention module returns ``None`` in
place of its weights. Only the ``eager`` implementation computes
``softmax(q k^T * scale + mask)`` as a tensor and returns it as the attention module's
second output, which is where ``blocks.{L}.attn.hook_pattern`` reads it.

So pattern sites exist only on a model that runs eager attention: load it with
``from_pretrained(..., attn_implementation="eager")``, or wrap the calls in
:func:`eager_attention`, which switches the model to eager and back. Switching
changes the arithmetic (eager and sdpa round differently), so logits under
``eager_attention`` match a plain *eager* forward bit for bit, not an sdpa one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from spectrascope.errors import SiteError

EAGER = "eager"

PATTERN_NEEDS_EAGER = (
    "attn.hook_pattern needs eager attention, but the model uses {implementation!r} attention, "
    "which never forms the attention probabilities; load the model with "
    "attn_implementation='eager' or run inside `with spectrascope.trace.eager_attention(model):`"
)


def attention_implementation(hf_model: nn.Module) -> str | None:
    """The attention implementation the model runs now (``"eager"``, ``"sdpa"`` ...), if known."""
    config = getattr(hf_model, "config", None)
    return getattr(config, "_attn_implementation", None)


def uses_eager_attention(hf_model: nn.Module) -> bool:
    """Whether the model's attention modules return their attention probabilities."""
    return attention_implementation(hf_model) == EAGER


@contextmanager
def eager_attention(hf_model: nn.Module) -> Iterator[nn.Module]:
    """Run ``hf_model`` with eager attention inside the block; restore its implementation after.

    Uses ``PreTrainedModel.set_attn_implementation``; raises :class:`SiteError` for a
    model that cannot switch (not a Hugging Face model, or one that does not dispatch
    attention through transformers' attention interface).
    """
    previous = attention_implementation(hf_model)
    if previous == EAGER:
        yield hf_model
        return
    setter = getattr(hf_model, "set_attn_implementation", None)
    if previous is None or setter is None:
        raise SiteError(f"{type(hf_model).__name__} cannot switch to eager attention (no set_attn_implementation)")
    setter(EAGER)
    if not uses_eager_attention(hf_model):
        setter(previous)
        raise SiteError(f"{type(hf_model).__name__} cannot switch its attention implementation to eager")
    try:
        yield hf_model
    finally:
        setter(previous)
